//! One hypervisor connection, shared across threads (libvirt connections are thread-safe).
//!
//! The connection heals itself: when libvirtd restarts, the next call finds the old connection
//! dead and opens a new one, and a call that failed because the connection died reports
//! `CONNECT_FAILED`, which callers retry (every step Quark runs is idempotent). Remote
//! connections send keepalives, so a daemon that stops answering fails its calls instead of
//! hanging them.

use std::sync::{Mutex, MutexGuard, Once};

use virt::connect::Connect;
use virt::domain::{Domain, DomainState as VirtState};
use virt::error::ErrorNumber;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;

use super::{
    domain_xml, overlay_xml, owner_of_metadata, pool_xml, DomainInfo, DomainKind, DomainSpec,
    DomainState, HostInfo, VolumeInfo, METADATA_NS,
};
use crate::error::QuarkError;

/// Keepalive on remote connections: a probe every 5 s, the connection given up after 3 unanswered.
const KEEPALIVE_INTERVAL_S: i32 = 5;
const KEEPALIVE_COUNT: u32 = 3;

/// A libvirt connection. `Send + Sync`: put it in an `Arc` and call it from any thread.
pub struct Connection {
    /// What the caller asked for: opened again after the connection is lost.
    requested: String,
    uri: String,
    kind: Option<DomainKind>,
    // `None` once closed. Each call clones the handle (a libvirt ref), so `close` never pulls
    // the connection from under a call that is still running.
    conn: Mutex<Option<Connect>>,
}

static INIT_LIBVIRT: Once = Once::new();

/// Once per process: libvirt's default error handler prints every error to stderr (Quark reports
/// them itself), and keepalives need libvirt's event loop, run here on a thread of its own.
fn init_libvirt() {
    INIT_LIBVIRT.call_once(|| {
        virt::error::clear_error_callback();
        if virt::event::event_register_default_impl().is_ok() {
            let spawned = std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| loop {
                    if virt::event::event_run_default_impl().is_err() {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                });
            // Without the thread there are no keepalives; calls still work.
            drop(spawned);
        }
    });
}

fn open_connect(uri: &str) -> Result<Connect, QuarkError> {
    init_libvirt();
    let conn = Connect::open(Some(uri)).map_err(QuarkError::connect_failed)?;
    // Local drivers (test:///) have no keepalive; only a remote daemon can stop answering.
    let _ = conn.set_keep_alive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT);
    Ok(conn)
}

impl Connection {
    /// Opens `uri` (e.g. `test:///default`, `qemu:///system`) read-write.
    pub fn open(uri: &str) -> Result<Self, QuarkError> {
        let conn = open_connect(uri)?;
        let kind = domain_kind(&conn)?;
        let reported = conn.uri().unwrap_or_else(|_| uri.to_owned());
        Ok(Connection {
            requested: uri.to_owned(),
            uri: reported,
            kind,
            conn: Mutex::new(Some(conn)),
        })
    }

    /// The URI libvirt reports for this connection.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Which `<domain type>` this connection defines; `None` for drivers Quark does not drive.
    pub fn kind(&self) -> Option<DomainKind> {
        self.kind
    }

