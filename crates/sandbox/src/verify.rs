//! TOCTOU-safe verification of a visualization's binary (DESIGN §3, supervisor step 1).
//!
//! The binary is opened once; everything after that works on the open file description, never
//! on the path again. The bytes are hashed (SHA-256) and fed to the minisign verifier while they
//! are copied into a memfd, so what was checked is exactly what will run: a file swapped or
//! rewritten after the open cannot reach the sandbox. The memfd is then sealed against any
//! change and reopened read-only (an executable must not be open for writing, or `execve`
//! fails with `ETXTBSY`).
//!
//! Symbolic links. The path is opened with `openat2(RESOLVE_NO_MAGICLINKS)`: ordinary
//! symlinks are followed, because distributions install commands as links
//! (`/usr/bin/python3 -> python3.11`) and the content is verified anyway, so a link cannot
//! smuggle in unverified bytes. Magic links (`/proc/<pid>/fd/*`, `/proc/<pid>/exe`) are
//! refused: they can point at deleted files, memfds or other processes' files that no policy
//! author could have meant.
//!
//! `exec_from = "file"` keeps the verified file's own descriptor instead of a copy, for
//! programs that find their data through `/proc/self/exe`. Then the content can change after
//! hashing if someone can write the file, so it is allowed only when the file and every
//! directory above its resolved location are owned by root and not writable by group or others.
//!
//! No descriptor leaves this module unless every check passed: an error never comes with
//! something the caller could execute.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use minisign_verify::{PublicKey, Signature, StreamVerifier};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, FcntlArg, OFlag, OpenHow, ResolveFlag, SealFlag, fcntl, open, openat2};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};

/// Larger files are refused before reading: no visualization binary is this big, and the copy
/// lives in memory.
pub const MAX_BINARY_SIZE: u64 = 1 << 30;
/// Minisign signature files are a few hundred bytes.
const MAX_SIGNATURE_SIZE: u64 = 64 * 1024;
const CHUNK: usize = 64 * 1024;

/// The seals that make the memfd immutable: no writes, no size change, no removing the seals.
pub const SEALS: SealFlag = SealFlag::F_SEAL_WRITE
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_SEAL);

/// Where the verified binary is executed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecFrom {
    /// A sealed memfd copy of the verified bytes.
    #[default]
    Memfd,
    /// The verified file's own descriptor (root-owned, non-writable locations only).
    File,
}

/// What the binary must satisfy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectation {
    /// The pinned SHA-256 digest.
    pub sha256: Option<[u8; 32]>,
    /// The minisign signature file and the trusted public keys (base64, as minisign prints them).
    pub minisign: Option<(PathBuf, Vec<String>)>,
    /// Accept a binary with neither a pin nor a signature (the daemon's `allow_unsigned`).
    pub allow_unsigned: bool,
    pub exec_from: ExecFrom,
}

#[cfg(feature = "supervisor")]
impl Expectation {
    /// The expectation of a validated policy's `[verify]` table.
    pub fn from_policy(verify: &vitrine_policy::Verify, allow_unsigned: bool) -> Self {
        Expectation {
            sha256: verify.sha256,
            minisign: verify
                .minisign_signature
                .as_ref()
                .map(|sig| (sig.as_path().to_owned(), verify.minisign_keys.clone())),
            allow_unsigned,
            exec_from: match verify.exec_from {
                vitrine_policy::ExecFrom::Memfd => ExecFrom::Memfd,
                vitrine_policy::ExecFrom::File => ExecFrom::File,
            },
        }
    }
}

/// A binary that passed verification, ready for `execveat(fd, "", …, AT_EMPTY_PATH)`.
#[derive(Debug)]
pub struct VerifiedBinary {
    /// The sealed, read-only memfd, or (with [`ExecFrom::File`]) the verified file itself.
    /// Close-on-exec; the launcher duplicates it to the descriptor number the shim expects.
    pub fd: OwnedFd,
    /// The SHA-256 of the bytes that were checked (and, for a memfd, copied).
    pub sha256: [u8; 32],
    /// How it was verified, for the start log and the audit log, e.g.
    /// `sha256 pinned, minisign key 9F16B240A88C7686 ("trusted comment"), sealed memfd`.
    pub how: String,
}

