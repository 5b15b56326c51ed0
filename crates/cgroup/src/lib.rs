//! Per-visualization cgroups (v1 and v2): limits, stats, OOM events.

#![forbid(unsafe_code)]
