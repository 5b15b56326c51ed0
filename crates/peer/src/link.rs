//! A live link: relays OSC from controllers (rate-limited, role-checked), status documents,
//! rotation statements and keepalives, until either side closes it or it is told to close.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::event::{InboundOsc, PeerEvent};
use crate::frame::{Frame, Rotate};
use crate::handshake::{Established, Pipe, Session};
use crate::id::PeerId;
use crate::identity::{ed25519_raw_key, verify_signature};
use crate::proof::rotation_message;
use crate::shared::{LinkHandle, PeerConfig, Shared, lock};
use crate::trust::{Role, RotateRefusal};
use vitrine_osc::rate::TokenBucket;

/// Frames queued for sending before `send_osc` reports the link as congested.
const OUT_QUEUE: usize = 256;

/// Registers the link, then runs it in a task. Returns `false` (and closes the connection)
/// when another link with the same peer wins.
pub(crate) async fn start(shared: Arc<Shared>, est: Established) -> bool {
    let peer = est.session.peer;
    let (out_tx, out_rx) = mpsc::channel::<Frame>(OUT_QUEUE);
    let (close_tx, close_rx) = watch::channel(None::<String>);
    let serial = shared.next_serial();
    let handle = LinkHandle {
        serial,
        addr: est.session.addr,
        dialer: if est.dialed { shared.me() } else { peer },
        exporter: est.session.exporter,
        out: out_tx,
        close: close_tx,
        since: SystemTime::now(),
    };
    let addr = handle.addr;
    if let Err(reason) = register(&shared, peer, handle) {
        if reason == UNDER_OLD_KEY || reason == BANNED {
            // A trust decision (one peer, one link; no link while banned), unlike a race of
            // two dials: reported.
            shared.emit(PeerEvent::HandshakeFailed {
                peer: Some(peer),
                addr,
                reason: reason.into(),
            });
        }
        let mut pipe = est.pipe;
        let _ = pipe.send(&Frame::Refused { reason: reason.into() }).await;
        return false;
    }
    tokio::spawn(run(shared, est, serial, out_rx, close_rx));
    true
}

async fn run(
    shared: Arc<Shared>,
    est: Established,
    serial: u64,
    mut out_rx: mpsc::Receiver<Frame>,
    mut close_rx: watch::Receiver<Option<String>>,
) {
    let Established { session, name, role, dialed, mut pipe } = est;
    let peer = session.peer;
    shared.emit(PeerEvent::Connected {
        peer,
        name: name.clone(),
        role,
        addr: session.addr,
        dialed,
    });
    let mut ping = tokio::time::interval(shared.cfg.ping_interval);
    // The first tick of an interval is immediate: the status goes out as soon as the link is up.
    let mut status = tokio::time::interval(shared.cfg.status_interval);
    let dead_after = shared.cfg.ping_timeout;
    let mut last_rx = Instant::now();
    shared.heard_from(peer, None);
    let mut limits = LinkLimits::new(&shared.cfg);
    let mut trust = shared.trust_changed.subscribe();
    let mut seq = 0u64;
    let reason = loop {
        tokio::select! {
            _ = close_rx.changed() => {
                let reason = close_rx.borrow().clone().unwrap_or_else(|| "closed".into());
                let _ = pipe.send(&Frame::Refused { reason: reason.clone() }).await;
                break reason;
            }
            out = out_rx.recv() => match out {
                Some(frame) => if let Err(e) = pipe.send(&frame).await { break e.to_string() },
                None => break "closed".into(),
            },
            _ = status.tick() => {
                if let Err(e) = send_status(&shared, peer, &mut limits, &mut pipe).await {
                    break e;
                }
            }
            // A role changed by hand or by a forget: the peer learns its new role at once.
            Ok(()) = trust.changed() => {
                if shared.role_of(&peer) != limits.told {
                    if let Err(e) = send_status(&shared, peer, &mut limits, &mut pipe).await {
                        break e;
                    }
                }
            }
            _ = ping.tick() => {
                if last_rx.elapsed() > dead_after {
                    break "no answer to pings".into();
                }
                seq += 1;
                if let Err(e) = pipe.send(&Frame::Ping(seq)).await { break e.to_string() }
            }
            inbound = pipe.frames.recv() => match inbound {
                None => break "connection closed".into(),
                Some(Err(e)) => break e.to_string(),
                Some(Ok(frame)) => {
                    last_rx = Instant::now();
                    shared.heard_from(peer, None);
                    match on_frame(&shared, &session, &name, &mut limits, frame) {
                        Ok(Some(reply)) => if let Err(e) = pipe.send(&reply).await { break e.to_string() },
                        Ok(None) => {}
                        Err(reason) => {
                            let _ = pipe.send(&Frame::Refused { reason: reason.clone() }).await;
                            break reason;
                        }
                    }
                }
            },
        }
    };
    let _ = pipe.writer.shutdown().await;
    let removed = {
        let mut links = lock(&shared.links);
        let ours = links.get(&peer).is_some_and(|l| l.serial == serial);
        if ours {
            links.remove(&peer);
        }
        ours
    };
    if removed {
        shared.went_down(peer, &reason);
        shared.emit(PeerEvent::Disconnected { peer, reason });
    }
}

