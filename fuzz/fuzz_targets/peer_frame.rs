//! Peer frames from a hostile or broken peer: decoding never panics, caps before allocating,
//! and every frame that decodes re-encodes to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitrine_peer::frame::fuzz_decode(data));
