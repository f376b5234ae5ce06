//! One error enum for the addon; it becomes a coded JS error in exactly one `From` impl.
//!
//! Every variant has a stable string code (`QuarkError::code`) that JS reads as `err.code`.
//! Errors that came from libvirt keep libvirt's numeric `virErrorNumber` and its message.

use virt::error::{Error as VirtError, ErrorNumber};

/// Where an error came from in libvirt: its `virErrorNumber` and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtCause {
    pub code: i32,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuarkError {
    /// No domain with that name or uuid (`VIR_ERR_NO_DOMAIN`).
    #[error("{message}")]
    NoDomain {
        message: String,
        libvirt: Option<LibvirtCause>,
    },

    /// A domain with that name or uuid exists already (`VIR_ERR_DOM_EXIST`).
    #[error("{message}")]
    DomainExists {
        message: String,
        libvirt: Option<LibvirtCause>,
    },

    /// The domain is in the wrong state for the call, e.g. starting a running domain
    /// (`VIR_ERR_OPERATION_INVALID`).
    #[error("{message}")]
    OperationInvalid {
        message: String,
        libvirt: Option<LibvirtCause>,
    },

    /// The hypervisor connection could not be opened or was lost.
    #[error("{message}")]
    ConnectFailed {
        message: String,
        libvirt: Option<LibvirtCause>,
    },

    /// No storage pool with that name (`VIR_ERR_NO_STORAGE_POOL`).
    #[error("{message}")]
    NoPool {
        message: String,
        libvirt: Option<LibvirtCause>,
    },

    /// No storage volume with that name (`VIR_ERR_NO_STORAGE_VOL`).
    #[error("{message}")]
    NoVolume {
        message: String,
        libvirt: Option<LibvirtCause>,
    },

    /// The connection was closed by its owner; no further calls are possible.
    #[error("{message}")]
    Closed { message: String },

    /// The caller passed something malformed (checked here, or refused by libvirt).
    #[error("{message}")]
    InvalidArg {
        message: String,
        libvirt: Option<LibvirtCause>,
    },

    /// The driver behind the connection does not do this.
    #[error("{message}")]
    Unsupported {
        message: String,
        libvirt: Option<LibvirtCause>,
    },

    /// Anything else libvirt reported; its number and message are kept.
    #[error("{message}")]
    Internal {
        message: String,
        libvirt: Option<LibvirtCause>,
    },
}

impl QuarkError {
    /// The stable code JS sees as `err.code`.
    pub fn code(&self) -> &'static str {
        match self {
            QuarkError::NoDomain { .. } => "NO_DOMAIN",
            QuarkError::DomainExists { .. } => "DOMAIN_EXISTS",
            QuarkError::OperationInvalid { .. } => "OPERATION_INVALID",
            QuarkError::ConnectFailed { .. } => "CONNECT_FAILED",
            QuarkError::NoPool { .. } => "NO_POOL",
            QuarkError::NoVolume { .. } => "NO_VOLUME",
            QuarkError::Closed { .. } => "CLOSED",
            QuarkError::InvalidArg { .. } => "INVALID_ARG",
            QuarkError::Unsupported { .. } => "UNSUPPORTED",
            QuarkError::Internal { .. } => "INTERNAL",
        }
    }

    /// libvirt's `virErrorNumber`, when libvirt raised the error.
    pub fn libvirt_code(&self) -> Option<i32> {
        self.libvirt_cause().map(|l| l.code)
    }

    /// libvirt's number and message, when libvirt raised the error.
    pub fn libvirt_cause(&self) -> Option<LibvirtCause> {
        match self {
            QuarkError::NoDomain { libvirt, .. }
            | QuarkError::DomainExists { libvirt, .. }
            | QuarkError::OperationInvalid { libvirt, .. }
            | QuarkError::ConnectFailed { libvirt, .. }
            | QuarkError::NoPool { libvirt, .. }
            | QuarkError::NoVolume { libvirt, .. }
            | QuarkError::InvalidArg { libvirt, .. }
            | QuarkError::Unsupported { libvirt, .. }
            | QuarkError::Internal { libvirt, .. } => libvirt.clone(),
            QuarkError::Closed { .. } => None,
        }
    }

    pub fn invalid_arg(message: impl Into<String>) -> Self {
        QuarkError::InvalidArg {
            message: message.into(),
            libvirt: None,
        }
    }

    /// An error raised by `virConnectOpen`: whatever libvirt said, the connection failed.
    pub fn connect_failed(err: VirtError) -> Self {
        let cause = cause_of(&err);
        QuarkError::ConnectFailed {
            message: cause.message.clone(),
            libvirt: Some(cause),
        }
    }
}

