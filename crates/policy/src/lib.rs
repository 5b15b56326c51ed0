//! Policy and daemon configuration: TOML schema, spans, validation, presets, exposure score.

#![forbid(unsafe_code)]

mod model;

pub use model::*;
