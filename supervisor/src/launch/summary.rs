//! What a sandbox enforces, as one line for the start log and as layer names for metrics.

use vitrine_sandbox::proto::LandlockReport;

use super::Prepared;

/// The namespaces every sandbox gets (the user namespace is not used: the shim starts as root).
pub const NAMESPACES: &str = "mnt,pid,ipc,uts,net,cgroup";

/// The enforced layers of one running sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Enforced {
    pub landlock: Option<LandlockReport>,
    pub seccomp_rules: usize,
    pub seccomp_action: String,
    /// e.g. `cgroup v1 memory=268435456 pids=64`.
    pub cgroup: String,
    pub verified: String,
    pub user: String,
}

impl Enforced {
    pub(super) fn new(
        prepared: &Prepared,
        landlock: Option<LandlockReport>,
        cgroup: &vitrine_cgroup::Cgroup,
    ) -> Enforced {
        let limits = prepared.cgroup_limits();
        let mut cg = format!("cgroup {:?}", cgroup.version()).to_lowercase();
        if let Some(m) = limits.memory {
            cg.push_str(&format!(" memory={}", human_bytes(m)));
        }
        if let Some(c) = limits.cpu {
            cg.push_str(&format!(" cpu={c}"));
        }
        if let Some(c) = &limits.cpuset {
            cg.push_str(&format!(" cpuset={c}"));
        }
        if let Some(p) = limits.pids {
            cg.push_str(&format!(" pids={p}"));
        }
        Enforced {
            landlock,
            seccomp_rules: prepared.seccomp().rule_count,
            seccomp_action: prepared.seccomp().action.clone(),
            cgroup: cg,
            verified: prepared.verified().to_owned(),
            user: prepared.user().to_owned(),
        }
    }

    /// The start line: namespaces, Landlock ABI and status, seccomp, cgroup, verification.
    pub fn summary(&self) -> String {
        let landlock = match &self.landlock {
            Some(l) if l.skipped.is_empty() => {
                format!("landlock ABI {} {}", l.kernel_abi, l.status)
            }
            Some(l) => format!(
                "landlock ABI {} {} ({} absent paths skipped)",
                l.kernel_abi,
                l.status,
                l.skipped.len()
            ),
            None => "landlock not reported".to_owned(),
        };
        format!(
            "namespaces {NAMESPACES}; {landlock}; seccomp {} rules, default {}; {}; user {}; binary {}",
            self.seccomp_rules, self.seccomp_action, self.cgroup, self.user, self.verified
        )
    }

    /// Every way this sandbox is weaker than the full set, to be said loudly at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        match &self.landlock {
            Some(l) if l.status == "fully-enforced" => {}
            Some(l) => w.push(format!(
                "Landlock is only {} (kernel ABI {}): the filesystem and TCP restrictions are \
                 incomplete (policy has landlock = \"best-effort\")",
                l.status, l.kernel_abi
            )),
            None => w.push("the shim did not report Landlock".to_owned()),
        }
        if let Some(l) = &self.landlock {
            let missing = landlock_missing(l.kernel_abi);
            if !missing.is_empty() {
                w.push(format!(
                    "Landlock ABI {} cannot restrict {}",
                    l.kernel_abi,
                    missing.join(", ")
                ));
            }
        }
        match self.seccomp_action.as_str() {
            "kill" => {}
            "learn" => w.push(
                "seccomp action is `learn`: syscalls outside the hot set are recorded and \
                 allowed (policy learning, not a production sandbox)"
                    .to_owned(),
            ),
            "log" => w.push(
                "seccomp action is `log`: forbidden syscalls are allowed and only logged \
                 (learning mode, not a sandbox)"
                    .to_owned(),
            ),
            other => w.push(format!(
                "seccomp action is `{other}`: forbidden syscalls fail instead of killing"
            )),
        }
        w
    }

    /// Layer names for `vitrine_sandbox_layer_enforced{layer}` and the daemon's status.
    pub fn layers(&self) -> Vec<String> {
        let mut layers = vec!["namespaces".to_owned()];
        if let Some(l) = &self.landlock {
            if l.status != "not-enforced" {
                layers.push(format!("landlock-abi-{}", l.kernel_abi));
            }
        }
        layers.push(format!("seccomp-{}", self.seccomp_action));
        layers.push("cgroup".to_owned());
        layers.push("verified".to_owned());
        layers
    }
}

/// `268435456` → `256MiB`, exact units only.
fn human_bytes(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

/// What the sandbox would restrict with a newer Landlock ABI than `kernel_abi`, by the ABI that
/// added it.
fn landlock_missing(kernel_abi: u32) -> Vec<&'static str> {
    const ADDED: [(u32, &str); 5] = [
        (2, "moving files between directories (ABI 2)"),
        (3, "truncating files (ABI 3)"),
        (4, "TCP bind and connect (ABI 4)"),
        (5, "ioctl on devices (ABI 5)"),
        (6, "abstract unix sockets and signals to outside processes (ABI 6)"),
    ];
    ADDED.iter().filter(|(abi, _)| kernel_abi < *abi).map(|(_, what)| *what).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_are_printed_in_exact_units() {
        assert_eq!(super::human_bytes(256 << 20), "256MiB");
        assert_eq!(super::human_bytes(3 << 30), "3GiB");
        assert_eq!(super::human_bytes(1000), "1000B");
    }

    #[test]
    fn an_older_landlock_abi_names_what_it_cannot_restrict() {
        let on_6_1 = super::landlock_missing(2);
        assert_eq!(on_6_1.len(), 4);
        assert!(on_6_1[0].starts_with("truncating files"));
        assert!(super::landlock_missing(6).is_empty());
    }
}