/// Why a binary was refused. Each message names the file and what to change.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path}: the command must be an absolute path")]
    NotAbsolute { path: PathBuf },

    #[error(
        "{path} has neither a sha256 pin nor a minisign signature; add `[verify] sha256` or \
         `minisign_signature` + `minisign_keys` to the policy (or allow unsigned binaries in the \
         daemon configuration, which is dangerous)"
    )]
    NoExpectation { path: PathBuf },

    #[error("cannot open {path} (links through /proc are refused)")]
    Open {
        path: PathBuf,
        #[source]
        source: Errno,
    },

    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{path} is not a regular file but {kind}")]
    NotRegular { path: PathBuf, kind: &'static str },

    #[error("{path} is {size} bytes; binaries larger than {max} bytes are refused")]
    TooLarge { path: PathBuf, size: u64, max: u64 },

    #[error("{path} changed size while it was verified ({expected} bytes at open, {actual} read)")]
    Changed { path: PathBuf, expected: u64, actual: u64 },

    #[error("cannot make the sealed in-memory copy of {path}")]
    Memfd {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "sha256 of {path} does not match the policy: expected {expected}, actual {actual}; if the \
         binary was updated on purpose, put the new digest into `[verify] sha256`"
    )]
    DigestMismatch { path: PathBuf, expected: String, actual: String },

    #[error("cannot read the minisign signature {signature}")]
    SignatureFile {
        signature: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{signature} is not a minisign signature")]
    SignatureFormat {
        signature: PathBuf,
        #[source]
        source: minisign_verify::Error,
    },

    #[error(
        "{signature} is a legacy (non-prehashed) minisign signature; sign again with minisign 0.8 \
         or later, which prehashes by default"
    )]
    LegacySignature { signature: PathBuf },

    #[error("invalid minisign public key {key:?} in `[verify] minisign_keys`")]
    BadKey {
        key: String,
        #[source]
        source: minisign_verify::Error,
    },

    #[error("{path}: `[verify] minisign_signature` is set but `minisign_keys` is empty")]
    NoKeys { path: PathBuf },

    #[error(
        "{path} is signed by minisign key {key_id} ({signature}), which is not in \
         `[verify] minisign_keys` (trusted: {trusted})"
    )]
    UnknownSigner { path: PathBuf, signature: PathBuf, key_id: String, trusted: String },

    #[error(
        "minisign signature {signature} does not match {path} (key {key_id}): the binary or the \
         signature was altered"
    )]
    BadSignature { path: PathBuf, signature: PathBuf, key_id: String },

    #[error(
        "exec_from = \"file\" refused for {path}: {offender} {reason}; use exec_from = \"memfd\" \
         or make it root-owned and not writable by group or others"
    )]
    UnsafeLocation { path: PathBuf, offender: PathBuf, reason: String },
}

/// Opens, checks and (by default) copies the binary at `path` into a sealed memfd.
pub fn open_verified(path: &Path, expect: &Expectation) -> Result<VerifiedBinary, VerifyError> {
    if !path.is_absolute() {
        return Err(VerifyError::NotAbsolute { path: path.to_owned() });
    }
    if expect.sha256.is_none() && expect.minisign.is_none() && !expect.allow_unsigned {
        return Err(VerifyError::NoExpectation { path: path.to_owned() });
    }
    // Parse the signature and pick the key before touching the binary, so a broken policy
    // fails the same way whatever the binary is.
    let signed =
        expect.minisign.as_ref().map(|(sig, keys)| Signed::load(path, sig, keys)).transpose()?;
    let opath = open_binary(path)?;
    let size = check_metadata(path, &opath)?;
    if expect.exec_from == ExecFrom::File {
        check_location(path, &opath)?;
    }
    let mut file = reopen_for_reading(path, &opath)?;
    drop(opath);
    let mut copy = match expect.exec_from {
        ExecFrom::Memfd => Some(new_memfd(path)?),
        ExecFrom::File => None,
    };
    let mut verifier = signed.as_ref().map(Signed::verifier).transpose()?;
    let sha256 = stream(path, &mut file, size, copy.as_mut(), verifier.as_mut())?;
    check_digest(path, expect.sha256, &sha256)?;
    if let (Some(signed), Some(mut v)) = (&signed, verifier) {
        v.finalize().map_err(|_| VerifyError::BadSignature {
            path: path.to_owned(),
            signature: signed.signature_path.clone(),
            key_id: signed.key_id.clone(),
        })?;
    }
    let how = describe(expect, signed.as_ref());
    let fd = match copy {
        Some(memfd) => seal(path, memfd)?,
        None => OwnedFd::from(file),
    };
    Ok(VerifiedBinary { fd, sha256, how })
}

/// Opens the binary as an `O_PATH` descriptor, following ordinary symlinks but no magic links.
/// `O_PATH` opens nothing for I/O, so a device node or FIFO planted at the path cannot react to
/// the open (a watchdog starting, a FIFO blocking); it is refused by the `fstat` just after.
fn open_binary(path: &Path) -> Result<File, VerifyError> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(AT_FDCWD, path, how)
        .map(File::from)
        .map_err(|source| VerifyError::Open { path: path.to_owned(), source })
}

