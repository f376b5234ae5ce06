//! The domain XML Quark defines: one builder for every driver Quark drives.

use std::fmt::Write as _;

use super::{Accel, CpuMode, DomainKind, DomainSpec, GuestSpec, Nic};
use crate::error::QuarkError;

/// Namespace of Quark's own `<metadata>` element; libvirt keeps it verbatim across redefines.
pub const METADATA_NS: &str = "urn:quark:vm:1";

/// QEMU's own command-line namespace: the user-mode network with port forwards and `restrict`
/// is written there, since libvirt 9.0 models neither (its passt backend needs 9.2).
const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

/// Builds the domain XML for `spec` on a hypervisor of `kind`, after checking the spec.
///
/// Without a guest spec the disk size goes into Quark's metadata only (the test driver runs no
/// guest). With one, on QEMU, the domain gets its disk, seed, serial console file, network
/// interface and CPU, and runs under the guest's accelerator.
pub fn domain_xml(spec: &DomainSpec, kind: DomainKind) -> Result<String, QuarkError> {
    validate(spec)?;
    let guest = match (kind, &spec.guest) {
        (DomainKind::Kvm | DomainKind::Qemu, Some(g)) => Some(g),
        _ => None,
    };
    let xml_type = match guest {
        Some(g) if g.accel == Accel::Kvm => "kvm",
        Some(_) => "qemu",
        None => kind.xml_type(),
    };
    let user_net = guest.is_some_and(|g| matches!(g.nic, Nic::User { .. }));
    let mut xml = String::with_capacity(2048);
    // Writing to a String cannot fail; the `let _` keeps clippy and the reader calm.
    if user_net {
        let _ = writeln!(xml, "<domain type='{xml_type}' xmlns:qemu='{QEMU_NS}'>");
    } else {
        let _ = writeln!(xml, "<domain type='{xml_type}'>");
    }
    let _ = writeln!(xml, "  <name>{}</name>", escape(&spec.name));
    if let Some(uuid) = &spec.uuid {
        let _ = writeln!(xml, "  <uuid>{uuid}</uuid>");
    }
    let _ = writeln!(xml, "  <metadata>");
    let _ = writeln!(xml, "    <quark:vm xmlns:quark='{METADATA_NS}'>");
    let _ = writeln!(xml, "      <quark:disk_gb>{}</quark:disk_gb>", spec.disk_gb);
    if let Some(owner) = &spec.owner {
        let _ = writeln!(xml, "      <quark:owner>{}</quark:owner>", escape(owner));
    }
    let _ = writeln!(xml, "    </quark:vm>");
    let _ = writeln!(xml, "  </metadata>");
    let _ = writeln!(xml, "  <memory unit='MiB'>{}</memory>", spec.ram_mb);
    let _ = writeln!(
        xml,
        "  <currentMemory unit='MiB'>{}</currentMemory>",
        spec.ram_mb
    );
    let _ = writeln!(xml, "  <vcpu placement='static'>{}</vcpu>", spec.vcpus);
    match (kind, guest) {
        (DomainKind::Test, _) => {
            let _ = writeln!(xml, "  <os>\n    <type>hvm</type>\n  </os>");
        }
        (DomainKind::Kvm | DomainKind::Qemu, Some(g)) => guest_body(&mut xml, g),
        (DomainKind::Kvm | DomainKind::Qemu, None) => {
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

/// A real guest's `<os>`, CPU, lifecycle and devices.
fn guest_body(xml: &mut String, g: &GuestSpec) {
    let _ = writeln!(
        xml,
        "  <os>\n    <type>hvm</type>\n    <boot dev='hd'/>\n  </os>"
    );
    // ACPI: `shutdown` and `reboot` press the guest's power button.
    let _ = writeln!(xml, "  <features>\n    <acpi/>\n    <apic/>\n  </features>");
    match g.cpu {
        CpuMode::HostPassthrough => {
            let _ = writeln!(xml, "  <cpu mode='host-passthrough'/>");
        }
        CpuMode::HostModel => {
            let _ = writeln!(xml, "  <cpu mode='host-model'/>");
        }
        CpuMode::Default => {}
    }
    let _ = writeln!(xml, "  <on_poweroff>destroy</on_poweroff>");
    let _ = writeln!(xml, "  <on_reboot>restart</on_reboot>");
    let _ = writeln!(xml, "  <on_crash>destroy</on_crash>");
    let _ = writeln!(xml, "  <devices>");
    let _ = writeln!(
        xml,
        "    <disk type='file' device='disk'>\n      <driver name='qemu' type='{}'/>\n      <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>",
        escape(&g.disk_format),
        escape(&g.disk_path)
    );
    if let Some(seed) = &g.seed_path {
        let _ = writeln!(
            xml,
            "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source file='{}'/>\n      <target dev='vdb' bus='virtio'/>\n      <readonly/>\n    </disk>",
            escape(seed)
        );
    }
    let bandwidth = if g.bandwidth_mbps > 0 {
        // libvirt counts kilobytes per second.
        let kbytes = g.bandwidth_mbps.saturating_mul(125);
        format!("\n      <bandwidth>\n        <inbound average='{kbytes}'/>\n        <outbound average='{kbytes}'/>\n      </bandwidth>")
    } else {
        String::new()
    };
    match &g.nic {
        Nic::Network { name } => {
            let _ = writeln!(
                xml,
                "    <interface type='network'>\n      <source network='{}'/>\n      <model type='virtio'/>{bandwidth}\n    </interface>",
                escape(name)
            );
        }
        Nic::Bridge { name } => {
            let _ = writeln!(
                xml,
                "    <interface type='bridge'>\n      <source bridge='{}'/>\n      <model type='virtio'/>{bandwidth}\n    </interface>",
                escape(name)
            );
        }
        // The user-mode NIC is on QEMU's command line, below; libvirt has no <bandwidth> for it.
        Nic::User { .. } | Nic::None => {}
    }
    let _ = writeln!(
        xml,
        "    <serial type='file'>\n      <source path='{}' append='on'/>\n      <target port='0'/>\n    </serial>",
        escape(&g.console_log)
    );
    let _ = writeln!(xml, "    <memballoon model='none'/>");
    let _ = writeln!(xml, "  </devices>");
    if let Nic::User { isolated, forwards } = &g.nic {
        let mut netdev = format!(
            "user,id=quarknet0,restrict={}",
            if *isolated { "on" } else { "off" }
        );
        for f in forwards {
            let _ = write!(
                netdev,
                ",hostfwd=tcp:127.0.0.1:{}-:{}",
                f.host_port, f.guest_port
            );
        }
        // A fixed PCI slot, clear of the ones libvirt assigns from the bottom; no option ROM
        // (the guest boots from its disk, and the iPXE ROM package may be missing).
        let device = "virtio-net-pci,netdev=quarknet0,romfile=,bus=pci.0,addr=0x10";
        let _ = writeln!(
            xml,
            "  <qemu:commandline>\n    <qemu:arg value='-netdev'/>\n    <qemu:arg value='{netdev}'/>\n    <qemu:arg value='-device'/>\n    <qemu:arg value='{device}'/>\n  </qemu:commandline>"
        );
    }
}

/// The owner in Quark's metadata element as libvirt returns it (`virDomainGetMetadata`).
pub fn owner_of_metadata(xml: &str) -> Option<String> {
    let open = xml.find("owner>")? + "owner>".len();
    let rest = &xml[open..];
    let value = &rest[..rest.find('<')?];
    Some(unescape(value))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
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
    if let Some(owner) = &spec.owner {
        if owner.is_empty() || owner.chars().any(char::is_control) {
            return Err(QuarkError::invalid_arg(format!(
                "owner {owner:?} is empty or has a control character"
            )));
        }
    }
    if let Some(g) = &spec.guest {
        validate_guest(g)?;
    }
    Ok(())
}

fn validate_guest(g: &GuestSpec) -> Result<(), QuarkError> {
    let paths = [
        ("disk_path", Some(&g.disk_path)),
        ("seed_path", g.seed_path.as_ref()),
        ("console_log", Some(&g.console_log)),
    ];
    for (field, path) in paths {
        if let Some(p) = path {
            // QEMU resolves relative paths against libvirtd's directory, not the caller's.
            if !p.starts_with('/') || p.chars().any(char::is_control) {
                return Err(QuarkError::invalid_arg(format!(
                    "{field} must be an absolute path, got {p:?}"
                )));
            }
        }
    }
    if !matches!(g.disk_format.as_str(), "qcow2" | "raw") {
        return Err(QuarkError::invalid_arg(format!(
            "disk_format must be qcow2 or raw, got {:?}",
            g.disk_format
        )));
    }
    match &g.nic {
        Nic::User { forwards, .. } => {
            if let Some(f) = forwards
                .iter()
                .find(|f| f.host_port == 0 || f.guest_port == 0)
            {
                return Err(QuarkError::invalid_arg(format!(
                    "port forward {}->{} has a port 0",
                    f.host_port, f.guest_port
                )));
            }
        }
        Nic::Network { name } | Nic::Bridge { name } => {
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(QuarkError::invalid_arg(format!(
                    "network or bridge name {name:?} is empty or has a control character"
                )));
            }
        }
        Nic::None => {}
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
    use crate::libvirt::PortForward;

    fn spec(name: &str) -> DomainSpec {
        DomainSpec {
            name: name.to_owned(),
            uuid: Some("6a5e0f1c-27b8-4d0e-9a55-0c8e4f6f7b21".to_owned()),
            vcpus: 2,
            ram_mb: 512,
            disk_gb: 10,
            owner: None,
            guest: None,
        }
    }

    fn guest(nic: Nic) -> GuestSpec {
        GuestSpec {
            accel: Accel::Tcg,
            cpu: CpuMode::Default,
            disk_path: "/pool/quark-x.qcow2".into(),
            disk_format: "qcow2".into(),
            seed_path: Some("/pool/quark-x-seed.img".into()),
            console_log: "/console/quark-x.log".into(),
            nic,
            bandwidth_mbps: 0,
        }
    }

    fn with_guest(g: GuestSpec) -> DomainSpec {
        DomainSpec {
            guest: Some(g),
            ..spec("web-1")
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

    #[test]
    fn owner_goes_into_the_metadata_and_reads_back() {
        let s = DomainSpec {
            owner: Some("compute-<7>".into()),
            ..spec("web-1")
        };
        let xml = domain_xml(&s, DomainKind::Test).unwrap();
        assert!(
            xml.contains("<quark:owner>compute-&lt;7&gt;</quark:owner>"),
            "{xml}"
        );
        // libvirt hands back the metadata element with its own prefix choice.
        let returned = "<vm xmlns=\"urn:quark:vm:1\"><disk_gb>10</disk_gb><owner>compute-&lt;7&gt;</owner></vm>";
        assert_eq!(owner_of_metadata(returned).as_deref(), Some("compute-<7>"));
        assert_eq!(owner_of_metadata("<vm><disk_gb>1</disk_gb></vm>"), None);
    }

    #[test]
    fn a_guest_gets_disk_seed_console_and_its_accelerator() {
        let xml = domain_xml(&with_guest(guest(Nic::None)), DomainKind::Kvm).unwrap();
        // The probe's answer, not the connection's kind, picks the domain type.
        assert!(xml.starts_with("<domain type='qemu'>"), "{xml}");
        assert!(xml.contains("<source file='/pool/quark-x.qcow2'/>"));
        assert!(xml.contains("<driver name='qemu' type='qcow2'/>"));
        assert!(xml.contains("<target dev='vda' bus='virtio'/>"));
        assert!(xml.contains("<source file='/pool/quark-x-seed.img'/>"));
        assert!(xml.contains("<readonly/>"));
        assert!(xml.contains("<serial type='file'>"));
        assert!(xml.contains("<source path='/console/quark-x.log' append='on'/>"));
        assert!(xml.contains("<acpi/>"));
        assert!(!xml.contains("<cpu"));
        assert!(!xml.contains("<interface"));
        assert!(!xml.contains("qemu:commandline"));

        let mut kvm = guest(Nic::None);
        kvm.accel = Accel::Kvm;
        kvm.cpu = CpuMode::HostModel;
        let xml = domain_xml(&with_guest(kvm), DomainKind::Kvm).unwrap();
        assert!(xml.starts_with("<domain type='kvm'>"));
        assert!(xml.contains("<cpu mode='host-model'/>"));
    }

    #[test]
    fn the_test_driver_ignores_a_guest() {
        let xml = domain_xml(&with_guest(guest(Nic::None)), DomainKind::Test).unwrap();
        assert!(xml.starts_with("<domain type='test'>"));
        assert!(!xml.contains("<devices>"));
    }

    #[test]
    fn user_network_forwards_loopback_ports_and_can_be_isolated() {
        let nic = Nic::User {
            isolated: true,
            forwards: vec![
                PortForward {
                    host_port: 18080,
                    guest_port: 80,
                },
                PortForward {
                    host_port: 12222,
                    guest_port: 22,
                },
            ],
        };
        let xml = domain_xml(&with_guest(guest(nic)), DomainKind::Qemu).unwrap();
        assert!(
            xml.starts_with(&format!("<domain type='qemu' xmlns:qemu='{QEMU_NS}'>")),
            "{xml}"
        );
        assert!(xml.contains(
            "user,id=quarknet0,restrict=on,hostfwd=tcp:127.0.0.1:18080-:80,hostfwd=tcp:127.0.0.1:12222-:22"
        ), "{xml}");
        assert!(xml.contains("virtio-net-pci,netdev=quarknet0"));
        let open = Nic::User {
            isolated: false,
            forwards: vec![],
        };
        let xml = domain_xml(&with_guest(guest(open)), DomainKind::Qemu).unwrap();
        assert!(xml.contains("restrict=off"));
        assert!(!xml.contains("hostfwd"));
    }

    #[test]
    fn bridged_and_network_nics_carry_the_bandwidth() {
        let mut g = guest(Nic::Bridge { name: "br0".into() });
        g.bandwidth_mbps = 80;
        let xml = domain_xml(&with_guest(g), DomainKind::Qemu).unwrap();
        assert!(xml.contains("<interface type='bridge'>"));
        assert!(xml.contains("<source bridge='br0'/>"));
        assert!(xml.contains("<inbound average='10000'/>"), "{xml}");
        assert!(xml.contains("<outbound average='10000'/>"));
        let g = guest(Nic::Network {
            name: "default".into(),
        });
        let xml = domain_xml(&with_guest(g), DomainKind::Qemu).unwrap();
        assert!(xml.contains("<source network='default'/>"));
        assert!(!xml.contains("<bandwidth>"));
    }

    #[test]
    fn bad_guests_are_invalid_arg() {
        let cases: [fn(&mut GuestSpec); 6] = [
            |g| g.disk_path = "relative.qcow2".into(),
            |g| g.seed_path = Some("seed.img".into()),
            |g| g.console_log = String::new(),
            |g| g.disk_format = "vmdk".into(),
            |g| {
                g.nic = Nic::User {
                    isolated: true,
                    forwards: vec![PortForward {
                        host_port: 0,
                        guest_port: 80,
                    }],
                }
            },
            |g| {
                g.nic = Nic::Bridge {
                    name: String::new(),
                }
            },
        ];
        for mutate in cases {
            let mut g = guest(Nic::None);
            mutate(&mut g);
            let err = domain_xml(&with_guest(g.clone()), DomainKind::Qemu).unwrap_err();
            assert_eq!(err.code(), "INVALID_ARG", "{g:?}");
        }
    }
}
