//! Process logging in fluentd's text format (`2026-11-24 10:00:00 +0000 [warn]: message
//! key="value"`) or as JSON lines, to stderr, and the hand-off of log lines to the
//! engine as events (fluentd's `fluent.<level>` events).
//!
//! Settings are process-wide: the level, the format, `<log> time_format` (a formatter
//! installed by the binary), `<system>`'s `ignore_repeated_log_interval` and
//! `ignore_same_log_interval`, and per-plugin `@log_level`. A line belongs to a plugin
//! when it starts with `<plugin id>: ` (or `<plugin id>.<sub>: `), which is how every
//! plugin writes its lines; its `@log_level` then applies.
//!
//! Events: a shard installs a sink ([`set_thread_sink`]) that queues the lines written
//! on its thread; lines from other threads go to a bounded process queue that shard 0
//! drains ([`take_global_events`]). Two rules keep a failing log destination from
//! feeding itself: lines written while the shard routes log events are never events
//! ([`EmittingEvents`]), and lines of an output that has received log events on this
//! shard ([`mark_sink`]) are not either.
//!
//! Logging is off the data path (per connection or per error, never per event).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    pub const ALL: [Level; 6] = [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error, Level::Fatal];

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
    fn from_u8(v: u8) -> Level {
        Level::ALL.get(v as usize).copied().unwrap_or(Level::Fatal)
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
/// The lowest level any plugin or the process logs at (the fast "is it off" check).
static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicU8 = AtomicU8::new(0);
/// Whether log lines become events (a configuration routes `fluent.*`).
static EVENTS: AtomicBool = AtomicBool::new(false);

/// `<system> emit_error_log_interval` in milliseconds (0: every error is logged) and
/// when the next one may be (Unix milliseconds).
static EMIT_ERROR_INTERVAL_MS: AtomicU64 = AtomicU64::new(0);
static NEXT_EMIT_ERROR_MS: AtomicU64 = AtomicU64::new(0);

/// Formats a log line's time (`<log> time_format`).
pub type TimeFormatter = Arc<dyn Fn(&mut Vec<u8>, i64, u32) + Send + Sync>;

#[derive(Default)]
struct Settings {
    plugin_levels: Vec<(String, Level)>,
    ignore_repeated: Option<Duration>,
    ignore_same: Option<Duration>,
    time_format: Option<TimeFormatter>,
}

static SETTINGS: RwLock<Option<Settings>> = RwLock::new(None);

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
    recompute_min();
}
pub fn set_json(json: bool) {
    JSON.store(json as u8, Ordering::Relaxed);
}
pub fn level() -> Level {
    Level::from_u8(LEVEL.load(Ordering::Relaxed))
}

fn with_settings<R>(f: impl FnOnce(&mut Settings) -> R) -> R {
    let mut g = SETTINGS.write().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Settings::default))
}

/// Per-plugin `@log_level`s, by plugin id (replaces the previous set: reload).
pub fn set_plugin_levels(levels: Vec<(String, Level)>) {
    with_settings(|s| s.plugin_levels = levels);
    recompute_min();
}

/// `<system>` `ignore_repeated_log_interval` and `ignore_same_log_interval`.
pub fn set_suppression(ignore_repeated: Option<Duration>, ignore_same: Option<Duration>) {
    with_settings(|s| {
        s.ignore_repeated = ignore_repeated;
        s.ignore_same = ignore_same;
    });
}

/// `<system> emit_error_log_interval`.
pub fn set_emit_error_interval(d: Option<Duration>) {
    EMIT_ERROR_INTERVAL_MS.store(d.map_or(0, |d| d.as_millis() as u64), Ordering::Relaxed);
}

