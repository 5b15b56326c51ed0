//! The record kinds vitrine writes (the `kind` field). Kebab-case, stable: tools filter on them.

pub const PEER_AUTH_OK: &str = "peer-auth-ok";
pub const PEER_AUTH_FAILED: &str = "peer-auth-failed";
pub const PEER_PAIRED: &str = "peer-paired";
pub const PEER_PAIRING_FAILED: &str = "peer-pairing-failed";
pub const PEER_FORGOTTEN: &str = "peer-forgotten";
pub const PEER_ROTATED: &str = "peer-rotated";
pub const IDENTITY_ROTATED: &str = "identity-rotated";
pub const POLICY_LOADED: &str = "policy-loaded";
pub const POLICY_REJECTED: &str = "policy-rejected";
pub const VERIFY_FAILED: &str = "verify-failed";
pub const SANDBOX_VIOLATION: &str = "sandbox-violation";
pub const SANDBOX_DOWNGRADE: &str = "sandbox-downgrade";
pub const OOM: &str = "oom";
pub const RATE_LIMIT_BLOCK: &str = "rate-limit-block";
pub const CONTROL_ACTION: &str = "control-action";
pub const CONTROL_REFUSED: &str = "control-refused";
pub const DAEMON_STARTED: &str = "daemon-started";
pub const DAEMON_STOPPING: &str = "daemon-stopping";
pub use crate::writer::CHAIN_RESTART;
