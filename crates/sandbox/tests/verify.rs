//! Binary verification: pins, minisign signatures, sealed copies, symlink and rewrite races,
//! and the `exec_from = "file"` location rules. None of these need root.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use sha2::{Digest, Sha256};
use vitrine_sandbox::verify::{ExecFrom, Expectation, SEALS, VerifyError, open_verified};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/verify")
}

/// The base64 line of a minisign public key file.
fn public_key(name: &str) -> String {
    let text = fs::read_to_string(fixtures().join(name)).expect("key fixture");
    text.lines().nth(1).expect("key line").to_owned()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn pinned(digest: [u8; 32]) -> Expectation {
    Expectation { sha256: Some(digest), ..Expectation::default() }
}

fn signed(sig: &str, keys: Vec<String>) -> Expectation {
    Expectation { minisign: Some((fixtures().join(sig), keys)), ..Expectation::default() }
}

/// Everything readable through a descriptor, from the start.
fn contents(fd: &OwnedFd) -> Vec<u8> {
    let mut file = File::from(fd.try_clone().expect("dup"));
    file.rewind().expect("rewind");
    let mut out = Vec::new();
    file.read_to_end(&mut out).expect("read back");
    out
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).expect("write fixture");
    path
}

#[test]
fn a_good_pin_yields_a_sealed_read_only_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = b"\x7fELF pretend binary".repeat(10_000);
    let path = write_file(dir.path(), "viz", &body);

    let verified = open_verified(&path, &pinned(sha256(&body))).expect("verified");
    assert_eq!(verified.sha256, sha256(&body));
    assert_eq!(contents(&verified.fd), body);
    assert!(verified.how.contains("sha256 pinned"), "{}", verified.how);
    assert!(verified.how.contains("sealed memfd"), "{}", verified.how);

    let seals = fcntl(verified.fd.as_fd(), FcntlArg::F_GET_SEALS).expect("F_GET_SEALS");
    assert_eq!(SealFlag::from_bits_truncate(seals), SEALS);
    let link = fs::read_link(format!("/proc/self/fd/{}", verified.fd.as_raw_fd())).expect("link");
    assert!(link.to_string_lossy().starts_with("/memfd:vitrine:viz"), "{}", link.display());
    // The descriptor is read-only, and the seals stop even a fresh writable one.
    let mut file = File::from(verified.fd.try_clone().expect("dup"));
    assert!(file.write_all(b"x").is_err());
    let mut writable =
        fs::OpenOptions::new().write(true).open(link_path(&verified.fd)).expect("open for writing");
    let refused = writable.write_all(b"x").expect_err("F_SEAL_WRITE");
    assert_eq!(refused.raw_os_error(), Some(nix::libc::EPERM));
    assert!(writable.set_len(1).is_err(), "F_SEAL_SHRINK");
    assert!(writable.set_len(body.len() as u64 + 1).is_err(), "F_SEAL_GROW");
    assert_eq!(contents(&verified.fd), body);
}

