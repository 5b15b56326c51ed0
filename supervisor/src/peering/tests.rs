use super::status::{
    MAX_REMOTE_PREFIXES, REPORT_EVERY, StatusDoc, check_prefixes, describe_refusals, documents,
    message_address,
};
use super::*;
use crate::events::Event;
use vitrine_policy::Discovery;

/// A daemon configuration with peering on, everything under `dir`, nothing on the network
/// but 127.0.0.1.
fn config(dir: &std::path::Path) -> Config {
    let mut c = vitrine_policy::default_config(None);
    c.state_dir = dir.join("state");
    c.control.socket = dir.join("control.sock");
    c.peering.enabled = true;
    c.peering.listen = "127.0.0.1:0".parse().expect("addr");
    c.peering.discovery = Discovery::Static;
    c.peering.site_key_file = dir.join("no-site.key");
    c
}

#[tokio::test]
async fn the_peer_socket_answers_the_cli_and_audits_changes() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = config(dir.path());
    let bus = EventBus::new();
    let mut events = bus.subscribe();
    let sink: OscSink = Arc::new(|_, _| {});
    let peering = start(&cfg, bus, None, sink).await.expect("start").expect("enabled");
    let path = socket_path(&cfg.control);
    let ask = |r: PeerRequest| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || request(&path, &r))
    };
    let Ok(PeerResponse::Identity { id, .. }) = ask(PeerRequest::Identity {}).await.expect("join")
    else {
        panic!("no identity answer");
    };
    assert_eq!(id, peering.service().id().to_string());
    assert!(cfg.state_dir.join("identity/key.pem").exists());
    let pairing = ask(PeerRequest::Pair { addr: None }).await.expect("join").expect("pair");
    assert_eq!(pairing, PeerResponse::Pairing { window_secs: 300 });
    let stranger = vitrine_peer::Identity::generate().expect("key").id();
    let bad = ask(PeerRequest::Accept { id: stranger.to_string(), code: 1, role: Role::Observer });
    let err = bad.await.expect("join").expect_err("no such pairing");
    assert!(err.to_string().contains("no pairing"), "{err}");
    let done = ask(PeerRequest::Forget { id: stranger.to_string() }).await.expect("join");
    assert!(matches!(done, Ok(PeerResponse::Done { .. })), "{done:?}");
    let Ok(PeerResponse::Peers { peers, forgotten, .. }) =
        ask(PeerRequest::List {}).await.expect("join")
    else {
        panic!("no list answer");
    };
    assert!(peers.is_empty());
    assert_eq!(forgotten.iter().map(|f| f.id.clone()).collect::<Vec<_>>(), [stranger.to_string()]);
    // The forget is audited (control action by uid 0) and reported as a peer event.
    let mut saw_action = false;
    let mut saw_forget = false;
    while !(saw_action && saw_forget) {
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), events.recv())
            .await
            .expect("events")
            .expect("bus");
        match &e.event {
            Event::ControlAction { verb, allowed: true, .. } if verb == "peers-forget" => {
                saw_action = true
            }
            Event::Peer { action, peer, .. } if action == "peer_forget" => {
                saw_forget = *peer == stranger.to_string()
            }
            _ => {}
        }
    }
    // A peer's status decides what this box relays to it: only running visualizations, only
    // when the peer says this box controls it, and never a prefix used here.
    let doc = |you_control: bool| {
        let v = |name: &str, state: &str| VisualizationState {
            name: name.into(),
            state: state.into(),
            osc_prefix: Some(format!("/{name}")),
        };
        let visualizations =
            vec![v("aurora", "running"), v("mist", "stopped"), v("dew", "running")];
        let doc = StatusDoc {
            id: stranger.to_string(),
            name: "b".into(),
            version: "0".into(),
            visualizations,
            you_control,
            osc_rate: None,
            osc_burst: None,
        };
        serde_json::to_vec(&doc).expect("serializes")
    };
    let remote = |p: &Peering| p.remote.read().expect("lock").get(&stranger).cloned();
    // Until this box knows its own prefixes, nothing is relayed.
    peering.learn(stranger, &doc(true));
    assert!(peering.relay_targets("/aurora/speed").is_empty());
    peering.unlearn(&stranger);
    peering.set_status(vec![], vec!["/dew".into()]);
    assert_eq!(peering.learn(stranger, &doc(false)), None);
    assert_eq!(remote(&peering), None);
    let refused = peering.learn(stranger, &doc(true)).expect("a refusal to report");
    assert!(refused.contains("\"/dew\": overlaps /dew, which a visualization"), "{refused}");
    assert_eq!(remote(&peering).map(|r| r.prefixes), Some(vec!["/aurora".to_string()]));
    // The same refusal again is not reported again.
    assert_eq!(peering.learn(stranger, &doc(true)), None);
    assert_eq!(peering.relay_targets("/aurora/speed"), [stranger]);
    assert!(peering.relay_targets("/dew/speed").is_empty());
    assert!(peering.relay_targets("/aurora").is_empty());
    assert!(peering.relay_targets("/aurora/*").is_empty());
    // A visualization that appears here later takes its prefix back from the peer at once.
    peering.set_status(vec![], vec!["/dew".into(), "/aurora/x".into()]);
    assert!(peering.relay_targets("/aurora/speed").is_empty());
    peering.unlearn(&stranger);
    assert_eq!(remote(&peering), None);
    assert_eq!(message_address(b"/aurora/speed\0\0\0,f\0\0"), Some("/aurora/speed"));
    assert_eq!(message_address(b"#bundle\0"), None);
    peering.shutdown();
}

