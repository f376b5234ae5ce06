//! libvirt driver: plain Rust over the `virt` crate.
