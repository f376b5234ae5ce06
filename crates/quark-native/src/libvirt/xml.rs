//! The domain XML Quark defines: one builder for every driver Quark drives.

use std::fmt::Write as _;

use super::{DomainKind, DomainSpec};
use crate::error::QuarkError;

/// Namespace of Quark's own `<metadata>` element; libvirt keeps it verbatim across redefines.
pub const METADATA_NS: &str = "urn:quark:vm:1";

/// Builds the domain XML for `spec` on a hypervisor of `kind`, after checking the spec.
///
/// The disk size goes into Quark's metadata only: the volume itself is the storage step's work,
/// and a `<disk>` pointing at a file that does not exist yet would make `start` fail.
pub fn domain_xml(spec: &DomainSpec, kind: DomainKind) -> Result<String, QuarkError> {
    validate(spec)?;
    let mut xml = String::with_capacity(1024);
    // Writing to a String cannot fail; the `let _` keeps clippy and the reader calm.
    let _ = writeln!(xml, "<domain type='{}'>", kind.xml_type());
    let _ = writeln!(xml, "  <name>{}</name>", escape(&spec.name));
    if let Some(uuid) = &spec.uuid {
        let _ = writeln!(xml, "  <uuid>{uuid}</uuid>");
    }
    let _ = writeln!(xml, "  <metadata>");
    let _ = writeln!(xml, "    <quark:vm xmlns:quark='{METADATA_NS}'>");
    let _ = writeln!(xml, "      <quark:disk_gb>{}</quark:disk_gb>", spec.disk_gb);
    let _ = writeln!(xml, "    </quark:vm>");
    let _ = writeln!(xml, "  </metadata>");
    let _ = writeln!(xml, "  <memory unit='MiB'>{}</memory>", spec.ram_mb);
    let _ = writeln!(
        xml,
        "  <currentMemory unit='MiB'>{}</currentMemory>",
        spec.ram_mb
    );
    let _ = writeln!(xml, "  <vcpu placement='static'>{}</vcpu>", spec.vcpus);
    match kind {
        DomainKind::Test => {
            let _ = writeln!(xml, "  <os>\n    <type>hvm</type>\n  </os>");
        }
        DomainKind::Kvm | DomainKind::Qemu => {
            // No arch or machine: libvirt picks the host's default, so the XML fits x86 and arm.
            let _ = writeln!(
                xml,
                "  <os>\n    <type>hvm</type>\n    <boot dev='hd'/>\n  </os>"
            );
            // ACPI is what lets `shutdown` ask the guest to power off gracefully.
            let _ = writeln!(xml, "  <features>\n    <acpi/>\n    <apic/>\n  </features>");
            if kind == DomainKind::Kvm {
                let _ = writeln!(xml, "  <cpu mode='host-passthrough'/>");
            }
            let _ = writeln!(xml, "  <on_poweroff>destroy</on_poweroff>");
            let _ = writeln!(xml, "  <on_reboot>restart</on_reboot>");
            let _ = writeln!(xml, "  <on_crash>destroy</on_crash>");
            let _ = writeln!(xml, "  <devices>");
            let _ = writeln!(xml, "    <serial type='pty'/>");
            let _ = writeln!(xml, "    <console type='pty'/>");
            let _ = writeln!(xml, "    <memballoon model='virtio'/>");
            let _ = writeln!(xml, "  </devices>");
        }
    }
    xml.push_str("</domain>\n");
    Ok(xml)
}

fn validate(spec: &DomainSpec) -> Result<(), QuarkError> {
    if spec.name.is_empty() {
        return Err(QuarkError::invalid_arg("domain name is empty"));
    }
    if spec.name.len() > 200 {
        return Err(QuarkError::invalid_arg(
            "domain name is longer than 200 bytes",
        ));
    }
    // XML 1.0 cannot carry control characters, and a '/' breaks drivers that name files after it.
    if spec.name.chars().any(|c| c.is_control() || c == '/') {
        return Err(QuarkError::invalid_arg(format!(
            "domain name {:?} contains a control character or '/'",
            spec.name
        )));
    }
    if let Some(uuid) = &spec.uuid {
        if !is_uuid(uuid) {
            return Err(QuarkError::invalid_arg(format!(
                "uuid {uuid:?} is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
            )));
        }
    }
    if spec.vcpus == 0 {
        return Err(QuarkError::invalid_arg("vcpus must be at least 1"));
    }
    if spec.ram_mb == 0 {
        return Err(QuarkError::invalid_arg("ram_mb must be at least 1"));
    }
    Ok(())
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Escapes text for an XML element body or a quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> DomainSpec {
        DomainSpec {
            name: name.to_owned(),
            uuid: Some("6a5e0f1c-27b8-4d0e-9a55-0c8e4f6f7b21".to_owned()),
            vcpus: 2,
            ram_mb: 512,
            disk_gb: 10,
        }
    }

    #[test]
    fn test_driver_xml_has_the_spec() {
        let xml = domain_xml(&spec("web-1"), DomainKind::Test).unwrap();
        assert!(xml.starts_with("<domain type='test'>"));
        assert!(xml.contains("<name>web-1</name>"));
        assert!(xml.contains("<uuid>6a5e0f1c-27b8-4d0e-9a55-0c8e4f6f7b21</uuid>"));
        assert!(xml.contains("<memory unit='MiB'>512</memory>"));
        assert!(xml.contains("<vcpu placement='static'>2</vcpu>"));
        assert!(xml.contains("<quark:disk_gb>10</quark:disk_gb>"));
        assert!(!xml.contains("<devices>"));
    }

    #[test]
    fn kvm_xml_has_acpi_and_host_cpu() {
        let xml = domain_xml(&spec("web-1"), DomainKind::Kvm).unwrap();
        assert!(xml.starts_with("<domain type='kvm'>"));
        assert!(xml.contains("<acpi/>"));
        assert!(xml.contains("host-passthrough"));
        let qemu = domain_xml(&spec("web-1"), DomainKind::Qemu).unwrap();
        assert!(qemu.starts_with("<domain type='qemu'>"));
        assert!(!qemu.contains("host-passthrough"));
    }

    #[test]
    fn name_is_escaped() {
        let xml = domain_xml(&spec("a<b>&'\"c"), DomainKind::Test).unwrap();
        assert!(xml.contains("<name>a&lt;b&gt;&amp;&apos;&quot;c</name>"));
    }

    #[test]
    fn uuid_is_optional() {
        let mut s = spec("no-uuid");
        s.uuid = None;
        let xml = domain_xml(&s, DomainKind::Test).unwrap();
        assert!(!xml.contains("<uuid>"));
    }

    #[test]
    fn bad_specs_are_invalid_arg() {
        let cases: [fn(&mut DomainSpec); 8] = [
            |s| s.name.clear(),
            |s| s.name = "a/b".into(),
            |s| s.name = "a\nb".into(),
            |s| s.name = "x".repeat(201),
            |s| s.uuid = Some("not-a-uuid".into()),
            |s| s.uuid = Some("6a5e0f1c-27b8-4d0e-9a55-0c8e4f6f7b2g".into()),
            |s| s.vcpus = 0,
            |s| s.ram_mb = 0,
        ];
        for mutate in cases {
            let mut s = spec("ok");
            mutate(&mut s);
            let err = domain_xml(&s, DomainKind::Test).unwrap_err();
            assert_eq!(err.code(), "INVALID_ARG", "{s:?}");
        }
    }
}
