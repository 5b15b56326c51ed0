//! vitrine: a process-isolating supervisor for installation boxes.

#![forbid(unsafe_code)]

fn main() {}
