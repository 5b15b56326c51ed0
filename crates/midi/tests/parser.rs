//! The MIDI 1.0 state machine against the specification's corner cases.

use proptest::prelude::*;
use vitrine_midi::{DEFAULT_SYSEX_CAP, DropReason, Event, Parser};

/// What a parser emitted, owned, so tests can compare whole sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Msg(Vec<u8>),
    SysEx(Vec<u8>),
    Drop(DropReason),
}

fn run(parser: &mut Parser, bytes: &[u8]) -> Vec<Out> {
    let mut out = Vec::new();
    parser.feed(bytes, &mut |e| out.push(own(e)));
    out
}

fn own(e: Event<'_>) -> Out {
    match e {
        Event::Message(m) => {
            let mut v = vec![m.status(), m.data1(), m.data2()];
            // Compare only the bytes that exist on the wire; unused data bytes are zero.
            while v.len() > 1 && v[v.len() - 1] == 0 && short_len(m.status()) < v.len() {
                v.pop();
            }
            Out::Msg(v)
        }
        Event::SysEx(b) => Out::SysEx(b.to_vec()),
        Event::Dropped(r) => Out::Drop(r),
    }
}

fn short_len(status: u8) -> usize {
    match status {
        0xC0..=0xDF | 0xF1 | 0xF3 => 2,
        0x80..=0xEF | 0xF2 => 3,
        _ => 1,
    }
}

fn parse(bytes: &[u8]) -> Vec<Out> {
    run(&mut Parser::new(), bytes)
}

fn msg(b: &[u8]) -> Out {
    Out::Msg(b.to_vec())
}

#[test]
fn note_on_and_running_status() {
    assert_eq!(
        parse(&[0x90, 60, 100, 61, 101, 62, 0]),
        vec![msg(&[0x90, 60, 100]), msg(&[0x90, 61, 101]), msg(&[0x90, 62, 0])]
    );
}

#[test]
fn running_status_survives_realtime_bytes_between_and_inside_messages() {
    assert_eq!(
        parse(&[0x90, 60, 0xF8, 100, 0xFE, 61, 0xFA, 100]),
        vec![
            msg(&[0xF8]),
            msg(&[0x90, 60, 100]),
            msg(&[0xFE]),
            msg(&[0xFA]),
            msg(&[0x90, 61, 100]),
        ]
    );
}

#[test]
fn one_data_byte_messages_use_running_status_too() {
    assert_eq!(parse(&[0xC3, 5, 6]), vec![msg(&[0xC3, 5]), msg(&[0xC3, 6])]);
    assert_eq!(parse(&[0xD0, 9]), vec![msg(&[0xD0, 9])]);
}

#[test]
fn a_message_cut_short_by_a_status_byte_is_dropped_as_truncated() {
    assert_eq!(
        parse(&[0x90, 60, 0xB0, 7, 100]),
        vec![Out::Drop(DropReason::Truncated), msg(&[0xB0, 7, 100])]
    );
    // A running status with no data byte yet lost nothing.
    assert_eq!(parse(&[0x90, 60, 1, 0xB0, 7, 2]), vec![msg(&[0x90, 60, 1]), msg(&[0xB0, 7, 2])]);
}

#[test]
fn a_message_split_across_reads_is_completed() {
    let mut p = Parser::new();
    assert_eq!(run(&mut p, &[0xE0]), vec![]);
    assert_eq!(run(&mut p, &[0x00]), vec![]);
    assert_eq!(run(&mut p, &[0x40]), vec![msg(&[0xE0, 0x00, 0x40])]);
}

#[test]
fn data_without_status_is_stray() {
    assert_eq!(parse(&[60, 100]), vec![Out::Drop(DropReason::StrayData); 2]);
}

#[test]
fn system_common_cancels_running_status() {
    assert_eq!(
        parse(&[0x90, 60, 100, 0xF3, 5, 61, 100]),
        vec![
            msg(&[0x90, 60, 100]),
            msg(&[0xF3, 5]),
            Out::Drop(DropReason::StrayData),
            Out::Drop(DropReason::StrayData),
        ]
    );
    assert_eq!(
        parse(&[0xF2, 1, 2, 0xF1, 0x35, 0xF6]),
        vec![msg(&[0xF2, 1, 2]), msg(&[0xF1, 0x35]), msg(&[0xF6]),]
    );
}

#[test]
fn undefined_status_bytes_and_stray_end_of_sysex_are_dropped() {
    assert_eq!(parse(&[0xF4, 0xF5, 0xF9, 0xFD, 0xF7]), vec![Out::Drop(DropReason::Undefined); 5]);
    // An undefined system common byte cancels running status like a defined one.
    assert_eq!(
        parse(&[0x90, 60, 1, 0xF4, 61, 1]),
        vec![
            msg(&[0x90, 60, 1]),
            Out::Drop(DropReason::Undefined),
            Out::Drop(DropReason::StrayData),
            Out::Drop(DropReason::StrayData),
        ]
    );
}

