//! The HTTP responder of the metrics endpoint.
//!
//! Prometheus needs one thing: `GET /metrics` answered with the text format. A strict, tiny
//! HTTP/1.1 responder does that without an HTTP stack: it reads a bounded request head with a
//! deadline, answers GET and HEAD only, and closes the connection after every response.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Metrics;

/// The largest request head accepted; Prometheus sends a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 8;

/// Binds the metrics listener (separately from [`serve`], so a bad address fails at start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tasks.spawn(async move {
            let _permit = permit;
            if let Err(e) = respond(stream, &metrics).await {
                tracing::debug!(error = %e, "metrics request failed");
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    tasks.shutdown().await;
}

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            return write_response(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request head too large\n",
                false,
            )
            .await;
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return write_response(&mut stream, "408 Request Timeout", "text/plain", b"", false)
                .await;
        }
    };
    let (status, content_type, body, head_only) = route(&head, metrics);
    write_response(&mut stream, status, content_type, body.as_bytes(), head_only).await
}

/// Reads up to the blank line that ends the request head; `None` when it is too large.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Picks the response for a request head: status, content type, body, HEAD request.
pub(super) fn route(head: &str, metrics: &Metrics) -> (&'static str, &'static str, String, bool) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let parts: Vec<&str> = request.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return ("400 Bad Request", TEXT, "malformed request line\n".into(), false);
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return ("505 HTTP Version Not Supported", TEXT, String::new(), false);
    }
    // A request body has no meaning here; refusing it avoids reading one.
    let has_body = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:")
            || (l.starts_with("content-length:") && l["content-length:".len()..].trim() != "0")
    });
    if has_body {
        return ("400 Bad Request", TEXT, "request bodies are not accepted\n".into(), false);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return ("405 Method Not Allowed", TEXT, "only GET and HEAD\n".into(), false),
    };
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/metrics" => {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics.render(), head_only)
        }
        "/" => ("200 OK", TEXT, "vitrine metrics: see /metrics\n".into(), head_only),
        _ => ("404 Not Found", TEXT, "not found; try /metrics\n".into(), head_only),
    }
}

async fn write_response(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    let mut bytes = response.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}