/// Adds the link to the registry; a peer has one link at most, whichever of its keys it uses.
/// Of a link under the peer's current key and one under a key it rotated away from, the
/// current one wins. Of two links under the same key (both boxes dialed at once), both boxes
/// keep the one dialed by the smaller ID, so they agree without talking.
fn register(shared: &Shared, peer: PeerId, handle: LinkHandle) -> Result<(), &'static str> {
    let keys = shared.keys_of(&peer);
    let current = keys.first().copied().unwrap_or(peer);
    let mut links = lock(&shared.links);
    // Checked again here, under the links lock: the ban may have come while this handshake
    // ran, and `Shared::ban` records a ban before it closes links, so a link that gets past
    // this check is closed by it.
    if shared.banned(&peer) {
        return Err(BANNED);
    }
    for other in keys.iter().filter(|k| **k != peer) {
        if let Some(old) = links.get(other) {
            if *other == current {
                return Err(UNDER_OLD_KEY);
            }
            old.close.send_replace(Some("replaced by a link under the current key".into()));
        }
    }
    if let Some(old) = links.get(&peer) {
        let keep_old = old.dialer != handle.dialer && old.dialer < handle.dialer;
        if keep_old {
            return Err("already connected");
        }
        old.close.send_replace(Some("replaced by a newer link".into()));
    }
    links.insert(peer, handle);
    Ok(())
}

/// Why a link of a peer banned while its handshake ran is refused.
const BANNED: &str = "banned after a violation";

/// Why a link under a key the peer rotated away from is refused.
const UNDER_OLD_KEY: &str = "already linked under the peer's current key";

/// Status frames a peer may send at once.
const STATUS_BURST: u32 = 4;

/// What one link allows beyond the peer's OSC rate (which its whole trust entry shares), and
/// what it told the peer about its role.
struct LinkLimits {
    /// Status frames: two per `status_interval` (two per second at least, so boxes with
    /// different intervals down to half a second get along), [`STATUS_BURST`] at once.
    status: TokenBucket,
    /// The role of the last status document sent.
    told: Option<Role>,
    /// When a status first told the peer it is no longer a controller.
    demoted: Option<Instant>,
}

impl LinkLimits {
    fn new(cfg: &PeerConfig) -> Self {
        let interval_ms = cfg.status_interval.as_millis().clamp(1, 1000);
        let per_sec = u32::try_from(2000u128.div_ceil(interval_ms)).unwrap_or(u32::MAX);
        let status = TokenBucket::with_burst(per_sec, STATUS_BURST, Instant::now());
        Self { status, told: None, demoted: None }
    }

    /// Whether the peer may still believe it is a controller: the last status it got said so,
    /// or the one that said otherwise went out less than `window` ago.
    fn just_demoted(&self, window: Duration) -> bool {
        self.told == Some(Role::Controller) || self.demoted.is_some_and(|t| t.elapsed() < window)
    }
}

/// Sends this box's status in the version for the peer's current role (nothing when there is
/// none), and notes what the peer was told.
async fn send_status(
    shared: &Shared,
    peer: PeerId,
    limits: &mut LinkLimits,
    pipe: &mut Pipe,
) -> Result<(), String> {
    let role = shared.role_of(&peer);
    let doc = shared.status_for(role);
    if doc.is_empty() {
        return Ok(());
    }
    pipe.send(&Frame::Status(doc)).await.map_err(|e| e.to_string())?;
    if limits.told == Some(Role::Controller) && role != Some(Role::Controller) {
        limits.demoted = Some(Instant::now());
    }
    limits.told = role;
    Ok(())
}

