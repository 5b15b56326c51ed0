//! Every error class with its exact line and column.

#![allow(clippy::unwrap_used)] // A failing unwrap is a failing test.

mod common;

use common::{BASE, errors, parse};

/// (appended to BASE, expected "LINE:COL: message" prefix of the first diagnostic); BASE has
/// five lines, so appended text starts on line 6.
const CASES: &[(&str, &str)] = &[
    // Unknown keys and tables, with "did you mean".
    ("[limits]\nmemroy = \"1G\"\n", "7:1: unknown key \"memroy\" in [limits]"),
    ("[limit]\n", "6:2: unknown table or key \"limit\""),
    ("[visualization.env]\nA = 1\n", "7:5: expected a string, found an integer"),
    // Types.
    ("[restart]\nburst = \"5\"\n", "7:9: expected an integer, found a string"),
    ("[restart]\nburst = 0\n", "7:9: must be between 1 and 1000"),
    ("[restart]\npolicy = \"allways\"\n", "7:10: unknown value \"allways\""),
    // Durations.
    ("[restart]\nstop_timeout = \"5\"\n", "7:16: duration \"5\" has no unit"),
    ("[restart]\nstop_timeout = \"5d\"\n", "7:16: unknown duration unit \"d\""),
    (
        "[restart]\nbackoff_initial = \"1m\"\nbackoff_max = \"10s\"\n",
        "7:19: backoff_initial (60s) is longer than backoff_max (10s)",
    ),
    // Sizes, cores, cpusets, pids.
    ("[limits]\nmemory = \"512\"\n", "7:10: size \"512\" has no unit"),
    ("[limits]\nmemory = \"512K\"\n", "7:10: memory \"512K\" is below 4MiB"),
    ("[limits]\ntmp_size = \"1Q\"\n", "7:12: unknown size unit \"Q\""),
    ("[limits]\ncpu = 0.0\n", "7:7: 0 cores is outside 0.01 to 1024"),
    ("[limits]\ncpu = \"2\"\n", "7:7: expected a number, found a string"),
    ("[limits]\ncpuset = \"0,,2\"\n", "7:10: invalid CPU list \"0,,2\""),
    ("[limits]\npids = \"lots\"\n", "7:8: expected an integer, found a string"),
    // Names, paths, users.
    ("[visualization]\n", "6:2: TOML syntax"),
    ("[sandbox]\nuser = \"root\"\n", "7:8: the visualization must not run as root"),
    ("[sandbox]\nuser = 0\n", "7:8: the visualization must not run as uid 0"),
    ("[sandbox]\nlandlock_min_abi = 9\n", "7:20: must be between 1 and 7"),
    (
        "[filesystem]\nread = [\"/opt/a\", \"relative\"]\n",
        "7:19: \"relative\" is not an absolute path",
    ),
    ("[filesystem]\nexec = [\"/opt/../bin\"]\n", "7:9: \"/opt/../bin\" contains \"..\""),
    ("[filesystem]\nread = [\"/dev/sda\"]\n", "7:9: \"/dev/sda\" is under /dev"),
    ("[filesystem]\ndevices = [\"/dev/mem\"]\n", "7:12: \"/dev/mem\" exposes host memory"),
    ("[filesystem]\npresets = [\"fontz\"]\n", "7:12: unknown preset \"fontz\""),
    // Syscalls.
    (
        "[syscalls]\nallow = [\"memfd_create\", \"memfd_creat\"]\n",
        "7:26: unknown syscall \"memfd_creat\" (x86_64)",
    ),
    ("[syscalls]\nallow = [\"mount\"]\n", "7:10: syscall \"mount\" is never allowed"),
    ("[syscalls]\nallow = [\"kcmp\", \"kcmp\"]\n", "7:18: \"kcmp\" is listed twice"),
    ("[syscalls]\nprofile = \"defualt\"\n", "7:11: unknown seccomp profile \"defualt\""),
    ("[syscalls]\naction = \"trap\"\n", "7:10: unknown value \"trap\""),
    // IPC.
    ("[ipc]\ntransport = \"fd\"\nport = 9000\n", "8:8: port is only used with transport = \"udp\""),
    ("[ipc]\nport = 70000\n", "7:8: must be between 1 and 65535"),
    ("[ipc]\nport = 9000\nreply_port = 9000\n", "8:14: reply_port must differ from port"),
    // OSC.
    ("[osc]\nprefix = \"/a*\"\n", "7:10: OSC address \"/a*\" contains '*'"),
    ("[[osc.params]]\naddress = \"/x\"\n", "6:1: missing required key \"type\""),
    (
        "[[osc.params]]\ntype = \"float\"\n",
        "6:1: missing required key \"address\" in [[osc.params]]",
    ),
    (
        "[[osc.params]]\naddress = \"/x\"\ntype = \"bool\"\nrange = [0, 1]\n",
        "9:9: \"range\" is not allowed for type \"bool\"",
    ),
    (
        "[[osc.params]]\naddress = \"/x\"\ntype = \"float\"\nrange = [1.0, 1.0]\n",
        "9:9: range minimum 1 is not below maximum 1",
    ),
    (
        "[[osc.params]]\naddress = \"/x\"\ntype = \"float\"\nrange = [0.0]\n",
        "9:9: range needs exactly two numbers",
    ),
    (
        "[[osc.params]]\naddress = \"/x\"\ntype = \"int\"\nrange = [0, 1.5]\n",
        "9:13: expected an integer, found a float",
    ),
    (
        "[[osc.params]]\naddress = \"/x\"\ntype = \"float\"\nout_of_range = \"clamp\"\n",
        "9:16: \"out_of_range\" needs a \"range\"",
    ),
    (
        "[[osc.params]]\naddress = \"/x\"\ntype = \"int\"\nmax_len = 4\n",
        "9:11: \"max_len\" is not allowed for type \"int\"",
    ),
    (
        "[[osc.params]]\naddress = \"/x\"\ntype = \"blob\"\none_of = [\"a\"]\n",
        "9:10: \"one_of\" is not allowed for type \"blob\"",
    ),
    (
        "[[osc.params]]\naddress = \"/x\"\ntype = \"string\"\nmax_len = 2\none_of = [\"abc\"]\n",
        "10:11: \"abc\" is longer than max_len",
    ),
    ("[[osc.params]]\naddress = \"/x\"\ntype = \"text\"\n", "8:8: unknown value \"text\""),
    (
        "[[osc.params]]\naddress = \"/x\"\ntype = \"bool\"\n[[osc.params]]\naddress = \"/x\"\ntype = \"int\"\n",
        "10:11: address \"/x\" is already declared on line 7",
    ),
    (
        "[osc]\nmax_rate = 100\n[[osc.params]]\naddress = \"/x\"\ntype = \"bool\"\nmax_rate = 200\n",
        "11:12: max_rate 200 is above the visualization's [osc] max_rate 100",
    ),
    // MIDI.
    ("[midi]\nchannels = [0]\n", "7:13: must be between 1 and 16"),
    ("[midi]\nchannels = [1, 1]\n", "7:16: \"1\" is listed twice"),
    ("[midi]\nmessages = [\"sysex\"]\n", "7:13: unknown value \"sysex\""),
    ("[midi]\nmessages = []\n", "7:12: messages = [] accepts no MIDI at all"),
    (
        "[[osc.params]]\naddress = \"/midi\"\ntype = \"float\"\n[midi]\n",
        "9:2: [midi] delivers MIDI at /midi, which [[osc.params]] declares with another type",
    ),
];

