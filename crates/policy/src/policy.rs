//! Parsing one policy file into a [`Policy`]: every table of DESIGN §4, every error reported.

use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::LoadContext;
use crate::diag::{Bad, Diagnostic, Diagnostics, Report};
use crate::keys::{self, MAX_LANDLOCK_ABI};
use crate::model::*;
use crate::resolve::{Kind, resolve};
use crate::source::read_text;
use crate::values;
use crate::walk::{
    Fields, Val, array, boolean, checked, integer, list, number, one_of, string, type_error,
};
use crate::{grants, oscmidi, seccomp};

/// Parses TOML syntax, reporting every syntax error the parser can recover from.
pub(crate) fn parse_toml<'i>(r: &mut Report<'_>, text: &'i str) -> Option<Spanned<DeTable<'i>>> {
    let (root, errors) = DeTable::parse_recoverable(text);
    for e in &errors {
        r.error(e.span().unwrap_or(0..0), format!("TOML syntax: {}", e.message()));
    }
    errors.is_empty().then_some(root)
}

/// Parses a policy from its text; `path` names it in messages and anchors preset lookup.
pub(crate) fn parse_policy(
    path: &Path,
    text: &str,
    ctx: &LoadContext,
) -> Result<Policy, Diagnostics> {
    let mut r = Report::new(path, text);
    let mut others = Vec::new();
    let policy =
        parse_toml(&mut r, text).and_then(|root| build(&mut r, root.get_ref(), ctx, &mut others));
    let mut diags = r.finish();
    diags.extend(others);
    match policy {
        Some(p) if diags.is_empty() => Ok(p),
        _ => Err(Diagnostics(diags)),
    }
}

pub(crate) fn load_file(path: &Path, ctx: &LoadContext) -> Result<Policy, Diagnostics> {
    let text = read_text(path)?;
    parse_policy(path, &text, ctx)
}

fn build(
    r: &mut Report<'_>,
    root: &DeTable<'_>,
    ctx: &LoadContext,
    others: &mut Vec<Diagnostic>,
) -> Option<Policy> {
    let mut top = Fields::open(r, &keys::POLICY, Some(root), 0..0);
    if !top.has("visualization") {
        r.error(0..0, "missing table [visualization]")
            .hints
            .push("every policy starts with [visualization] with name and command".into());
    }
    let visualization = top.sub(r, "visualization").and_then(|f| visualization(r, f));
    let verify = top.sub(r, "verify").and_then(|f| verify(r, f, ctx));
    let restart = top.sub(r, "restart").and_then(|f| restart(r, f));
    let limits = top.sub(r, "limits").and_then(|f| limits(r, f));
    let sandbox = top.sub(r, "sandbox").and_then(|f| sandbox(r, f));
    let own = top.sub(r, "filesystem").and_then(|f| grants::read_grants(r, f));
    let network = top.sub(r, "network").and_then(|f| network(r, f));
    let syscalls = top.sub(r, "syscalls").and_then(|f| syscalls(r, f, ctx, others));
    let ipc = top.sub(r, "ipc").and_then(|f| ipc(r, f));
    let name = visualization.as_ref().map(|v| v.name.clone());
    let mut midi_params_ok = true;
    let mut osc = top.sub(r, "osc").and_then(|f| oscmidi::osc(r, f, name.as_ref()));
    let midi = match top.table(r, "midi") {
        Some((None, _)) => Some(None),
        Some((Some(t), at)) => {
            let f = Fields::open(r, &keys::MIDI, Some(t), at.clone());
            let midi = oscmidi::midi(r, f);
            if let (Some(osc), Some(midi)) = (osc.as_mut(), &midi) {
                midi_params_ok = oscmidi::add_midi_params(r, osc, midi, at);
            }
            midi.map(Some)
        }
        None => None,
    };
    top.finish();
    let filesystem = grants::merge(r, own?, r.path(), ctx, others);
    let policy = Policy {
        source: r.path().to_path_buf(),
        visualization: visualization?,
        verify: verify?,
        restart: restart?,
        limits: limits?,
        sandbox: sandbox?,
        filesystem: filesystem?,
        network: network?,
        syscalls: syscalls?,
        ipc: ipc?,
        osc: osc?,
        midi: midi?,
    };
    (reachable(r, root, &policy) && midi_params_ok).then_some(policy)
}

