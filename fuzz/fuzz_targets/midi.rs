//! Arbitrary bytes as a MIDI input stream, with SysEx refused and allowed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitrine_midi::fuzz_parse(data));