fn link_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[test]
fn a_wrong_pin_names_the_file_and_both_digests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(dir.path(), "viz", b"actual bytes");
    let expected = sha256(b"other bytes");
    let err = open_verified(&path, &pinned(expected)).expect_err("must fail");
    let message = err.to_string();
    assert!(matches!(err, VerifyError::DigestMismatch { .. }), "{err:?}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains(&hex(&expected)), "{message}");
    assert!(message.contains(&hex(&sha256(b"actual bytes"))), "{message}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn unsigned_binaries_need_the_daemon_to_allow_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(dir.path(), "viz", b"bytes");
    let err = open_verified(&path, &Expectation::default()).expect_err("must fail");
    assert!(matches!(err, VerifyError::NoExpectation { .. }), "{err:?}");
    let allowed = Expectation { allow_unsigned: true, ..Expectation::default() };
    let verified = open_verified(&path, &allowed).expect("allowed");
    assert!(verified.how.contains("UNVERIFIED"), "{}", verified.how);
    assert_eq!(contents(&verified.fd), b"bytes");
}

#[test]
fn a_good_minisign_signature_is_accepted() {
    let path = fixtures().join("payload.bin");
    let keys = vec![public_key("other.pub"), public_key("key.pub")];
    let verified = open_verified(&path, &signed("payload.bin.minisig", keys)).expect("verified");
    assert!(verified.how.contains("minisign key 9F16B240A88C7686"), "{}", verified.how);
    assert!(verified.how.contains("vitrine test fixture"), "{}", verified.how);
    assert_eq!(contents(&verified.fd), fs::read(&path).expect("payload"));
}

#[test]
fn a_pin_and_a_signature_must_both_hold() {
    let path = fixtures().join("payload.bin");
    let mut expect = signed("payload.bin.minisig", vec![public_key("key.pub")]);
    expect.sha256 = Some(sha256(b"not the payload"));
    let err = open_verified(&path, &expect).expect_err("pin mismatch");
    assert!(matches!(err, VerifyError::DigestMismatch { .. }), "{err:?}");
    expect.sha256 = Some(sha256(&fs::read(&path).expect("payload")));
    let verified = open_verified(&path, &expect).expect("both hold");
    assert!(verified.how.starts_with("sha256 pinned, minisign key"), "{}", verified.how);
}

#[test]
fn an_altered_binary_fails_its_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut body = fs::read(fixtures().join("payload.bin")).expect("payload");
    body[12] ^= 1;
    let path = write_file(dir.path(), "payload.bin", &body);
    let expect = signed("payload.bin.minisig", vec![public_key("key.pub")]);
    let err = open_verified(&path, &expect).expect_err("must fail");
    let message = err.to_string();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err:?}");
    assert!(message.contains("9F16B240A88C7686"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn a_signature_by_an_untrusted_key_is_refused() {
    let path = fixtures().join("payload.bin");
    let expect = signed("payload.bin.minisig", vec![public_key("other.pub")]);
    let err = open_verified(&path, &expect).expect_err("must fail");
    let message = err.to_string();
    assert!(matches!(err, VerifyError::UnknownSigner { .. }), "{err:?}");
    assert!(message.contains("9F16B240A88C7686"), "{message}");
    let other_id = fs::read_to_string(fixtures().join("other.pub")).expect("other.pub");
    let other_id = other_id.lines().next().and_then(|l| l.split_whitespace().last());
    assert!(message.contains(other_id.expect("id in comment")), "{message}");
}

#[test]
fn legacy_signatures_and_broken_keys_are_refused() {
    let path = fixtures().join("payload.bin");
    let legacy = signed("payload.bin.legacy.minisig", vec![public_key("key.pub")]);
    let err = open_verified(&path, &legacy).expect_err("legacy");
    assert!(matches!(err, VerifyError::LegacySignature { .. }), "{err:?}");

    let broken = signed("payload.bin.minisig", vec!["RWQnotakey".to_owned()]);
    let err = open_verified(&path, &broken).expect_err("broken key");
    assert!(matches!(err, VerifyError::BadKey { .. }), "{err:?}");

    let none = signed("payload.bin.minisig", Vec::new());
    let err = open_verified(&path, &none).expect_err("no keys");
    assert!(matches!(err, VerifyError::NoKeys { .. }), "{err:?}");

    let not_a_sig = signed("key.pub", vec![public_key("key.pub")]);
    let err = open_verified(&path, &not_a_sig).expect_err("not a signature");
    assert!(matches!(err, VerifyError::SignatureFormat { .. }), "{err:?}");
}

#[test]
fn ordinary_symlinks_are_followed_but_proc_magic_links_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(dir.path(), "python3.11", b"interpreter");
    let link = dir.path().join("python3");
    symlink("python3.11", &link).expect("symlink");
    let verified = open_verified(&link, &pinned(sha256(b"interpreter"))).expect("via symlink");
    assert_eq!(contents(&verified.fd), b"interpreter");

    let open = File::open(&path).expect("open");
    let magic = PathBuf::from(format!("/proc/self/fd/{}", open.as_raw_fd()));
    let err = open_verified(&magic, &pinned(sha256(b"interpreter"))).expect_err("magic link");
    assert!(matches!(err, VerifyError::Open { .. }), "{err:?}");
}

#[test]
fn only_bounded_regular_files_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expect = pinned([0; 32]);
    let err = open_verified(dir.path(), &expect).expect_err("directory");
    assert!(matches!(err, VerifyError::NotRegular { .. }), "{err:?}");

    let err = open_verified(Path::new("/dev/null"), &expect).expect_err("device");
    assert!(matches!(err, VerifyError::NotRegular { .. }), "{err:?}");

    // A FIFO would block a plain open forever; it must be refused at once.
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let err = open_verified(&fifo, &expect).expect_err("fifo");
    assert!(matches!(err, VerifyError::NotRegular { .. }), "{err:?}");

    // Sparse, so the test costs no disk.
    let huge = dir.path().join("huge");
    File::create(&huge).and_then(|f| f.set_len((1 << 30) + 1)).expect("sparse file");
    let err = open_verified(&huge, &expect).expect_err("too large");
    assert!(matches!(err, VerifyError::TooLarge { .. }), "{err:?}");

    let err = open_verified(Path::new("relative/viz"), &expect).expect_err("relative");
    assert!(matches!(err, VerifyError::NotAbsolute { .. }), "{err:?}");
}

