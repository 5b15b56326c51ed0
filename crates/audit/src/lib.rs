//! Hash-chained JSON-lines audit log writer and verifier.

#![forbid(unsafe_code)]