#[test]
fn requests_and_answers_have_the_documented_shape() {
    let r: PeerRequest =
        serde_json::from_str(r#"{"verb":"accept","id":"X","code":42,"role":"controller"}"#)
            .expect("an accept request parses");
    assert_eq!(r, PeerRequest::Accept { id: "X".into(), code: 42, role: Role::Controller });
    assert!(serde_json::from_str::<PeerRequest>(r#"{"verb":"list","extra":1}"#).is_err());
    assert_eq!(
        serde_json::to_string(&PeerRequest::List {}).expect("serializes"),
        r#"{"verb":"list"}"#
    );
    assert_eq!(
        serde_json::from_str::<PeerRequest>(r#"{"verb":"rotate"}"#).ok(),
        Some(PeerRequest::Rotate {})
    );
    let json = serde_json::to_string(&PeerResponse::Pairing { window_secs: 300 })
        .expect("a response serializes");
    assert_eq!(json, r#"{"type":"pairing","window_secs":300}"#);
    assert!(PeerRequest::Rotate {}.mutates() && !PeerRequest::List {}.mutates());
}

#[test]
fn announced_prefixes_are_checked_like_local_ones() {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let checked = check_prefixes(
        &own(&["/", "", "/a/*", "/a b", "/a/", "/ok", "/ok/deeper", "/local/x", "/two"]),
        &own(&["/local"]),
        &[],
    );
    assert_eq!(checked.prefixes, own(&["/ok", "/two"]));
    let why = checked.refused.join("\n");
    assert_eq!(checked.refused.len(), 7, "{why}");
    for (prefix, reason) in [
        ("\"/\"", "not a valid OSC prefix"),
        ("\"\"", "not a valid OSC prefix"),
        ("\"/a/*\"", "not a valid OSC prefix"),
        ("\"/a b\"", "not a valid OSC prefix"),
        ("\"/a/\"", "not a valid OSC prefix"),
        ("\"/ok/deeper\"", "overlaps /ok, announced by the same peer"),
        ("\"/local/x\"", "overlaps /local, which a visualization on this box uses"),
    ] {
        assert!(why.contains(&format!("{prefix}: ")) && why.contains(reason), "{prefix}: {why}");
    }
    // A flood of prefixes is cut at the limit, and the rest is counted in one line.
    let many: Vec<String> = (0..MAX_REMOTE_PREFIXES + 10).map(|i| format!("/v{i}")).collect();
    let checked = check_prefixes(&many, &[], &[]);
    assert_eq!(checked.prefixes.len(), MAX_REMOTE_PREFIXES);
    assert_eq!(checked.refused, ["10 more prefix(es) beyond the 64 a peer may announce"]);
}

#[test]
fn observers_learn_what_runs_and_nothing_about_trust() {
    let me = vitrine_peer::PeerId::from_bytes([7; 32]);
    let running = VisualizationState {
        name: "aurora".into(),
        state: "running".into(),
        osc_prefix: Some("/aurora".into()),
    };
    let [(observer_role, observer), (controller_role, controller)] =
        documents(me, vec![running.clone()], (500, 1000));
    assert_eq!((observer_role, controller_role), (Role::Observer, Role::Controller));
    assert!(!observer.you_control && controller.you_control);
    assert_eq!(observer.visualizations[0].osc_prefix, None);
    assert_eq!(observer.visualizations[0].state, "running");
    assert_eq!(controller.visualizations, [running]);
    assert_eq!((controller.osc_rate, controller.osc_burst), (Some(500), Some(1000)));
    assert_eq!((observer.osc_rate, observer.osc_burst), (None, None));
    // The document names this box and nothing else: no list of who may control it.
    let json: serde_json::Value = serde_json::to_value(&observer).expect("serializes");
    let keys: Vec<&String> = json.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["id", "name", "version", "visualizations", "you_control"]);
}

#[test]
fn refusals_never_echo_raw_peer_text_and_stay_short() {
    // A prefix without its '/' used to be quoted whole by the policy parser, newlines and all.
    let nasty = format!("aurora\n\x1b[31m{}", "x".repeat(60_000));
    let checked = check_prefixes(&[nasty.clone(), "/a/*".into()], &[], &[]);
    let line = describe_refusals(&checked.refused);
    assert!(line.len() <= 1024, "{}", line.len());
    assert!(!line.contains('\n') && !line.contains('\x1b'), "{line}");
    // Many long refusals are cut too.
    let many: Vec<String> = (0..40).map(|i| format!("/{i}/{}", "?".repeat(200))).collect();
    let line = describe_refusals(&check_prefixes(&many, &[], &[]).refused);
    assert!(line.len() <= 1024 && line.ends_with("..."), "{line}");
}

#[test]
fn a_prefix_another_peer_holds_is_refused() {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let checked = check_prefixes(&own(&["/aurora/x", "/dew"]), &[], &own(&["/aurora"]));
    assert_eq!(checked.prefixes, own(&["/dew"]));
    assert!(checked.refused[0].contains("another peer announced first"), "{:?}", checked.refused);
}

#[tokio::test]
async fn two_peers_never_share_a_prefix_and_refusals_are_reported_once_a_minute() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink: OscSink = Arc::new(|_, _| {});
    let peering = start(&config(dir.path()), EventBus::new(), None, sink)
        .await
        .expect("start")
        .expect("enabled");
    let (b, c) =
        (vitrine_peer::PeerId::from_bytes([2; 32]), vitrine_peer::PeerId::from_bytes([3; 32]));
    let doc = |prefixes: &[&str]| {
        let visualizations = prefixes
            .iter()
            .map(|p| VisualizationState {
                name: "v".into(),
                state: "running".into(),
                osc_prefix: Some((*p).into()),
            })
            .collect();
        let doc = StatusDoc {
            id: String::new(),
            name: "peer".into(),
            version: "0".into(),
            visualizations,
            you_control: true,
            osc_rate: Some(10),
            osc_burst: Some(2),
        };
        serde_json::to_vec(&doc).expect("serializes")
    };
    peering.set_local_prefixes(vec![]);
    assert_eq!(peering.learn(b, &doc(&["/aurora"])), None);
    // C claims what B holds: B keeps it, C is refused, nothing is relayed to C.
    let refused = peering.learn(c, &doc(&["/aurora/speed"])).expect("reported");
    assert!(refused.contains("another peer announced first"), "{refused}");
    assert_eq!(peering.relay_targets("/aurora/speed/x"), [b]);
    // B announcing it again does not lose it to C.
    assert_eq!(peering.learn(b, &doc(&["/aurora"])), None);
    assert_eq!(peering.relay_targets("/aurora/speed/x"), [b]);
    // C alternating between two refused announcements: reported once a minute at most, and the
    // next report counts what was held back.
    for i in 0..10 {
        let bad = if i % 2 == 0 { "/x/*" } else { "/y/*" };
        assert_eq!(peering.learn(c, &doc(&[bad])), None);
    }
    let later = std::time::Instant::now() + REPORT_EVERY;
    let report = peering.throttle(c, "OSC prefixes refused: x".into(), later).expect("due");
    assert!(report.ends_with("(10 earlier change(s) not reported)"), "{report}");
    // Relaying to B stays under the rate B announced (a tenth below): 2 at once, then dropped.
    // B has no link, so what is sent fails; what counts is that the bucket was consulted.
    let packet = b"/aurora/speed\0\0\0,f\0\0\0\0\0\0";
    for _ in 0..5 {
        peering.relay(packet);
    }
    assert_eq!(peering.relay_dropped(), 3);
    peering.shutdown();
}
