//! The policy filter, rate limit, counters and OSC encoding of one input port.

use std::time::{Duration, Instant};

use rosc::{OscMidiMessage, OscPacket, OscType};
use vitrine_midi::{Accepted, DropReason, Gate, PortStream, glob_match};
use vitrine_policy::{Midi, MidiMessageKind};

fn policy(channels: &[u8], messages: &[MidiMessageKind], sysex: bool, max_rate: u32) -> Midi {
    Midi {
        inputs: vec!["*".into()],
        channels: channels.to_vec(),
        messages: messages.to_vec(),
        sysex,
        max_rate,
    }
}

fn feed(port: &mut PortStream, gate: &mut Gate, bytes: &[u8], now: Instant) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    port.feed(gate, bytes, now, &mut |a| {
        let mut out = Vec::new();
        a.encode_osc(port_id(&a), &mut out);
        packets.push(out);
    });
    packets
}

fn port_id(_: &Accepted<'_>) -> u8 {
    3
}

#[test]
fn a_disallowed_channel_is_dropped_and_counted() {
    use MidiMessageKind::*;
    let now = Instant::now();
    let mut gate = Gate::new(&policy(&[1, 2], &[Note, Cc], false, 1000), now);
    let mut port = PortStream::new(3, &gate);
    // Channel 1 note, channel 3 note, channel 2 CC.
    let packets = feed(&mut port, &mut gate, &[0x90, 60, 1, 0x92, 60, 1, 0xB1, 7, 127], now);
    assert_eq!(packets.len(), 2);
    assert_eq!(port.counters().accepted, 2);
    assert_eq!(port.counters().dropped(DropReason::Channel), 1);
    assert_eq!(port.counters().dropped_total(), 1);
}

#[test]
fn kinds_outside_the_policy_and_unforwardable_system_messages_are_dropped() {
    use MidiMessageKind::*;
    let now = Instant::now();
    let mut gate = Gate::new(&policy(&[], &[Note], false, 1000), now);
    let mut port = PortStream::new(0, &gate);
    let packets = feed(&mut port, &mut gate, &[0xB0, 1, 2, 0xF8, 0xFE, 0xFF, 0x9F, 1, 2], now);
    assert_eq!(packets.len(), 1, "only the channel 16 note passes");
    assert_eq!(port.counters().dropped(DropReason::Kind), 2, "CC and clock");
    assert_eq!(port.counters().dropped(DropReason::Ignored), 2, "active sensing and reset");
}

#[test]
fn clock_and_transport_pass_when_listed() {
    use MidiMessageKind::*;
    let now = Instant::now();
    let mut gate = Gate::new(&policy(&[1], &[Clock, Transport], false, 1000), now);
    let mut port = PortStream::new(0, &gate);
    let packets = feed(&mut port, &mut gate, &[0xFA, 0xF8, 0xF8, 0xFC, 0xF2, 0, 1], now);
    assert_eq!(packets.len(), 5);
}

#[test]
fn sysex_is_refused_unless_the_policy_allows_it() {
    let now = Instant::now();
    let mut gate = Gate::new(&policy(&[], &[MidiMessageKind::Note], false, 1000), now);
    let mut port = PortStream::new(0, &gate);
    assert!(feed(&mut port, &mut gate, &[0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7], now).is_empty());
    assert_eq!(port.counters().dropped(DropReason::SysexRefused), 1);

    let mut gate = Gate::new(&policy(&[], &[MidiMessageKind::Note], true, 1000), now);
    let mut port = PortStream::new(0, &gate);
    let packets = feed(&mut port, &mut gate, &[0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7], now);
    let OscPacket::Message(m) = rosc::decoder::decode_udp(&packets[0]).expect("valid OSC").1 else {
        panic!("not a message")
    };
    assert_eq!(m.addr, "/midi/sysex");
    assert_eq!(m.args, vec![OscType::Blob(vec![3, 0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7])]);
}

#[test]
fn max_rate_holds_for_all_ports_of_a_visualization_together() {
    let now = Instant::now();
    let mut gate = Gate::new(&policy(&[], &[MidiMessageKind::Cc], false, 10), now);
    let mut a = PortStream::new(0, &gate);
    let mut b = PortStream::new(1, &gate);
    let burst: Vec<u8> = [0xB0].into_iter().chain((0..8).flat_map(|v| [1, v])).collect();
    assert_eq!(feed(&mut a, &mut gate, &burst, now).len(), 8);
    assert_eq!(feed(&mut b, &mut gate, &burst, now).len(), 2);
    assert_eq!(b.counters().dropped(DropReason::Rate), 6);
    // The bucket refills at max_rate per second; the clock is given, not read.
    let later = now + Duration::from_secs(1);
    assert_eq!(feed(&mut b, &mut gate, &burst, later).len(), 8);
}

#[test]
fn accepted_messages_become_canonical_osc_midi_messages() {
    let now = Instant::now();
    let mut gate = Gate::new(&policy(&[], &[MidiMessageKind::Program], false, 1000), now);
    let mut port = PortStream::new(3, &gate);
    let packets = feed(&mut port, &mut gate, &[0xC5, 42], now);
    let (rest, packet) = rosc::decoder::decode_udp(&packets[0]).expect("valid OSC");
    assert!(rest.is_empty());
    let OscPacket::Message(m) = packet else { panic!("not a message") };
    assert_eq!(m.addr, "/midi");
    assert_eq!(
        m.args,
        vec![OscType::Midi(OscMidiMessage { port: 3, status: 0xC5, data1: 42, data2: 0 })]
    );
    // Byte for byte what rosc would write, so any OSC library reads it.
    assert_eq!(rosc::encoder::encode(&OscPacket::Message(m)).expect("encodes"), packets[0]);
}

#[test]
fn port_globs() {
    assert!(glob_match("*", ""));
    assert!(glob_match("nanoKONTROL2*", "nanoKONTROL2:nanoKONTROL2 MIDI 1"));
    assert!(!glob_match("nanoKONTROL2*", "Midi Through:Midi Through Port-0"));
    assert!(glob_match("VirMIDI ?-0", "VirMIDI 1-0"));
    assert!(!glob_match("VirMIDI ?-0", "VirMIDI 10-0"));
    assert!(glob_match("*Port-*", "Midi Through:Midi Through Port-0"));
    assert!(glob_match("a*b*c", "aXXbYYbZc"));
    assert!(!glob_match("a*b*c", "aXXbYYbZ"));
    assert!(glob_match("Ü*ß", "Überfluß"));
}

#[test]
fn messages_can_be_addressed_under_a_visualization_prefix() {
    let now = Instant::now();
    let mut gate = Gate::new(&policy(&[], &[MidiMessageKind::Note], false, 1000), now);
    let mut port = PortStream::new(1, &gate);
    let mut out = Vec::new();
    port.feed(&mut gate, &[0x90, 1, 2], now, &mut |a| a.encode_osc_under("/aurora", 1, &mut out));
    let OscPacket::Message(m) = rosc::decoder::decode_udp(&out).expect("valid OSC").1 else {
        panic!("not a message")
    };
    assert_eq!(m.addr, "/aurora/midi");
}
