//! Process logging in fluentd's text format (`2026-11-24 10:00:00 +0000 [warn]: message
//! key="value"`) or as JSON lines, to stderr. Level and format are process-wide settings
//! chosen at start; logging is off the data path (per connection or per error, never per
//! event).

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Fatal = 5,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" => Level::Warn,
            "error" => Level::Error,
            "fatal" => Level::Fatal,
            _ => return None,
        })
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicU8 = AtomicU8::new(0);

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
}
pub fn set_json(json: bool) {
    JSON.store(json as u8, Ordering::Relaxed);
}
pub fn enabled(l: Level) -> bool {
    l as u8 >= LEVEL.load(Ordering::Relaxed)
}

/// Local time as fluentd prints it: `YYYY-mm-dd HH:MM:SS +hhmm`, with `frac_digits`
/// fractional digits of `nsec` when non-zero.
pub fn format_time(out: &mut Vec<u8>, sec: i64, nsec: u32, frac_digits: usize) {
    // SAFETY: tm is plain data; all-zero (1900-01-00 00:00:00 UTC) stands in when the
    // C library cannot represent `sec`.
    let tm = crate::sys::localtime(sec).unwrap_or_else(|| unsafe { std::mem::zeroed() });
    let off = tm.tm_gmtoff / 60;
    let (sign, off) = if off < 0 { ('-', -off) } else { ('+', off) };
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
    if frac_digits > 0 {
        let frac = format!("{nsec:09}");
        let _ = write!(out, ".{}", &frac[..frac_digits.min(9)]);
    }
    let _ = write!(out, " {}{:02}{:02}", sign, off / 60, off % 60);
}

/// Writes one log line. Prefer the `log_*!` macros.
pub fn write(level: Level, msg: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut line = Vec::with_capacity(160);
    if JSON.load(Ordering::Relaxed) == 1 {
        let mut t = Vec::new();
        format_time(&mut t, now.as_secs() as i64, 0, 0);
        let message = msg.to_string();
        let _ = write!(
            line,
            "{{\"time\":{},\"level\":\"{}\",\"message\":{}}}",
            serde_json::Value::String(String::from_utf8_lossy(&t).into_owned()),
            level.name(),
            serde_json::Value::String(message)
        );
    } else {
        format_time(&mut line, now.as_secs() as i64, 0, 0);
        let _ = write!(line, " [{}]: {}", level.name(), msg);
    }
    line.push(b'\n');
    let _ = std::io::stderr().write_all(&line);
}

#[macro_export]
macro_rules! log_at {
    ($lvl:expr, $($arg:tt)*) => { $crate::log::write($lvl, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! trace { ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Trace, $($arg)*) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Debug, $($arg)*) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Info, $($arg)*) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Warn, $($arg)*) }; }
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Error, $($arg)*) }; }
