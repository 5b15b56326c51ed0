//! The one table of policy keys: the parser accepts exactly these, the JSON Schema and the
//! reference documentation are generated from them.
//!
//! Each key carries its type (for the schema), its default as written in TOML (for the docs)
//! and a one-sentence description.

mod config;
pub(crate) use config::*;

/// The value type of a key, as far as a schema can express it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    Bool,
    /// Any string without control characters.
    Str,
    Int {
        min: i64,
        max: i64,
    },
    /// A positive number of CPU cores (integer or float).
    Cores,
    Duration,
    Size,
    /// A size, or `"unlimited"`.
    SizeOrUnlimited,
    /// An integer in range, or `"unlimited"`.
    IntOrUnlimited {
        min: i64,
        max: i64,
    },
    Name,
    Path,
    Paths,
    Strings,
    /// A table of strings (the environment).
    StrMap,
    Enum(&'static [&'static str]),
    EnumList(&'static [&'static str]),
    IntList {
        min: i64,
        max: i64,
    },
    Cpuset,
    Sha256,
    /// A user name or a non-zero uid.
    User,
    /// An OSC address: `/a/b`, no pattern characters.
    OscAddress,
    /// `[min, max]`, numbers.
    Range,
    /// An array of tables with these keys.
    Tables(&'static Section),
    /// A table with these keys.
    Table(&'static Section),
    /// A socket address `IP:PORT`.
    Addr,
    Addrs,
    /// A socket address, or `"off"`.
    AddrOrOff,
    /// `"local"` or CIDRs.
    NetRules,
}

#[derive(Debug)]
pub(crate) struct Key {
    pub(crate) name: &'static str,
    pub(crate) ty: Ty,
    /// The default as TOML text; `None` when the key is required or absent means "not set".
    pub(crate) default: Option<&'static str>,
    pub(crate) doc: &'static str,
}

#[derive(Debug)]
pub(crate) struct Section {
    pub(crate) name: &'static str,
    pub(crate) doc: &'static str,
    pub(crate) keys: &'static [Key],
}

impl Section {
    pub(crate) fn key(&self, name: &str) -> Option<&'static Key> {
        self.keys.iter().find(|k| k.name == name)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &'static str> {
        self.keys.iter().map(|k| k.name)
    }
}

const fn key(name: &'static str, ty: Ty, default: Option<&'static str>, doc: &'static str) -> Key {
    Key { name, ty, default, doc }
}

pub(crate) const RESTART_POLICIES: &[&str] = &["always", "on-failure", "never"];
pub(crate) const LANDLOCK_MODES: &[&str] = &["required", "best-effort"];
pub(crate) const NETWORK_MODES: &[&str] = &["none"];
pub(crate) const SECCOMP_ACTIONS: &[&str] = &["kill", "errno", "log"];
pub(crate) const TRANSPORTS: &[&str] = &["udp", "fd"];
pub(crate) const EXEC_FROM: &[&str] = &["memfd", "file"];
pub(crate) const PARAM_TYPES: &[&str] =
    &["float", "int", "bool", "string", "impulse", "blob", "color", "midi"];
pub(crate) const OUT_OF_RANGE: &[&str] = &["clamp", "reject"];
pub(crate) const MIDI_MESSAGES: &[&str] = &[
    "note",
    "poly-aftertouch",
    "cc",
    "program",
    "channel-aftertouch",
    "pitchbend",
    "clock",
    "transport",
];

/// The newest Landlock ABI this version knows; a higher floor could never be met.
pub(crate) const MAX_LANDLOCK_ABI: i64 = 7;

pub(crate) static VISUALIZATION: Section = Section {
    name: "visualization",
    doc: "What to run. Required.",
    keys: &[
        key(
            "name",
            Ty::Name,
            None,
            "Unique name on the box: 1-32 of a-z, 0-9 and '-', not starting with '-'. Required.",
        ),
        key(
            "command",
            Ty::Path,
            None,
            "Absolute path of the binary; it is verified and executed from a sealed copy. Required.",
        ),
        key("args", Ty::Strings, Some("[]"), "Arguments after argv[0]."),
        key(
            "env",
            Ty::StrMap,
            Some("{}"),
            "The child's whole environment; nothing else is passed.",
        ),
        key("working_dir", Ty::Path, None, "Working directory inside the sandbox; default: /."),
        key(
            "enabled",
            Ty::Bool,
            Some("true"),
            "A disabled visualization is validated but not started.",
        ),
    ],
};

pub(crate) static VERIFY: Section = Section {
    name: "verify",
    doc: "How the binary is verified before every load. At least one of sha256 or minisign_signature is required unless the daemon sets allow_unsigned.",
    keys: &[
        key("sha256", Ty::Sha256, None, "Expected SHA-256 of the binary, 64 hex digits."),
        key(
            "minisign_signature",
            Ty::Path,
            None,
            "Path of the binary's minisign signature; needs minisign_keys.",
        ),
        key(
            "minisign_keys",
            Ty::Strings,
            Some("[]"),
            "Trusted minisign public keys (base64, as minisign prints them).",
        ),
        key(
            "exec_from",
            Ty::Enum(EXEC_FROM),
            Some("\"memfd\""),
            "memfd: run a sealed copy; file: run the verified file itself (binary and parents must be root-owned, not group/world-writable).",
        ),
    ],
};

