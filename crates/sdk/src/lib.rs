//! Child-side library: receive validated OSC from the fd vitrine hands a visualization.

#![forbid(unsafe_code)]
