//! Peer identity, trust store, mutual TLS 1.3, pairing, frames and mDNS discovery.

#![forbid(unsafe_code)]
