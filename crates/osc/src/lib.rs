//! Guarded OSC decode/encode, parameter validation, address patterns, rate limiting.
//!
//! The path of a controller's datagram: [`wire`] proves its structure sound and yields
//! borrowed messages (bundles flattened); the [`Router`] matches each address (or pattern)
//! against the attached visualizations' parameters, [`validate`]s the arguments, applies the
//! per-source, per-visualization and per-parameter rates, and queues a canonical re-encoded
//! message in the visualization's [`Outbox`]. Children only ever receive packets built by
//! [`encode`]. Everything here is synchronous; the supervisor drives it.

#![forbid(unsafe_code)]

pub mod encode;
pub mod framing;
pub mod fuzz;
pub mod outbox;
pub mod pattern;
pub mod rate;
mod reason;
pub mod router;
pub mod validate;
pub mod wire;

pub use encode::Value;
pub use outbox::Outbox;
pub use reason::Reason;
pub use router::{Blocked, Routed, Router, RouterConfig, TargetId, TargetStats};
pub use validate::validate;
pub use wire::{Arg, Message};
