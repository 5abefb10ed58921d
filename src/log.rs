//! Library logging: messages go to a callback the host installs, or, without one, warnings
//! and errors go to stderr.

use std::sync::Arc;

use parking_lot::RwLock;

/// Severity of a log message. Values match ggml's `ggml_log_level` (DEBUG 1 .. ERROR 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// A log sink.
pub type Logger = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

static LOGGER: RwLock<Option<Logger>> = RwLock::new(None);

/// Installs `logger` for every later message (`None` restores the stderr default).
pub fn set_logger(logger: Option<Logger>) {
    *LOGGER.write() = logger;
}

/// Emits one message.
pub fn log(level: LogLevel, message: &str) {
    // Clone the sink out of the lock so that a callback may itself call set_logger.
    let logger = LOGGER.read().clone();
    match logger {
        Some(f) => f(level, message),
        None => {
            if level >= LogLevel::Warn {
                let tag = if level == LogLevel::Warn {
                    "warning"
                } else {
                    "error"
                };
                eprintln!("vtower {tag}: {message}");
            }
        }
    }
}

pub fn info(message: &str) {
    log(LogLevel::Info, message)
}

pub fn warn(message: &str) {
    log(LogLevel::Warn, message)
}
