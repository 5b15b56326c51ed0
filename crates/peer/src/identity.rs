//! This box's identity: an Ed25519 key, a self-signed certificate over it, and the peer ID
//! derived from its SPKI.
//!
//! The key lives at `state_dir/identity/key.pem` (mode 0600) unless systemd hands it in as the
//! credential `vitrine-identity`. A key that group or others can read is refused, because a
//! leaked key lets anyone impersonate this box to every peer that pinned it. A small HMAC file
//! beside the key binds it to `/etc/machine-id`, so a box booted from a copied disk image notices
//! that it carries another box's identity instead of silently sharing it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, KeyPair, PublicKeyData};
use ring::hmac;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::id::PeerId;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] =
    [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
const KEY_FILE: &str = "key.pem";
const CERT_FILE: &str = "cert.pem";
const BINDING_FILE: &str = "machine-binding";
/// The systemd credential names (`LoadCredential=` / `LoadCredentialEncrypted=`).
pub const CREDENTIAL_IDENTITY: &str = "vitrine-identity";
pub const CREDENTIAL_SITE_KEY: &str = "vitrine-site-key";

/// Where the identity is read from and what it is bound to.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// `state_dir/identity`.
    pub dir: PathBuf,
    /// `$CREDENTIALS_DIRECTORY`, when systemd provides one.
    pub credentials_dir: Option<PathBuf>,
    /// Normally `/etc/machine-id`; `None` turns clone detection off.
    pub machine_id: Option<PathBuf>,
}

impl IdentityOptions {
    /// The defaults for a state directory: credentials from the environment, `/etc/machine-id`.
    pub fn for_state_dir(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("identity"),
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            machine_id: Some(PathBuf::from("/etc/machine-id")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot access {path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} is accessible to group or others (mode {mode:04o}); the private key must stay private: run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is not an Ed25519 private key in PKCS#8 PEM form")]
    BadKey { path: PathBuf, source: Option<rcgen::Error> },
    #[error(
        "the identity in {dir} was created on another machine (its binding to {machine_id} does not match): this box is probably a clone of another box's disk image. Two boxes must never share an identity; remove {dir} and restart to generate a new one, then pair this box again"
    )]
    Cloned { dir: PathBuf, machine_id: PathBuf },
    #[error("cannot generate the identity certificate")]
    Generate(#[source] rcgen::Error),
}

/// A loaded identity, ready for TLS and for signing rotation statements.
pub struct Identity {
    key_der: Vec<u8>,
    key_pem: String,
    cert: CertificateDer<'static>,
    spki: Vec<u8>,
    id: PeerId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh identity held in memory only (see [`Identity::save`]).
    pub fn generate() -> Result<Self, IdentityError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(IdentityError::Generate)?;
        Self::from_key_pair(&key)
    }

    /// Loads the identity, generating and saving one on first start.
    ///
    /// Returns `true` as the second value when a new identity was created.
    pub fn load_or_create(opts: &IdentityOptions) -> Result<(Self, bool), IdentityError> {
        if let Some(creds) = &opts.credentials_dir {
            let path = creds.join(CREDENTIAL_IDENTITY);
            if path.exists() {
                // systemd credentials are provisioned per machine; they carry no clone binding.
                return Ok((Self::from_pem_file(&path)?, false));
            }
        }
        let path = opts.dir.join(KEY_FILE);
        if path.exists() {
            let ident = Self::from_pem_file(&path)?;
            ident.check_binding(opts)?;
            return Ok((ident, false));
        }
        let ident = Self::generate()?;
        ident.save(opts)?;
        Ok((ident, true))
    }

