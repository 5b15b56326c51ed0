//! The validated policy: what every other crate of vitrine receives.
//!
//! Nothing in here can hold a value the contract (DESIGN §4) forbids: a `Policy` only exists
//! after parsing, preset merging and validation succeeded. Paths are absolute, names are checked,
//! durations and sizes are typed, and the OSC/MIDI schemas carry only the keys that make sense
//! for their type.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// One visualization's policy after presets were merged and every value was validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// The file this policy was read from (for messages and reloads).
    pub source: PathBuf,
    pub visualization: Visualization,
    pub verify: Verify,
    pub restart: Restart,
    pub limits: Limits,
    pub sandbox: Sandbox,
    /// The effective filesystem grants: the policy's own plus every preset's.
    pub filesystem: Filesystem,
    pub network: Network,
    pub syscalls: Syscalls,
    pub ipc: Ipc,
    pub osc: Osc,
    /// `None` when the policy has no `[midi]` table: no MIDI reaches this visualization.
    pub midi: Option<Midi>,
}

/// A visualization name: `[a-z0-9-]{1,32}`, unique on the box.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(pub(crate) String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute, normalized path (no `.`/`..` components, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AbsPath(pub(crate) PathBuf);

impl AbsPath {
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl std::fmt::Display for AbsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Visualization {
    pub name: Name,
    pub command: AbsPath,
    pub args: Vec<String>,
    /// The child's whole environment: nothing else is passed.
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<AbsPath>,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verify {
    /// Expected SHA-256 of the binary.
    #[serde(serialize_with = "hex_opt")]
    pub sha256: Option<[u8; 32]>,
    pub minisign_signature: Option<AbsPath>,
    /// Trusted minisign public keys (base64, as minisign prints them).
    pub minisign_keys: Vec<String>,
    pub exec_from: ExecFrom,
}

fn hex_opt<S: serde::Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_some(&hex::encode(d)),
        None => s.serialize_none(),
    }
}

/// Where the verified binary is executed from (DESIGN §3 step 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecFrom {
    /// A sealed memfd copy of the verified bytes (the default).
    Memfd,
    /// The verified file descriptor itself; only for root-owned, non-writable paths.
    File,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restart {
    pub policy: RestartPolicy,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// More than `burst` starts within `burst_window` → state failed.
    pub burst: u32,
    pub burst_window: Duration,
    pub stop_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// Bytes (memory.max; swap off). `None`: no memory limit.
    pub memory: Option<u64>,
    /// Cores (cpu.max quota / period). `None`: no CPU limit.
    pub cpu: Option<f64>,
    pub cpuset: Option<CpuSet>,
    pub pids: Option<u32>,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
    /// Bytes for each of the private `/tmp` and `/dev/shm`.
    pub tmp_size: u64,
}

/// A validated CPU list such as `2-3` or `0,2,4-5`, kept as sorted, disjoint ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuSet {
    pub ranges: Vec<(u32, u32)>,
}

impl std::fmt::Display for CpuSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b { write!(f, "{a}")? } else { write!(f, "{a}-{b}")? }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sandbox {
    pub user: UserSpec,
    pub landlock: LandlockMode,
    pub landlock_min_abi: u8,
}

/// The unprivileged account the visualization runs as; never root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum UserSpec {
    /// Resolved through the user database at launch time.
    Name(String),
    /// A numeric uid (non-zero); the gid is the same number unless the user database says otherwise.
    Uid(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockMode {
    Required,
    BestEffort,
}

/// Effective filesystem grants (policy + presets), each path absolute.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Filesystem {
    /// Preset names that were merged, in order.
    pub presets: Vec<String>,
    pub read: Vec<AbsPath>,
    pub read_write: Vec<AbsPath>,
    pub exec: Vec<AbsPath>,
    pub devices: Vec<AbsPath>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// Private network namespace with loopback only.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Syscalls {
    /// The profile name or path as written, and the file it resolved to.
    pub profile: String,
    pub profile_path: PathBuf,
    /// The resolved profile (allowed syscalls with optional argument conditions).
    pub rules: Vec<SyscallRule>,
    /// Extra syscall names from `allow`, already checked against the syscall table.
    pub allow: Vec<String>,
    pub action: SeccompAction,
}

