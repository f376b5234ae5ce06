//! The `#[napi]` faces: thin conversions between JS values and the plain Rust modules.
mod libvirt;
mod placement;
