//! libvirt driver: plain Rust over the `virt` crate.
//!
//! Every call blocks on libvirt; the napi face runs each one as an async task off the JS thread.

mod connection;
mod storage;
mod xml;

pub use connection::Connection;
pub use storage::{overlay_xml, pool_xml, HostInfo, VolumeInfo};
pub use xml::{domain_xml, escape, owner_of_metadata, METADATA_NS};

/// The URI Quark opens when none is given: libvirt's built-in test driver, which needs no KVM.
pub const DEFAULT_URI: &str = "test:///default";

/// What to define: the VM's name, optional uuid, and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    pub name: String,
    /// Canonical 8-4-4-4-12 form; libvirt generates one when absent.
    pub uuid: Option<String>,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    /// The compute that defined the domain, kept in Quark's metadata: a compute's reconcile
    /// touches only domains carrying its own id, so two computes can share one libvirt.
    pub owner: Option<String>,
    /// What a real guest boots from and is wired to; `None` defines the record only (the test
    /// driver, which runs no guest).
    pub guest: Option<GuestSpec>,
}

/// The devices and CPU of a real guest (QEMU, accelerated by KVM or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSpec {
    pub accel: Accel,
    pub cpu: CpuMode,
    /// The VM's own disk (a qcow2 overlay on its image), attached as virtio.
    pub disk_path: String,
    pub disk_format: String,
    /// The NoCloud seed (a small raw disk labelled CIDATA), attached read-only as virtio.
    pub seed_path: Option<String>,
    /// The serial console is written (appended, across reboots and starts) to this file.
    pub console_log: String,
    pub nic: Nic,
    /// The interface's `<bandwidth>` where the backend supports it (0: unlimited).
    pub bandwidth_mbps: u64,
}

/// Which `<domain type>` runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    /// QEMU's own translator: slower, runs anywhere.
    Tcg,
}

/// The guest CPU a host can really run (the compute's probe finds out which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    HostPassthrough,
    HostModel,
    /// No `<cpu>` element: the hypervisor's default model.
    Default,
}

impl CpuMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "host-passthrough" => Some(CpuMode::HostPassthrough),
            "host-model" => Some(CpuMode::HostModel),
            "default" => Some(CpuMode::Default),
            _ => None,
        }
    }
}

/// The guest's network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nic {
    None,
    /// QEMU's user-mode network (NAT in the QEMU process, DHCP from it) with TCP ports of
    /// 127.0.0.1 forwarded into the guest. `isolated`: the guest reaches nothing outside,
    /// only the forwards reach it.
    User {
        isolated: bool,
        forwards: Vec<PortForward>,
    },
    /// A libvirt network, by name.
    Network {
        name: String,
    },
    /// An existing host bridge, by name.
    Bridge {
        name: String,
    },
}

/// A TCP port of the host's 127.0.0.1 forwarded to a port of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    pub host_port: u16,
    pub guest_port: u16,
}

/// The `type` attribute of `<domain>`: which hypervisor runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainKind {
    Test,
    Kvm,
    /// QEMU without hardware acceleration (TCG), for hosts with no /dev/kvm.
    Qemu,
}

impl DomainKind {
    pub fn xml_type(self) -> &'static str {
        match self {
            DomainKind::Test => "test",
            DomainKind::Kvm => "kvm",
            DomainKind::Qemu => "qemu",
        }
    }
}

/// libvirt's `virDomainState`, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    NoState,
    Running,
    Blocked,
    Paused,
    Shutdown,
    Shutoff,
    Crashed,
    PmSuspended,
}

impl DomainState {
    /// The lowercase name the TypeScript side uses.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainState::NoState => "nostate",
            DomainState::Running => "running",
            DomainState::Blocked => "blocked",
            DomainState::Paused => "paused",
            DomainState::Shutdown => "shutdown",
            DomainState::Shutoff => "shutoff",
            DomainState::Crashed => "crashed",
            DomainState::PmSuspended => "pmsuspended",
        }
    }
}

/// What Quark reads back about a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    pub name: String,
    pub uuid: String,
    pub state: DomainState,
    pub vcpus: u32,
    /// Configured (maximum) memory, in KiB, as libvirt reports it.
    pub memory_kib: u64,
    pub persistent: bool,
    /// The compute id in Quark's metadata, if the domain has one.
    pub owner: Option<String>,
}