/// One allowlist entry of a seccomp profile, in seccompiler's JSON terms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyscallRule {
    pub syscall: String,
    /// All conditions must hold (AND); empty means "always allowed".
    pub args: Vec<ArgCondition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgCondition {
    pub index: u8,
    /// `true` when the argument is compared as 32 bits (`dword`), as ioctl requests must be.
    pub dword: bool,
    pub op: ArgOp,
    pub val: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == val`
    MaskedEq(u64),
}

/// What happens to a syscall outside the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompAction {
    /// SECCOMP_RET_KILL_PROCESS (the default).
    Kill,
    /// Fail with EPERM.
    Errno,
    /// Allow and log; for learning only, loudly reported.
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "transport", rename_all = "kebab-case")]
pub enum Ipc {
    /// Datagrams to `127.0.0.1:port` inside the sandbox's network namespace.
    Udp { port: u16, reply_port: Option<u16> },
    /// SOCK_SEQPACKET at fd 3, `VITRINE_OSC_FD=3` (vitrine-sdk).
    Fd,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Osc {
    /// External address prefix (default `/<name>`), stripped on delivery.
    pub prefix: String,
    /// Messages per second for this visualization, all sources together.
    pub max_rate: u32,
    pub params: Vec<OscParam>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OscParam {
    /// The address as the child receives it (starts with `/`, no pattern characters).
    pub address: String,
    pub kind: ParamKind,
    /// Messages per second for this address; `None`: only the visualization's rate applies.
    pub max_rate: Option<u32>,
    /// A slow child keeps only the latest value of this address.
    pub coalesce: bool,
}

/// A parameter's type with only the keys that make sense for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ParamKind {
    Float { range: Option<(f64, f64)>, out_of_range: OutOfRange },
    Int { range: Option<(i64, i64)>, out_of_range: OutOfRange },
    Bool,
    String { max_len: Option<usize>, one_of: Option<Vec<String>> },
    Impulse,
    Blob { max_len: usize },
    Color,
    Midi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutOfRange {
    Clamp,
    Reject,
}

/// Where validated MIDI reaches the child: one `m` argument `[port, status, data1, data2]`.
/// A policy with `[midi]` gets this parameter without declaring it.
pub const MIDI_ADDRESS: &str = "/midi";
/// Where allowed SysEx reaches the child: one blob, the port id followed by F0 … F7.
pub const MIDI_SYSEX_ADDRESS: &str = "/midi/sysex";
/// The largest SysEx message forwarded, F0 and F7 included.
pub const MIDI_SYSEX_CAP: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Midi {
    /// ALSA port name globs (`*`, `?`).
    pub inputs: Vec<String>,
    /// Allowed channels, 1–16; empty means all.
    pub channels: Vec<u8>,
    pub messages: Vec<MidiMessageKind>,
    pub sysex: bool,
    pub max_rate: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MidiMessageKind {
    Note,
    PolyAftertouch,
    Cc,
    Program,
    ChannelAftertouch,
    Pitchbend,
    Clock,
    Transport,
}

/// The daemon configuration (`/etc/vitrine/vitrine.toml`); every key has a default.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The file this was read from, `None` when every default applies.
    pub source: Option<PathBuf>,
    pub policies: PathBuf,
    pub state_dir: PathBuf,
    pub allow_unsigned: bool,
    pub osc: OscConfig,
    pub control: ControlConfig,
    pub metrics: MetricsConfig,
    pub peering: PeeringConfig,
    pub audit: AuditConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OscConfig {
    pub listen: Vec<SocketAddr>,
    pub allow_from: Vec<NetRule>,
    pub max_packet: usize,
    /// OSCQuery HTTP listener; `None` disables it.
    pub oscquery_listen: Option<SocketAddr>,
}

/// One `allow_from` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NetRule {
    /// Loopback, RFC 1918, link-local, ULA.
    Local,
    Cidr {
        addr: std::net::IpAddr,
        prefix: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlConfig {
    pub socket: PathBuf,
    pub admin_group: String,
    pub operator_group: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsConfig {
    /// `None` disables the listener.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeeringConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub discovery: Discovery,
    pub static_peers: Vec<String>,
    pub site_key_file: PathBuf,
    /// The role of peers admitted by the site key (observer unless set).
    pub site_key_role: PeerRole,
    /// OSC messages per second one controller peer may relay, and the burst above it; a peer
    /// over the limit is disconnected and banned.
    pub osc_rate: u32,
    pub osc_burst: u32,
    /// How long a peer that broke a rule is refused (kept across restarts).
    pub ban_cooldown: Duration,
    /// How long a peer's rotated-away key stays acceptable.
    pub rotation_grace: Duration,
    /// How long `vitrine peers pair` keeps the pairing window open.
    pub pairing_window: Duration,
    /// Delay between failed dials of one address, doubling from min to max.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Time allowed for TCP connect, TLS and the hello exchange.
    pub handshake_timeout: Duration,
    /// How often links are pinged, and after how long without any frame a peer is down.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// How often this box sends its status (visualizations and states) to each peer.
    pub status_interval: Duration,
}

/// What a peer may do on this box (the trust store's roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerRole {
    Controller,
    Observer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Discovery {
    Mdns,
    Static,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditConfig {
    pub path: PathBuf,
}
