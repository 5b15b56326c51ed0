//! The daemon side of the control socket (protocol in the module above).

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, broadcast, watch};
use vitrine_policy::ControlConfig;

use super::auth::{self, Role};
use super::{MAX_REQUEST, REQUEST_TIMEOUT, Request, Response};
use crate::daemon::launcher::Launcher;
use crate::daemon::{Daemon, Verb};
use crate::events::Event;

/// Connections served at once; more wait for a slot rather than growing without bound.
const MAX_CONNECTIONS: usize = 64;

/// Binds the control socket: stale socket removed, mode 0660, group `operator_group` if it exists.
pub fn bind(config: &ControlConfig) -> io::Result<UnixListener> {
    let path = &config.socket;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    remove_stale(path)?;
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    match auth::group_gid(&config.operator_group) {
        Some(gid) => std::os::unix::fs::chown(path, None, Some(gid))?,
        None => tracing::warn!(
            "group {:?} does not exist: only root and {:?} members can use {}",
            config.operator_group,
            config.admin_group,
            path.display()
        ),
    }
    Ok(listener)
}

/// A socket left by a previous run is replaced; any other file at that path is an error.
fn remove_stale(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve<L: Launcher>(
    listener: UnixListener,
    daemon: Arc<Daemon<L>>,
    config: Arc<ControlConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit,
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = permit else { return };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("control socket: accept failed: {e}");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let (daemon, config, shutdown) = (daemon.clone(), config.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, daemon, config, shutdown).await {
                tracing::debug!("control connection ended: {e}");
            }
            drop(permit);
        });
    }
}

async fn connection<L: Launcher>(
    stream: UnixStream,
    daemon: Arc<Daemon<L>>,
    config: Arc<ControlConfig>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let cred = stream.peer_cred()?;
    let (uid, gid) = (cred.uid(), cred.gid());
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut reader)).await {
        Ok(Ok(r)) => r,
        Ok(Err(message)) => return send(&mut write, &Response::Error { message }).await,
        Err(_) => {
            return send(&mut write, &Response::Error { message: "no request within 10s".into() })
                .await;
        }
    };
    let role = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || auth::role_of(uid, gid, &config))
            .await
            .unwrap_or(Role::Refused)
    };
    let allowed = role.permits(&request);
    if request.mutates() || !allowed {
        daemon.bus().publish(Event::ControlAction {
            uid,
            verb: request.verb().to_owned(),
            target: request.target().map(str::to_owned),
            allowed,
        });
    }
    if !allowed {
        tracing::warn!(uid, verb = request.verb(), "control request refused");
        let message = auth::refusal(uid, &request, role, &config);
        return send(&mut write, &Response::Error { message }).await;
    }
    if request.mutates() {
        tracing::info!(uid, verb = request.verb(), target = request.target(), "control request");
    } else {
        tracing::debug!(uid, verb = request.verb(), target = request.target(), "control request");
    }
    answer(request, &daemon, &mut reader, &mut write, shutdown).await
}

/// Reads one line of at most MAX_REQUEST bytes and parses it.
async fn read_request<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Result<Request, String> {
    let mut line = Vec::new();
    let mut limited = (&mut *reader).take(MAX_REQUEST as u64);
    limited.read_until(b'\n', &mut line).await.map_err(|e| format!("reading the request: {e}"))?;
    if !line.ends_with(b"\n") {
        return Err(format!("a request is one JSON line of at most {MAX_REQUEST} bytes"));
    }
    serde_json::from_slice(&line).map_err(|e| format!("invalid request: {e}"))
}

async fn answer<L: Launcher, R: AsyncRead + Unpin, W: AsyncWriteExt + Unpin>(
    request: Request,
    daemon: &Daemon<L>,
    reader: &mut R,
    write: &mut W,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let response = match request {
        Request::Status { name } => match daemon.status(name.as_deref()).await {
            Ok(visualizations) => Response::Status { visualizations },
            Err(message) => Response::Error { message },
        },
        Request::Start { name } => act(daemon, name, Verb::Start).await,
        Request::Stop { name } => act(daemon, name, Verb::Stop).await,
        Request::Restart { name } => act(daemon, name, Verb::Restart).await,
        Request::Reload => Response::Reload(daemon.reload().await),
        Request::Logs { name, follow } => {
            let ring = match daemon.logs(&name).await {
                Ok(ring) => ring,
                Err(message) => return send(write, &Response::Error { message }).await,
            };
            let (lines, rx) = ring.snapshot_and_follow();
            let items = lines.into_iter().map(|l| Response::Log { line: (*l).clone() });
            return stream(
                items,
                follow.then_some(rx),
                |l| Response::Log { line: (*l).clone() },
                reader,
                write,
                shutdown,
            )
            .await;
        }
        Request::Events { follow } => {
            let (recent, rx) = daemon.bus().subscribe_with_recent();
            let items = recent.into_iter().map(|e| Response::Event { event: (*e).clone() });
            return stream(
                items,
                follow.then_some(rx),
                |e| Response::Event { event: (*e).clone() },
                reader,
                write,
                shutdown,
            )
            .await;
        }
    };
    send(write, &response).await
}

async fn act<L: Launcher>(daemon: &Daemon<L>, name: String, verb: Verb) -> Response {
    match daemon.act(&name, verb).await {
        Ok(state) => Response::State { name, state },
        Err(message) => Response::Error { message },
    }
}

/// Sends the kept items, then (when following) live ones until the client hangs up or the
/// daemon shuts down.
async fn stream<T: Clone, R: AsyncRead + Unpin, W: AsyncWriteExt + Unpin>(
    kept: impl Iterator<Item = Response>,
    follow: Option<broadcast::Receiver<T>>,
    to_response: impl Fn(T) -> Response,
    reader: &mut R,
    write: &mut W,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    for item in kept {
        send(write, &item).await?;
    }
    let Some(mut rx) = follow else { return Ok(()) };
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Ok(item) => send(write, &to_response(item)).await?,
                Err(broadcast::error::RecvError::Lagged(missed)) => send(write, &Response::Lagged { missed }).await?,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            // The client sends nothing after its request: any read result means it hung up.
            _ = reader.read(&mut probe) => return Ok(()),
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

async fn send<W: AsyncWriteExt + Unpin>(write: &mut W, response: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await
}
