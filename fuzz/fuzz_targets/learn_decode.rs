//! Arbitrary bytes as the syscall arguments a learning run reads from a sandboxed program.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vitrine_sandbox::learn::decode::fuzz_decode(data));