/// Opens the very file behind the checked `O_PATH` descriptor for reading, through that
/// descriptor's `/proc/self/fd` entry (the path itself is never resolved again).
fn reopen_for_reading(path: &Path, opath: &File) -> Result<File, VerifyError> {
    let own = format!("/proc/self/fd/{}", opath.as_raw_fd());
    open(own.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY, Mode::empty())
        .map(File::from)
        .map_err(|source| VerifyError::Open { path: path.to_owned(), source })
}

/// `fstat` on the open descriptor: a regular file within the size cap.
fn check_metadata(path: &Path, file: &File) -> Result<u64, VerifyError> {
    let meta =
        file.metadata().map_err(|source| VerifyError::Read { path: path.to_owned(), source })?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() { "a directory" } else { "a device, FIFO or socket" };
        return Err(VerifyError::NotRegular { path: path.to_owned(), kind });
    }
    if meta.len() > MAX_BINARY_SIZE {
        return Err(VerifyError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            max: MAX_BINARY_SIZE,
        });
    }
    Ok(meta.len())
}

/// Reads the whole file once, feeding the digest, the signature verifier and the copy with the
/// same bytes. Reading stops one byte past the size seen at open, which detects a file that
/// grows meanwhile without ever reading past the cap.
fn stream(
    path: &Path,
    file: &mut File,
    size: u64,
    mut copy: Option<&mut File>,
    mut verifier: Option<&mut StreamVerifier<'_>>,
) -> Result<[u8; 32], VerifyError> {
    let read_err = |source| VerifyError::Read { path: path.to_owned(), source };
    let mut hasher = Sha256::new();
    let mut limited = file.take(size + 1);
    let mut buf = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        if let Some(v) = verifier.as_deref_mut() {
            v.update(chunk);
        }
        if let Some(out) = copy.as_deref_mut() {
            out.write_all(chunk)
                .map_err(|source| VerifyError::Memfd { path: path.to_owned(), source })?;
        }
        total += n as u64;
    }
    if total != size {
        return Err(VerifyError::Changed { path: path.to_owned(), expected: size, actual: total });
    }
    Ok(hasher.finalize().into())
}

fn check_digest(
    path: &Path,
    expected: Option<[u8; 32]>,
    actual: &[u8; 32],
) -> Result<(), VerifyError> {
    match expected {
        Some(want) if want != *actual => Err(VerifyError::DigestMismatch {
            path: path.to_owned(),
            expected: hex(&want),
            actual: hex(actual),
        }),
        _ => Ok(()),
    }
}

fn new_memfd(path: &Path) -> Result<File, VerifyError> {
    let name = format!(
        "vitrine:{}",
        path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    );
    memfd_create(name.as_str(), MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map(File::from)
        .map_err(|e| VerifyError::Memfd { path: path.to_owned(), source: e.into() })
}

/// Seals the copy and swaps the writable descriptor for a read-only one of the same memfd.
fn seal(path: &Path, memfd: File) -> Result<OwnedFd, VerifyError> {
    let err = |e: Errno| VerifyError::Memfd { path: path.to_owned(), source: e.into() };
    fcntl(memfd.as_fd(), FcntlArg::F_ADD_SEALS(SEALS)).map_err(err)?;
    // Reopening through our own descriptor's /proc entry is the one way to get a read-only
    // descriptor of an anonymous file; the seals belong to the file, so they carry over.
    let own = format!("/proc/self/fd/{}", memfd.as_raw_fd());
    let ro = open(own.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(err)?;
    drop(memfd);
    Ok(ro)
}

/// With `exec_from = "file"` the file itself runs later, so nobody but root may be able to
/// change it: the file and every directory above its resolved location must be root-owned and
/// not group/world-writable.
fn check_location(path: &Path, file: &File) -> Result<(), VerifyError> {
    let refuse = |offender: &Path, reason: String| VerifyError::UnsafeLocation {
        path: path.to_owned(),
        offender: offender.to_owned(),
        reason,
    };
    let read_err = |p: &Path, source| VerifyError::Read { path: p.to_owned(), source };
    // The location the descriptor actually refers to, after every symlink.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| read_err(path, e))?;
    let meta = file.metadata().map_err(|e| read_err(path, e))?;
    check_owner(meta.uid(), meta.mode()).map_err(|r| refuse(&real, r))?;
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| read_err(dir, e))?;
        check_owner(meta.uid(), meta.mode()).map_err(|r| refuse(dir, r))?;
    }
    Ok(())
}

fn check_owner(uid: u32, mode: u32) -> Result<(), String> {
    if uid != 0 {
        return Err(format!("is owned by uid {uid}, not root"));
    }
    if mode & 0o022 != 0 {
        return Err(format!("is writable by group or others (mode {:o})", mode & 0o7777));
    }
    Ok(())
}

