//! Placement scorer: plain Rust, no napi types.
