#![no_main]
// One datagram through the guarded decoder and every parameter type's validation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| vitrine_osc::fuzz::decode_and_validate(data));