#[test]
fn sysex_is_refused_by_default_and_ends_running_status() {
    assert_eq!(
        parse(&[0x90, 60, 100, 0xF0, 0x7E, 1, 2, 0xF7, 61, 100, 0x90, 62, 1]),
        vec![
            msg(&[0x90, 60, 100]),
            Out::Drop(DropReason::SysexRefused),
            Out::Drop(DropReason::StrayData),
            Out::Drop(DropReason::StrayData),
            msg(&[0x90, 62, 1]),
        ]
    );
}

#[test]
fn allowed_sysex_is_delivered_whole_with_realtime_bytes_taken_out() {
    let mut p = Parser::with_sysex(true, DEFAULT_SYSEX_CAP);
    assert_eq!(
        run(&mut p, &[0xF0, 0x7D, 0xF8, 1, 2, 0xFC, 0xF7]),
        vec![msg(&[0xF8]), msg(&[0xFC]), Out::SysEx(vec![0xF0, 0x7D, 1, 2, 0xF7])]
    );
}

#[test]
fn sysex_over_the_cap_is_dropped_once_and_the_stream_recovers() {
    let mut p = Parser::with_sysex(true, 16);
    let mut bytes = vec![0xF0];
    bytes.extend(std::iter::repeat_n(0x11, 300));
    bytes.extend([0xF7, 0x80, 60, 0]);
    assert_eq!(
        run(&mut p, &bytes),
        vec![Out::Drop(DropReason::SysexOverflow), msg(&[0x80, 60, 0])]
    );
    // Exactly at the cap still passes: F0, 14 data bytes, F7.
    let mut exact = vec![0xF0];
    exact.extend([0x22; 14]);
    exact.push(0xF7);
    assert_eq!(run(&mut p, &exact), vec![Out::SysEx(exact.clone())]);
}

#[test]
fn sysex_cut_short_by_a_status_byte_is_truncated_and_the_status_byte_counts() {
    let mut p = Parser::with_sysex(true, DEFAULT_SYSEX_CAP);
    assert_eq!(
        run(&mut p, &[0xF0, 1, 2, 0x90, 60, 100]),
        vec![Out::Drop(DropReason::Truncated), msg(&[0x90, 60, 100])]
    );
    let mut refused = Parser::new();
    assert_eq!(
        run(&mut refused, &[0xF0, 1, 0xB0, 1, 2]),
        vec![Out::Drop(DropReason::SysexRefused), msg(&[0xB0, 1, 2])]
    );
}

proptest! {
    /// However the bytes are split into reads, the parser emits the same events.
    #[test]
    fn splitting_the_input_does_not_change_the_events(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        sysex in any::<bool>(),
    ) {
        let whole = run(&mut Parser::with_sysex(sysex, 32), &bytes);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut p = Parser::with_sysex(sysex, 32);
        let mut split = Vec::new();
        let mut start = 0;
        for end in points.into_iter().chain([bytes.len()]) {
            split.extend(run(&mut p, &bytes[start..end]));
            start = end;
        }
        prop_assert_eq!(whole, split);
    }

    /// Arbitrary bytes never panic and every emitted message is well-formed.
    #[test]
    fn arbitrary_bytes_hold_the_invariants(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        vitrine_midi::fuzz_parse(&bytes);
    }

    /// A well-formed stream of channel messages with realtime bytes sprinkled anywhere parses
    /// back to exactly those messages.
    #[test]
    fn generated_messages_round_trip(
        msgs in proptest::collection::vec((0x80u8..0xF0, 0u8..0x80, 0u8..0x80), 1..64),
        rt in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(vec![0xF8u8, 0xFA, 0xFB, 0xFC, 0xFE])), 0..16),
    ) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for (s, d1, d2) in &msgs {
            bytes.push(*s);
            bytes.push(*d1);
            let mut m = vec![*s, *d1];
            if short_len(*s) == 3 {
                bytes.push(*d2);
                m.push(*d2);
            }
            expected.push(m);
        }
        for (at, b) in &rt {
            let i = at.index(bytes.len() + 1);
            bytes.insert(i, *b);
        }
        let got: Vec<Vec<u8>> = parse(&bytes)
            .into_iter()
            .filter_map(|o| match o {
                Out::Msg(m) if m[0] < 0xF0 => Some(m),
                Out::Msg(_) => None,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        prop_assert_eq!(got, expected);
    }
}
