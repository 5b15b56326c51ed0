//! A regression corpus of malformed datagrams: each is refused whole, with its reason, and
//! never panics. Valid neighbours are accepted so the checks are not simply refusing all.

#![allow(clippy::unwrap_used)] // A failing unwrap is a failing test.

use vitrine_osc::Reason;
use vitrine_osc::encode::{begin_bundle, encode_message, push_bundle_element};
use vitrine_osc::wire::{self, Arg, MAX_BUNDLE_DEPTH};

const MAX: usize = 8192;

fn msg(address: &str, args: &[Arg<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(&mut out, address, args);
    out
}

fn nested(depth: usize, inner: &[u8]) -> Vec<u8> {
    let mut packet = inner.to_vec();
    for _ in 0..depth {
        let mut b = Vec::new();
        begin_bundle(&mut b, 1);
        push_bundle_element(&mut b, &packet);
        packet = b;
    }
    packet
}

fn check(p: &[u8]) -> Result<(), Reason> {
    wire::check(p, MAX)
}

#[test]
fn valid_messages_pass() {
    assert_eq!(check(&msg("/a", &[])), Ok(()));
    let all = [
        Arg::Int(-1),
        Arg::Long(1 << 40),
        Arg::Float(0.5),
        Arg::Double(0.25),
        Arg::Str(b"abc"),
        Arg::Symbol(b"abcd"),
        Arg::Blob(&[1, 2, 3, 4, 5]),
        Arg::Time(7),
        Arg::True,
        Arg::False,
        Arg::Nil,
        Arg::Infinitum,
        Arg::Char(65),
        Arg::Color([1, 2, 3, 4]),
        Arg::Midi([0, 0x90, 60, 100]),
    ];
    let p = msg("/all/types", &all);
    let mut seen = Vec::new();
    wire::for_each_message(&p, MAX, &mut |_, m| seen.extend(m.args())).unwrap();
    assert_eq!(seen, all);
}

#[test]
fn size_and_alignment() {
    let p = msg("/a", &[Arg::Int(1)]);
    assert_eq!(check(&[]), Err(Reason::Truncated));
    assert_eq!(check(&p[..p.len() - 1]), Err(Reason::Misaligned));
    assert_eq!(check(&p[..p.len() - 4]), Err(Reason::Truncated));
    assert_eq!(wire::check(&p, p.len() - 1), Err(Reason::Oversized));
    assert_eq!(check(&vec![b'/'; MAX + 4]), Err(Reason::Oversized));
}

#[test]
fn strings() {
    assert_eq!(check(b"/abc"), Err(Reason::UnterminatedString));
    assert_eq!(check(b"/ab\0\0\0\0\0"), Err(Reason::BadTypeTag), "missing type tags");
    assert_eq!(check(b"/ab\0,\0\0\0"), Ok(()));
    assert_eq!(check(b"/a\0x,\0\0\0"), Err(Reason::BadPadding));
    assert_eq!(check(b"/ab\0,s\0\0abcd"), Err(Reason::UnterminatedString));
    assert_eq!(check(b"/ab\0,s\0\0ab\0\x01"), Err(Reason::BadPadding));
    assert_eq!(check(b"ab\0\0,\0\0\0"), Err(Reason::BadAddress));
    assert_eq!(check(b"/a b\0\0\0\0,\0\0\0"), Err(Reason::BadAddress));
    assert_eq!(check(b"/\xc3\xa9\0,\0\0\0"), Err(Reason::BadAddress));
    assert_eq!(check(b"#bun\0\0\0\0"), Err(Reason::BadAddress));
    assert_eq!(check(b"#bundle\0"), Err(Reason::Truncated), "no timetag");
}

#[test]
fn type_tags() {
    assert_eq!(check(b"/ab\0i\0\0\0"), Err(Reason::BadTypeTag));
    assert_eq!(check(b"/ab\0,x\0\0"), Err(Reason::UnknownTypeTag));
    assert_eq!(check(b"/ab\0,[i]\0\0\0\0\0\0\0\x01"), Err(Reason::UnsupportedTypeTag));
    assert_eq!(check(b"/ab\0,i\0\0"), Err(Reason::Truncated), "argument missing");
    assert_eq!(check(b"/ab\0,i\0\0\0\0\0\x01\0\0\0\0"), Err(Reason::TrailingBytes));
}

#[test]
fn blobs() {
    assert_eq!(check(b"/ab\0,b\0\0\0\0\0\x02ab\0\0"), Ok(()));
    assert_eq!(check(b"/ab\0,b\0\0\0\0\0\x09ab\0\0"), Err(Reason::BlobOverflow));
    assert_eq!(check(b"/ab\0,b\0\0\xff\xff\xff\xffab\0\0"), Err(Reason::BlobOverflow));
    assert_eq!(check(b"/ab\0,b\0\0\0\0\0\x03abc\0"), Ok(()));
    assert_eq!(check(b"/ab\0,b\0\0\0\0\0\x02ab\0\x01"), Err(Reason::BadPadding));
}

#[test]
fn bundles() {
    let m = msg("/a", &[Arg::Int(1)]);
    assert_eq!(check(&nested(MAX_BUNDLE_DEPTH, &m)), Ok(()));
    assert_eq!(check(&nested(MAX_BUNDLE_DEPTH + 1, &m)), Err(Reason::BundleTooDeep));
    assert_eq!(check(&nested(1, &[])), Err(Reason::Truncated), "empty element");
    let mut b = Vec::new();
    begin_bundle(&mut b, 1);
    assert_eq!(check(&b), Ok(()), "an empty bundle is valid and carries nothing");
    push_bundle_element(&mut b, &m);
    let mut over = b.clone();
    over[19] += 4;
    assert_eq!(check(&over), Err(Reason::ElementOverflow));
    let mut odd = b.clone();
    odd[19] -= 1;
    assert_eq!(check(&odd), Err(Reason::Misaligned));
    let mut bad = b.clone();
    bad[1] = b'x';
    assert_eq!(check(&bad), Err(Reason::BadAddress));
    b.extend_from_slice(&[0, 0, 0]);
    assert_eq!(check(&b[..b.len() - 3]), Ok(()));
    assert_eq!(check(&b[..b.len() - 1]), Err(Reason::Misaligned));
}

#[test]
fn thousands_of_nested_bundles_are_refused_without_recursing() {
    // ~64 KB and 4000 levels: a recursive decoder overflows a 2 MiB stack on this.
    let p = nested(4000, &msg("/a", &[]));
    assert!(p.len() > 60_000);
    assert_eq!(wire::check(&p, p.len()), Err(Reason::BundleTooDeep));
    // Headers only, each claiming the rest as its element.
    let mut raw = Vec::new();
    for i in 0..4000u32 {
        raw.extend_from_slice(b"#bundle\0\0\0\0\0\0\0\0\x01");
        raw.extend_from_slice(&((4000 - i - 1) * 20 + 8).to_be_bytes());
    }
    raw.extend_from_slice(b"/a\0\0,\0\0\0");
    assert_eq!(wire::check(&raw, raw.len()), Err(Reason::BundleTooDeep));
}

#[test]
fn nothing_is_visited_when_a_later_element_is_bad() {
    let mut b = Vec::new();
    begin_bundle(&mut b, 1);
    push_bundle_element(&mut b, &msg("/ok", &[Arg::Int(1)]));
    push_bundle_element(&mut b, b"/bad\0\0\0\0,x\0\0");
    let mut visited = 0;
    assert_eq!(
        wire::for_each_message(&b, MAX, &mut |_, _| visited += 1),
        Err(Reason::UnknownTypeTag)
    );
    assert_eq!(visited, 0);
}

#[test]
fn random_bytes_never_panic() {
    // A deterministic xorshift stream of packets made of OSC-ish fragments and noise.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces: [&[u8]; 8] = [
        b"#bundle\0",
        b"/a\0\0",
        b",ifsb\0\0\0",
        b"\0\0\0\x08",
        b"\0\0\0\x01",
        b"\xff\xff\xff\xf0",
        b",[]\0",
        b"\0\0\0\0",
    ];
    for _ in 0..20_000 {
        let mut p = Vec::new();
        for _ in 0..(next() % 12) {
            let r = next();
            if r % 3 == 0 {
                p.extend_from_slice(&r.to_be_bytes()[..4]);
            } else {
                p.extend_from_slice(pieces[(r % 8) as usize]);
            }
        }
        let _ = wire::for_each_message(&p, MAX, &mut |_, m| m.args().for_each(drop));
    }
}

