//! Pure parsers for the typed strings of a policy: durations, sizes, CPU sets, names, paths,
//! OSC addresses, users and network rules. Each returns a [`Bad`] that says what to write.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::diag::Bad;
use crate::model::{AbsPath, CpuSet, Name, NetRule, UserSpec};

/// The longest duration any policy key needs; longer values are almost always a unit mistake.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `"500ms"`, `"30s"`, `"2m"`, `"1h"`: a positive integer and one unit.
pub(crate) fn duration(s: &str) -> Result<Duration, Bad> {
    duration_within(s, MAX_DURATION, false)
}

/// The longest duration a daemon configuration key takes (a rotation grace period).
const MAX_CONFIG_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration of the daemon configuration: as [`duration`], plus days (`"7d"`), up to a year.
pub(crate) fn config_duration(s: &str) -> Result<Duration, Bad> {
    duration_within(s, MAX_CONFIG_DURATION, true)
}

fn duration_within(s: &str, max: Duration, days: bool) -> Result<Duration, Bad> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    let (hint, units) = if days {
        (
            "write a whole number and a unit: \"500ms\", \"30s\", \"2m\", \"1h\", \"7d\"",
            "units: ms, s, m, h, d",
        )
    } else {
        (
            "write a whole number and a unit: \"500ms\", \"30s\", \"2m\", \"1h\"",
            "units: ms, s, m, h",
        )
    };
    let n: u64 = match digits.parse() {
        Ok(n) if !digits.starts_with('+') => n,
        _ => return Err(Bad::new(format!("invalid duration \"{s}\"")).hint(hint)),
    };
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" if days => Duration::from_secs(n.saturating_mul(86_400)),
        "" => return Err(Bad::new(format!("duration \"{s}\" has no unit")).hint(hint)),
        _ => return Err(Bad::new(format!("unknown duration unit \"{unit}\"")).hint(units)),
    };
    if d.is_zero() {
        return Err(Bad::new("must be longer than zero"));
    }
    if d > max {
        let longest = if days { "365d" } else { "24h" };
        return Err(Bad::new(format!("\"{s}\" is longer than {longest}")));
    }
    Ok(d)
}

/// `"512MiB"`, `"1G"`, `"64k"`: binary units (K, M, G, T, KiB…) as systemd reads them, decimal
/// units (KB, MB, GB, TB) as powers of 1000, and `B` for bytes.
pub(crate) fn size(s: &str) -> Result<u64, Bad> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    let hint = "write a whole number and a unit: \"512MiB\", \"1G\", \"64KiB\"";
    let n: u64 = match digits.parse() {
        Ok(n) if !digits.starts_with('+') => n,
        _ => return Err(Bad::new(format!("invalid size \"{s}\"")).hint(hint)),
    };
    let factor: u64 = match unit {
        "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "" => return Err(Bad::new(format!("size \"{s}\" has no unit")).hint(hint)),
        _ => {
            let mut bad = Bad::new(format!("unknown size unit \"{unit}\""));
            if let Some(h) =
                crate::diag::suggest(unit, ["B", "KiB", "MiB", "GiB", "TiB", "KB", "MB", "GB"])
            {
                bad = bad.hint(h);
            }
            return Err(
                bad.hint("units: B, K/KiB, M/MiB, G/GiB, T/TiB (1024) or KB, MB, GB, TB (1000)")
            );
        }
    };
    match n.checked_mul(factor) {
        Some(0) => Err(Bad::new("must be larger than zero")),
        Some(b) => Ok(b),
        None => Err(Bad::new(format!("\"{s}\" is too large"))),
    }
}

/// The highest CPU number a cpuset may name (the kernel's default NR_CPUS on x86_64 is 8192,
/// but no installation box comes close to this).
const MAX_CPU: u32 = 1023;

/// `"2-3"`, `"0,2,4-5"`: merged into sorted, disjoint ranges.
pub(crate) fn cpuset(s: &str) -> Result<CpuSet, Bad> {
    let hint = "write CPU numbers and ranges: \"2-3\" or \"0,2,4-5\"";
    let mut ranges = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (Ok(a), Ok(b)) = (cpu_number(a), cpu_number(b)) else {
            return Err(Bad::new(format!("invalid CPU list \"{s}\"")).hint(hint));
        };
        if a > b {
            return Err(Bad::new(format!("range \"{part}\" runs backwards"))
                .hint(format!("write \"{b}-{a}\"")));
        }
        if b > MAX_CPU {
            return Err(Bad::new(format!("CPU {b} is above {MAX_CPU}")));
        }
        ranges.push((a, b));
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    Ok(CpuSet { ranges: merged })
}

fn cpu_number(s: &str) -> Result<u32, ()> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    s.parse().map_err(|_| ())
}

