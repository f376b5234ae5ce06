//! napi face of the libvirt driver: a `Hypervisor` class whose every call is an async task,
//! so the JS event loop never waits on libvirt. Each call has its own `Task`.

use std::sync::Arc;

use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;

use crate::error::QuarkError;
use crate::libvirt::{Connection, DomainInfo, DomainSpec, DEFAULT_URI};

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
