//! The router end to end: datagrams in, canonical messages in the outboxes out.

#![allow(clippy::unwrap_used)] // A failing unwrap is a failing test.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use vitrine_osc::encode::{begin_bundle, encode_message, push_bundle_element};
use vitrine_osc::rate::SourceLimits;
use vitrine_osc::router::ntp_time;
use vitrine_osc::wire::{self, Arg};
use vitrine_osc::{Reason, Router, RouterConfig, TargetId};
use vitrine_policy::{Osc, OscParam, OutOfRange, ParamKind};

fn param(address: &str, kind: ParamKind) -> OscParam {
    OscParam { address: address.into(), kind, max_rate: None, coalesce: false }
}

fn schema(prefix: &str) -> Osc {
    Osc {
        prefix: prefix.into(),
        max_rate: 10_000,
        params: vec![
            param(
                "/speed",
                ParamKind::Float { range: Some((0.0, 10.0)), out_of_range: OutOfRange::Clamp },
            ),
            param(
                "/count",
                ParamKind::Int { range: Some((0, 100)), out_of_range: OutOfRange::Reject },
            ),
            param("/on", ParamKind::Bool),
            param(
                "/palette",
                ParamKind::String {
                    max_len: Some(8),
                    one_of: Some(vec!["warm".into(), "cold".into()]),
                },
            ),
            param("/name", ParamKind::String { max_len: Some(8), one_of: None }),
            param("/flash", ParamKind::Impulse),
            param("/data", ParamKind::Blob { max_len: 4 }),
            param("/tint", ParamKind::Color),
            param("/note", ParamKind::Midi),
        ],
    }
}

