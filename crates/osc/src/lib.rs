//! Guarded OSC decode/encode, parameter validation, address patterns, rate limiting.

#![forbid(unsafe_code)]
