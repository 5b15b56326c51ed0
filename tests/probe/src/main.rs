//! The probe: runs inside a sandbox and checks each restriction from inside.

#![forbid(unsafe_code)]

fn main() {}
