//! libvirt driver: plain Rust over the `virt` crate.
//!
//! Every call blocks on libvirt; the napi face runs each one as an async task off the JS thread.

mod connection;
mod xml;

pub use connection::Connection;
pub use xml::{domain_xml, escape, METADATA_NS};

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
}