pub(crate) static RESTART: Section = Section {
    name: "restart",
    doc: "What happens when the visualization exits.",
    keys: &[
        key(
            "policy",
            Ty::Enum(RESTART_POLICIES),
            Some("\"on-failure\""),
            "always, on-failure (non-zero exit or signal) or never.",
        ),
        key(
            "backoff_initial",
            Ty::Duration,
            Some("\"500ms\""),
            "Delay before the first restart; doubles each time.",
        ),
        key("backoff_max", Ty::Duration, Some("\"30s\""), "Upper bound of the restart delay."),
        key(
            "burst",
            Ty::Int { min: 1, max: 1000 },
            Some("5"),
            "More than this many starts within burst_window puts the visualization in state failed.",
        ),
        key("burst_window", Ty::Duration, Some("\"60s\""), "The window of burst."),
        key(
            "stop_timeout",
            Ty::Duration,
            Some("\"5s\""),
            "Time between SIGTERM and killing the whole cgroup.",
        ),
    ],
};

pub(crate) static LIMITS: Section = Section {
    name: "limits",
    doc: "Resource limits (cgroup and rlimits).",
    keys: &[
        key(
            "memory",
            Ty::SizeOrUnlimited,
            Some("\"1GiB\""),
            "memory.max with swap off, or \"unlimited\".",
        ),
        key("cpu", Ty::Cores, None, "CPU cores (cpu.max), 0.01 to 1024; default: no CPU limit."),
        key(
            "cpuset",
            Ty::Cpuset,
            None,
            "CPUs the visualization may run on, e.g. \"2-3\" or \"0,2,4-5\".",
        ),
        key(
            "pids",
            Ty::IntOrUnlimited { min: 1, max: 4_194_304 },
            Some("256"),
            "pids.max: processes and threads together, or \"unlimited\".",
        ),
        key("open_files", Ty::Int { min: 16, max: 1_048_576 }, Some("256"), "RLIMIT_NOFILE."),
        key(
            "tmp_size",
            Ty::Size,
            Some("\"64MiB\""),
            "Size of each of the private /tmp and /dev/shm tmpfs mounts.",
        ),
    ],
};

pub(crate) static SANDBOX: Section = Section {
    name: "sandbox",
    doc: "Identity and Landlock.",
    keys: &[
        key(
            "user",
            Ty::User,
            Some("\"vitrine-viz\""),
            "User name or uid the visualization runs as; never root or uid 0.",
        ),
        key(
            "landlock",
            Ty::Enum(LANDLOCK_MODES),
            Some("\"required\""),
            "required: refuse to start without Landlock at landlock_min_abi; best-effort: start anyway (logged and exported).",
        ),
        key(
            "landlock_min_abi",
            Ty::Int { min: 1, max: MAX_LANDLOCK_ABI },
            Some("1"),
            "The lowest Landlock ABI accepted when landlock is required.",
        ),
    ],
};

pub(crate) static FILESYSTEM: Section = Section {
    name: "filesystem",
    doc: "Landlock grants and bind mounts. Presets are merged first; nothing is ever removed.",
    keys: &[
        key(
            "presets",
            Ty::Strings,
            Some("[\"system-libs\"]"),
            "Presets to merge (names in presets/ or paths); [] merges none.",
        ),
        key("read", Ty::Paths, Some("[]"), "Read-only files and directory trees."),
        key("read_write", Ty::Paths, Some("[]"), "Read-write files and directory trees."),
        key(
            "exec",
            Ty::Paths,
            Some("[]"),
            "Readable and executable files and trees (programs, the dynamic loader).",
        ),
        key(
            "devices",
            Ty::Paths,
            Some("[]"),
            "Device nodes under /dev, read-write with ioctl where the Landlock ABI has it.",
        ),
    ],
};

pub(crate) static NETWORK: Section = Section {
    name: "network",
    doc: "Networking of the sandbox.",
    keys: &[key(
        "mode",
        Ty::Enum(NETWORK_MODES),
        Some("\"none\""),
        "none: a private network namespace with loopback only.",
    )],
};

pub(crate) static SYSCALLS: Section = Section {
    name: "syscalls",
    doc: "The seccomp allowlist.",
    keys: &[
        key(
            "profile",
            Ty::Str,
            Some("\"default\""),
            "A profile name in seccomp/ (default, render) or a path to a seccompiler JSON file.",
        ),
        key("allow", Ty::Strings, Some("[]"), "Extra syscall names (x86_64) to allow."),
        key(
            "action",
            Ty::Enum(SECCOMP_ACTIONS),
            Some("\"kill\""),
            "What a syscall outside the allowlist does: kill the process, fail with EPERM (errno), or log (learning only).",
        ),
    ],
};

