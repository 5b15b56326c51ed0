#![no_main]
// A stream of datagrams through a router with a fixed two-visualization schema.
libfuzzer_sys::fuzz_target!(|data: &[u8]| vitrine_osc::fuzz::route(data));
