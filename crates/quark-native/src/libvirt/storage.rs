//! Storage pools and volumes Quark asks libvirt for, and what it reads about the host.

use std::fmt::Write as _;

use super::escape;
use crate::error::QuarkError;

/// The host as libvirt reports it (`virNodeGetInfo`): what a compute can offer by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub cpus: u32,
    pub memory_kib: u64,
    pub model: String,
}

/// One volume of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    pub path: String,
    pub capacity_bytes: u64,
    pub allocation_bytes: u64,
}

/// A directory pool at `path`.
pub fn pool_xml(name: &str, path: &str) -> Result<String, QuarkError> {
    check_name("pool name", name)?;
    check_absolute("pool path", path)?;
    Ok(format!(
        "<pool type='dir'>\n  <name>{}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
        escape(name),
        escape(path)
    ))
}

/// A qcow2 volume of `capacity_bytes` whose reads fall through to `backing` until written
/// (copy on write): a VM's disk over its cached image.
pub fn overlay_xml(
    name: &str,
    capacity_bytes: u64,
    backing: &str,
    backing_format: &str,
) -> Result<String, QuarkError> {
    check_name("volume name", name)?;
    check_absolute("backing path", backing)?;
    if !matches!(backing_format, "qcow2" | "raw") {
        return Err(QuarkError::invalid_arg(format!(
            "backing format must be qcow2 or raw, got {backing_format:?}"
        )));
    }
    if capacity_bytes == 0 {
        return Err(QuarkError::invalid_arg(
            "an overlay needs a capacity above 0",
        ));
    }
    let mut xml = String::with_capacity(512);
    let _ = writeln!(xml, "<volume>");
    let _ = writeln!(xml, "  <name>{}</name>", escape(name));
    let _ = writeln!(xml, "  <capacity unit='bytes'>{capacity_bytes}</capacity>");
    let _ = writeln!(xml, "  <target>\n    <format type='qcow2'/>\n  </target>");
    let _ = writeln!(
        xml,
        "  <backingStore>\n    <path>{}</path>\n    <format type='{backing_format}'/>\n  </backingStore>",
        escape(backing)
    );
    let _ = writeln!(xml, "</volume>");
    Ok(xml)
}

fn check_name(what: &str, name: &str) -> Result<(), QuarkError> {
    if name.is_empty() || name.len() > 200 || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(QuarkError::invalid_arg(format!(
            "{what} {name:?} is empty, too long, or has a control character or '/'"
        )));
    }
    Ok(())
}

fn check_absolute(what: &str, path: &str) -> Result<(), QuarkError> {
    if !path.starts_with('/') || path.chars().any(char::is_control) {
        return Err(QuarkError::invalid_arg(format!(
            "{what} must be an absolute path, got {path:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_a_directory() {
        let xml = pool_xml("quark-c1", "/var/lib/quark/c1/pool").unwrap();
        assert!(xml.starts_with("<pool type='dir'>"));
        assert!(xml.contains("<name>quark-c1</name>"));
        assert!(xml.contains("<path>/var/lib/quark/c1/pool</path>"));
        assert_eq!(pool_xml("a/b", "/x").unwrap_err().code(), "INVALID_ARG");
        assert_eq!(pool_xml("p", "rel").unwrap_err().code(), "INVALID_ARG");
    }

    #[test]
    fn overlay_is_qcow2_over_its_backing() {
        let xml = overlay_xml("quark-vm.qcow2", 1 << 30, "/pool/base-ab.qcow2", "qcow2").unwrap();
        assert!(xml.contains("<capacity unit='bytes'>1073741824</capacity>"));
        assert!(xml.contains("<format type='qcow2'/>"));
        assert!(xml.contains("<path>/pool/base-ab.qcow2</path>"));
        let raw = overlay_xml("v", 5, "/pool/base.raw", "raw").unwrap();
        assert!(raw
            .contains("<backingStore>\n    <path>/pool/base.raw</path>\n    <format type='raw'/>"));
        for bad in [
            overlay_xml("v", 0, "/b", "qcow2"),
            overlay_xml("v", 1, "b", "qcow2"),
            overlay_xml("v", 1, "/b", "vmdk"),
            overlay_xml("", 1, "/b", "raw"),
        ] {
            assert_eq!(bad.unwrap_err().code(), "INVALID_ARG");
        }
    }
}
