//! OSCQuery: a read-only HTTP/JSON description of every attached visualization's parameters
//! (the OSCQuery proposal's `FULL_PATH`, `TYPE`, `RANGE`, `ACCESS`, `CONTENTS`, `HOST_INFO`).
//!
//! A tiny HTTP/1.1 responder with strict limits rather than a web framework: GET only, one
//! request per connection, a 4 KiB request head read within 5 s, at most 64 connections at
//! once. Parameters are write-only for controllers (`ACCESS` 2): vitrine forwards values, it
//! does not hold them, so there is nothing to read back and no `VALUE`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vitrine_policy::{Osc, ParamKind};

use super::Shared;

const MAX_HEAD: usize = 4096;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 64;

/// Accepts connections until `stop` changes.
pub(super) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    osc_port: u16,
    mut stop: watch::Receiver<bool>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        let (shared, open) = (shared.clone(), open.clone());
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(READ_TIMEOUT * 2, respond(&shared, stream, osc_port)).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn respond(shared: &Shared, mut stream: TcpStream, osc_port: u16) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        _ => return write(&mut stream, 400, "Bad Request", "text/plain", b"bad request\n").await,
    };
    let Some(target) = request_target(&head) else {
        return write(&mut stream, 405, "Method Not Allowed", "text/plain", b"GET only\n").await;
    };
    let schemas: Vec<Osc> = shared.lock().schemas.values().cloned().collect();
    match answer(&schemas, target, osc_port) {
        Some(body) => {
            write(&mut stream, 200, "OK", "application/json", body.to_string().as_bytes()).await
        }
        None => write(&mut stream, 404, "Not Found", "text/plain", b"no such node\n").await,
    }
}

/// Reads up to the end of the request head; `None` when it is larger than the limit.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8(head).ok())
}

/// The target of a `GET` request line.
fn request_target(head: &str) -> Option<&str> {
    let mut parts = head.lines().next()?.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("GET"), Some(target), Some(v)) if v.starts_with("HTTP/1.") => Some(target),
        _ => None,
    }
}

async fn write(
    stream: &mut TcpStream,
    code: u16,
    reason: &str,
    kind: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

/// The JSON answer for `target` (`/path` or `/path?ATTRIBUTE`), `None` for 404.
fn answer(schemas: &[Osc], target: &str, osc_port: u16) -> Option<Value> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if query == "HOST_INFO" {
        return Some(host_info(osc_port));
    }
    let tree = tree(schemas);
    let mut node = &tree;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        node = node.get("CONTENTS")?.get(part)?;
    }
    if query.is_empty() {
        return Some(node.clone());
    }
    let value = node.get(query)?;
    Some(json!({ query: value }))
}

fn host_info(osc_port: u16) -> Value {
    json!({
        "NAME": "vitrine",
        "OSC_PORT": osc_port,
        "OSC_TRANSPORT": "UDP",
        "EXTENSIONS": {
            "ACCESS": true, "RANGE": true, "TYPE": true, "VALUE": false,
            "DESCRIPTION": false, "LISTEN": false, "PATH_CHANGED": false
        }
    })
}

/// The namespace: one container per address part, one leaf per parameter.
fn tree(schemas: &[Osc]) -> Value {
    let mut root = container("/");
    for osc in schemas {
        let prefix = osc.prefix.trim_end_matches('/');
        for param in &osc.params {
            let full = format!("{prefix}{}", param.address);
            insert(&mut root, &full, leaf(&full, &param.kind));
        }
    }
    root
}

fn container(full_path: &str) -> Value {
    json!({ "FULL_PATH": full_path, "ACCESS": 0, "CONTENTS": {} })
}

fn insert(root: &mut Value, full: &str, leaf: Value) {
    let parts: Vec<&str> = full.split('/').filter(|p| !p.is_empty()).collect();
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let path = format!("/{}", parts[..=i].join("/"));
        let contents = node
            .as_object_mut()
            .map(|o| o.entry("CONTENTS").or_insert_with(|| Value::Object(Map::new())))
            .and_then(Value::as_object_mut);
        let Some(contents) = contents else { return };
        let is_last = i + 1 == parts.len();
        node = contents
            .entry(*part)
            .or_insert_with(|| if is_last { leaf.clone() } else { container(&path) });
    }
}

fn leaf(full: &str, kind: &ParamKind) -> Value {
    let (tag, range) = match kind {
        ParamKind::Float { range, .. } => {
            ("f", range.map(|(lo, hi)| json!([{ "MIN": lo, "MAX": hi }])))
        }
        ParamKind::Int { range, .. } => {
            ("i", range.map(|(lo, hi)| json!([{ "MIN": lo, "MAX": hi }])))
        }
        ParamKind::Bool => ("T", None),
        ParamKind::String { one_of, .. } => ("s", one_of.as_ref().map(|v| json!([{ "VALS": v }]))),
        ParamKind::Impulse => ("I", None),
        ParamKind::Blob { .. } => ("b", None),
        ParamKind::Color => ("r", None),
        ParamKind::Midi => ("m", None),
    };
    let mut node = json!({ "FULL_PATH": full, "TYPE": tag, "ACCESS": 2 });
    if let (Some(range), Some(obj)) = (range, node.as_object_mut()) {
        obj.insert("RANGE".into(), range);
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_policy::{OscParam, OutOfRange};

    fn schemas() -> Vec<Osc> {
        let p =
            |a: &str, kind| OscParam { address: a.into(), kind, max_rate: None, coalesce: false };
        vec![Osc {
            prefix: "/aurora".into(),
            max_rate: 100,
            params: vec![
                p(
                    "/speed",
                    ParamKind::Float { range: Some((0.0, 10.0)), out_of_range: OutOfRange::Clamp },
                ),
                p(
                    "/fx/palette",
                    ParamKind::String { max_len: None, one_of: Some(vec!["warm".into()]) },
                ),
            ],
        }]
    }

    #[test]
    fn namespace_follows_the_proposal() {
        let s = schemas();
        let root = answer(&s, "/", 9000).expect("root");
        assert_eq!(root["CONTENTS"]["aurora"]["FULL_PATH"], "/aurora");
        let speed = &root["CONTENTS"]["aurora"]["CONTENTS"]["speed"];
        assert_eq!(speed["TYPE"], "f");
        assert_eq!(speed["RANGE"][0]["MAX"], 10.0);
        assert_eq!(speed["ACCESS"], 2);
        let palette = answer(&s, "/aurora/fx/palette", 9000).expect("leaf");
        assert_eq!(palette["FULL_PATH"], "/aurora/fx/palette");
        assert_eq!(palette["RANGE"][0]["VALS"][0], "warm");
        assert_eq!(answer(&s, "/aurora/speed?TYPE", 9000), Some(json!({"TYPE": "f"})));
        assert_eq!(answer(&s, "/?HOST_INFO", 9000).expect("host")["OSC_PORT"], 9000);
        assert_eq!(answer(&s, "/nope", 9000), None);
        assert_eq!(answer(&s, "/aurora/speed?NOPE", 9000), None);
    }

    #[test]
    fn only_get_is_served() {
        assert_eq!(request_target("GET /a HTTP/1.1\r\n\r\n"), Some("/a"));
        assert_eq!(request_target("POST /a HTTP/1.1\r\n\r\n"), None);
        assert_eq!(request_target("GET /a\r\n\r\n"), None);
    }
}
