//! vitrine-shim: applies a prepared sandbox plan, then execs.

#![forbid(unsafe_code)]

fn main() {}
