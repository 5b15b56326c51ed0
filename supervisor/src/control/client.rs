//! The client side of the control socket, used by the CLI verbs. Synchronous: a CLI call is
//! one request and a short stream of answers.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{Request, Response};

/// Where the control socket is: `--socket`, else the `[control] socket` of `--config` (default
/// /etc/vitrine/vitrine.toml, whose absence means every default), else the default path.
pub fn socket_path(socket: Option<&Path>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(s) = socket {
        return Ok(s.to_owned());
    }
    let config = vitrine_policy::load_config(config).map_err(|d| anyhow::anyhow!("{d}"))?;
    Ok(config.control.socket)
}

/// An open request whose answers are read one by one.
#[derive(Debug)]
pub struct Answers {
    reader: BufReader<UnixStream>,
    line: String,
}

/// Connects and sends `request`.
pub fn send(path: &Path, request: &Request) -> anyhow::Result<Answers> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "cannot connect to {} (is `vitrine serve` running, and may you use it?)",
            path.display()
        )
    })?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line).with_context(|| format!("sending to {}", path.display()))?;
    Ok(Answers { reader: BufReader::new(stream), line: String::new() })
}

impl Answers {
    /// The next answer, or `None` when the daemon closed the connection.
    pub fn next_answer(&mut self) -> anyhow::Result<Option<Response>> {
        self.line.clear();
        match self.reader.read_line(&mut self.line) {
            Ok(0) => Ok(None),
            Ok(_) => {
                let response = serde_json::from_str(&self.line).with_context(|| {
                    format!("unexpected answer from the daemon: {}", self.line.trim_end())
                })?;
                Ok(Some(response))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(None),
            Err(e) => Err(e).context("reading the daemon's answer"),
        }
    }

    /// The single answer of a non-streaming request; an `error` answer becomes an error.
    pub fn single(mut self) -> anyhow::Result<Response> {
        match self.next_answer()? {
            Some(Response::Error { message }) => anyhow::bail!("{message}"),
            Some(response) => Ok(response),
            None => anyhow::bail!("the daemon closed the connection without an answer"),
        }
    }
}
