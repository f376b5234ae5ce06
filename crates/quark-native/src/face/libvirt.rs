//! napi face of the libvirt driver: a `Hypervisor` class whose every call is an async task,
//! so the JS event loop never waits on libvirt. Each call has its own `Task`.

use std::sync::Arc;

use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;

use crate::error::QuarkError;
use crate::libvirt::{
    Accel, Connection, CpuMode, DomainInfo, DomainKind, DomainSpec, GuestSpec, HostInfo, Nic,
    PortForward, VolumeInfo, DEFAULT_URI,
};

/// What JS passes to `define`. Numbers arrive as doubles and are checked in the task.
#[napi(object, js_name = "NativeDomainSpec")]
pub struct JsDomainSpec {
    pub name: String,
    pub uuid: Option<String>,
    pub vcpus: f64,
    #[napi(js_name = "ram_mb")]
    pub ram_mb: f64,
    #[napi(js_name = "disk_gb")]
    pub disk_gb: f64,
    /// The compute id kept in Quark's metadata.
    pub owner: Option<String>,
    /// A real guest's devices; absent on the test driver.
    pub guest: Option<NativeGuestSpec>,
}

/// A real guest's devices and CPU. `accel`: kvm | tcg; `cpu`: host-passthrough | host-model | default.
#[napi(object)]
pub struct NativeGuestSpec {
    pub accel: String,
    pub cpu: String,
    #[napi(js_name = "disk_path")]
    pub disk_path: String,
    #[napi(js_name = "disk_format")]
    pub disk_format: String,
    #[napi(js_name = "seed_path")]
    pub seed_path: Option<String>,
    #[napi(js_name = "console_log")]
    pub console_log: String,
    pub nic: NativeNic,
    #[napi(js_name = "bandwidth_mbps")]
    pub bandwidth_mbps: f64,
}

/// `kind`: none | user (QEMU's user-mode network; `isolated`, `forwards`) | network | bridge (`name`).
#[napi(object)]
pub struct NativeNic {
    pub kind: String,
    pub isolated: Option<bool>,
    pub forwards: Option<Vec<NativePortForward>>,
    pub name: Option<String>,
}

/// TCP `host_port` of 127.0.0.1 forwarded to `guest_port` of the guest.
#[napi(object)]
pub struct NativePortForward {
    #[napi(js_name = "host_port")]
    pub host_port: f64,
    #[napi(js_name = "guest_port")]
    pub guest_port: f64,
}

#[napi(object, js_name = "NativeHostInfo")]
pub struct JsHostInfo {
    pub cpus: u32,
    #[napi(js_name = "memory_kib")]
    pub memory_kib: f64,
    pub model: String,
}

impl From<HostInfo> for JsHostInfo {
    fn from(h: HostInfo) -> Self {
        JsHostInfo {
            cpus: h.cpus,
            // KiB of any real machine stay far below 2^53, where doubles stop being exact.
            memory_kib: h.memory_kib as f64,
            model: h.model,
        }
    }
}

#[napi(object, js_name = "NativeVolumeInfo")]
pub struct JsVolumeInfo {
    pub name: String,
    pub path: String,
    #[napi(js_name = "capacity_bytes")]
    pub capacity_bytes: f64,
    #[napi(js_name = "allocation_bytes")]
    pub allocation_bytes: f64,
}

impl From<VolumeInfo> for JsVolumeInfo {
    fn from(v: VolumeInfo) -> Self {
        JsVolumeInfo {
            name: v.name,
            path: v.path,
            capacity_bytes: v.capacity_bytes as f64,
            allocation_bytes: v.allocation_bytes as f64,
        }
    }
}

fn port(field: &str, value: f64) -> Result<u16, QuarkError> {
    let n = whole_number(field, value, f64::from(u16::MAX))?;
    u16::try_from(n).map_err(|_| QuarkError::invalid_arg(format!("{field} is out of range")))
}

