//! napi face of the libvirt driver.