#[test]
fn each_error_class_has_its_exact_position() {
    assert!(errors(BASE).is_empty(), "{:?}", errors(BASE));
    let mut failures = Vec::new();
    for (case, expected) in CASES {
        let got = errors(&format!("{BASE}{case}"));
        if !got.first().is_some_and(|g| g.starts_with(expected)) {
            failures.push(format!("case {case:?}\n  expected {expected}\n  got      {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn verification_is_required_unless_allowed() {
    let text = "[visualization]\nname = \"t\"\ncommand = \"/opt/t\"\n";
    assert_eq!(
        errors(text),
        vec!["1:1: the binary is not verified: set sha256 or minisign_signature in [verify]"]
    );
    let text =
        "[visualization]\nname = \"t\"\ncommand = \"/opt/t\"\n[verify]\nexec_from = \"memfd\"\n";
    assert_eq!(
        errors(text)[0],
        "4:2: the binary is not verified: set sha256 or minisign_signature in [verify]"
    );
    let mut ctx = common::ctx();
    ctx.allow_unsigned = true;
    let path = common::repo().join("policies/examples/test.toml");
    assert!(vitrine_policy::parse_policy_bytes(text.as_bytes(), &path, &ctx).is_ok());
}

#[test]
fn minisign_needs_keys_and_signature() {
    let head = "[visualization]\nname = \"t\"\ncommand = \"/opt/t\"\n[verify]\n";
    let text = format!("{head}minisign_signature = \"/opt/t.minisig\"\n");
    assert_eq!(errors(&text), vec!["5:22: minisign_signature needs minisign_keys"]);
    let text = format!("{head}minisign_keys = [\"RWQnot\"]\n");
    assert!(
        errors(&text).contains(&"5:18: not a minisign public key".to_string()),
        "{:?}",
        errors(&text)
    );
}

#[test]
fn missing_visualization_is_named() {
    assert_eq!(errors("")[0], "1:1: missing table [visualization]");
    let text = "[verify]\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n[visualization]\nname = \"t\"\n";
    assert_eq!(errors(text), vec!["3:2: missing required key \"command\" in [visualization]"]);
}

#[test]
fn every_error_of_a_file_is_reported_in_order() {
    let text = format!(
        "{BASE}[limits]\nmemroy = \"1G\"\ncpu = -1\n[sandbox]\nuser = \"root\"\n[ipc]\nport = 0\n"
    );
    let got = errors(&text);
    assert_eq!(got.len(), 4, "{got:?}");
    let lines: Vec<&str> = got.iter().map(|g| g.split(':').next().unwrap()).collect();
    assert_eq!(lines, ["7", "8", "10", "12"]);
}

#[test]
fn hints_name_the_fix() {
    let d = parse(&format!("{BASE}[limits]\nmemroy = \"1G\"\n")).unwrap_err();
    assert_eq!(d.0[0].hints, vec!["did you mean \"memory\"?".to_string()]);
    let d = parse(&format!("{BASE}[syscalls]\naction = \"kil\"\n")).unwrap_err();
    assert_eq!(
        d.0[0].hints,
        vec![
            "did you mean \"kill\"?".to_string(),
            "allowed values: \"kill\", \"errno\", \"log\"".to_string()
        ]
    );
    let d = parse(&format!("{BASE}[filesystem]\npresets = [\"gpu-rendr\"]\n")).unwrap_err();
    let hints = &d.0[0].hints;
    assert_eq!(hints[0], "did you mean \"gpu-render\"?");
    assert!(hints[1].starts_with("available: alsa, fonts, gpu-kms, gpu-render"), "{hints:?}");
    let text = d.to_string();
    assert!(
        text.contains("test.toml:7:12: error: unknown preset \"gpu-rendr\"\n  hint: did you mean"),
        "{text}"
    );
}

#[test]
fn invalid_utf8_and_huge_input_are_diagnostics() {
    let path = common::repo().join("policies/examples/x.toml");
    let d = vitrine_policy::parse_policy_bytes(
        b"[visualization]\nname = \"\xff\"\n",
        &path,
        &common::ctx(),
    )
    .unwrap_err();
    assert!(d.0[0].message.contains("not valid UTF-8"), "{d}");
    let big = vec![b' '; 2 << 20];
    assert!(vitrine_policy::parse_policy_bytes(&big, &path, &common::ctx()).is_err());
}

#[test]
fn defaults_are_secure() {
    let p = parse(BASE).unwrap();
    assert_eq!(p.restart.policy, vitrine_policy::RestartPolicy::OnFailure);
    assert_eq!(p.restart.backoff_initial, std::time::Duration::from_millis(500));
    assert_eq!(p.limits.memory, Some(1 << 30));
    assert_eq!(p.limits.pids, Some(256));
    assert_eq!(p.limits.open_files, 256);
    assert_eq!(p.limits.tmp_size, 64 << 20);
    assert_eq!(p.sandbox.landlock, vitrine_policy::LandlockMode::Required);
    assert_eq!(p.syscalls.action, vitrine_policy::SeccompAction::Kill);
    assert_eq!(p.syscalls.profile, "default");
    assert_eq!(p.verify.exec_from, vitrine_policy::ExecFrom::Memfd);
    assert_eq!(p.filesystem.presets, vec!["system-libs".to_string()]);
    assert_eq!(p.ipc, vitrine_policy::Ipc::Udp { port: 9000, reply_port: None });
    assert_eq!(p.osc.prefix, "/t");
    assert_eq!(p.osc.max_rate, 2000);
    assert!(p.midi.is_none());
    assert!(p.visualization.env.is_empty());
}

#[test]
fn midi_implies_its_osc_parameters() {
    use vitrine_policy::{OscParam, ParamKind};
    let p = parse(&format!("{BASE}[midi]\n")).unwrap();
    let midi = OscParam {
        address: "/midi".into(),
        kind: ParamKind::Midi,
        max_rate: None,
        coalesce: false,
    };
    assert_eq!(p.osc.params, std::slice::from_ref(&midi));

    let p = parse(&format!("{BASE}[midi]\nsysex = true\n")).unwrap();
    let sysex = OscParam {
        address: "/midi/sysex".into(),
        kind: ParamKind::Blob { max_len: 257 },
        max_rate: None,
        coalesce: false,
    };
    assert_eq!(p.osc.params, [midi.clone(), sysex]);

    // A declared /midi of the right type is kept as written (here with its own rate).
    let own = "[[osc.params]]\naddress = \"/midi\"\ntype = \"midi\"\nmax_rate = 50\n[midi]\n";
    let p = parse(&format!("{BASE}{own}")).unwrap();
    assert_eq!(p.osc.params, [OscParam { max_rate: Some(50), ..midi }]);

    assert!(parse(BASE).unwrap().osc.params.is_empty(), "no [midi], no /midi");
}

#[test]
fn working_dir_and_file_exec_must_be_granted() {
    let head = "[visualization]\nname = \"t\"\ncommand = \"/opt/t/bin/t\"\nworking_dir = \"/srv/t\"\n[verify]\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nexec_from = \"file\"\n";
    assert_eq!(
        errors(head),
        [
            "4:15: working_dir \"/srv/t\" is not inside any [filesystem] grant",
            "7:13: exec_from = \"file\" needs the command \"/opt/t/bin/t\" inside an exec grant",
        ]
    );
    let granted = format!("{head}[filesystem]\nread = [\"/srv\"]\nexec = [\"/opt/t/bin\"]\n");
    assert!(errors(&granted).is_empty(), "{:?}", errors(&granted));
}