/// Paths the sandbox must be able to use are inside the effective grants: a working directory
/// outside them could not be entered, and with `exec_from = "file"` Landlock checks Execute on
/// the binary itself. Both would otherwise only fail at launch.
fn reachable(r: &mut Report<'_>, root: &DeTable<'_>, p: &Policy) -> bool {
    let fs = &p.filesystem;
    let within = |path: &AbsPath, grants: &[&Vec<AbsPath>]| {
        grants.iter().any(|g| g.iter().any(|root| path.as_path().starts_with(root.as_path())))
    };
    let mut ok = true;
    if let Some(dir) = &p.visualization.working_dir
        && !within(dir, &[&fs.read, &fs.read_write, &fs.exec])
    {
        r.error(
            span_of(root, "visualization", "working_dir"),
            format!("working_dir \"{dir}\" is not inside any [filesystem] grant"),
        )
        .hints
        .push("add it (or a parent) to read, read_write or exec".into());
        ok = false;
    }
    if p.verify.exec_from == ExecFrom::File && !within(&p.visualization.command, &[&fs.exec]) {
        r.error(
            span_of(root, "verify", "exec_from"),
            format!(
                "exec_from = \"file\" needs the command \"{}\" inside an exec grant",
                p.visualization.command
            ),
        )
        .hints
        .push("add its directory to [filesystem] exec, or use exec_from = \"memfd\"".into());
        ok = false;
    }
    ok
}

/// The span of `[table] key`'s value, or the file start.
fn span_of(root: &DeTable<'_>, table: &str, key: &str) -> std::ops::Range<usize> {
    match root.get(table).map(|t| t.get_ref()) {
        Some(DeValue::Table(t)) => t.get(key).map_or(0..0, |v| v.span()),
        _ => 0..0,
    }
}

fn visualization(r: &mut Report<'_>, mut f: Fields<'_, '_>) -> Option<Visualization> {
    let name = f.required(r, "name", |r, v| checked(r, v, values::name));
    let command = f.required(r, "command", |r, v| checked(r, v, values::abs_path));
    let args = f.get(r, "args", |r, v| list(r, v, string)).or(Vec::new());
    let env = f.get(r, "env", env).or(Default::default());
    let working_dir = f.get(r, "working_dir", |r, v| checked(r, v, values::abs_path)).optional();
    let enabled = f.get(r, "enabled", boolean).or(true);
    f.finish();
    Some(Visualization {
        name: name?,
        command: command?,
        args: args?,
        env: env?,
        working_dir: working_dir?,
        enabled: enabled?,
    })
}