/// Swaps the path between the pinned file and another one as fast as it can while the
/// binary is verified again and again: every success must carry exactly the pinned bytes.
#[test]
fn a_symlink_swap_cannot_slip_other_bytes_past_the_pin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = b"good binary".repeat(4096);
    let evil = b"evil binary".repeat(4096);
    write_file(dir.path(), "good", &good);
    write_file(dir.path(), "evil", &evil);
    let link = dir.path().join("viz");
    symlink("good", &link).expect("symlink");

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (dir, stop) = (dir.path().to_owned(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let tmp = dir.join("viz.tmp");
            let mut flip = false;
            while !stop.load(Ordering::Relaxed) {
                let _ = fs::remove_file(&tmp);
                symlink(if flip { "good" } else { "evil" }, &tmp).expect("symlink");
                fs::rename(&tmp, dir.join("viz")).expect("swap");
                flip = !flip;
            }
        })
    };
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..200 {
        match open_verified(&link, &pinned(sha256(&good))) {
            Ok(v) => {
                assert_eq!(contents(&v.fd), good, "a verified copy must hold the pinned bytes");
                ok += 1;
            }
            Err(VerifyError::DigestMismatch { .. }) => refused += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().expect("swapper");
    eprintln!("{ok} verified, {refused} refused");
}

/// Rewrites the file in place while it is verified: a torn read is refused, never accepted.
#[test]
fn an_in_place_rewrite_cannot_slip_other_bytes_past_the_pin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = b"good binary".repeat(8_000);
    let evil = b"evil binary".repeat(8_000);
    let path = write_file(dir.path(), "viz", &good);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop, good, evil) = (path.clone(), Arc::clone(&stop), good.clone(), evil);
        std::thread::spawn(move || {
            let mut flip = false;
            while !stop.load(Ordering::Relaxed) {
                let mut f = fs::OpenOptions::new().write(true).open(&path).expect("open");
                f.write_all(if flip { &good } else { &evil }).expect("rewrite");
                flip = !flip;
            }
        })
    };
    for _ in 0..100 {
        match open_verified(&path, &pinned(sha256(&good))) {
            Ok(v) => assert_eq!(contents(&v.fd), good),
            Err(VerifyError::DigestMismatch { .. } | VerifyError::Changed { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
}

#[test]
fn the_sealed_copy_executes() {
    let true_bin = Path::new("/usr/bin/true");
    let body = fs::read(true_bin).expect("/usr/bin/true");
    let verified = open_verified(true_bin, &pinned(sha256(&body))).expect("verified");
    // The close-on-exec descriptor is still open while the kernel loads it: the same path an
    // execveat(fd, "", AT_EMPTY_PATH) takes.
    let status = Command::new(link_path(&verified.fd)).status().expect("exec the memfd");
    assert!(status.success(), "{status:?}");
}

#[test]
fn exec_from_file_accepts_root_owned_locations_only() {
    let file_mode = |path: &Path| Expectation {
        allow_unsigned: true,
        exec_from: ExecFrom::File,
        sha256: Some(sha256(&fs::read(path).expect("read"))),
        ..Expectation::default()
    };
    // /bin is a symlink to usr/bin on merged-/usr systems: the resolved location is checked.
    let true_bin = Path::new("/bin/true");
    let verified = open_verified(true_bin, &file_mode(true_bin)).expect("root-owned binary");
    let target = fs::read_link(link_path(&verified.fd)).expect("link");
    assert_eq!(target, fs::canonicalize(true_bin).expect("canonical"));
    assert!(verified.how.contains("verified file"), "{}", verified.how);
    assert!(fcntl(verified.fd.as_fd(), FcntlArg::F_GET_SEALS).is_err(), "not a memfd");

    // /tmp is world-writable (and, without root, the file is not root-owned either).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(dir.path(), "viz", b"bytes");
    let err = open_verified(&path, &file_mode(&path)).expect_err("unsafe location");
    assert!(matches!(err, VerifyError::UnsafeLocation { .. }), "{err:?}");
    assert!(err.to_string().contains("exec_from = \"memfd\""), "{err}");
}

#[test]
fn exec_from_file_refuses_group_writable_files_and_directories() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to create root-owned files");
        return;
    }
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if base
        .ancestors()
        .any(|a| fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o022 != 0 && a != base))
    {
        eprintln!("skipped: {} lies below a writable directory", base.display());
        return;
    }
    let dir = match tempfile::tempdir_in(base) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
            eprintln!("skipped: {} is read-only here", base.display());
            return;
        }
        Err(e) => panic!("tempdir in {}: {e}", base.display()),
    };
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    fs::set_permissions(base, fs::Permissions::from_mode(0o755)).expect("chmod base");
    let path = write_file(dir.path(), "viz", b"bytes");
    let expect = Expectation {
        sha256: Some(sha256(b"bytes")),
        exec_from: ExecFrom::File,
        ..Expectation::default()
    };
    open_verified(&path, &expect).expect("safe location");

    fs::set_permissions(&path, fs::Permissions::from_mode(0o775)).expect("chmod file");
    match open_verified(&path, &expect) {
        Err(VerifyError::UnsafeLocation { offender, .. }) => assert_eq!(offender, path),
        other => panic!("expected UnsafeLocation, got {other:?}"),
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod file");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod dir");
    match open_verified(&path, &expect) {
        Err(VerifyError::UnsafeLocation { offender, .. }) => assert_eq!(offender, dir.path()),
        other => panic!("expected UnsafeLocation, got {other:?}"),
    }
}