/// `[a-z0-9-]{1,32}`, not starting with `-` (the name is used in cgroup paths, metrics labels
/// and command lines, where a leading dash reads as an option).
pub(crate) fn name(s: &str) -> Result<Name, Bad> {
    let valid = !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        return Ok(Name(s.to_string()));
    }
    let mut bad = Bad::new(format!(
        "invalid name \"{s}\": use 1-32 of a-z, 0-9 and '-', not starting with '-'"
    ));
    let fixed: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let fixed = fixed.trim_start_matches('-');
    if !fixed.is_empty() && fixed.len() <= 32 && fixed != s {
        bad = bad.hint(format!("did you mean \"{fixed}\"?"));
    }
    Err(bad)
}

/// An absolute path, normalized: `.` and repeated or trailing slashes are dropped; `..` is
/// refused because Landlock and bind mounts act on what a path resolves to, and a `..` in a
/// grant almost always widens it by mistake.
pub(crate) fn abs_path(s: &str) -> Result<AbsPath, Bad> {
    if !s.starts_with('/') {
        return Err(
            Bad::new(format!("\"{s}\" is not an absolute path")).hint("paths start with '/'")
        );
    }
    if s.len() > 4096 {
        return Err(Bad::new("path is longer than 4096 bytes"));
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(s).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                return Err(Bad::new(format!("\"{s}\" contains \"..\""))
                    .hint("write the path without \"..\""));
            }
            Component::Prefix(_) => return Err(Bad::new(format!("\"{s}\" is not a Unix path"))),
        }
    }
    Ok(AbsPath(out))
}

/// A user name (not `root`) or a non-zero uid; `(uid_t)-1` and the 16-bit `-1` are refused
/// because the kernel and old tools read them as "no change".
pub(crate) fn user_name(s: &str) -> Result<UserSpec, Bad> {
    let valid = !s.is_empty()
        && s.len() <= 32
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        return Err(Bad::new(format!("invalid user name \"{s}\""))
            .hint("user names are like \"vitrine-viz\"; or write a uid as a number"));
    }
    if s == "root" {
        return Err(Bad::new("the visualization must not run as root")
            .hint("use an unprivileged account such as \"vitrine-viz\""));
    }
    Ok(UserSpec::Name(s.to_string()))
}

pub(crate) fn user_id(n: i64) -> Result<UserSpec, Bad> {
    match n {
        0 => Err(Bad::new("the visualization must not run as uid 0")
            .hint("use an unprivileged uid such as 65534")),
        1..=65534 | 65536..=4_294_967_294 => Ok(UserSpec::Uid(n as u32)),
        _ => Err(Bad::new(format!("{n} is not a usable uid"))),
    }
}

/// Characters OSC 1.0 reserves for patterns (and `#`, `,`, space) never appear in a real address.
const OSC_RESERVED: &[char] = &[' ', '#', '*', ',', '?', '[', ']', '{', '}'];

/// An OSC address or prefix: `/a/b`, printable ASCII, no pattern characters, no empty parts.
pub(crate) fn osc_address(s: &str) -> Result<String, Bad> {
    // The length first: the messages below quote the address.
    if s.len() > 255 {
        return Err(Bad::new("OSC address is longer than 255 bytes"));
    }
    if !s.starts_with('/') {
        return Err(Bad::new(format!("OSC address \"{s}\" must start with '/'"))
            .hint(format!("write \"/{s}\"")));
    }
    if let Some(c) = s.chars().find(|c| OSC_RESERVED.contains(c) || !c.is_ascii_graphic()) {
        return Err(Bad::new(format!("OSC address \"{s}\" contains '{}'", c.escape_default()))
            .hint("addresses cannot contain spaces or the pattern characters # * , ? [ ] { }"));
    }
    if s.len() == 1 || s.ends_with('/') || s.contains("//") {
        return Err(Bad::new(format!("OSC address \"{s}\" has an empty part")));
    }
    Ok(s.to_string())
}

/// A 64-digit hex SHA-256.
pub(crate) fn sha256(s: &str) -> Result<[u8; 32], Bad> {
    let hint = "the output of `sha256sum BINARY`, 64 hex digits";
    if s.len() != 64 {
        return Err(
            Bad::new(format!("sha256 must have 64 hex digits, found {}", s.len())).hint(hint)
        );
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| Bad::new("sha256 contains a non-hex character").hint(hint))?;
    Ok(out)
}