fn env(r: &mut Report<'_>, v: &Val<'_>) -> Option<std::collections::BTreeMap<String, String>> {
    let DeValue::Table(t) = v.get_ref() else {
        type_error(r, v.span(), "a table of strings", v.get_ref());
        return None;
    };
    let mut out = std::collections::BTreeMap::new();
    let mut ok = true;
    for (k, val) in t {
        if let Err(bad) = values::env_name(k.get_ref()) {
            r.bad(k.span(), bad);
            ok = false;
        }
        match string(r, val) {
            Some(s) => {
                out.insert(k.get_ref().to_string(), s);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn verify(r: &mut Report<'_>, mut f: Fields<'_, '_>, ctx: &LoadContext) -> Option<Verify> {
    let sha256 = f.get(r, "sha256", |r, v| checked(r, v, values::sha256));
    let signature = f.get(r, "minisign_signature", |r, v| checked(r, v, values::abs_path));
    let keys =
        f.get(r, "minisign_keys", |r, v| array(r, v, |r, v| checked(r, v, values::minisign_key)));
    let exec_from = f.get(r, "exec_from", |r, v| one_of(r, v, keys::EXEC_FROM));
    f.finish();
    if let (Some(span), false) = (signature.span(), keys.is_present()) {
        r.error(span, "minisign_signature needs minisign_keys")
            .hints
            .push("add minisign_keys = [\"RWQ…\"]".into());
    }
    if let (Some(span), false) = (keys.span(), signature.is_present()) {
        r.error(span, "minisign_keys needs minisign_signature")
            .hints
            .push("add the path of the .minisig file".into());
    }
    if !sha256.is_present() && !signature.is_present() && !ctx.allow_unsigned {
        r.error(f.at(), "the binary is not verified: set sha256 or minisign_signature in [verify]")
            .hints
            .extend([
                "sha256 = the output of `sha256sum COMMAND`".into(),
                "or set allow_unsigned = true in the daemon configuration (not recommended)".into(),
            ]);
    }
    let exec_from = match exec_from.or("memfd")? {
        "file" => ExecFrom::File,
        _ => ExecFrom::Memfd,
    };
    Some(Verify {
        sha256: sha256.optional()?,
        minisign_signature: signature.optional()?,
        minisign_keys: keys.or(Vec::new())?.into_iter().map(|(k, _)| k).collect(),
        exec_from,
    })
}

fn restart(r: &mut Report<'_>, mut f: Fields<'_, '_>) -> Option<Restart> {
    let policy = f.get(r, "policy", |r, v| one_of(r, v, keys::RESTART_POLICIES)).or("on-failure");
    let duration = |r: &mut Report<'_>, v: &Val<'_>| checked(r, v, values::duration);
    let initial = f.get(r, "backoff_initial", duration);
    let initial_span = initial.span();
    let initial = initial.or(std::time::Duration::from_millis(500));
    let max = f.get(r, "backoff_max", duration).or(std::time::Duration::from_secs(30));
    let burst = f.get(r, "burst", |r, v| integer(r, v, 1, 1000)).or(5);
    let burst_window = f.get(r, "burst_window", duration).or(std::time::Duration::from_secs(60));
    let stop_timeout = f.get(r, "stop_timeout", duration).or(std::time::Duration::from_secs(5));
    f.finish();
    if let (Some(i), Some(m)) = (initial, max)
        && i > m
    {
        r.error(
            initial_span.unwrap_or(f.at()),
            format!("backoff_initial ({i:?}) is longer than backoff_max ({m:?})"),
        );
        return None;
    }
    Some(Restart {
        policy: match policy? {
            "always" => RestartPolicy::Always,
            "never" => RestartPolicy::Never,
            _ => RestartPolicy::OnFailure,
        },
        backoff_initial: initial?,
        backoff_max: max?,
        burst: burst? as u32,
        burst_window: burst_window?,
        stop_timeout: stop_timeout?,
    })
}

/// Less memory than this cannot start a dynamically linked program; a smaller value is a unit
/// mistake ("512K" for "512M").
const MIN_MEMORY: u64 = 4 << 20;

fn limits(r: &mut Report<'_>, mut f: Fields<'_, '_>) -> Option<Limits> {
    let memory = f
        .get(r, "memory", |r, v| unlimited_or(r, v, |r, v| checked(r, v, memory_size)))
        .or(Some(1 << 30));
    let cpu = f.get(r, "cpu", cores).optional();
    let cpuset = f.get(r, "cpuset", |r, v| checked(r, v, values::cpuset)).optional();
    let pids = f
        .get(r, "pids", |r, v| unlimited_or(r, v, |r, v| integer(r, v, 1, 4_194_304)))
        .or(Some(256));
    let open_files = f.get(r, "open_files", |r, v| integer(r, v, 16, 1_048_576)).or(256);
    let tmp_size = f.get(r, "tmp_size", |r, v| checked(r, v, tmp_size)).or(64 << 20);
    f.finish();
    Some(Limits {
        memory: memory?,
        cpu: cpu?,
        cpuset: cpuset?,
        pids: pids?.map(|p| p as u32),
        open_files: open_files? as u64,
        tmp_size: tmp_size?,
    })
}

fn memory_size(s: &str) -> Result<u64, Bad> {
    let b = values::size(s)?;
    if b < MIN_MEMORY {
        return Err(
            Bad::new(format!("memory \"{s}\" is below 4MiB")).hint("did you mean MiB or GiB?")
        );
    }
    Ok(b)
}

fn tmp_size(s: &str) -> Result<u64, Bad> {
    let b = values::size(s)?;
    if b < 1 << 20 {
        return Err(Bad::new(format!("tmp_size \"{s}\" is below 1MiB")));
    }
    Ok(b)
}

/// `"unlimited"` → `None`, otherwise the value read by `parse`.
fn unlimited_or<'a, 'i, T>(
    r: &mut Report<'_>,
    v: &'a Val<'i>,
    parse: impl FnOnce(&mut Report<'_>, &'a Val<'i>) -> Option<T>,
) -> Option<Option<T>> {
    match v.get_ref() {
        DeValue::String(s) if s == "unlimited" => Some(None),
        _ => parse(r, v).map(Some),
    }
}

fn cores(r: &mut Report<'_>, v: &Val<'_>) -> Option<f64> {
    let n = number(r, v)?;
    // cpu.max cannot express less than 1ms per 100ms period.
    if !(0.01..=1024.0).contains(&n) {
        r.error(v.span(), format!("{n} cores is outside 0.01 to 1024"));
        return None;
    }
    Some(n)
}

fn sandbox(r: &mut Report<'_>, mut f: Fields<'_, '_>) -> Option<Sandbox> {
    let user = f.get(r, "user", user).or(UserSpec::Name("vitrine-viz".into()));
    let landlock = f.get(r, "landlock", |r, v| one_of(r, v, keys::LANDLOCK_MODES)).or("required");
    let abi = f.get(r, "landlock_min_abi", |r, v| integer(r, v, 1, MAX_LANDLOCK_ABI)).or(1);
    f.finish();
    Some(Sandbox {
        user: user?,
        landlock: if landlock? == "best-effort" {
            LandlockMode::BestEffort
        } else {
            LandlockMode::Required
        },
        landlock_min_abi: abi? as u8,
    })
}

fn user(r: &mut Report<'_>, v: &Val<'_>) -> Option<UserSpec> {
    let res = match v.get_ref() {
        DeValue::String(s) => values::user_name(s),
        DeValue::Integer(_) => match integer(r, v, i64::MIN, i64::MAX) {
            Some(n) => values::user_id(n),
            None => return None,
        },
        other => {
            type_error(r, v.span(), "a user name or uid", other);
            return None;
        }
    };
    res.map_err(|bad| r.bad(v.span(), bad)).ok()
}

fn network(r: &mut Report<'_>, mut f: Fields<'_, '_>) -> Option<Network> {
    let mode = f.get(r, "mode", |r, v| one_of(r, v, keys::NETWORK_MODES)).or("none");
    f.finish();
    mode.map(|_| Network::None)
}

fn syscalls(
    r: &mut Report<'_>,
    mut f: Fields<'_, '_>,
    ctx: &LoadContext,
    others: &mut Vec<Diagnostic>,
) -> Option<Syscalls> {
    let profile = f.get(r, "profile", string);
    let profile_span = profile.span().unwrap_or(f.at());
    let profile = profile.or("default".to_string());
    let allow = f.get(r, "allow", |r, v| {
        array(r, v, |r, v| checked(r, v, |s| seccomp::syscall_name(s).map(|_| s.to_string())))
    });
    let action = f.get(r, "action", |r, v| one_of(r, v, keys::SECCOMP_ACTIONS)).or("kill");
    f.finish();
    let allow = allow.or(Vec::new())?;
    crate::walk::no_duplicates(r, &allow);
    let profile = profile?;
    let (profile_path, rules) = match resolve(Kind::Profile, &profile, r.path(), ctx) {
        Ok(path) => {
            let rules = read_text(&path)
                .map_err(|d| vec![d])
                .and_then(|t| seccomp::parse_profile(&path, &t));
            match rules {
                Ok(rules) => (path, rules),
                Err(diags) => {
                    others.extend(diags);
                    return None;
                }
            }
        }
        Err(bad) => {
            r.bad(profile_span, bad);
            return None;
        }
    };
    Some(Syscalls {
        profile,
        profile_path,
        rules,
        allow: allow.into_iter().map(|(s, _)| s).collect(),
        action: match action? {
            "errno" => SeccompAction::Errno,
            "log" => SeccompAction::Log,
            _ => SeccompAction::Kill,
        },
    })
}

fn ipc(r: &mut Report<'_>, mut f: Fields<'_, '_>) -> Option<Ipc> {
    let transport = f.get(r, "transport", |r, v| one_of(r, v, keys::TRANSPORTS)).or("udp");
    let port = f.get(r, "port", |r, v| integer(r, v, 1, 65535));
    let reply = f.get(r, "reply_port", |r, v| integer(r, v, 1, 65535));
    f.finish();
    if transport? == "fd" {
        for (key, field) in [("port", &port), ("reply_port", &reply)] {
            if let Some(span) = field.span() {
                r.error(span, format!("{key} is only used with transport = \"udp\""));
            }
        }
        return (!port.is_present() && !reply.is_present()).then_some(Ipc::Fd);
    }
    let reply_span = reply.span();
    let (port, reply_port) = (port.or(9000)?, reply.optional()?);
    if reply_port == Some(port) {
        r.error(reply_span.unwrap_or(f.at()), "reply_port must differ from port");
        return None;
    }
    Some(Ipc::Udp { port: port as u16, reply_port: reply_port.map(|p| p as u16) })
}
