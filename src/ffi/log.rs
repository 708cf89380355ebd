//! What the library logs (a CUDA fallback, a model file without checksums), handed to a
//! callback of the host's: `varad_set_log_callback`.
//!
//! The engine logs through the `log` facade; this file installs the process's logger the
//! first time a callback is set and forwards the library's records to the callback.

use std::ffi::{c_char, c_void, CString};

use parking_lot::RwLock;

use super::boundary::{ffi_boundary, FfiError};
use super::c_enum::{c_enum_try_from, enum_arg};
use super::status::VaradStatus;

/// How severe a logged message is: `varad_set_log_callback`'s `max_level` and the
/// callback's `level`.
#[repr(u32)]
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VaradLogLevel {
    /// Something failed and was not reported through a status (rare).
    VARAD_LOG_ERROR = 1,
    /// Something the operator should know: a model file without checksums, a session
    /// that could not be opened.
    VARAD_LOG_WARN = 2,
    /// What the library chose: the ONNX Runtime it loaded, a CUDA fallback to the CPU.
    VARAD_LOG_INFO = 3,
    /// Detail for debugging.
    VARAD_LOG_DEBUG = 4,
}
c_enum_try_from!(VaradLogLevel {
    VARAD_LOG_ERROR,
    VARAD_LOG_WARN,
    VARAD_LOG_INFO,
    VARAD_LOG_DEBUG,
});

/// A `VaradLogLevel` as an argument holds it (the header names it `VaradLogLevel`).
/// cbindgen:ignore
pub type LogLevelValue = u32;

/// Receives one logged message: its `level` (a `VaradLogLevel` value) and the text,
/// NUL-terminated UTF-8, valid during the call only. Called on the thread that logs,
/// which may be any thread that calls the library or one of its worker threads, possibly
/// several at once: it must be thread-safe. It must not call `varad_set_log_callback` and
/// must not unwind (C++ exceptions, longjmp).
pub type VaradLogCallback =
    Option<unsafe extern "C" fn(level: LogLevelValue, message: *const c_char, user_data: *mut c_void)>;

/// The callback in force, with its `user_data` (an address: the library never reads it).
#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(u32, *const c_char, *mut c_void),
    user_data: usize,
    max_level: VaradLogLevel,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// The process's logger: forwards the library's records to the callback in force.
struct CallbackLogger;

static LOGGER: CallbackLogger = CallbackLogger;

fn level_of(level: log::Level) -> VaradLogLevel {
    match level {
        log::Level::Error => VaradLogLevel::VARAD_LOG_ERROR,
        log::Level::Warn => VaradLogLevel::VARAD_LOG_WARN,
        log::Level::Info => VaradLogLevel::VARAD_LOG_INFO,
        log::Level::Debug | log::Level::Trace => VaradLogLevel::VARAD_LOG_DEBUG,
    }
}

fn filter_of(level: VaradLogLevel) -> log::LevelFilter {
    match level {
        VaradLogLevel::VARAD_LOG_ERROR => log::LevelFilter::Error,
        VaradLogLevel::VARAD_LOG_WARN => log::LevelFilter::Warn,
        VaradLogLevel::VARAD_LOG_INFO => log::LevelFilter::Info,
        VaradLogLevel::VARAD_LOG_DEBUG => log::LevelFilter::Debug,
    }
}

impl log::Log for CallbackLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // Only the library's own records: its dependencies' would be noise to a host.
        metadata.target().starts_with("varad")
            && SINK
                .read()
                .is_some_and(|s| level_of(metadata.level()) <= s.max_level)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string().replace('\0', " ");
        let Ok(message) = CString::new(text) else {
            return;
        };
        let sink = SINK.read();
        if let Some(s) = *sink {
            // SAFETY: the host gave a function as VaradLogCallback describes, with this
            // user_data; the message outlives the call.
            unsafe {
                (s.callback)(
                    level_of(record.level()) as u32,
                    message.as_ptr(),
                    s.user_data as *mut c_void,
                )
            };
        }
    }

    fn flush(&self) {}
}

/// Sends the library's log messages of `max_level` and more severe to `callback` with
/// `user_data`, replacing any callback set before; NULL stops logging. Without a callback
/// nothing is logged anywhere.
///
/// Ownership: `user_data` is the caller's; the library passes it to `callback` until the
/// callback is replaced and never frees it. Thread safety: any thread; once this returns,
/// no call of the previous callback is running or will start.
/// Errors: `VARAD_ERR_INVALID_ARGUMENT` (`max_level` not a `VaradLogLevel`),
/// `VARAD_ERR_RUNTIME` (the process already has another Rust logger, e.g. a Rust host that
/// installed its own: it receives the library's records instead).
///
/// # Safety
/// `callback` is NULL or a function as `VaradLogCallback` describes.
#[no_mangle]
pub unsafe extern "C" fn varad_set_log_callback(
    callback: VaradLogCallback,
    user_data: *mut c_void,
    max_level: LogLevelValue,
) -> VaradStatus {
    ffi_boundary(|| {
        let max_level = enum_arg::<VaradLogLevel>(max_level, "max_level")?;
        install()?;
        // Taken for writing, so it waits for every call of the previous callback to end.
        let mut sink = SINK.write();
        *sink = callback.map(|callback| Sink {
            callback,
            user_data: user_data as usize,
            max_level,
        });
        log::set_max_level(match *sink {
            Some(s) => filter_of(s.max_level),
            None => log::LevelFilter::Off,
        });
        Ok(())
    })
}

/// Makes [`CallbackLogger`] the process's logger, once.
fn install() -> Result<(), FfiError> {
    static INSTALLED: once_cell::sync::OnceCell<bool> = once_cell::sync::OnceCell::new();
    let ours = *INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok());
    if ours {
        Ok(())
    } else {
        Err(FfiError::new(
            VaradStatus::VARAD_ERR_RUNTIME,
            "this process already has a Rust logger of its own (log::set_logger); it \
             receives the library's messages, so no callback can",
        ))
    }
}