#[test]
fn agrees_with_rosc_on_valid_packets() {
    use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};
    let message = OscMessage {
        addr: "/x/y".into(),
        args: vec![
            OscType::Int(3),
            OscType::Float(1.5),
            OscType::String("hé".into()),
            OscType::Blob(vec![9, 8, 7]),
            OscType::Long(-5),
            OscType::Double(2.5),
            OscType::Bool(true),
            OscType::Nil,
            OscType::Inf,
            OscType::Color(rosc::OscColor { red: 1, green: 2, blue: 3, alpha: 4 }),
            OscType::Midi(rosc::OscMidiMessage { port: 0, status: 0x90, data1: 60, data2: 1 }),
        ],
    };
    let bundle = OscPacket::Bundle(OscBundle {
        timetag: OscTime { seconds: 0, fractional: 1 },
        content: vec![OscPacket::Message(message.clone()), OscPacket::Message(message)],
    });
    let bytes = rosc::encoder::encode(&bundle).unwrap();
    let mut seen = Vec::new();
    wire::for_each_message(&bytes, MAX, &mut |t, m| {
        seen.push((t, m.address.to_owned(), m.args().count()))
    })
    .unwrap();
    assert_eq!(seen, vec![(1, "/x/y".to_owned(), 11), (1, "/x/y".to_owned(), 11)]);
    // And our encoding decodes in rosc to the same message.
    let ours = msg("/x/y", &[Arg::Int(3), Arg::Str("hé".as_bytes()), Arg::Blob(&[9, 8, 7])]);
    let (_, decoded) = rosc::decoder::decode_udp(&ours).unwrap();
    let OscPacket::Message(m) = decoded else { panic!("not a message") };
    assert_eq!(
        m.args,
        vec![OscType::Int(3), OscType::String("hé".into()), OscType::Blob(vec![9, 8, 7])]
    );
}
