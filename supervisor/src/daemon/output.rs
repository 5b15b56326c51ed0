//! Child output: stdout and stderr read line by line, bounded, rate-limited, kept in a ring for
//! `vitrine logs` and written to the supervisor's log with the visualization's name as a field.
//!
//! A visualization cannot make the supervisor allocate without bound (lines are cut at
//! [`MAX_LINE`] bytes, the ring holds [`RING_LINES`] lines) nor flood the journal (a token bucket
//! per visualization; what exceeds it is replaced by one "N lines suppressed" line).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::launcher::Stream;

/// Longest line kept, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 4096;
/// Lines kept per visualization for `vitrine logs`.
pub const RING_LINES: usize = 1000;
/// Sustained lines per second per visualization, and the burst allowed above it.
const RATE_PER_SEC: f64 = 200.0;
const BURST_LINES: f64 = 1000.0;

/// One line of a visualization's output (or a line the supervisor adds, stream `vitrine`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub ts_ms: u64,
    pub stream: String,
    pub line: String,
}

/// The per-visualization ring of recent output lines plus a live feed for `--follow`.
#[derive(Debug)]
pub struct LogRing {
    name: String,
    lines: Mutex<VecDeque<Arc<LogLine>>>,
    tx: broadcast::Sender<Arc<LogLine>>,
    next_seq: AtomicU64,
    limiter: Mutex<Limiter>,
}

impl LogRing {
    pub fn new(name: &str) -> Arc<Self> {
        let (tx, _) = broadcast::channel(RING_LINES);
        Arc::new(LogRing {
            name: name.to_owned(),
            lines: Mutex::new(VecDeque::with_capacity(RING_LINES)),
            tx,
            next_seq: AtomicU64::new(1),
            limiter: Mutex::new(Limiter::new(Instant::now())),
        })
    }

    /// Records a line from the child, subject to the rate limit.
    pub fn child_line(&self, stream: Stream, line: &str) {
        let verdict = self.limiter().admit(Instant::now());
        if let Some(suppressed) = verdict.suppressed_before {
            self.supervisor_line(&format!("{suppressed} lines suppressed (rate limit)"));
        }
        if verdict.admit {
            tracing::info!(visualization = %self.name, stream = stream.as_str(), "{line}");
            self.push(stream.as_str(), line);
        }
    }

    /// Records a line the supervisor writes about this visualization (lifecycle, suppression).
    pub fn supervisor_line(&self, line: &str) {
        self.push("vitrine", line);
    }

    /// Reports lines still suppressed when the output ends, so none vanish without a trace.
    pub fn flush_suppressed(&self) {
        if let Some(n) = self.limiter().take_suppressed() {
            self.supervisor_line(&format!("{n} lines suppressed (rate limit)"));
        }
    }

    /// The kept lines (oldest first) and a feed that continues exactly after them.
    pub fn snapshot_and_follow(&self) -> (Vec<Arc<LogLine>>, broadcast::Receiver<Arc<LogLine>>) {
        let lines = self.lock_lines();
        (lines.iter().cloned().collect(), self.tx.subscribe())
    }

    fn push(&self, stream: &str, line: &str) {
        let mut lines = self.lock_lines();
        let entry = Arc::new(LogLine {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            ts_ms: now_ms(),
            stream: stream.to_owned(),
            line: line.to_owned(),
        });
        if lines.len() == RING_LINES {
            lines.pop_front();
        }
        lines.push_back(entry.clone());
        // No follower is not an error.
        let _ = self.tx.send(entry);
    }

    fn lock_lines(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<LogLine>>> {
        // Push/pop cannot leave the ring inconsistent, so a poisoned lock is still usable.
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads one output pipe of a child until EOF, feeding complete lines into the ring.
pub async fn pump(ring: Arc<LogRing>, stream: Stream, fd: OwnedFd) {
    let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(visualization = %ring.name, "cannot read the child's {}: {e}", stream.as_str());
            return;
        }
    };
    let mut splitter = LineSplitter::default();
    let mut chunk = vec![0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                for line in splitter.push(&chunk[..n]) {
                    ring.child_line(stream, &line);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(visualization = %ring.name, "reading the child's {}: {e}", stream.as_str());
                break;
            }
        }
    }
    if let Some(line) = splitter.finish() {
        ring.child_line(stream, &line);
    }
    ring.flush_suppressed();
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    /// Inside an over-long line whose head was already emitted: drop bytes until the newline.
    discarding: bool,
}

