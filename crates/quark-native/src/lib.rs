//! Quark's native addon. This file only declares modules; the `#[napi]` faces live in `face/`,
//! the logic in plain Rust modules that `cargo test` exercises without Node.

mod error;
pub mod libvirt;
pub mod placement;
mod face;