/// fluentd's `emit_error_log_interval`: whether a line about events an input could not
/// emit may be written now (then none until the interval has passed).
pub fn emit_error_allowed() -> bool {
    let iv = EMIT_ERROR_INTERVAL_MS.load(Ordering::Relaxed);
    if iv == 0 {
        return true;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let next = NEXT_EMIT_ERROR_MS.load(Ordering::Relaxed);
    now >= next && NEXT_EMIT_ERROR_MS.compare_exchange(next, now + iv, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

/// `<log> time_format` (`None`: fluentd's default `%Y-%m-%d %H:%M:%S %z`).
pub fn set_time_format(f: Option<TimeFormatter>) {
    with_settings(|s| s.time_format = f);
}

/// Turns log events on or off (on when a configuration routes `fluent.*`; off during
/// shutdown unless `log_event_verbose`).
pub fn set_events(on: bool) {
    EVENTS.store(on, Ordering::Relaxed);
}

fn recompute_min() {
    let g = LEVEL.load(Ordering::Relaxed);
    let p = SETTINGS
        .read()
        .ok()
        .and_then(|s| s.as_ref().and_then(|s| s.plugin_levels.iter().map(|(_, l)| *l as u8).min()))
        .unwrap_or(u8::MAX);
    MIN_LEVEL.store(g.min(p), Ordering::Relaxed);
}

/// Whether a line at `l` is written at all by the process (plugins may log lower).
pub fn enabled(l: Level) -> bool {
    l as u8 >= MIN_LEVEL.load(Ordering::Relaxed)
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

/// One log line handed to the engine as an event.
#[derive(Debug, Clone)]
pub struct LogEvent {
    pub level: Level,
    pub sec: i64,
    pub nsec: u32,
    pub message: String,
}

/// Where a shard's log events go.
pub type Sink = Rc<dyn Fn(LogEvent)>;

thread_local! {
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
    static EMITTING: Cell<bool> = const { Cell::new(false) };
    static SINK_IDS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static LAST_LINE: RefCell<Option<(String, Instant)>> = const { RefCell::new(None) };
    static SAME: RefCell<HashMap<String, Instant>> = RefCell::new(HashMap::new());
}

/// Lines from threads without a sink (main, signals, helpers), for shard 0.
static GLOBAL: Mutex<VecDeque<LogEvent>> = Mutex::new(VecDeque::new());
/// Bound of [`GLOBAL`]; newer lines are not queued beyond it.
const GLOBAL_MAX: usize = 1024;

/// Installs (or removes) this thread's log-event sink.
pub fn set_thread_sink(s: Option<Sink>) {
    SINK.with(|x| *x.borrow_mut() = s);
}

/// Takes the lines other threads queued.
pub fn take_global_events() -> Vec<LogEvent> {
    GLOBAL.lock().map(|mut q| q.drain(..).collect()).unwrap_or_default()
}

/// While alive, this thread is routing log events: lines written meanwhile are not
/// events, and outputs that receive events are remembered ([`mark_sink`]).
pub struct EmittingEvents(bool);

impl EmittingEvents {
    pub fn begin() -> Self {
        EmittingEvents(EMITTING.with(|e| e.replace(true)))
    }
}

impl Drop for EmittingEvents {
    fn drop(&mut self) {
        EMITTING.with(|e| e.set(self.0));
    }
}

/// Whether this thread is routing log events now (outputs call [`mark_sink`] then).
#[inline]
pub fn emitting_events() -> bool {
    EMITTING.with(Cell::get)
}

/// Remembers that output `id` received log events on this shard: its own lines are
/// not turned into events (a failing log destination must not feed itself).
pub fn mark_sink(id: &str) {
    SINK_IDS.with(|s| {
        let mut s = s.borrow_mut();
        if !s.iter().any(|x| x == id) {
            s.push(id.to_string());
        }
    });
}

/// Whether `prefix` (the text before `: `) names plugin `id` or one of its parts
/// (`id.secondary`).
fn owned_by(prefix: &str, id: &str) -> bool {
    prefix == id || (prefix.len() > id.len() && prefix.starts_with(id) && prefix.as_bytes()[id.len()] == b'.')
}

fn is_sink_line(message: &str) -> bool {
    let Some((prefix, _)) = message.split_once(": ") else { return false };
    SINK_IDS.with(|s| s.borrow().iter().any(|id| owned_by(prefix, id)))
}

/// The level a line is written at: its plugin's `@log_level` or the process level.
fn effective_level(message: &str, s: Option<&Settings>) -> Level {
    let global = level();
    let Some(s) = s else { return global };
    if s.plugin_levels.is_empty() {
        return global;
    }
    let Some((prefix, _)) = message.split_once(": ") else { return global };
    s.plugin_levels.iter().find(|(id, _)| owned_by(prefix, id)).map_or(global, |(_, l)| *l)
}

/// fluentd's `ignore_same_log_interval` (any line seen within the interval) and
/// `ignore_repeated_log_interval` (the same line as the previous one), per thread.
fn suppressed(message: &str, now: Instant, s: Option<&Settings>) -> bool {
    let Some(s) = s else { return false };
    if let Some(iv) = s.ignore_same {
        return SAME.with(|c| {
            let mut c = c.borrow_mut();
            if let Some(t) = c.get(message) {
                if now.duration_since(*t) <= iv {
                    return true;
                }
            }
            if c.len() >= 1024 {
                c.retain(|_, t| now.duration_since(*t) <= iv);
                if c.len() >= 1024 {
                    c.clear();
                }
            }
            c.insert(message.to_string(), now);
            false
        });
    }
    if let Some(iv) = s.ignore_repeated {
        return LAST_LINE.with(|l| {
            let mut l = l.borrow_mut();
            if let Some((m, t)) = l.as_ref() {
                if m == message && now.duration_since(*t) <= iv {
                    return true;
                }
            }
            *l = Some((message.to_string(), now));
            false
        });
    }
    false
}

/// Writes one log line (and hands it on as an event). Prefer the `log_*!` macros.
pub fn write(level: Level, msg: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let message = msg.to_string();
    let settings = SETTINGS.read().unwrap_or_else(|e| e.into_inner());
    let s = settings.as_ref();
    if level < effective_level(&message, s) {
        return;
    }
    let now_i = Instant::now();
    if suppressed(&message, now_i, s) {
        return;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (sec, nsec) = (now.as_secs() as i64, now.subsec_nanos());
    let mut t = Vec::with_capacity(32);
    match s.and_then(|s| s.time_format.as_ref()) {
        Some(f) => f(&mut t, sec, nsec),
        None => format_time(&mut t, sec, 0, 0),
    }
    drop(settings);
    let mut line = Vec::with_capacity(160);
    if JSON.load(Ordering::Relaxed) == 1 {
        let _ = write!(
            line,
            "{{\"time\":{},\"level\":\"{}\",\"message\":{}}}",
            serde_json::Value::String(String::from_utf8_lossy(&t).into_owned()),
            level.name(),
            serde_json::Value::String(message.clone())
        );
    } else {
        line.extend_from_slice(&t);
        let _ = write!(line, " [{}]: {}", level.name(), message);
    }
    line.push(b'\n');
    let _ = std::io::stderr().write_all(&line);
    if EVENTS.load(Ordering::Relaxed) && !emitting_events() && !is_sink_line(&message) {
        let ev = LogEvent { level, sec, nsec, message };
        let sink = SINK.with(|x| x.borrow().clone());
        match sink {
            Some(f) => f(ev),
            None => {
                if let Ok(mut q) = GLOBAL.lock() {
                    if q.len() < GLOBAL_MAX {
                        q.push_back(ev);
                    }
                }
            }
        }
    }
}

/// fluentd's log record fields from a line's trailing `key=value` pairs (fluentd
/// appends them to the message from the same map it puts in the record): the longest
/// run of `key=value` / `key="quoted"` tokens that ends the message. One pass over the
/// line: tokens split at spaces, a token that starts `key="` running to its closing
/// quote.
pub fn fields_of(message: &str) -> Vec<(String, serde_json::Value)> {
    if message.len() > 16 << 10 {
        return Vec::new();
    }
    let b = message.as_bytes();
    // (start, end, is a key=value token)
    let mut tokens: Vec<(usize, usize, bool)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        let mut k = i;
        while k < b.len() && (b[k].is_ascii_lowercase() || b[k].is_ascii_digit() || b[k] == b'_') {
            k += 1;
        }
        let keyed = k > start && b[start].is_ascii_lowercase() && b.get(k) == Some(&b'=');
        if keyed && b.get(k + 1) == Some(&b'"') {
            let mut j = k + 2;
            let mut closed = false;
            while j < b.len() {
                match b[j] {
                    b'\\' => j += 2,
                    b'"' => {
                        closed = true;
                        j += 1;
                        break;
                    }
                    _ => j += 1,
                }
            }
            let end = j.min(b.len());
            let ok = closed && (end == b.len() || b[end] == b' ');
            tokens.push((start, end, ok));
            i = end;
        } else {
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            tokens.push((start, i, keyed && i > k + 1));
        }
    }
    let first = tokens.iter().rposition(|t| !t.2).map_or(0, |p| p + 1);
    tokens[first..].iter().filter_map(|&(a, z, _)| kv(&message[a..z])).collect()
}

/// One `key=value` or `key="quoted"` token.
fn kv(t: &str) -> Option<(String, serde_json::Value)> {
    let (k, v) = t.split_once('=')?;
    let value = if let Some(q) = v.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
        let mut out = String::with_capacity(q.len());
        let mut chars = q.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(o) => out.push(o),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        serde_json::Value::String(out)
    } else if let Ok(n) = v.parse::<i64>() {
        serde_json::Value::from(n)
    } else if let Some(f) = v.parse::<f64>().ok().filter(|f| f.is_finite()) {
        serde_json::Value::from(f)
    } else if v == "true" || v == "false" {
        serde_json::Value::Bool(v == "true")
    } else {
        serde_json::Value::String(v.to_string())
    };
    Some((k.to_string(), value))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trailing_fields() {
        assert_eq!(
            fields_of(
                "out: failed to flush the buffer. retry_times=2 next_retry_in=1.5s chunk=abc error=\"no \\\"x\\\"\""
            ),
            vec![
                ("retry_times".to_string(), json!(2)),
                ("next_retry_in".to_string(), json!("1.5s")),
                ("chunk".to_string(), json!("abc")),
                ("error".to_string(), json!("no \"x\"")),
            ]
        );
        assert!(fields_of("spate is ready").is_empty());
        assert!(fields_of("a: b=").is_empty());
        assert_eq!(fields_of("x=1"), vec![("x".to_string(), json!(1))]);
    }

    #[test]
    fn plugin_prefixes() {
        assert!(owned_by("out", "out"));
        assert!(owned_by("out.secondary", "out"));
        assert!(!owned_by("outer", "out"));
        let s = Settings { plugin_levels: vec![("noisy".into(), Level::Error)], ..Settings::default() };
        assert_eq!(effective_level("noisy: hello", Some(&s)), Level::Error);
        assert_eq!(effective_level("other: hello", Some(&s)), level());
    }

    #[test]
    fn repeated_and_same_lines() {
        let s = Settings { ignore_repeated: Some(Duration::from_secs(60)), ..Settings::default() };
        let t = Instant::now();
        assert!(!suppressed("a", t, Some(&s)));
        assert!(suppressed("a", t, Some(&s)));
        assert!(!suppressed("b", t, Some(&s)));
        assert!(!suppressed("a", t, Some(&s)), "only the previous line counts as repeated");
        let s = Settings { ignore_same: Some(Duration::from_secs(60)), ..Settings::default() };
        assert!(!suppressed("c", t, Some(&s)));
        assert!(!suppressed("d", t, Some(&s)));
        assert!(suppressed("c", t, Some(&s)), "any line seen within the interval");
    }
}