impl LineSplitter {
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (part, rest, complete) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if !self.discarding {
                let room = MAX_LINE - self.buf.len();
                self.buf.extend_from_slice(&part[..part.len().min(room)]);
                if part.len() > room {
                    out.push(format!("{} [line truncated]", self.take_line()));
                    self.discarding = true;
                }
            }
            if complete {
                if !self.discarding {
                    out.push(self.take_line());
                }
                self.discarding = false;
            }
        }
        out
    }

    /// The unterminated last line, if any, when the stream ends.
    pub fn finish(&mut self) -> Option<String> {
        (!self.buf.is_empty() && !self.discarding).then(|| self.take_line())
    }

    fn take_line(&mut self) -> String {
        let mut line = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        if line.ends_with('\r') {
            line.pop();
        }
        line
    }
}

/// A token bucket that counts what it refuses.
#[derive(Debug)]
struct Limiter {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

#[derive(Debug, PartialEq)]
struct Verdict {
    admit: bool,
    /// Set when this line is the first admitted after a run of suppressed ones.
    suppressed_before: Option<u64>,
}

impl Limiter {
    fn new(now: Instant) -> Self {
        Limiter { tokens: BURST_LINES, last: now, suppressed: 0 }
    }

    fn admit(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * RATE_PER_SEC).min(BURST_LINES);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Verdict { admit: true, suppressed_before: self.take_suppressed() }
        } else {
            self.suppressed += 1;
            Verdict { admit: false, suppressed_before: None }
        }
    }

    fn take_suppressed(&mut self) -> Option<u64> {
        (self.suppressed > 0).then(|| std::mem::take(&mut self.suppressed))
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn splits_lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"hel"), Vec::<String>::new());
        assert_eq!(s.push(b"lo\r\nwor"), vec!["hello"]);
        assert_eq!(s.push(b"ld\n\n"), vec!["world", ""]);
        assert_eq!(s.push(b"tail"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("tail"));
    }

    #[test]
    fn cuts_over_long_lines_and_resynchronizes_at_the_newline() {
        let mut s = LineSplitter::default();
        let long = vec![b'x'; MAX_LINE * 3];
        let lines = s.push(&long);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with("[line truncated]"));
        assert_eq!(lines[0].len(), MAX_LINE + " [line truncated]".len());
        assert_eq!(s.push(b"rest of it\nnext\n"), vec!["next"]);
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\xffb\n"), vec!["a\u{fffd}b"]);
    }

    #[test]
    fn limiter_suppresses_beyond_the_burst_and_reports_the_count() {
        let t = Instant::now();
        let mut l = Limiter::new(t);
        for _ in 0..BURST_LINES as usize {
            assert!(l.admit(t).admit);
        }
        for _ in 0..50 {
            assert!(!l.admit(t).admit);
        }
        // One second later the bucket has refilled by RATE_PER_SEC tokens.
        let v = l.admit(t + Duration::from_secs(1));
        assert_eq!(v, Verdict { admit: true, suppressed_before: Some(50) });
        assert_eq!(l.take_suppressed(), None);
    }

    // Paused time: no tokens refill while the lines are written, so the count is exact.
    #[tokio::test(start_paused = true)]
    async fn ring_is_bounded_and_marks_suppression() {
        let ring = LogRing::new("t");
        for i in 0..(BURST_LINES as usize + 10) {
            ring.child_line(Stream::Stdout, &format!("line {i}"));
        }
        ring.flush_suppressed();
        let (lines, _) = ring.snapshot_and_follow();
        assert_eq!(lines.len(), RING_LINES);
        let last = lines.last().expect("a line");
        assert_eq!(last.stream, "vitrine");
        assert!(last.line.starts_with("10 lines suppressed"), "{}", last.line);
    }
}