impl TryFrom<&NativeGuestSpec> for GuestSpec {
    type Error = QuarkError;

    fn try_from(js: &NativeGuestSpec) -> Result<Self, QuarkError> {
        let accel = match js.accel.as_str() {
            "kvm" => Accel::Kvm,
            "tcg" => Accel::Tcg,
            other => {
                return Err(QuarkError::invalid_arg(format!(
                    "accel must be kvm or tcg, got {other:?}"
                )))
            }
        };
        let cpu = CpuMode::parse(&js.cpu).ok_or_else(|| {
            QuarkError::invalid_arg(format!(
                "cpu must be host-passthrough, host-model or default, got {:?}",
                js.cpu
            ))
        })?;
        let named = |what: &str| {
            js.nic
                .name
                .clone()
                .ok_or_else(|| QuarkError::invalid_arg(format!("a {what} nic needs a name")))
        };
        let nic = match js.nic.kind.as_str() {
            "none" => Nic::None,
            "user" => Nic::User {
                isolated: js.nic.isolated.unwrap_or(true),
                forwards: js
                    .nic
                    .forwards
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|f| {
                        Ok(PortForward {
                            host_port: port("host_port", f.host_port)?,
                            guest_port: port("guest_port", f.guest_port)?,
                        })
                    })
                    .collect::<Result<_, QuarkError>>()?,
            },
            "network" => Nic::Network {
                name: named("network")?,
            },
            "bridge" => Nic::Bridge {
                name: named("bridge")?,
            },
            other => {
                return Err(QuarkError::invalid_arg(format!(
                    "nic kind must be none, user, network or bridge, got {other:?}"
                )))
            }
        };
        Ok(GuestSpec {
            accel,
            cpu,
            disk_path: js.disk_path.clone(),
            disk_format: js.disk_format.clone(),
            seed_path: js.seed_path.clone(),
            console_log: js.console_log.clone(),
            nic,
            bandwidth_mbps: whole_number("bandwidth_mbps", js.bandwidth_mbps, 2f64.powi(40))?,
        })
    }
}

/// What JS reads back about a domain; `state` is one of libvirt's state names, lowercase.
#[napi(object, js_name = "NativeDomainInfo")]
pub struct JsDomainInfo {
    pub name: String,
    pub uuid: String,
    pub state: String,
    pub vcpus: u32,
    #[napi(js_name = "memory_kib")]
    pub memory_kib: f64,
    pub persistent: bool,
    /// The compute id in Quark's metadata, if any.
    pub owner: Option<String>,
}

impl From<DomainInfo> for JsDomainInfo {
    fn from(info: DomainInfo) -> Self {
        JsDomainInfo {
            name: info.name,
            uuid: info.uuid,
            state: info.state.as_str().to_owned(),
            vcpus: info.vcpus,
            // KiB of any real machine stay far below 2^53, where doubles stop being exact.
            memory_kib: info.memory_kib as f64,
            persistent: info.persistent,
            owner: info.owner,
        }
    }
}

fn whole_number(field: &str, value: f64, max: f64) -> Result<u64, QuarkError> {
    if !(value.is_finite() && value.fract() == 0.0 && value >= 0.0 && value <= max) {
        return Err(QuarkError::invalid_arg(format!(
            "{field} must be a whole number from 0 to {max}, got {value}"
        )));
    }
    Ok(value as u64)
}

impl TryFrom<&JsDomainSpec> for DomainSpec {
    type Error = QuarkError;

    fn try_from(js: &JsDomainSpec) -> Result<Self, QuarkError> {
        let vcpus = whole_number("vcpus", js.vcpus, f64::from(u16::MAX))?;
        Ok(DomainSpec {
            name: js.name.clone(),
            uuid: js.uuid.clone(),
            vcpus: u32::try_from(vcpus).unwrap_or(u32::MAX),
            // 2^40 MiB (or GiB) is an exbibyte or more: a typo, not a request.
            ram_mb: whole_number("ram_mb", js.ram_mb, 2f64.powi(40))?,
            disk_gb: whole_number("disk_gb", js.disk_gb, 2f64.powi(40))?,
            owner: js.owner.clone(),
            guest: js.guest.as_ref().map(GuestSpec::try_from).transpose()?,
        })
    }
}