/// Handles one inbound frame; `Ok(Some(_))` is a reply, `Err` a reason to close.
fn on_frame(
    shared: &Shared,
    session: &Session,
    name: &str,
    limits: &mut LinkLimits,
    frame: Frame,
) -> Result<Option<Frame>, String> {
    let peer = session.peer;
    match frame {
        Frame::Osc(packet) => {
            match shared.role_of(&peer) {
                Some(Role::Controller) => {}
                // Demoted so recently that the peer may not know yet: dropped, not banned.
                Some(Role::Observer) if limits.just_demoted(shared.cfg.status_interval) => {
                    shared.osc_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(None);
                }
                Some(Role::Observer) => {
                    return Err(violation(shared, peer, "OSC from an observer"));
                }
                None => return Err("no longer trusted".into()),
            }
            if !shared.take_token(&peer) {
                return Err(violation(shared, peer, "OSC rate limit exceeded"));
            }
            let msg = InboundOsc {
                peer,
                name: name.to_owned(),
                addr: session.addr,
                packet,
                received: Instant::now(),
            };
            if shared.osc.try_send(msg).is_err() {
                shared.osc_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(None)
        }
        Frame::Status(payload) => {
            if !limits.status.try_take(Instant::now()) {
                return Err(violation(shared, peer, "status frames too frequent"));
            }
            shared.deliver_status(peer, payload);
            Ok(None)
        }
        Frame::Rotate(r) => on_rotate(shared, peer, &session.spki, &session.exporter, &r),
        Frame::RotateAck => {
            if let Some(tx) = lock(&shared.rotate_acks).remove(&peer) {
                let _ = tx.send(());
            }
            Ok(None)
        }
        Frame::Ping(n) => Ok(Some(Frame::Pong(n))),
        Frame::Pong(_) => Ok(None),
        Frame::Refused { reason } => Err(format!("closed by peer: {reason}")),
        other => Err(format!("unexpected {} frame on a live link", other.kind())),
    }
}

/// A peer's old key vouches for its new key: check the statement, then move the pin. A
/// rotation onto a key that is already known (this box's, another entry's, a forgotten or a
/// banned one) is a violation; one too soon after the last is refused without a ban and
/// without an acknowledgement.
fn on_rotate(
    shared: &Shared,
    peer: PeerId,
    spki: &[u8],
    exporter: &[u8; 32],
    r: &Rotate,
) -> Result<Option<Frame>, String> {
    if shared.banned(&peer) {
        return Err("banned after a violation".into());
    }
    if ed25519_raw_key(&r.spki).is_none() {
        return Err(violation(shared, peer, "rotation to a key that is not Ed25519"));
    }
    if !verify_signature(spki, &rotation_message(&r.spki, exporter), &r.signature) {
        return Err(violation(shared, peer, "rotation statement with a bad signature"));
    }
    let new = PeerId::from_spki(&r.spki);
    if shared.banned(&new) {
        return Err(violation(shared, peer, "rotation onto a banned key"));
    }
    let (me, grace) = (shared.me(), shared.cfg.rotation_grace);
    let moved = shared
        .modify_trust(|s| s.rotate(&peer, new, &me, SystemTime::now(), grace))
        .map_err(|e| format!("cannot record the rotation: {e}"))?;
    match moved {
        Ok(()) => {}
        Err(RotateRefusal::NotCurrent) => return Err(RotateRefusal::NotCurrent.to_string()),
        Err(RotateRefusal::TooSoon) => {
            let reason = RotateRefusal::TooSoon.to_string();
            shared.emit(PeerEvent::RotationRefused { peer, new, reason });
            return Ok(None);
        }
        Err(taken) => return Err(violation(shared, peer, &taken.to_string())),
    }
    shared.rekey(&peer, new);
    shared.emit(PeerEvent::PeerRotated { old: peer, new });
    Ok(Some(Frame::RotateAck))
}

/// Bans the peer (all keys of its trust entry) for the configured cooldown, reports it, and
/// returns the close reason.
fn violation(shared: &Shared, peer: PeerId, what: &str) -> String {
    shared.ban(peer, what);
    shared.emit(PeerEvent::Violation { peer, what: what.to_owned(), banned_for: shared.cfg.ban });
    what.to_owned()
}