    /// Defines (persistently) the domain for `spec` and returns what libvirt made of it.
    /// Defining again with the same name and uuid updates the definition, so the step can rerun.
    pub fn define(&self, spec: &DomainSpec) -> Result<DomainInfo, QuarkError> {
        let kind = self.kind.ok_or_else(|| QuarkError::Unsupported {
            message: format!("Quark does not define domains on {}", self.uri),
            libvirt: None,
        })?;
        let xml = domain_xml(spec, kind)?;
        self.with(|conn| {
            // libvirt reports these clashes as a generic OPERATION_FAILED; Quark names them.
            if let Some(existing) = lookup(conn.lookup_domain_by_name(&spec.name))? {
                let existing_uuid = existing.uuid_string()?;
                let same = spec
                    .uuid
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(&existing_uuid));
                if !same {
                    return Err(QuarkError::DomainExists {
                        message: format!(
                            "domain '{}' already exists with uuid {existing_uuid}",
                            spec.name
                        ),
                        libvirt: None,
                    });
                }
            }
            if let Some(uuid) = &spec.uuid {
                if let Some(existing) = lookup(conn.lookup_domain_by_uuid_string(uuid))? {
                    let existing_name = existing.name()?;
                    if existing_name != spec.name {
                        return Err(QuarkError::DomainExists {
                            message: format!(
                                "uuid {uuid} already belongs to domain '{existing_name}'"
                            ),
                            libvirt: None,
                        });
                    }
                }
            }
            let dom = conn.define_domain_xml(&xml)?;
            info_of(&dom)
        })
    }

    /// Boots a defined, inactive domain.
    pub fn start(&self, name: &str) -> Result<(), QuarkError> {
        self.power(name, Needs::Inactive, Domain::create)
    }

    /// Asks the guest to power off (on QEMU, by pressing its ACPI power button); returns once
    /// asked, not once off.
    pub fn shutdown(&self, name: &str) -> Result<(), QuarkError> {
        if self.runs_guests() {
            self.power(name, Needs::Active, |dom| {
                dom.shutdown_flags(sys::VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            })
        } else {
            self.power(name, Needs::Active, Domain::shutdown)
        }
    }

    /// Pulls the plug: the domain stops at once.
    pub fn destroy(&self, name: &str) -> Result<(), QuarkError> {
        self.power(name, Needs::Active, Domain::destroy)
    }

    /// Asks the guest to reboot (on QEMU, by its ACPI power button: the guest powers off and
    /// libvirt starts it again).
    pub fn reboot(&self, name: &str) -> Result<(), QuarkError> {
        let flags = if self.runs_guests() {
            sys::VIR_DOMAIN_REBOOT_ACPI_POWER_BTN
        } else {
            0
        };
        self.power(name, Needs::Active, |dom| dom.reboot(flags))
    }

    /// Removes the domain's definition, with its managed-save image and snapshot metadata
    /// (and, on QEMU, its NVRAM), which would otherwise make a plain undefine fail.
    /// A running domain keeps running as a transient one until it stops.
    pub fn undefine(&self, name: &str) -> Result<(), QuarkError> {
        let mut flags =
            sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
        if self.runs_guests() {
            flags |= sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | sys::VIR_DOMAIN_UNDEFINE_NVRAM;
        }
        self.with(|conn| {
            domain(conn, name)?.undefine_flags(flags)?;
            Ok(())
        })
    }

    /// Every domain, active and inactive.
    pub fn list(&self) -> Result<Vec<DomainInfo>, QuarkError> {
        self.with(|conn| {
            let mut infos = Vec::new();
            for dom in conn.list_all_domains(0)? {
                // A domain undefined between the listing and the look skips, it does not fail the list.
                match info_of(&dom) {
                    Ok(info) => infos.push(info),
                    Err(QuarkError::NoDomain { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(infos)
        })
    }

    pub fn info(&self, name: &str) -> Result<DomainInfo, QuarkError> {
        self.with(|conn| info_of(&domain(conn, name)?))
    }

    /// The host's CPUs and memory, as libvirt sees them.
    pub fn host_info(&self) -> Result<HostInfo, QuarkError> {
        self.with(|conn| {
            let node = conn.node_info()?;
            Ok(HostInfo {
                cpus: node.cpus,
                memory_kib: node.memory,
                model: node.model,
            })
        })
    }

    /// Makes sure a directory pool `name` at `path` exists, is running and starts with libvirtd.
    /// A pool of that name elsewhere (the compute moved its state directory) is redefined here;
    /// its files stay where they were.
    pub fn ensure_pool(&self, name: &str, path: &str) -> Result<(), QuarkError> {
        let xml = pool_xml(name, path)?;
        self.with(|conn| {
            let mut found = lookup_pool(conn.lookup_storage_pool_by_name(name))?;
            if let Some(pool) = &found {
                let desc = pool.xml_desc(0)?;
                if pool_target(&desc).as_deref() != Some(path) {
                    if pool.is_active()? {
                        pool.destroy()?;
                    }
                    pool.undefine()?;
                    found = None;
                }
            }
            let pool = match found {
                Some(pool) => pool,
                None => match conn.define_storage_pool_xml(&xml, 0) {
                    Ok(pool) => pool,
                    // Defined meanwhile by a concurrent call: use that one.
                    Err(e) => lookup_pool(conn.lookup_storage_pool_by_name(name))?
                        .ok_or_else(|| QuarkError::from(e))?,
                },
            };
            if !pool.is_active()? {
                // Creates the directory if missing; an existing one is fine.
                let _ = pool.build(0);
                if let Err(e) = pool.create(0) {
                    if !pool.is_active()? {
                        return Err(e.into());
                    }
                }
            } else if refresh_settled(&pool).is_err() {
                // Running, but its directory went away under it: start it again from scratch.
                pool.destroy()?;
                let _ = pool.build(0);
                pool.create(0)?;
            }
            let _ = pool.set_autostart(true);
            Ok(())
        })
    }

    /// Creates the qcow2 volume `vol` in `pool` over `backing` (copy on write); an existing
    /// volume of that name is taken as done, so the step can rerun.
    pub fn create_overlay(
        &self,
        pool: &str,
        vol: &str,
        capacity_bytes: u64,
        backing: &str,
        backing_format: &str,
    ) -> Result<VolumeInfo, QuarkError> {
        let xml = overlay_xml(vol, capacity_bytes, backing, backing_format)?;
        self.with(|conn| {
            let pool = find_pool(conn, pool)?;
            if let Some(existing) = lookup_vol(pool.lookup_storage_vol_by_name(vol))? {
                return volume_info(&existing);
            }
            match StorageVol::create_xml(&pool, &xml, 0) {
                Ok(created) => volume_info(&created),
                Err(e) => {
                    // A file libvirt had not seen yet (a create cut short): look again after a refresh.
                    let _ = refresh_settled(&pool);
                    match lookup_vol(pool.lookup_storage_vol_by_name(vol))? {
                        Some(existing) => volume_info(&existing),
                        None => Err(e.into()),
                    }
                }
            }
        })
    }

    /// Deletes volume `vol` of `pool`; `false` when there was none.
    pub fn delete_volume(&self, pool: &str, vol: &str) -> Result<bool, QuarkError> {
        self.with(|conn| {
            let pool = find_pool(conn, pool)?;
            let mut found = lookup_vol(pool.lookup_storage_vol_by_name(vol))?;
            if found.is_none() {
                // Files written beside libvirt (seeds, images) are volumes after a refresh.
                refresh_settled(&pool)?;
                found = lookup_vol(pool.lookup_storage_vol_by_name(vol))?;
            }
            let Some(v) = found else { return Ok(false) };
            match v.delete(0) {
                Ok(()) => Ok(true),
                Err(e) if e.code().is(ErrorNumber::NoStorageVolume) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// The volumes of `pool`, after a refresh (so files written beside libvirt count).
    pub fn list_volumes(&self, pool: &str) -> Result<Vec<VolumeInfo>, QuarkError> {
        self.with(|conn| {
            let pool = find_pool(conn, pool)?;
            refresh_settled(&pool)?;
            let mut out = Vec::new();
            for v in pool.list_all_volumes(0)? {
                match volume_info(&v) {
                    Ok(info) => out.push(info),
                    // Deleted between the listing and the look.
                    Err(QuarkError::NoVolume { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }

    /// Drops this handle's reference to the connection; later calls fail with `CLOSED`.
    /// Closing twice is fine.
    pub fn close(&self) {
        let conn = self.lock().take();
        drop(conn);
    }

    pub fn is_closed(&self) -> bool {
        self.lock().is_none()
    }

    /// Whether this connection's domains are real guests (QEMU), whose power buttons are ACPI.
    fn runs_guests(&self) -> bool {
        matches!(self.kind, Some(DomainKind::Kvm | DomainKind::Qemu))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Connect>> {
        // The guarded value is a handle; a panic elsewhere cannot leave it half-written.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The live connection: a dead one (libvirtd restarted or gone) is replaced by a new one.
    fn handle(&self) -> Result<Connect, QuarkError> {
        let mut guard = self.lock();
        let Some(conn) = guard.as_ref() else {
            return Err(QuarkError::Closed {
                message: format!("the connection to {} is closed", self.uri),
            });
        };
        if conn.is_alive().unwrap_or(false) {
            return Ok(conn.clone());
        }
        let fresh = open_connect(&self.requested).map_err(|e| QuarkError::ConnectFailed {
            message: format!(
                "the connection to {} was lost and could not be opened again: {e}",
                self.uri
            ),
            libvirt: e.libvirt_cause(),
        })?;
        *guard = Some(fresh.clone());
        Ok(fresh)
    }

    /// Runs `f` on the live connection. A failure that left the connection dead is
    /// `CONNECT_FAILED` whatever libvirt called it ("client socket is closed" is an internal
    /// error to libvirt), so callers know to retry.
    fn with<T>(&self, f: impl FnOnce(&Connect) -> Result<T, QuarkError>) -> Result<T, QuarkError> {
        let conn = self.handle()?;
        f(&conn).map_err(|e| match e {
            QuarkError::ConnectFailed { .. } | QuarkError::Closed { .. } => e,
            other if !conn.is_alive().unwrap_or(false) => QuarkError::ConnectFailed {
                message: format!("lost the connection to {}: {other}", self.uri),
                libvirt: other.libvirt_cause(),
            },
            other => other,
        })
    }

    /// Runs a power action. Drivers disagree on how they report the domain being in the wrong
    /// state (the test driver says INTERNAL_ERROR for starting a running domain, QEMU says
    /// OPERATION_INVALID), so a failure in the wrong state is OPERATION_INVALID everywhere,
    /// with libvirt's own number and message kept.
    fn power(
        &self,
        name: &str,
        needs: Needs,
        action: impl FnOnce(&Domain) -> Result<(), virt::error::Error>,
    ) -> Result<(), QuarkError> {
        self.with(|conn| {
            let dom = domain(conn, name)?;
            let Err(err) = action(&dom) else {
                return Ok(());
            };
            let err = QuarkError::from(err);
            let QuarkError::Internal { libvirt, .. } = &err else {
                return Err(err);
            };
            match (needs, dom.is_active()) {
                (Needs::Inactive, Ok(true)) => Err(QuarkError::OperationInvalid {
                    message: format!("domain '{name}' is already running"),
                    libvirt: libvirt.clone(),
                }),
                (Needs::Active, Ok(false)) => Err(QuarkError::OperationInvalid {
                    message: format!("domain '{name}' is not running"),
                    libvirt: libvirt.clone(),
                }),
                _ => Err(err),
            }
        })
    }
}

/// The state a power action needs the domain to be in.
#[derive(Debug, Clone, Copy)]
enum Needs {
    Active,
    Inactive,
}

fn domain(conn: &Connect, name: &str) -> Result<Domain, QuarkError> {
    conn.lookup_domain_by_name(name)
        .map_err(|e| match QuarkError::from(e) {
            // libvirt's message does not say which domain; ours does, and keeps libvirt's cause.
            QuarkError::NoDomain { libvirt, .. } => QuarkError::NoDomain {
                message: format!("no domain named '{name}'"),
                libvirt,
            },
            other => other,
        })
}

/// Turns a lookup's NO_DOMAIN into `None`.
fn lookup(found: Result<Domain, virt::error::Error>) -> Result<Option<Domain>, QuarkError> {
    match found {
        Ok(dom) => Ok(Some(dom)),
        Err(e) if e.code().is(ErrorNumber::NoDomain) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn lookup_pool(
    found: Result<StoragePool, virt::error::Error>,
) -> Result<Option<StoragePool>, QuarkError> {
    match found {
        Ok(pool) => Ok(Some(pool)),
        Err(e) if e.code().is(ErrorNumber::NoStoragePool) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The directory a pool's XML names (`<target><path>`).
fn pool_target(xml: &str) -> Option<String> {
    let target = &xml[xml.find("<target>")?..];
    let start = target.find("<path>")? + "<path>".len();
    let end = target[start..].find("</path>")? + start;
    Some(target[start..end].to_owned())
}

fn find_pool(conn: &Connect, name: &str) -> Result<StoragePool, QuarkError> {
    lookup_pool(conn.lookup_storage_pool_by_name(name))?.ok_or_else(|| QuarkError::NoPool {
        message: format!("no storage pool named '{name}'"),
        libvirt: None,
    })
}

/// How long a refresh waits for volumes other calls are building in the same pool.
const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Refreshes `pool`, waiting while libvirt refuses because a volume is being built in it (another
/// build's overlay, another compute's probe): libvirt answers "has asynchronous jobs running"
/// then, which says "later", not "failed".
fn refresh_settled(pool: &StoragePool) -> Result<(), QuarkError> {
    let deadline = std::time::Instant::now() + REFRESH_WAIT;
    loop {
        match pool.refresh(0) {
            Ok(_) => return Ok(()),
            Err(e) if e.message().contains("asynchronous jobs") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn lookup_vol(
    found: Result<StorageVol, virt::error::Error>,
) -> Result<Option<StorageVol>, QuarkError> {
    match found {
        Ok(vol) => Ok(Some(vol)),
        Err(e) if e.code().is(ErrorNumber::NoStorageVolume) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn volume_info(vol: &StorageVol) -> Result<VolumeInfo, QuarkError> {
    let info = vol.info()?;
    Ok(VolumeInfo {
        name: vol.name()?,
        path: vol.path()?,
        capacity_bytes: info.capacity,
        allocation_bytes: info.allocation,
    })
}

fn domain_kind(conn: &Connect) -> Result<Option<DomainKind>, QuarkError> {
    let driver = conn.driver_type()?;
    Ok(match driver.to_ascii_lowercase().as_str() {
        "test" => Some(DomainKind::Test),
        "qemu" => {
            // The capabilities list a kvm guest type only where /dev/kvm is usable.
            let caps = conn.capabilities()?;
            if caps.contains("<domain type='kvm'") || caps.contains("<domain type=\"kvm\"") {
                Some(DomainKind::Kvm)
            } else {
                Some(DomainKind::Qemu)
            }
        }
        _ => None,
    })
}

fn info_of(dom: &Domain) -> Result<DomainInfo, QuarkError> {
    let raw = dom.info()?;
    let state = match raw.state.known() {
        Some(VirtState::Running) => DomainState::Running,
        Some(VirtState::Blocked) => DomainState::Blocked,
        Some(VirtState::Paused) => DomainState::Paused,
        Some(VirtState::Shutdown) => DomainState::Shutdown,
        Some(VirtState::Shutoff) => DomainState::Shutoff,
        Some(VirtState::Crashed) => DomainState::Crashed,
        Some(VirtState::PMSuspended) => DomainState::PmSuspended,
        Some(VirtState::NoState) | None => DomainState::NoState,
    };
    // The metadata kind is a small C enum; the cast cannot truncate.
    let element = sys::VIR_DOMAIN_METADATA_ELEMENT as i32;
    let owner = match dom.metadata(element, Some(METADATA_NS), 0) {
        Ok(xml) => owner_of_metadata(&xml),
        Err(e) if e.code().is(ErrorNumber::NoDomainMetadata) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(DomainInfo {
        name: dom.name()?,
        uuid: dom.uuid_string()?,
        state,
        vcpus: raw.nr_virt_cpu,
        memory_kib: raw.max_mem,
        persistent: dom.is_persistent()?,
        owner,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::libvirt::DEFAULT_URI;

    // Every connection to test:///default in one process shares state, and tests run in
    // parallel threads: each test uses names of its own.
    fn spec(name: &str) -> DomainSpec {
        DomainSpec {
            name: name.to_owned(),
            uuid: None,
            vcpus: 2,
            ram_mb: 256,
            disk_gb: 5,
            owner: None,
            guest: None,
        }
    }

    fn open() -> Connection {
        Connection::open(DEFAULT_URI).expect("test driver opens")
    }

    #[test]
    fn connection_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Connection>();
    }

    #[test]
    fn opens_the_test_driver() {
        let c = open();
        assert_eq!(c.uri(), DEFAULT_URI);
        assert_eq!(c.kind(), Some(DomainKind::Test));
    }

    #[test]
    fn bad_uri_is_connect_failed() {
        let err = Connection::open("nosuchdriver:///x").err().expect("fails");
        assert_eq!(err.code(), "CONNECT_FAILED");
        assert!(err.libvirt_code().is_some());
    }

    #[test]
    fn lifecycle_define_start_reboot_shutdown_destroy_undefine() {
        let c = open();
        let info = c.define(&spec("rs-life")).unwrap();
        assert_eq!(info.name, "rs-life");
        assert_eq!(info.state, DomainState::Shutoff);
        assert_eq!(info.vcpus, 2);
        assert_eq!(info.memory_kib, 256 * 1024);
        assert!(info.persistent);
        assert_eq!(info.uuid.len(), 36);

        c.start("rs-life").unwrap();
        assert_eq!(c.info("rs-life").unwrap().state, DomainState::Running);
        c.reboot("rs-life").unwrap();
        assert_eq!(c.info("rs-life").unwrap().state, DomainState::Running);
        c.shutdown("rs-life").unwrap();
        assert_eq!(c.info("rs-life").unwrap().state, DomainState::Shutoff);
        c.start("rs-life").unwrap();
        c.destroy("rs-life").unwrap();
        assert_eq!(c.info("rs-life").unwrap().state, DomainState::Shutoff);
        c.undefine("rs-life").unwrap();
        assert_eq!(c.info("rs-life").unwrap_err().code(), "NO_DOMAIN");
    }

    #[test]
    fn missing_domain_is_no_domain_with_libvirt_code() {
        let err = open().info("rs-never-defined").unwrap_err();
        assert_eq!(err.code(), "NO_DOMAIN");
        assert_eq!(err.libvirt_code(), Some(sys::VIR_ERR_NO_DOMAIN as i32));
        for result in [
            open().start("rs-never-defined"),
            open().undefine("rs-never-defined"),
        ] {
            assert_eq!(result.unwrap_err().code(), "NO_DOMAIN");
        }
    }

    #[test]
    fn starting_a_running_domain_is_operation_invalid() {
        let c = open();
        c.define(&spec("rs-twice")).unwrap();
        c.start("rs-twice").unwrap();
        let err = c.start("rs-twice").unwrap_err();
        assert_eq!(err.code(), "OPERATION_INVALID");
        // libvirt's own number stays, whichever the driver chose.
        assert!(err.libvirt_code().is_some());
        assert!(err.to_string().contains("already running"), "{err}");
        let err = c.define(&spec("rs-twice")).unwrap_err();
        assert_eq!(err.code(), "DOMAIN_EXISTS");
        c.destroy("rs-twice").unwrap();
        assert_eq!(
            c.destroy("rs-twice").unwrap_err().code(),
            "OPERATION_INVALID"
        );
        c.undefine("rs-twice").unwrap();
    }

    #[test]
    fn define_is_idempotent_for_the_same_name_and_uuid() {
        let c = open();
        let uuid = "0b0e4a2c-5d1f-4c59-9f0e-3a7d2b8c6e11";
        let s = DomainSpec {
            uuid: Some(uuid.to_owned()),
            ..spec("rs-again")
        };
        assert_eq!(c.define(&s).unwrap().uuid, uuid);
        let bigger = DomainSpec {
            vcpus: 4,
            ..s.clone()
        };
        assert_eq!(c.define(&bigger).unwrap().vcpus, 4);
        let other_name = DomainSpec {
            name: "rs-again-other".into(),
            ..s.clone()
        };
        assert_eq!(c.define(&other_name).unwrap_err().code(), "DOMAIN_EXISTS");
        c.undefine("rs-again").unwrap();
    }

    #[test]
    fn list_has_active_and_inactive_domains() {
        let c = open();
        c.define(&spec("rs-list-on")).unwrap();
        c.define(&spec("rs-list-off")).unwrap();
        c.start("rs-list-on").unwrap();
        let all = c.list().unwrap();
        let find = |n: &str| all.iter().find(|d| d.name == n).cloned();
        assert_eq!(find("rs-list-on").unwrap().state, DomainState::Running);
        assert_eq!(find("rs-list-off").unwrap().state, DomainState::Shutoff);
        c.destroy("rs-list-on").unwrap();
        c.undefine("rs-list-on").unwrap();
        c.undefine("rs-list-off").unwrap();
    }

    #[test]
    fn disk_size_is_kept_in_quark_metadata() {
        let c = open();
        c.define(&spec("rs-meta")).unwrap();
        let xml = domain(&c.handle().unwrap(), "rs-meta")
            .unwrap()
            .xml_desc(0)
            .unwrap();
        assert!(xml.contains(crate::libvirt::METADATA_NS), "{xml}");
        assert!(xml.contains(">5</quark:disk_gb>"), "{xml}");
        c.undefine("rs-meta").unwrap();
    }

    #[test]
    fn odd_names_round_trip() {
        let c = open();
        let name = "rs-<odd> & 'quoted' \"name\"";
        assert_eq!(c.define(&spec(name)).unwrap().name, name);
        assert_eq!(c.info(name).unwrap().name, name);
        c.undefine(name).unwrap();
    }

    #[test]
    fn calls_from_many_threads_share_one_connection() {
        let c = Arc::new(open());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    let name = format!("rs-thread-{i}");
                    c.define(&spec(&name)).unwrap();
                    c.start(&name).unwrap();
                    assert_eq!(c.info(&name).unwrap().state, DomainState::Running);
                    c.destroy(&name).unwrap();
                    c.undefine(&name).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn closed_connection_says_closed() {
        let c = open();
        c.close();
        c.close();
        assert!(c.is_closed());
        assert_eq!(c.list().unwrap_err().code(), "CLOSED");
        // Other connections to the same URI are not affected.
        assert!(open().list().is_ok());
    }

    #[test]
    fn owner_reads_back_from_info_and_list() {
        let c = open();
        let s = DomainSpec {
            owner: Some("compute-9".into()),
            ..spec("rs-owned")
        };
        c.define(&s).unwrap();
        c.define(&spec("rs-unowned")).unwrap();
        assert_eq!(
            c.info("rs-owned").unwrap().owner.as_deref(),
            Some("compute-9")
        );
        assert_eq!(c.info("rs-unowned").unwrap().owner, None);
        let all = c.list().unwrap();
        let owned = all.iter().find(|d| d.name == "rs-owned").unwrap();
        assert_eq!(owned.owner.as_deref(), Some("compute-9"));
        c.undefine("rs-owned").unwrap();
        c.undefine("rs-unowned").unwrap();
    }

    #[test]
    fn host_info_reports_cpus_and_memory() {
        let host = open().host_info().unwrap();
        assert!(host.cpus > 0);
        assert!(host.memory_kib > 0);
    }

    #[test]
    fn a_pool_defined_elsewhere_is_moved_to_the_path_asked_for() {
        let c = open();
        c.ensure_pool("rs-moved", "/rs-moved-a").unwrap();
        c.ensure_pool("rs-moved", "/rs-moved-b").unwrap();
        let conn = c.handle().unwrap();
        let pool = conn.lookup_storage_pool_by_name("rs-moved").unwrap();
        assert_eq!(
            pool_target(&pool.xml_desc(0).unwrap()).as_deref(),
            Some("/rs-moved-b")
        );
        assert!(pool.is_active().unwrap());
    }

    #[test]
    fn pool_and_overlay_volumes_on_the_test_driver() {
        let c = open();
        c.ensure_pool("rs-pool", "/rs-pool").unwrap();
        c.ensure_pool("rs-pool", "/rs-pool").unwrap();
        let v = c
            .create_overlay(
                "rs-pool",
                "rs-vm.qcow2",
                1 << 30,
                "/rs-pool/base.qcow2",
                "qcow2",
            )
            .unwrap();
        assert_eq!(v.name, "rs-vm.qcow2");
        assert_eq!(v.capacity_bytes, 1 << 30);
        // Again: the existing volume is the answer.
        let again = c
            .create_overlay(
                "rs-pool",
                "rs-vm.qcow2",
                1 << 30,
                "/rs-pool/base.qcow2",
                "qcow2",
            )
            .unwrap();
        assert_eq!(again.path, v.path);
        assert!(c
            .list_volumes("rs-pool")
            .unwrap()
            .iter()
            .any(|x| x.name == "rs-vm.qcow2"));
        assert!(c.delete_volume("rs-pool", "rs-vm.qcow2").unwrap());
        assert!(!c.delete_volume("rs-pool", "rs-vm.qcow2").unwrap());
        assert_eq!(
            c.create_overlay("rs-no-pool", "x", 1, "/b", "raw")
                .unwrap_err()
                .code(),
            "NO_POOL"
        );
    }
}