fn msg(address: &str, args: &[Arg<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(&mut out, address, args);
    out
}

const FROM: &str = "192.168.1.20:5000";

struct Fixture {
    router: Router,
    a: TargetId,
    b: TargetId,
    now: Instant,
}

impl Fixture {
    fn new(config: RouterConfig) -> Self {
        let now = Instant::now();
        let mut router = Router::new(config);
        let a = router.attach("aurora", &schema("/aurora"), now);
        let b = router.attach("tide", &schema("/tide"), now);
        Fixture { router, a, b, now }
    }

    fn send(&mut self, packet: &[u8]) -> vitrine_osc::Routed {
        self.router.route(packet, FROM.parse().unwrap(), self.now, SystemTime::now())
    }

    /// Drains an outbox into (address, args) pairs as rosc decodes them.
    fn drain(&mut self, id: TargetId) -> Vec<(String, Vec<rosc::OscType>)> {
        let outbox = self.router.outbox(id).unwrap();
        let mut out = Vec::new();
        while let Some(bytes) = outbox.front() {
            wire::check(bytes, 8192).expect("delivered packets are canonical");
            let (_, packet) = rosc::decoder::decode_udp(bytes).unwrap();
            let rosc::OscPacket::Message(m) = packet else { panic!("delivered a bundle") };
            out.push((m.addr, m.args));
            outbox.pop_front();
        }
        out
    }
}

use rosc::OscType as T;

#[test]
fn values_are_validated_and_prefix_stripped() {
    let mut f = Fixture::new(RouterConfig::default());
    type Case = (Vec<u8>, Option<(&'static str, T)>);
    let cases: Vec<Case> = vec![
        (msg("/aurora/speed", &[Arg::Float(2.5)]), Some(("/speed", T::Float(2.5)))),
        (msg("/aurora/speed", &[Arg::Float(99.0)]), Some(("/speed", T::Float(10.0)))),
        (msg("/aurora/speed", &[Arg::Int(3)]), Some(("/speed", T::Float(3.0)))),
        (msg("/aurora/speed", &[Arg::Double(-1.0)]), Some(("/speed", T::Float(0.0)))),
        (msg("/aurora/speed", &[Arg::Float(f32::NAN)]), None),
        (msg("/aurora/speed", &[Arg::Float(f32::INFINITY)]), None),
        (msg("/aurora/speed", &[Arg::Str(b"1")]), None),
        (msg("/aurora/speed", &[]), None),
        (msg("/aurora/speed", &[Arg::Float(1.0), Arg::Float(2.0)]), None),
        (msg("/aurora/count", &[Arg::Int(7)]), Some(("/count", T::Int(7)))),
        (msg("/aurora/count", &[Arg::Float(6.6)]), Some(("/count", T::Int(7)))),
        (msg("/aurora/count", &[Arg::Long(100)]), Some(("/count", T::Int(100)))),
        (msg("/aurora/count", &[Arg::Int(101)]), None),
        (msg("/aurora/on", &[Arg::True]), Some(("/on", T::Bool(true)))),
        (msg("/aurora/on", &[Arg::Float(0.0)]), Some(("/on", T::Bool(false)))),
        (msg("/aurora/on", &[Arg::Int(2)]), None),
        (
            msg("/aurora/palette", &[Arg::Str(b"warm")]),
            Some(("/palette", T::String("warm".into()))),
        ),
        (msg("/aurora/palette", &[Arg::Str(b"hot")]), None),
        (
            msg("/aurora/name", &[Arg::Symbol("né".as_bytes())]),
            Some(("/name", T::String("né".into()))),
        ),
        (msg("/aurora/name", &[Arg::Str(b"a\x1bb")]), None),
        (msg("/aurora/name", &[Arg::Str(b"\xff\xfe")]), None),
        (msg("/aurora/name", &[Arg::Str(b"123456789")]), None),
        (msg("/aurora/flash", &[]), Some(("/flash", T::Nil))),
        (msg("/aurora/flash", &[Arg::Infinitum]), Some(("/flash", T::Nil))),
        (msg("/aurora/flash", &[Arg::Int(1)]), None),
        (
            msg("/aurora/data", &[Arg::Blob(&[1, 2, 3, 4])]),
            Some(("/data", T::Blob(vec![1, 2, 3, 4]))),
        ),
        (msg("/aurora/data", &[Arg::Blob(&[1, 2, 3, 4, 5])]), None),
        (
            msg("/aurora/tint", &[Arg::Color([1, 2, 3, 4])]),
            Some(("/tint", T::Color(rosc::OscColor { red: 1, green: 2, blue: 3, alpha: 4 }))),
        ),
        (
            msg("/aurora/note", &[Arg::Midi([0, 0x90, 60, 9])]),
            Some((
                "/note",
                T::Midi(rosc::OscMidiMessage { port: 0, status: 0x90, data1: 60, data2: 9 }),
            )),
        ),
        (msg("/aurora/nope", &[Arg::Int(1)]), None),
        (msg("/speed", &[Arg::Float(1.0)]), None),
    ];
    let mut unknown = 0;
    for (packet, expected) in cases {
        let routed = f.send(&packet);
        unknown += routed.unknown;
        let got = f.drain(f.a);
        let got: Vec<_> =
            got.into_iter().map(|(a, mut args)| (a, args.pop().unwrap_or(T::Nil))).collect();
        let want: Vec<_> = expected.into_iter().map(|(a, v)| (a.to_owned(), v)).collect();
        assert_eq!(got, want, "packet {packet:?}");
        assert_eq!(routed.delivered as usize, want.len());
        assert_eq!(routed.rejected as usize, 1 - want.len());
    }
    assert_eq!(f.router.rejected(Reason::NotFinite), 2);
    assert_eq!(f.router.rejected(Reason::UnknownAddress), 2);
    // Only addresses no visualization has are offered onwards, not invalid values.
    assert_eq!(unknown, 2);
    assert_eq!(f.router.rejected(Reason::NotOneOf), 1);
    assert!(f.drain(f.b).is_empty());
}

#[test]
fn patterns_reach_known_addresses_of_several_visualizations() {
    let mut f = Fixture::new(RouterConfig::default());
    let routed = f.send(&msg("/*/speed", &[Arg::Float(1.0)]));
    assert_eq!(routed.delivered, 2);
    assert_eq!(f.drain(f.a), vec![("/speed".into(), vec![T::Float(1.0)])]);
    assert_eq!(f.drain(f.b), vec![("/speed".into(), vec![T::Float(1.0)])]);
    // One pattern, several params of one visualization, each validated on its own.
    let routed = f.send(&msg("/tide/{speed,count,on}", &[Arg::Int(1)]));
    assert_eq!((routed.delivered, routed.rejected), (3, 0));
    let got: Vec<String> = f.drain(f.b).into_iter().map(|(a, _)| a).collect();
    assert_eq!(got, ["/speed", "/count", "/on"]);
    let routed = f.send(&msg("/[!a]*/s?eed", &[Arg::Float(1.0)]));
    assert_eq!(routed.delivered, 1);
    assert_eq!(f.drain(f.b).len(), 1);
    let routed = f.send(&msg("/*/nothing*", &[Arg::Float(1.0)]));
    assert_eq!((routed.delivered, routed.rejected), (0, 1));
}

#[test]
fn bundles_are_flattened_and_far_future_dropped() {
    let mut f = Fixture::new(RouterConfig::default());
    let now = ntp_time(SystemTime::now());
    let mut inner = Vec::new();
    begin_bundle(&mut inner, now - (5 << 32));
    push_bundle_element(&mut inner, &msg("/aurora/count", &[Arg::Int(2)]));
    let mut outer = Vec::new();
    begin_bundle(&mut outer, 1);
    push_bundle_element(&mut outer, &msg("/aurora/count", &[Arg::Int(1)]));
    push_bundle_element(&mut outer, &inner);
    let mut future = Vec::new();
    begin_bundle(&mut future, now + (60 << 32));
    push_bundle_element(&mut future, &msg("/aurora/count", &[Arg::Int(3)]));
    push_bundle_element(&mut outer, &future);
    let mut soon = Vec::new();
    begin_bundle(&mut soon, now + (2 << 32));
    push_bundle_element(&mut soon, &msg("/aurora/count", &[Arg::Int(4)]));
    push_bundle_element(&mut outer, &soon);
    let routed = f.send(&outer);
    assert_eq!((routed.delivered, routed.rejected), (3, 1));
    let got: Vec<_> = f.drain(f.a).into_iter().map(|(_, a)| a[0].clone()).collect();
    assert_eq!(got, [T::Int(1), T::Int(2), T::Int(4)]);
    assert_eq!(f.router.rejected(Reason::FutureTimetag), 1);
}

#[test]
fn malformed_datagrams_deliver_nothing_and_count_their_reason() {
    let mut f = Fixture::new(RouterConfig::default());
    let mut b = Vec::new();
    begin_bundle(&mut b, 1);
    push_bundle_element(&mut b, &msg("/aurora/count", &[Arg::Int(1)]));
    push_bundle_element(&mut b, b"/x\0\0,q\0\0");
    let routed = f.send(&b);
    assert_eq!(routed.malformed, Some(Reason::UnknownTypeTag));
    assert_eq!(routed.delivered, 0);
    assert!(f.drain(f.a).is_empty());
    assert_eq!(f.router.rejected(Reason::UnknownTypeTag), 1);
}

#[test]
fn rates_per_param_visualization_and_source_then_block() {
    let config = RouterConfig {
        sources: SourceLimits {
            rate: 1000,
            violations: 5,
            cooldown: Duration::from_secs(30),
            max_sources: 16,
        },
        ..RouterConfig::default()
    };
    let mut f = Fixture::new(config);
    let mut osc = schema("/slow");
    osc.max_rate = 4;
    osc.params[1].max_rate = Some(2);
    let slow = f.router.attach("slow", &osc, f.now);
    let count = msg("/slow/count", &[Arg::Int(1)]);
    let speed = msg("/slow/speed", &[Arg::Int(1)]);
    assert_eq!(f.send(&count).delivered, 1);
    assert_eq!(f.send(&count).delivered, 1);
    assert_eq!(f.send(&count).delivered, 0, "param rate");
    assert_eq!(f.send(&speed).delivered, 1);
    assert_eq!(f.send(&speed).delivered, 1);
    assert_eq!(f.send(&speed).delivered, 0, "visualization rate");
    assert_eq!(f.router.rejected(Reason::RateParam), 1);
    assert_eq!(f.router.rejected(Reason::RateVisualization), 1);
    let mut blocked = None;
    for _ in 0..10 {
        blocked = blocked.or(f.send(&speed).blocked);
    }
    let blocked = blocked.expect("a source that keeps violating gets blocked");
    assert_eq!(blocked.source, "192.168.1.20".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(blocked.cooldown, Duration::from_secs(30));
    // Blocked for everything, even valid traffic to another visualization.
    assert_eq!(f.send(&msg("/tide/count", &[Arg::Int(1)])).delivered, 0);
    assert!(f.router.rejected(Reason::SourceBlocked) >= 1);
    // Another source is unaffected.
    let other: SocketAddr = "10.0.0.9:1".parse().unwrap();
    let routed =
        f.router.route(&msg("/tide/count", &[Arg::Int(1)]), other, f.now, SystemTime::now());
    assert_eq!(routed.delivered, 1);
    assert_eq!(f.drain(slow).len(), 4);
}

#[test]
fn slow_child_coalesces_and_drops_oldest() {
    let config = RouterConfig { outbox_capacity: 3, ..RouterConfig::default() };
    let mut f = Fixture::new(config);
    let mut osc = schema("/viz");
    osc.params[0].coalesce = true;
    let id = f.router.attach("viz", &osc, f.now);
    for i in 0..5 {
        f.send(&msg("/viz/speed", &[Arg::Float(i as f32)]));
    }
    for i in 0..4 {
        f.send(&msg("/viz/count", &[Arg::Int(i)]));
    }
    let got: Vec<_> = f.drain(id).into_iter().map(|(a, v)| (a, v[0].clone())).collect();
    assert_eq!(
        got,
        [("/count".into(), T::Int(1)), ("/count".into(), T::Int(2)), ("/count".into(), T::Int(3))]
    );
    let stats = f.router.target_stats().into_iter().find(|s| s.name == "viz").unwrap();
    assert_eq!((stats.dropped_coalesced, stats.dropped_full, stats.forwarded), (4, 2, 9));
}

#[test]
fn feedback_is_validated_prefixed_and_offered_to_recent_senders() {
    let mut f = Fixture::new(RouterConfig::default());
    f.send(&msg("/aurora/count", &[Arg::Int(1)]));
    let mut replies = Vec::new();
    let mut b = Vec::new();
    begin_bundle(&mut b, 1);
    push_bundle_element(&mut b, &msg("/speed", &[Arg::Float(20.0)]));
    push_bundle_element(&mut b, &msg("/unknown", &[Arg::Float(1.0)]));
    push_bundle_element(&mut b, &msg("/*", &[Arg::Float(1.0)]));
    let offered =
        f.router.feedback(f.a, &b, f.now, &mut |bytes| replies.push(bytes.to_vec())).unwrap();
    assert_eq!(offered, 1);
    let (_, p) = rosc::decoder::decode_udp(&replies[0]).unwrap();
    let rosc::OscPacket::Message(m) = p else { panic!() };
    assert_eq!((m.addr.as_str(), m.args), ("/aurora/speed", vec![T::Float(10.0)]));
    assert_eq!(f.router.subscribers(f.a, f.now), vec![FROM.parse::<SocketAddr>().unwrap()]);
    assert!(f.router.subscribers(f.b, f.now).is_empty());
    assert!(f.router.subscribers(f.a, f.now + Duration::from_secs(61)).is_empty());
}

#[test]
fn detach_and_reattach_by_name() {
    let mut f = Fixture::new(RouterConfig::default());
    f.router.detach(f.a);
    assert_eq!(f.send(&msg("/aurora/count", &[Arg::Int(1)])).delivered, 0);
    let again = f.router.attach("aurora", &schema("/aurora"), f.now);
    assert_eq!(f.router.find("aurora"), Some(again));
    assert_eq!(f.send(&msg("/aurora/count", &[Arg::Int(1)])).delivered, 1);
    let twice = f.router.attach("aurora", &schema("/aurora"), f.now);
    assert_eq!(f.router.find("aurora"), Some(twice));
    assert_eq!(
        f.send(&msg("/aurora/count", &[Arg::Int(1)])).delivered,
        1,
        "replaced, not duplicated"
    );
}