fn cause_of(err: &VirtError) -> LibvirtCause {
    // virErrorNumber is a small C enum; it always fits an i32.
    let code = i32::try_from(err.code().to_raw()).unwrap_or(i32::MAX);
    LibvirtCause {
        code,
        message: err.message().to_owned(),
    }
}

impl From<VirtError> for QuarkError {
    fn from(err: VirtError) -> Self {
        let cause = cause_of(&err);
        let message = cause.message.clone();
        let libvirt = Some(cause);
        match err.code().known() {
            Some(ErrorNumber::NoDomain) => QuarkError::NoDomain { message, libvirt },
            Some(ErrorNumber::DomExist) => QuarkError::DomainExists { message, libvirt },
            Some(ErrorNumber::NoStoragePool) => QuarkError::NoPool { message, libvirt },
            Some(ErrorNumber::NoStorageVolume) => QuarkError::NoVolume { message, libvirt },
            Some(ErrorNumber::OperationInvalid) => {
                QuarkError::OperationInvalid { message, libvirt }
            }
            Some(
                ErrorNumber::NoConnect
                | ErrorNumber::InvalidConn
                | ErrorNumber::AuthFailed
                | ErrorNumber::AuthCancelled
                | ErrorNumber::AuthUnavailable
                | ErrorNumber::Rpc
                | ErrorNumber::SystemError,
            ) => QuarkError::ConnectFailed { message, libvirt },
            Some(
                ErrorNumber::InvalidArg
                | ErrorNumber::XmlError
                | ErrorNumber::XmlDetail
                | ErrorNumber::XmlInvalidSchema
                | ErrorNumber::InvalidDomain,
            ) => QuarkError::InvalidArg { message, libvirt },
            Some(
                ErrorNumber::NoSupport
                | ErrorNumber::OperationUnsupported
                | ErrorNumber::ArgumentUnsupported
                | ErrorNumber::ConfigUnsupported,
            ) => QuarkError::Unsupported { message, libvirt },
            _ => QuarkError::Internal { message, libvirt },
        }
    }
}

/// The one conversion to napi's error: status `GenericFailure`, reason `"<CODE>: <message>"`.
/// Async tasks keep the `QuarkError` itself and throw it through `to_js_error`, which starts
/// from this and makes the code readable as `err.code`.
impl From<QuarkError> for napi::Error {
    fn from(err: QuarkError) -> Self {
        napi::Error::new(
            napi::Status::GenericFailure,
            format!("{}: {}", err.code(), err),
        )
    }
}

impl QuarkError {
    /// Builds the JS `Error` to throw: message `"<CODE>: <message>"`, `code` set to the stable
    /// code and, when libvirt raised it, `libvirtCode` set to libvirt's number.
    pub fn to_js_error(&self, env: &napi::Env) -> napi::Error {
        use napi::bindgen_prelude::JsObjectValue as _;
        use napi::JsValue as _;
        let base: napi::Error = self.clone().into();
        let built = env.create_error(base).and_then(|mut obj| {
            obj.set_named_property("code", self.code())?;
            if let Some(n) = self.libvirt_code() {
                obj.set_named_property("libvirtCode", n)?;
            }
            Ok(napi::Error::from(obj.to_unknown()))
        });
        // If the env cannot build an object (it is tearing down), the plain error still says the code.
        built.unwrap_or_else(|_| self.clone().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_strings() {
        assert_eq!(QuarkError::invalid_arg("x").code(), "INVALID_ARG");
        assert_eq!(
            QuarkError::Closed {
                message: "x".into()
            }
            .code(),
            "CLOSED"
        );
        let e = QuarkError::NoDomain {
            message: "gone".into(),
            libvirt: Some(LibvirtCause {
                code: 42,
                message: "gone".into(),
            }),
        };
        assert_eq!(e.code(), "NO_DOMAIN");
        assert_eq!(e.libvirt_code(), Some(42));
        assert_eq!(e.to_string(), "gone");
    }
}
