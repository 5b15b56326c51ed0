//! Watching the policy directory: changes to `*.toml` files trigger a reload, debounced so that
//! an editor's write-rename-chmod sequence (or `cp *.toml`) becomes one reload.

use std::path::Path;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last change before the directory is read again.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Starts watching `dir`; every burst of changes sends one `()` on the returned channel. The
/// watcher stops when the returned guard is dropped.
pub fn watch(dir: &Path) -> notify::Result<(RecommendedWatcher, mpsc::Receiver<()>)> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(e) => !e.kind.is_access() && e.paths.iter().any(|p| is_policy_file(p)),
            // A watcher error (e.g. queue overflow) may have hidden a change: reload to be safe.
            Err(_) => true,
        };
        if relevant {
            // The receiver is gone only while the daemon shuts down.
            let _ = raw_tx.send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Wait until the directory has been quiet for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            // A reload already pending covers this change too.
            if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                return;
            }
        }
    });
    Ok((watcher, rx))
}

fn is_policy_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn policy_file_changes_trigger_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_watcher, mut rx) = watch(dir.path()).expect("watch");
        for i in 0..5 {
            std::fs::write(dir.path().join("a.toml"), format!("# {i}\n")).expect("write");
        }
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        rx.recv().await.expect("a reload after the writes");
        // Drain a second notification in case the writes straddled a debounce period.
        let _ = rx.try_recv();
        std::fs::remove_file(dir.path().join("a.toml")).expect("remove");
        rx.recv().await.expect("a second reload after the removal");
    }
}
