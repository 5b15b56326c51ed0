//! The peer control socket: `peers.sock` beside the control socket, mode 0600, the caller's
//! role from `SO_PEERCRED`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use vitrine_policy::ControlConfig;

use super::Peering;
use super::protocol::{PeerRequest, PeerResponse};
use crate::control::auth;
use crate::events::{Event, EventBus};

/// The largest request line accepted on the peer socket.
pub const MAX_REQUEST: usize = 4096;

/// Where the peer control socket lives: beside the control socket.
pub fn socket_path(control: &ControlConfig) -> PathBuf {
    control.socket.with_file_name("peers.sock")
}

pub(super) fn bind(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub(super) async fn serve_socket(
    listener: UnixListener,
    peering: Arc<Peering>,
    bus: EventBus,
    control: Arc<ControlConfig>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (peering, bus, control) = (peering.clone(), bus.clone(), control.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &peering, &bus, control).await {
                tracing::debug!("peer control connection ended: {e}");
            }
        });
    }
}

async fn connection(
    stream: UnixStream,
    peering: &Peering,
    bus: &EventBus,
    control: Arc<ControlConfig>,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (uid, gid) = (cred.uid(), cred.gid());
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
    let read =
        tokio::time::timeout(crate::control::REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line))
            .await;
    let response = match (read, serde_json::from_slice::<PeerRequest>(&line)) {
        (Ok(Ok(_)), Ok(request)) => {
            let role = tokio::task::spawn_blocking(move || auth::role_of(uid, gid, &control))
                .await
                .unwrap_or(auth::Role::Refused);
            let allowed = match role {
                auth::Role::Admin => true,
                auth::Role::Operator => !request.mutates(),
                auth::Role::Refused => false,
            };
            if request.mutates() || !allowed {
                bus.publish(Event::ControlAction {
                    uid,
                    verb: request.verb().to_owned(),
                    target: request.target(),
                    allowed,
                });
            }
            if allowed {
                peering.handle(request).await
            } else {
                PeerResponse::Error {
                    message: format!(
                        "permission denied: `{}` needs the admin role",
                        request.verb()
                    ),
                }
            }
        }
        (Ok(Ok(_)), Err(e)) => PeerResponse::Error { message: format!("invalid request: {e}") },
        _ => PeerResponse::Error { message: "no request".into() },
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await
}