/// Runs one blocking call; on failure the `QuarkError` is kept so `reject` can throw it coded.
fn run<T>(failure: &mut Option<QuarkError>, result: Result<T, QuarkError>) -> napi::Result<T> {
    result.map_err(|e| {
        let plain = napi::Error::from(e.clone());
        *failure = Some(e);
        plain
    })
}

/// The error a task rejects with: the kept `QuarkError` as a coded JS error, else napi's own.
fn rejection(env: &Env, failure: Option<QuarkError>, err: napi::Error) -> napi::Error {
    match failure {
        Some(quark) => quark.to_js_error(env),
        None => err,
    }
}

/// A connection to one hypervisor. Obtain one with `Hypervisor.open(uri)`.
#[napi(js_name = "Hypervisor")]
pub struct JsHypervisor {
    conn: Arc<Connection>,
}

#[napi]
impl JsHypervisor {
    /// Opens `uri` (default `test:///default`) off the JS thread.
    #[napi(ts_return_type = "Promise<Hypervisor>")]
    pub fn open(uri: Option<String>) -> AsyncTask<OpenTask> {
        AsyncTask::new(OpenTask {
            uri: uri.unwrap_or_else(|| DEFAULT_URI.to_owned()),
            failure: None,
        })
    }

    /// The URI libvirt reports for this connection.
    #[napi(getter)]
    pub fn uri(&self) -> String {
        self.conn.uri().to_owned()
    }

    /// The driver behind the connection: test, kvm (QEMU where /dev/kvm is usable), qemu, or
    /// null for drivers Quark does not drive.
    #[napi(getter)]
    pub fn kind(&self) -> Option<String> {
        self.conn.kind().map(|k| match k {
            DomainKind::Test => "test".to_owned(),
            DomainKind::Kvm => "kvm".to_owned(),
            DomainKind::Qemu => "qemu".to_owned(),
        })
    }