pub(crate) static IPC: Section = Section {
    name: "ipc",
    doc: "How validated OSC reaches the child.",
    keys: &[
        key(
            "transport",
            Ty::Enum(TRANSPORTS),
            Some("\"udp\""),
            "udp: datagrams to 127.0.0.1:port inside the sandbox; fd: SOCK_SEQPACKET at fd 3 (vitrine-sdk).",
        ),
        key(
            "port",
            Ty::Int { min: 1, max: 65535 },
            Some("9000"),
            "The child's UDP port (udp transport only).",
        ),
        key(
            "reply_port",
            Ty::Int { min: 1, max: 65535 },
            None,
            "A port the child may send OSC back to (udp transport only).",
        ),
    ],
};

pub(crate) static OSC_PARAM: Section = Section {
    name: "params",
    doc: "One OSC address the child accepts.",
    keys: &[
        key(
            "address",
            Ty::OscAddress,
            None,
            "The address as the child receives it; starts with '/', no pattern characters. Required.",
        ),
        key("type", Ty::Enum(PARAM_TYPES), None, "The argument type. Required."),
        key("range", Ty::Range, None, "[min, max] with min < max (float and int only)."),
        key(
            "out_of_range",
            Ty::Enum(OUT_OF_RANGE),
            Some("\"clamp\""),
            "What to do with values outside range (only with range).",
        ),
        key(
            "max_len",
            Ty::Int { min: 1, max: 65_536 },
            None,
            "Maximum length in bytes (string: default unlimited within the packet; blob: default 1024).",
        ),
        key("one_of", Ty::Strings, None, "The only accepted strings (string only)."),
        key(
            "max_rate",
            Ty::Int { min: 1, max: 100_000 },
            None,
            "Messages per second for this address; default: only the visualization's max_rate applies.",
        ),
        key(
            "coalesce",
            Ty::Bool,
            None,
            "A slow child keeps only the latest value; default true for float, int, bool and color, false otherwise.",
        ),
    ],
};

pub(crate) static OSC: Section = Section {
    name: "osc",
    doc: "Which OSC messages the child accepts.",
    keys: &[
        key(
            "prefix",
            Ty::OscAddress,
            None,
            "External address prefix, stripped on delivery; default \"/<name>\".",
        ),
        key(
            "max_rate",
            Ty::Int { min: 1, max: 100_000 },
            Some("2000"),
            "Messages per second for this visualization, all sources together.",
        ),
        key(
            "params",
            Ty::Tables(&OSC_PARAM),
            Some("[]"),
            "The accepted addresses ([[osc.params]] tables).",
        ),
    ],
};

pub(crate) static MIDI: Section = Section {
    name: "midi",
    doc: "MIDI input, delivered as OSC. Without this table no MIDI reaches the visualization.",
    keys: &[
        key("inputs", Ty::Strings, Some("[\"*\"]"), "ALSA port name globs (* and ?)."),
        key(
            "channels",
            Ty::IntList { min: 1, max: 16 },
            Some("[]"),
            "Accepted channels 1-16; [] accepts all.",
        ),
        key(
            "messages",
            Ty::EnumList(MIDI_MESSAGES),
            Some(
                "[\"note\", \"poly-aftertouch\", \"cc\", \"program\", \"channel-aftertouch\", \"pitchbend\"]",
            ),
            "Accepted message kinds.",
        ),
        key("sysex", Ty::Bool, Some("false"), "Accept (bounded) SysEx messages."),
        key("max_rate", Ty::Int { min: 1, max: 100_000 }, Some("1000"), "Messages per second."),
    ],
};

/// The top level of a policy file: its tables, in the order the reference lists them.
pub(crate) static POLICY: Section = Section {
    name: "",
    doc: "A visualization's policy.",
    keys: &[
        key("visualization", Ty::Table(&VISUALIZATION), None, VISUALIZATION.doc),
        key("verify", Ty::Table(&VERIFY), None, VERIFY.doc),
        key("restart", Ty::Table(&RESTART), None, RESTART.doc),
        key("limits", Ty::Table(&LIMITS), None, LIMITS.doc),
        key("sandbox", Ty::Table(&SANDBOX), None, SANDBOX.doc),
        key("filesystem", Ty::Table(&FILESYSTEM), None, FILESYSTEM.doc),
        key("network", Ty::Table(&NETWORK), None, NETWORK.doc),
        key("syscalls", Ty::Table(&SYSCALLS), None, SYSCALLS.doc),
        key("ipc", Ty::Table(&IPC), None, IPC.doc),
        key("osc", Ty::Table(&OSC), None, OSC.doc),
        key("midi", Ty::Table(&MIDI), None, MIDI.doc),
    ],
};

/// A preset file holds only a `[filesystem]` table.
pub(crate) static PRESET: Section = Section {
    name: "",
    doc: "A filesystem preset.",
    keys: &[key("filesystem", Ty::Table(&FILESYSTEM), None, FILESYSTEM.doc)],
};