    /// Loads an existing identity without creating one; `None` when there is none yet.
    pub fn load(opts: &IdentityOptions) -> Result<Option<Self>, IdentityError> {
        if let Some(creds) = &opts.credentials_dir {
            let path = creds.join(CREDENTIAL_IDENTITY);
            if path.exists() {
                return Self::from_pem_file(&path).map(Some);
            }
        }
        let path = opts.dir.join(KEY_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let ident = Self::from_pem_file(&path)?;
        ident.check_binding(opts)?;
        Ok(Some(ident))
    }

    /// Whether the identity would come from a systemd credential.
    pub fn from_credential(opts: &IdentityOptions) -> bool {
        opts.credentials_dir.as_ref().is_some_and(|c| c.join(CREDENTIAL_IDENTITY).exists())
    }

    /// Writes key (0600), certificate and machine binding into `opts.dir`, each atomically.
    pub fn save(&self, opts: &IdentityOptions) -> Result<(), IdentityError> {
        let dir = &opts.dir;
        fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|source| io_err(dir, source))?;
        write_private(&dir.join(KEY_FILE), self.key_pem.as_bytes())?;
        let cert_pem = pem_encode("CERTIFICATE", &self.cert);
        write_private(&dir.join(CERT_FILE), cert_pem.as_bytes())?;
        if let Some(mid) = machine_id(opts) {
            write_private(&dir.join(BINDING_FILE), self.binding(&mid).as_bytes())?;
        }
        Ok(())
    }

    pub fn id(&self) -> PeerId {
        self.id
    }

    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    pub fn cert(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// An Ed25519 signature by this identity's key.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.key_der) {
            Ok(pair) => pair.sign(message).as_ref().to_vec(),
            // The key was parsed by the same library when it was loaded; an empty signature
            // fails verification on the other side rather than panicking here.
            Err(_) => Vec::new(),
        }
    }

    fn from_pem_file(path: &Path) -> Result<Self, IdentityError> {
        check_private_mode(path)?;
        let pem = fs::read_to_string(path).map_err(|source| io_err(path, source))?;
        let key = KeyPair::from_pem(&pem)
            .map_err(|e| IdentityError::BadKey { path: path.to_owned(), source: Some(e) })?;
        if key.algorithm() != &rcgen::PKCS_ED25519 {
            return Err(IdentityError::BadKey { path: path.to_owned(), source: None });
        }
        Self::from_key_pair(&key)
    }

    fn from_key_pair(key: &KeyPair) -> Result<Self, IdentityError> {
        // The certificate carries no meaningful name or dates: peers pin the key, and boxes
        // without a real-time clock must not fail on validity periods.
        let params = CertificateParams::new(vec!["vitrine.invalid".to_owned()])
            .map_err(IdentityError::Generate)?;
        let cert = params.self_signed(key).map_err(IdentityError::Generate)?;
        let spki = key.subject_public_key_info();
        Ok(Self {
            key_der: key.serialized_der().to_vec(),
            key_pem: key.serialize_pem(),
            cert: cert.der().clone(),
            id: PeerId::from_spki(&spki),
            spki,
        })
    }

    fn binding(&self, machine_id: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.key_der);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(b"vitrine machine binding v1\0");
        ctx.update(machine_id.as_bytes());
        let tag = ctx.sign();
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n"
    }

    fn check_binding(&self, opts: &IdentityOptions) -> Result<(), IdentityError> {
        let Some(mid) = machine_id(opts) else { return Ok(()) };
        let path = opts.dir.join(BINDING_FILE);
        match fs::read_to_string(&path) {
            Ok(stored) if stored.trim() == self.binding(&mid).trim() => Ok(()),
            Ok(_) => Err(IdentityError::Cloned {
                dir: opts.dir.clone(),
                machine_id: opts.machine_id.clone().unwrap_or_default(),
            }),
            // An identity from before the binding existed (or restored by hand) is bound now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_private(&path, self.binding(&mid).as_bytes())
            }
            Err(source) => Err(io_err(&path, source)),
        }
    }
}

/// The raw Ed25519 public key inside an SPKI, if it is one.
pub fn ed25519_raw_key(spki: &[u8]) -> Option<&[u8]> {
    spki.strip_prefix(&ED25519_SPKI_PREFIX[..]).filter(|k| k.len() == 32)
}

/// Checks an Ed25519 signature made by the key of `spki`.
pub fn verify_signature(spki: &[u8], message: &[u8], sig: &[u8]) -> bool {
    let Some(raw) = ed25519_raw_key(spki) else { return false };
    signature::UnparsedPublicKey::new(&signature::ED25519, raw).verify(message, sig).is_ok()
}