    #[napi(ts_return_type = "Promise<NativeHostInfo>")]
    pub fn host_info(&self) -> AsyncTask<HostInfoTask> {
        let conn = Arc::clone(&self.conn);
        HostInfoTask::task(move || conn.host_info())
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn ensure_pool(&self, name: String, path: String) -> AsyncTask<PoolTask> {
        let conn = Arc::clone(&self.conn);
        PoolTask::task(move || conn.ensure_pool(&name, &path))
    }

    #[napi(ts_return_type = "Promise<NativeVolumeInfo>")]
    pub fn create_overlay(
        &self,
        pool: String,
        vol: String,
        capacity_bytes: f64,
        backing: String,
        backing_format: String,
    ) -> AsyncTask<VolumeTask> {
        let conn = Arc::clone(&self.conn);
        VolumeTask::task(move || {
            let capacity = whole_number("capacity_bytes", capacity_bytes, 2f64.powi(53))?;
            conn.create_overlay(&pool, &vol, capacity, &backing, &backing_format)
        })
    }

    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn delete_volume(&self, pool: String, vol: String) -> AsyncTask<DeleteVolumeTask> {
        let conn = Arc::clone(&self.conn);
        DeleteVolumeTask::task(move || conn.delete_volume(&pool, &vol))
    }

    #[napi(ts_return_type = "Promise<Array<NativeVolumeInfo>>")]
    pub fn list_volumes(&self, pool: String) -> AsyncTask<VolumesTask> {
        let conn = Arc::clone(&self.conn);
        VolumesTask::task(move || conn.list_volumes(&pool))
    }

    #[napi(ts_return_type = "Promise<NativeDomainInfo>")]
    pub fn define(&self, spec: JsDomainSpec) -> AsyncTask<DefineTask> {
        AsyncTask::new(DefineTask {
            conn: Arc::clone(&self.conn),
            spec,
            failure: None,
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn start(&self, name: String) -> AsyncTask<StartTask> {
        AsyncTask::new(StartTask {
            conn: Arc::clone(&self.conn),
            name,
            failure: None,
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn shutdown(&self, name: String) -> AsyncTask<ShutdownTask> {
        AsyncTask::new(ShutdownTask {
            conn: Arc::clone(&self.conn),
            name,
            failure: None,
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn destroy(&self, name: String) -> AsyncTask<DestroyTask> {
        AsyncTask::new(DestroyTask {
            conn: Arc::clone(&self.conn),
            name,
            failure: None,
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn reboot(&self, name: String) -> AsyncTask<RebootTask> {
        AsyncTask::new(RebootTask {
            conn: Arc::clone(&self.conn),
            name,
            failure: None,
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn undefine(&self, name: String) -> AsyncTask<UndefineTask> {
        AsyncTask::new(UndefineTask {
            conn: Arc::clone(&self.conn),
            name,
            failure: None,
        })
    }

    #[napi(ts_return_type = "Promise<NativeDomainInfo>")]
    pub fn info(&self, name: String) -> AsyncTask<InfoTask> {
        AsyncTask::new(InfoTask {
            conn: Arc::clone(&self.conn),
            name,
            failure: None,
        })
    }

    #[napi(ts_return_type = "Promise<Array<NativeDomainInfo>>")]
    pub fn list(&self) -> AsyncTask<ListTask> {
        AsyncTask::new(ListTask {
            conn: Arc::clone(&self.conn),
            failure: None,
        })
    }

    /// Closes the connection; later calls reject with `CLOSED`. Closing twice is fine.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> AsyncTask<CloseTask> {
        AsyncTask::new(CloseTask {
            conn: Arc::clone(&self.conn),
        })
    }
}

/// Tasks for one blocking call each, run off the JS thread; `$to_js` converts the result.
macro_rules! blocking_task {
    ($task:ident, $out:ty, $js:ty, $to_js:expr) => {
        pub struct $task {
            work: Option<Box<dyn FnOnce() -> Result<$out, QuarkError> + Send>>,
            failure: Option<QuarkError>,
        }

        impl $task {
            fn task(
                work: impl FnOnce() -> Result<$out, QuarkError> + Send + 'static,
            ) -> AsyncTask<Self> {
                AsyncTask::new($task {
                    work: Some(Box::new(work)),
                    failure: None,
                })
            }
        }

        impl Task for $task {
            type Output = $out;
            type JsValue = $js;

            fn compute(&mut self) -> napi::Result<$out> {
                let work = self.work.take().ok_or_else(|| {
                    napi::Error::new(napi::Status::GenericFailure, "the call already ran")
                })?;
                run(&mut self.failure, work())
            }

            fn resolve(&mut self, _env: Env, out: $out) -> napi::Result<$js> {
                Ok(($to_js)(out))
            }

            fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<$js> {
                Err(rejection(&env, self.failure.take(), err))
            }
        }
    };
}

blocking_task!(HostInfoTask, HostInfo, JsHostInfo, JsHostInfo::from);
blocking_task!(PoolTask, (), (), |()| ());
blocking_task!(VolumeTask, VolumeInfo, JsVolumeInfo, JsVolumeInfo::from);
blocking_task!(DeleteVolumeTask, bool, bool, |found: bool| found);
blocking_task!(VolumesTask, Vec<VolumeInfo>, Vec<JsVolumeInfo>, |v: Vec<
    VolumeInfo,
>| v
    .into_iter()
    .map(JsVolumeInfo::from)
    .collect::<Vec<_>>());

pub struct OpenTask {
    uri: String,
    failure: Option<QuarkError>,
}

#[napi]
impl Task for OpenTask {
    type Output = Connection;
    type JsValue = JsHypervisor;

    fn compute(&mut self) -> napi::Result<Connection> {
        run(&mut self.failure, Connection::open(&self.uri))
    }

    fn resolve(&mut self, _env: Env, conn: Connection) -> napi::Result<JsHypervisor> {
        Ok(JsHypervisor {
            conn: Arc::new(conn),
        })
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<JsHypervisor> {
        Err(rejection(&env, self.failure.take(), err))
    }
}

pub struct DefineTask {
    conn: Arc<Connection>,
    spec: JsDomainSpec,
    failure: Option<QuarkError>,
}

#[napi]
impl Task for DefineTask {
    type Output = DomainInfo;
    type JsValue = JsDomainInfo;

    fn compute(&mut self) -> napi::Result<DomainInfo> {
        let result = DomainSpec::try_from(&self.spec).and_then(|spec| self.conn.define(&spec));
        run(&mut self.failure, result)
    }

    fn resolve(&mut self, _env: Env, info: DomainInfo) -> napi::Result<JsDomainInfo> {
        Ok(info.into())
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<JsDomainInfo> {
        Err(rejection(&env, self.failure.take(), err))
    }
}

pub struct InfoTask {
    conn: Arc<Connection>,
    name: String,
    failure: Option<QuarkError>,
}

#[napi]
impl Task for InfoTask {
    type Output = DomainInfo;
    type JsValue = JsDomainInfo;

    fn compute(&mut self) -> napi::Result<DomainInfo> {
        run(&mut self.failure, self.conn.info(&self.name))
    }

    fn resolve(&mut self, _env: Env, info: DomainInfo) -> napi::Result<JsDomainInfo> {
        Ok(info.into())
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<JsDomainInfo> {
        Err(rejection(&env, self.failure.take(), err))
    }
}

pub struct ListTask {
    conn: Arc<Connection>,
    failure: Option<QuarkError>,
}

#[napi]
impl Task for ListTask {
    type Output = Vec<DomainInfo>;
    type JsValue = Vec<JsDomainInfo>;

    fn compute(&mut self) -> napi::Result<Vec<DomainInfo>> {
        run(&mut self.failure, self.conn.list())
    }

    fn resolve(&mut self, _env: Env, infos: Vec<DomainInfo>) -> napi::Result<Vec<JsDomainInfo>> {
        Ok(infos.into_iter().map(JsDomainInfo::from).collect())
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<Vec<JsDomainInfo>> {
        Err(rejection(&env, self.failure.take(), err))
    }
}

pub struct CloseTask {
    conn: Arc<Connection>,
}

#[napi]
impl Task for CloseTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        self.conn.close();
        Ok(())
    }

    fn resolve(&mut self, _env: Env, _out: ()) -> napi::Result<()> {
        Ok(())
    }
}

/// The calls that take a domain name and return nothing: one task type each.
macro_rules! domain_action_task {
    ($task:ident, $method:ident) => {
        pub struct $task {
            conn: Arc<Connection>,
            name: String,
            failure: Option<QuarkError>,
        }

        #[napi]
        impl Task for $task {
            type Output = ();
            type JsValue = ();

            fn compute(&mut self) -> napi::Result<()> {
                run(&mut self.failure, self.conn.$method(&self.name))
            }

            fn resolve(&mut self, _env: Env, _out: ()) -> napi::Result<()> {
                Ok(())
            }

            fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<()> {
                Err(rejection(&env, self.failure.take(), err))
            }
        }
    };
}

domain_action_task!(StartTask, start);
domain_action_task!(ShutdownTask, shutdown);
domain_action_task!(DestroyTask, destroy);
domain_action_task!(RebootTask, reboot);
domain_action_task!(UndefineTask, undefine);
