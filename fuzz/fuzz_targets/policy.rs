//! Arbitrary bytes as a policy file; presets and profiles resolve into the repository's policies/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitrine_policy::fuzz_policy(data));
