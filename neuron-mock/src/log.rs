//! The mock's log, shaped like the real runtime's.
//!
//! - Level: `NEURON_RT_LOG_LEVEL_NRT`, else `NEURON_RT_LOG_LEVEL` (`ERROR` by default; also
//!   `WARNING`/`WARN`, `INFO`, `DEBUG`, `TRACE`, and `QUIET` for nothing), as the real runtime.
//! - Destination: standard error, or the file named by `NEURON_MOCK_LOG_FILE` (appended to), so
//!   that a test can read what the mock said. `NEURON_RT_LOG_LOCATION=syslog` is not supported
//!   and is treated as `console`.
//! - Every failing call also records its message as the calling thread's last error, whatever
//!   the level; the mock-only export `neuron_mock_last_error` returns it (see `testing`).
//!
//! The settings are read when the library first logs and again at every `nrt_init`.

use std::cell::RefCell;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::env_var;

/// Severity of a log line, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

/// Parses a `NEURON_RT_LOG_LEVEL` value: `Some(0)` is QUIET, `None` an unknown value.
fn parse_level(value: &str) -> Option<u8> {
    Some(match value.trim().to_ascii_uppercase().as_str() {
        "QUIET" | "OFF" | "NONE" => 0,
        "ERROR" => Level::Error as u8,
        "WARNING" | "WARN" => Level::Warn as u8,
        "INFO" => Level::Info as u8,
        "DEBUG" => Level::Debug as u8,
        "TRACE" => Level::Trace as u8,
        _ => return None,
    })
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Error as u8);
static CONFIGURED: AtomicBool = AtomicBool::new(false);
static FILE: Mutex<Option<File>> = Mutex::new(None);

/// Reads the log settings from the environment (at first use and at every `nrt_init`).
pub(crate) fn configure() {
    CONFIGURED.store(true, Ordering::Relaxed);
    let mut warning = None;
    let level = match env_var("NEURON_RT_LOG_LEVEL_NRT").or_else(|| env_var("NEURON_RT_LOG_LEVEL"))
    {
        None => Level::Error as u8,
        Some(value) => parse_level(&value).unwrap_or_else(|| {
            warning = Some(format!(
                "NEURON_RT_LOG_LEVEL={value:?} is not one of ERROR, WARNING, INFO, DEBUG, TRACE, \
                 QUIET; using ERROR"
            ));
            Level::Error as u8
        }),
    };
    MAX_LEVEL.store(level, Ordering::Relaxed);
    let file = env_var("NEURON_MOCK_LOG_FILE").and_then(|path| {
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => Some(f),
            Err(e) => {
                warning = Some(format!(
                    "cannot open NEURON_MOCK_LOG_FILE={path}: {e}; logging to stderr"
                ));
                None
            }
        }
    });
    *FILE.lock().unwrap_or_else(|p| p.into_inner()) = file;
    if let Some(message) = warning {
        write(Level::Warn, "nrt_init", format_args!("{message}"));
    }
}

/// Whether lines of this level are written.
pub(crate) fn enabled(level: Level) -> bool {
    if !CONFIGURED.load(Ordering::Relaxed) {
        configure();
    }
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Writes one line if the level is enabled. Use the `log!` macro (in lib.rs).
pub(crate) fn write(level: Level, function: &str, message: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let line = format!(
        "{} {}:{} {:<5} NRT:{:<28} {}\n",
        timestamp(),
        std::process::id(),
        thread_number(),
        level.label(),
        function,
        message
    );
    let mut file = FILE.lock().unwrap_or_else(|p| p.into_inner());
    let written = file
        .as_mut()
        .is_some_and(|f| f.write_all(line.as_bytes()).is_ok());
    if !written {
        // Nothing sensible to do if stderr is closed.
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
    static THREAD_NUMBER: u64 = {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

/// Records a failed call: the thread's last error, and an ERROR line if enabled.
pub(crate) fn failure(function: &str, message: &str) {
    LAST_ERROR.with(|last| {
        let mut last = last.borrow_mut();
        last.clear();
        last.push_str(function);
        last.push_str(": ");
        last.push_str(message);
    });
    write(Level::Error, function, format_args!("{message}"));
}

/// The calling thread's last recorded failure ("function: message"), or an empty string.
pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|last| last.borrow().clone())
}

fn thread_number() -> u64 {
    THREAD_NUMBER.with(|n| *n)
}

/// `2026-Aug-17 09:30:00.123456` in UTC, the real runtime's timestamp shape.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month_name = MONTHS.get(month as usize - 1).copied().unwrap_or("???");
    let rem = secs % 86_400;
    format!(
        "{year}-{month_name}-{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_682), (2026, 8, 17));
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("error"), Some(1));
        assert_eq!(parse_level("WARNING"), Some(2));
        assert_eq!(parse_level("warn"), Some(2));
        assert_eq!(parse_level(" Trace "), Some(5));
        assert_eq!(parse_level("QUIET"), Some(0));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn failures_are_the_threads_last_error() {
        failure("nrt_test", "something named 'x' failed");
        assert_eq!(last_error(), "nrt_test: something named 'x' failed");
        std::thread::spawn(|| assert_eq!(last_error(), ""))
            .join()
            .unwrap();
    }
}
