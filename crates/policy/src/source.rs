//! Reading policy, preset, profile and config files: bounded, UTF-8, regular files only.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use crate::diag::Diagnostic;

/// No policy file is anywhere near this large; the cap keeps a mistaken path (a log file, a
/// device) from being read into memory.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Reads a whole file as UTF-8 text, refusing directories, devices, FIFOs and large files.
pub(crate) fn read_text(path: &Path) -> Result<String, Diagnostic> {
    // stat first so that opening a FIFO or a device never blocks or has side effects.
    let meta = std::fs::metadata(path).map_err(|e| io_diag(path, &e))?;
    if meta.is_dir() {
        return Err(Diagnostic::file(path, "is a directory, expected a file"));
    }
    if !meta.is_file() {
        return Err(Diagnostic::file(path, "is not a regular file"));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_large(path));
    }
    let file = File::open(path).map_err(|e| io_diag(path, &e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may have grown since the stat: read one byte past the cap to notice.
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes).map_err(|e| io_diag(path, &e))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(too_large(path));
    }
    text_from_bytes(path, bytes)
}

/// Checks that `bytes` are UTF-8, naming the first bad byte's line.
pub(crate) fn text_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid].iter().filter(|b| **b == b'\n').count() + 1;
        Diagnostic::file(
            path,
            format!("is not valid UTF-8 (first invalid byte on line {line}, byte offset {valid})"),
        )
        .with_hint("save the file as UTF-8")
    })
}

fn too_large(path: &Path) -> Diagnostic {
    Diagnostic::file(path, format!("is larger than {} KiB", MAX_FILE_SIZE / 1024))
        .with_hint("is this the right file? policy files are a few KiB")
}

/// A readable message for an I/O failure, with the fix when there is an obvious one.
pub(crate) fn io_diag(path: &Path, err: &std::io::Error) -> Diagnostic {
    match err.kind() {
        ErrorKind::NotFound => Diagnostic::file(path, "does not exist"),
        ErrorKind::PermissionDenied => Diagnostic::file(path, "cannot be read: permission denied")
            .with_hint("run as a user who may read it, or fix its mode"),
        _ if err.raw_os_error() == Some(40) => {
            // ELOOP: a symlink that points back at itself or a chain that is too long.
            Diagnostic::file(path, "cannot be opened: too many levels of symbolic links")
                .with_hint("a symbolic link loops; point it at a real file")
        }
        _ => Diagnostic::file(path, format!("cannot be read: {err}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failing unwrap is a failing test.
mod tests {
    use super::*;

    #[test]
    fn rejects_invalid_utf8_naming_the_line() {
        let d =
            text_from_bytes(Path::new("x.toml"), b"a = 1\nb = \"\xff\"\n".to_vec()).unwrap_err();
        assert!(d.message.contains("line 2"), "{d}");
    }

    #[test]
    fn rejects_large_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; (MAX_FILE_SIZE + 1) as usize]).unwrap();
        assert!(read_text(&big).unwrap_err().message.contains("larger than"));
        assert!(read_text(dir.path()).unwrap_err().message.contains("directory"));
        let missing = dir.path().join("missing.toml");
        assert_eq!(read_text(&missing).unwrap_err().message, "does not exist");
    }

    #[test]
    fn symlink_loops_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        std::os::unix::fs::symlink(&a, &a).unwrap();
        let d = read_text(&a).unwrap_err();
        assert!(d.message.contains("symbolic links"), "{d}");
    }
}