/// A minisign public key as minisign prints it (base64 of algorithm, key id and key).
pub(crate) fn minisign_key(s: &str) -> Result<String, Bad> {
    minisign_verify::PublicKey::from_base64(s).map(|_| s.to_string()).map_err(|_| {
        Bad::new("not a minisign public key")
            .hint("copy the second line of the .pub file, e.g. \"RWQf6LRCGA9i53ml…\"")
    })
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn env_name(s: &str) -> Result<(), Bad> {
    let ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok { Ok(()) } else { Err(Bad::new(format!("invalid environment variable name \"{s}\""))) }
}

/// `"local"` or a CIDR such as `"10.0.0.0/8"`; host bits must be zero.
pub(crate) fn net_rule(s: &str) -> Result<NetRule, Bad> {
    if s == "local" {
        return Ok(NetRule::Local);
    }
    let hint = "write \"local\" or a CIDR such as \"192.168.1.0/24\"";
    let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
    let addr: IpAddr =
        addr.parse().map_err(|_| Bad::new(format!("invalid network \"{s}\"")).hint(hint))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix {
        "" => max,
        p => p.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
            Bad::new(format!("invalid prefix length in \"{s}\""))
                .hint(format!("between 0 and {max}"))
        })?,
    };
    let network = mask(addr, prefix);
    if network != addr {
        return Err(Bad::new(format!("\"{s}\" has host bits set"))
            .hint(format!("did you mean \"{network}/{prefix}\"?")));
    }
    Ok(NetRule::Cidr { addr, prefix })
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failing unwrap is a failing test.
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(config_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(duration("1d").is_err() && config_duration("366d").is_err());
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in
            ["", "5", "ms", "-1s", "+1s", "1.5s", "0s", "3d", "25h", "1 s", "99999999999999999999s"]
        {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("512MiB").unwrap(), 512 << 20);
        assert_eq!(size("1G").unwrap(), 1 << 30);
        assert_eq!(size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(size("64k").unwrap(), 64 << 10);
        assert_eq!(size("10B").unwrap(), 10);
        assert_eq!(size("1Mib").unwrap_err().hints[0], "did you mean \"MiB\"?");
        for bad in ["", "512", "0MiB", "1.5G", "MiB", "99999999999T", "-1M"] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpusets() {
        assert_eq!(cpuset("2-3").unwrap().ranges, vec![(2, 3)]);
        assert_eq!(cpuset("4-5,0,2").unwrap().ranges, vec![(0, 0), (2, 2), (4, 5)]);
        assert_eq!(cpuset("0-2,1-4,5").unwrap().to_string(), "0-5");
        for bad in ["", "3-2", "a", "1,,2", "1-", "-1", "2048", "1 - 2"] {
            assert!(cpuset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(name("aurora-2").is_ok());
        assert!(name(&"a".repeat(32)).is_ok());
        assert!(name(&"a".repeat(33)).is_err());
        assert!(name("-x").is_err());
        assert!(name("").is_err());
        assert_eq!(
            name("Aurora_2").unwrap_err().hints,
            vec!["did you mean \"aurora-2\"?".to_string()]
        );
    }

    #[test]
    fn paths() {
        assert_eq!(abs_path("/opt//viz/./bin/").unwrap().to_string(), "/opt/viz/bin");
        assert_eq!(abs_path("/").unwrap().to_string(), "/");
        assert!(abs_path("opt/viz").is_err());
        assert!(abs_path("/opt/../etc").is_err());
        assert!(abs_path("").is_err());
    }

    #[test]
    fn users() {
        assert_eq!(user_name("vitrine-viz").unwrap(), UserSpec::Name("vitrine-viz".into()));
        assert!(user_name("root").is_err());
        assert!(user_name("Bob").is_err());
        assert_eq!(user_id(1000).unwrap(), UserSpec::Uid(1000));
        for bad in [0, -1, 65535, 4_294_967_295, 1 << 40] {
            assert!(user_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn osc_addresses() {
        assert!(osc_address("/speed").is_ok());
        assert!(osc_address("/a/b-c_d.e").is_ok());
        for bad in
            ["speed", "/", "/a/", "//a", "/a b", "/a*", "/a?", "/[ab]", "/{a,b}", "/a#", "/é"]
        {
            assert!(osc_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_and_keys() {
        assert!(sha256(&"ab".repeat(32)).is_ok());
        assert!(sha256(&"zz".repeat(32)).is_err());
        assert!(sha256("abc").is_err());
        assert!(minisign_key("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3").is_ok());
        assert!(minisign_key("RWQnotakey").is_err());
    }

    #[test]
    fn net_rules() {
        assert_eq!(net_rule("local").unwrap(), NetRule::Local);
        assert!(net_rule("10.0.0.0/8").is_ok());
        assert!(net_rule("fd00::/8").is_ok());
        assert!(net_rule("127.0.0.1").is_ok());
        assert_eq!(net_rule("10.1.0.0/8").unwrap_err().hints[0], "did you mean \"10.0.0.0/8\"?");
        for bad in ["10.0.0.0/33", "lan", "10.0.0/8", "::/129"] {
            assert!(net_rule(bad).is_err(), "{bad}");
        }
    }
}
