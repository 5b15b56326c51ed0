//! Filesystem checks: granted paths work, everything else is unreadable, unwritable and
//! unexecutable.

use std::io::ErrorKind;

use crate::{Args, Report};

pub fn checks(report: &mut Report, args: &Args) {
    for path in args.all("read") {
        let r = std::fs::read(path);
        report.check(
            &format!("read {path}"),
            r.is_ok(),
            r.map(|b| format!("{} bytes", b.len())).unwrap_or_else(|e| e.to_string()),
        );
    }
    for dir in args.all("write") {
        let file = format!("{dir}/probe-write");
        let r = std::fs::write(&file, b"x").and_then(|()| std::fs::remove_file(&file));
        report.check(&format!("write in {dir}"), r.is_ok(), describe(&r));
    }
    for path in args.all("deny") {
        let r = std::fs::read(path).map(drop).or_else(|e| match e.kind() {
            // A directory: listing it must be refused too.
            _ if e.raw_os_error() == Some(libc::EISDIR) => std::fs::read_dir(path).map(drop),
            _ => Err(e),
        });
        report.check(&format!("read {path} refused"), refused(&r), describe(&r));
    }
    for dir in args.all("deny-write") {
        let r = std::fs::write(format!("{dir}/probe-write"), b"x");
        report.check(&format!("write in {dir} refused"), refused(&r), describe(&r));
    }
    for path in args.all("deny-exec") {
        let r = std::process::Command::new(path).output().map(drop);
        report.check(&format!("exec {path} refused"), refused(&r), describe(&r));
    }
    // /tmp is the sandbox's own: writable, private, and new.
    let r = std::fs::read_dir("/tmp").map(|d| d.count());
    report.check("private /tmp", matches!(r, Ok(0)), format!("{r:?} entries"));
    // Landlock hides /dev's listing; stat is not restricted, so presence is checked by name.
    let present = |p: &str| std::fs::symlink_metadata(p).is_ok();
    let host_only = ["/dev/vda", "/dev/sda", "/dev/mem", "/dev/kmsg", "/dev/tty", "/dev/console"];
    let leaked: Vec<&str> = host_only.iter().copied().filter(|p| present(p)).collect();
    let ok = present("/dev/null") && present("/dev/urandom") && leaked.is_empty();
    report.check(
        "minimal /dev",
        ok,
        format!("null and urandom present, host nodes present: {leaked:?}"),
    );
}

fn refused<T>(r: &std::io::Result<T>) -> bool {
    matches!(r, Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::NotFound | ErrorKind::ReadOnlyFilesystem))
}

fn describe<T>(r: &std::io::Result<T>) -> String {
    match r {
        Ok(_) => "allowed".to_owned(),
        Err(e) => format!("refused: {e}"),
    }
}