/// A parsed signature and the trusted key that claims to have made it.
struct Signed {
    signature_path: PathBuf,
    signature: Signature,
    key: PublicKey,
    key_id: String,
}

impl Signed {
    fn load(path: &Path, sig_path: &Path, keys: &[String]) -> Result<Signed, VerifyError> {
        if keys.is_empty() {
            return Err(VerifyError::NoKeys { path: path.to_owned() });
        }
        let text = read_signature(sig_path)?;
        let signature = Signature::decode(&text).map_err(|source| {
            VerifyError::SignatureFormat { signature: sig_path.to_owned(), source }
        })?;
        let sig_id = text.lines().nth(1).and_then(key_id).unwrap_or_default();
        let mut trusted = Vec::new();
        for k in keys {
            let key = PublicKey::from_base64(k.trim())
                .map_err(|source| VerifyError::BadKey { key: k.clone(), source })?;
            match key.verify_stream(&signature) {
                Ok(_) => {
                    return Ok(Signed {
                        signature_path: sig_path.to_owned(),
                        signature,
                        key,
                        key_id: sig_id,
                    });
                }
                Err(minisign_verify::Error::UnsupportedLegacyMode) => {
                    return Err(VerifyError::LegacySignature { signature: sig_path.to_owned() });
                }
                Err(_) => trusted.push(key_id(k.trim()).unwrap_or_else(|| k.clone())),
            }
        }
        Err(VerifyError::UnknownSigner {
            path: path.to_owned(),
            signature: sig_path.to_owned(),
            key_id: sig_id,
            trusted: trusted.join(", "),
        })
    }

    /// `load` already matched this key and signature, so this only fails if minisign-verify
    /// changed its mind; that is reported as a bad signature all the same.
    fn verifier(&self) -> Result<StreamVerifier<'_>, VerifyError> {
        self.key.verify_stream(&self.signature).map_err(|_| VerifyError::BadSignature {
            path: PathBuf::new(),
            signature: self.signature_path.clone(),
            key_id: self.key_id.clone(),
        })
    }
}

fn read_signature(sig_path: &Path) -> Result<String, VerifyError> {
    let err = |source| VerifyError::SignatureFile { signature: sig_path.to_owned(), source };
    let file = File::open(sig_path).map_err(err)?;
    let mut text = String::new();
    file.take(MAX_SIGNATURE_SIZE).read_to_string(&mut text).map_err(err)?;
    Ok(text)
}

/// The key id minisign prints (`9F16B240A88C7686`) from a base64 public key or signature line:
/// bytes 2..10 of the decoded data, a little-endian integer. Only the first 16 base64
/// characters (12 bytes) are needed.
pub fn key_id(base64: &str) -> Option<String> {
    let chars = base64.as_bytes().get(..16)?;
    let mut bytes = Vec::with_capacity(12);
    for quad in chars.chunks(4) {
        let mut acc: u32 = 0;
        for &c in quad {
            acc = (acc << 6) | u32::from(b64_value(c)?);
        }
        bytes.extend_from_slice(&acc.to_be_bytes()[1..]);
    }
    let id: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
    Some(format!("{:016X}", u64::from_le_bytes(id)))
}

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn describe(expect: &Expectation, signed: Option<&Signed>) -> String {
    let mut parts = Vec::new();
    if expect.sha256.is_some() {
        parts.push("sha256 pinned".to_owned());
    }
    if let Some(s) = signed {
        parts.push(format!("minisign key {} ({:?})", s.key_id, s.signature.trusted_comment()));
    }
    if parts.is_empty() {
        parts.push("UNVERIFIED (allow_unsigned)".to_owned());
    }
    parts.push(
        match expect.exec_from {
            ExecFrom::Memfd => "sealed memfd",
            ExecFrom::File => "verified file",
        }
        .to_owned(),
    );
    parts.join(", ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_match_what_minisign_prints() {
        let key = "RWSGdoyoQLIWn+xtjzwbNCBXh5qIwpy5kPk1L41+/oX43GUrWE1wPbSZ";
        assert_eq!(key_id(key).as_deref(), Some("9F16B240A88C7686"));
        assert_eq!(key_id("short"), None);
        assert_eq!(key_id("!!!!!!!!!!!!!!!!!!!!"), None);
    }

    #[test]
    fn owners_and_modes_are_checked() {
        assert!(check_owner(0, 0o100755).is_ok());
        assert!(check_owner(1000, 0o100755).is_err());
        assert!(check_owner(0, 0o100775).is_err());
        assert!(check_owner(0, 0o041777).is_err());
    }
}