/// The public half of this identity, for tests that need to compare keys.
pub fn public_key_of(ident: &Identity) -> Vec<u8> {
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&ident.key_der)
        .map(|p| p.public_key().as_ref().to_vec())
        .unwrap_or_default()
}

/// Refuses secret files that group or others may read or write.
pub fn check_private_mode(path: &Path) -> Result<(), IdentityError> {
    let meta = fs::metadata(path).map_err(|source| io_err(path, source))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::TooOpen { path: path.to_owned(), mode });
    }
    Ok(())
}

fn machine_id(opts: &IdentityOptions) -> Option<String> {
    let path = opts.machine_id.as_ref()?;
    match fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => {
            tracing::warn!(path = %path.display(), "no machine id: clone detection is off");
            None
        }
    }
}

/// Writes a 0600 file through a temporary name and a rename, so readers never see half a key.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|source| io_err(path, source))
}

fn io_err(path: &Path, source: std::io::Error) -> IdentityError {
    IdentityError::Io { path: path.to_owned(), source }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n =
            chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, mid: &Path) -> IdentityOptions {
        IdentityOptions {
            dir: dir.join("identity"),
            credentials_dir: None,
            machine_id: Some(mid.to_owned()),
        }
    }

    #[test]
    fn created_once_then_reloaded_with_the_same_id() {
        let tmp = tempfile::tempdir().unwrap();
        let mid = tmp.path().join("machine-id");
        fs::write(&mid, "0123456789abcdef0123456789abcdef\n").unwrap();
        let (a, created) = Identity::load_or_create(&opts(tmp.path(), &mid)).unwrap();
        assert!(created);
        let key = tmp.path().join("identity/key.pem");
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let (b, created) = Identity::load_or_create(&opts(tmp.path(), &mid)).unwrap();
        assert!(!created);
        assert_eq!(a.id(), b.id());
        let sig = a.sign(b"hello");
        assert!(verify_signature(b.spki(), b"hello", &sig));
        assert!(!verify_signature(b.spki(), b"hellO", &sig));
    }

    #[test]
    fn refuses_a_readable_key_and_names_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let mid = tmp.path().join("machine-id");
        fs::write(&mid, "aa").unwrap();
        Identity::load_or_create(&opts(tmp.path(), &mid)).unwrap();
        let key = tmp.path().join("identity/key.pem");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identity::load_or_create(&opts(tmp.path(), &mid)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, IdentityError::TooOpen { .. }), "{msg}");
        assert!(msg.contains("chmod 600") && msg.contains("key.pem"), "{msg}");
    }

    #[test]
    fn a_cloned_identity_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let mid = tmp.path().join("machine-id");
        fs::write(&mid, "box-one").unwrap();
        Identity::load_or_create(&opts(tmp.path(), &mid)).unwrap();
        // The disk image boots on a second machine with its own machine id.
        fs::write(&mid, "box-two").unwrap();
        let err = Identity::load_or_create(&opts(tmp.path(), &mid)).unwrap_err();
        assert!(matches!(err, IdentityError::Cloned { .. }), "{err}");
        assert!(err.to_string().contains("remove"));
    }

    #[test]
    fn systemd_credential_takes_precedence() {
        let tmp = tempfile::tempdir().unwrap();
        let creds = tmp.path().join("creds");
        fs::create_dir(&creds).unwrap();
        let ident = Identity::generate().unwrap();
        write_private(&creds.join(CREDENTIAL_IDENTITY), ident.key_pem.as_bytes()).unwrap();
        let o = IdentityOptions {
            dir: tmp.path().join("identity"),
            credentials_dir: Some(creds),
            machine_id: None,
        };
        let (loaded, created) = Identity::load_or_create(&o).unwrap();
        assert!(!created);
        assert_eq!(loaded.id(), ident.id());
        assert!(!o.dir.exists(), "nothing is written when the key comes from a credential");
    }

    #[test]
    fn pem_matches_the_certificate() {
        let ident = Identity::generate().unwrap();
        let pem = pem_encode("CERTIFICATE", &ident.cert);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\nMI"));
        assert_eq!(ed25519_raw_key(ident.spki()).map(<[u8]>::len), Some(32));
        assert_eq!(public_key_of(&ident), ed25519_raw_key(ident.spki()).unwrap());
    }
}
