//! `<buffer>` configuration: fluentd's parameters and defaults ([`BufferConf`]), the
//! chunk keys (`tag`, `time` with `timekey`, record fields), and the parsing of a
//! `<buffer>` section with a plugin's own defaults ([`BufferDefaults`]), including
//! fluentd v0.12's flat `buffer_*` / `retry_*` / `time_slice_*` parameters that v1 still
//! maps.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Attr, ConfigError, Element};

/// What to do when a buffer is full (fluentd's `overflow_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowAction {
    /// Reject the batch: the input does not ack it and the client retries.
    ThrowException,
    /// Stop reading from the input until space frees up (TCP back-pressure).
    Block,
    /// Drop the oldest queued chunk to make room (counted and logged).
    DropOldestChunk,
}

/// When staged chunks are flushed (fluentd's `flush_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// `default`: `lazy` when `time` is a chunk key, else `interval`.
    Default,
    /// Every `flush_interval`.
    Interval,
    /// As soon as a batch is appended.
    Immediate,
    /// When a chunk is full (or its timekey ends).
    Lazy,
}

/// fluentd's retry backoff (`retry_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryType {
    ExponentialBackoff,
    Periodic,
}

/// `time` as a chunk key: events are split into chunks per time slice.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeKey {
    /// Slice length in seconds (`timekey`).
    pub secs: i64,
    /// `timekey_wait`: a slice's chunk is flushed this long after the slice ends.
    pub wait: Duration,
    /// Offset of the time zone slices are aligned to (0 with `timekey_use_utc`).
    pub utc_offset: i64,
}

impl TimeKey {
    /// Start of the slice holding `t` (fluentd's `calculate_timekey`).
    #[inline]
    pub fn of(&self, t: i64) -> i64 {
        t - (t + self.utc_offset).rem_euclid(self.secs.max(1))
    }
}

/// `<buffer>` parameters. `Default` gives fluentd's memory-buffer defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferConf {
    /// `Some(dir)`: a file buffer with its chunk files under `dir`.
    pub path: Option<PathBuf>,
    pub timekey: Option<TimeKey>,
    /// Chunk keys naming record fields (`name` or `$.a.b`), in `<buffer>` order.
    pub vars: Vec<String>,
    pub chunk_limit_size: usize,
    pub chunk_limit_records: Option<u32>,
    pub total_limit_size: usize,
    pub flush_mode: FlushMode,
    pub flush_interval: Duration,
    pub flush_at_shutdown: bool,
    pub overflow_action: OverflowAction,
    pub retry_type: RetryType,
    pub retry_wait: Duration,
    pub retry_exponential_backoff_base: f64,
    pub retry_max_interval: Option<Duration>,
    pub retry_timeout: Duration,
    pub retry_max_times: Option<u32>,
    pub retry_forever: bool,
    pub retry_randomize: bool,
    /// `retry_secondary_threshold`: share of `retry_timeout` after which a chunk goes to
    /// `<secondary>` (fluentd: 0.8).
    pub retry_secondary_threshold: f64,
    /// `flush_thread_count`: chunks written at once by each shard (fluentd: flush
    /// threads per worker). Outputs whose writes must not overlap write one at a time.
    pub flush_thread_count: u32,
}

/// Largest `flush_thread_count` accepted (each write in flight holds a chunk).
pub const MAX_FLUSH_THREADS: i64 = 256;

impl Default for BufferConf {
    fn default() -> Self {
        BufferConf {
            path: None,
            timekey: None,
            vars: Vec::new(),
            chunk_limit_size: 8 << 20,
            chunk_limit_records: None,
            total_limit_size: 512 << 20,
            flush_mode: FlushMode::Default,
            flush_interval: Duration::from_secs(60),
            flush_at_shutdown: true,
            overflow_action: OverflowAction::ThrowException,
            retry_type: RetryType::ExponentialBackoff,
            retry_wait: Duration::from_secs(1),
            retry_exponential_backoff_base: 2.0,
            retry_max_interval: None,
            retry_timeout: Duration::from_secs(72 * 3600),
            retry_max_times: None,
            retry_forever: false,
            retry_randomize: true,
            retry_secondary_threshold: 0.8,
            flush_thread_count: 1,
        }
    }
}

/// fluentd's file-buffer defaults (buf_file.rb): 256 MiB chunks, 64 GiB in all.
pub const FILE_CHUNK_LIMIT_SIZE: usize = 256 << 20;
pub const FILE_TOTAL_LIMIT_SIZE: usize = 64 << 30;

impl BufferConf {
    /// The effective flush mode (`default` resolved as fluentd does).
    pub fn effective_flush_mode(&self) -> FlushMode {
        match self.flush_mode {
            FlushMode::Default if self.timekey.is_some() => FlushMode::Lazy,
            FlushMode::Default => FlushMode::Interval,
            m => m,
        }
    }

    /// Wait before retry number `n` (0-based), before jitter and the max interval.
    pub fn retry_delay(&self, n: u32, jitter: f64) -> Duration {
        let base = match self.retry_type {
            RetryType::Periodic => self.retry_wait.as_secs_f64(),
            RetryType::ExponentialBackoff => {
                self.retry_wait.as_secs_f64() * self.retry_exponential_backoff_base.powi(n.min(64) as i32)
            }
        };
        let mut d = base;
        if let Some(max) = self.retry_max_interval {
            d = d.min(max.as_secs_f64());
        }
        if self.retry_randomize {
            // fluentd randomizes within [d * 0.875, d * 1.125].
            d *= 0.875 + 0.25 * jitter.clamp(0.0, 1.0);
        }
        Duration::from_secs_f64(d.min(1e9))
    }
}

/// The parameters of a buffered output (its `<buffer>`, or v0.12's flat parameters on
/// the output mapped onto one as fluentd v1's compat layer does), with the plugin's
/// defaults.
pub fn from_output(e: &Element, defaults: &BufferDefaults<'_>) -> Result<BufferConf, ConfigError> {
    let synth;
    let section = match e.single("buffer")? {
        Some(b) => Some(b),
        None => {
            synth = v012_section(e, defaults)?;
            synth.as_ref()
        }
    };
    let mut b = match section {
        Some(b) => buffer_conf_with(b, defaults)?,
        None if defaults.file_path.is_some()
            || !defaults.keys.is_empty()
            || defaults.file_type
            || defaults.flush_interval.is_some()
            || defaults.chunk_limit_size.is_some()
            || defaults.chunk_limit_records.is_some()
            || defaults.flush_immediate =>
        {
            buffer_conf_with(
                &Element::new("buffer".into(), defaults.keys.join(","), Vec::new(), Vec::new(), e.pos.clone()),
                defaults,
            )?
        }
        None => BufferConf::default(),
    };
    if defaults.flush_immediate && b.flush_mode == FlushMode::Immediate && e.get("flush_interval").is_some() {
        // v0.12's flat `flush_interval` asks for interval flushes, as in a <buffer>.
        b.flush_mode = FlushMode::Default;
    }
    Ok(b)
}

/// fluentd v0.12's flat buffer parameters and the `<buffer>` parameters fluentd v1's
/// compat layer turns them into (`plugin_helper/compat_parameters.rb`, BUFFER_PARAMS).
/// `retry_wait` is not in fluentd's table (fluentd warns it is unused); spate maps it,
/// as v0.12 read it.
const V012_BUFFER_PARAMS: [(&str, &str); 14] = [
    ("buffer_type", "@type"),
    ("buffer_path", "path"),
    ("num_threads", "flush_thread_count"),
    ("flush_interval", "flush_interval"),
    ("try_flush_interval", "flush_thread_interval"),
    ("queued_chunk_flush_interval", "flush_thread_burst_interval"),
    ("disable_retry_limit", "retry_forever"),
    ("retry_limit", "retry_max_times"),
    ("max_retry_wait", "retry_max_interval"),
    ("retry_wait", "retry_wait"),
    ("buffer_chunk_limit", "chunk_limit_size"),
    ("buffer_queue_limit", "queue_limit_length"),
    ("buffer_queue_full_action", "overflow_action"),
    ("flush_at_shutdown", "flush_at_shutdown"),
];

/// The `<buffer>` fluentd v1's compat layer makes of an output's v0.12 parameters when
/// it has no `<buffer>` (None when it has none of them): the flat parameters above
/// under their new names, and the time-sliced ones: `time_slice_format` makes `time`
/// the chunk key with `timekey` 1 (`%S`), 60 (`%M`), 3600 (`%H`) or 86400 (`%d`),
/// `localtime`/`utc` set `timekey_use_utc`; `time_slice_wait` is `timekey_wait` and
/// `timezone` is `timekey_zone`. Otherwise the chunk keys are the plugin's.
fn v012_section(e: &Element, defaults: &BufferDefaults<'_>) -> Result<Option<Element>, ConfigError> {
    let tsf = e.get("time_slice_format").cloned();
    let tsw = e.get("time_slice_wait").cloned();
    let tz = if tsf.is_some() || tsw.is_some() { e.get("timezone").cloned() } else { None };
    let mut attrs = Vec::new();
    for (old, new) in V012_BUFFER_PARAMS {
        if let Some(a) = e.get(old) {
            // compat_parameters.rb: v0.12's `exception` is v1's `throw_exception`.
            let value = match (old, a.value.as_str()) {
                ("buffer_queue_full_action", "exception") => "throw_exception".to_string(),
                _ => a.value.clone(),
            };
            attrs.push(Attr { key: new.into(), value, pos: a.pos.clone() });
        }
    }
    if attrs.is_empty() && tsf.is_none() && tsw.is_none() {
        return Ok(None);
    }
    let arg = match &tsf {
        Some(f) => {
            let secs = if f.value.contains("%S") {
                1
            } else if f.value.contains("%M") {
                60
            } else if f.value.contains("%H") {
                3600
            } else if f.value.contains("%d") {
                86400
            } else {
                return Err(ConfigError::at(&f.pos, "time_slice_format only with %Y or %m is too long"));
            };
            attrs.push(Attr { key: "timekey".into(), value: secs.to_string(), pos: f.pos.clone() });
            let (lt, utc) = (e.get("localtime").cloned(), e.get("utc").cloned());
            match (lt, utc) {
                (Some(_), Some(u)) => {
                    return Err(ConfigError::at(
                        &u.pos,
                        "both of utc and localtime are specified, use only one of them",
                    ))
                }
                (Some(l), None) => {
                    let v = crate::config::parse_bool(&l.value).map_err(|m| ConfigError::at(&l.pos, m))?;
                    attrs.push(Attr { key: "timekey_use_utc".into(), value: (!v).to_string(), pos: l.pos });
                }
                (None, Some(u)) => {
                    let v = crate::config::parse_bool(&u.value).map_err(|m| ConfigError::at(&u.pos, m))?;
                    attrs.push(Attr { key: "timekey_use_utc".into(), value: v.to_string(), pos: u.pos });
                }
                (None, None) => {}
            }
            "time".to_string()
        }
        None => defaults.keys.join(","),
    };
    if let Some(w) = tsw {
        attrs.push(Attr { key: "timekey_wait".into(), value: w.value, pos: w.pos });
    }
    if let Some(z) = tz {
        attrs.push(Attr { key: "timekey_zone".into(), value: z.value, pos: z.pos });
    }
    Ok(Some(Element::new("buffer".into(), arg, attrs, Vec::new(), e.pos.clone())))
}

/// Parses `<buffer>`. `default_keys` are the plugin's chunk keys when the section
/// has no argument; `tag` is required for out_forward (as in fluentd).
pub fn buffer_conf(b: &Element, default_keys: &[&str], tag_required: bool) -> Result<BufferConf, ConfigError> {
    buffer_conf_with(b, &BufferDefaults { keys: default_keys, tag_required, ..Default::default() })
}

/// A plugin's `<buffer>` defaults (fluentd's `config_section :buffer` overrides).
#[derive(Debug, Clone, Copy, Default)]
pub struct BufferDefaults<'a> {
    pub keys: &'a [&'a str],
    pub tag_required: bool,
    /// `Some(path)`: the default type is `file` with this path (out_file).
    pub file_path: Option<&'a str>,
    /// Default `timekey` in seconds.
    pub timekey: Option<u64>,
    /// Default `timekey_wait` in seconds (fluentd's is 600).
    pub timekey_wait: Option<u64>,
    /// The default `@type` is `file` (the path must then be given).
    pub file_type: bool,
    /// Default `flush_interval` in seconds.
    pub flush_interval: Option<u64>,
    /// Default `chunk_limit_size` in bytes.
    pub chunk_limit_size: Option<usize>,
    /// Default `chunk_limit_records`.
    pub chunk_limit_records: Option<u32>,
    /// Without `flush_mode` and `flush_interval`, flush every append at once: the
    /// buffered stand-in for a v0.12 unbuffered `Fluent::Output`, whose `emit` sends
    /// synchronously.
    pub flush_immediate: bool,
    /// Default `flush_at_shutdown`, over the buffer type's (out_null: true).
    pub flush_at_shutdown: Option<bool>,
}

pub fn buffer_conf_with(b: &Element, defaults: &BufferDefaults<'_>) -> Result<BufferConf, ConfigError> {
    let default_keys = defaults.keys;
    let tag_required = defaults.tag_required;
    let mut d = BufferConf::default();
    let ty = b.plugin_type().or(defaults.file_path.map(|_| "file")).or(defaults.file_type.then_some("file"));
    match ty {
        None | Some("memory") => {}
        Some("file") => {
            let path = b.str("path").or(defaults.file_path).ok_or_else(|| {
                b.error("<buffer @type file> needs path (the directory for this output's chunk files)")
            })?;
            d.path = Some(std::path::PathBuf::from(path));
            d.chunk_limit_size = FILE_CHUNK_LIMIT_SIZE;
            d.total_limit_size = FILE_TOTAL_LIMIT_SIZE;
            // fluentd: persistent buffers keep their chunks over a restart by default.
            d.flush_at_shutdown = false;
            for k in ["path_suffix", "file_permission", "dir_permission"] {
                let _ = b.str(k);
            }
        }
        Some(other) => return Err(b.error(format!("unknown buffer type '{other}'; supported: memory, file"))),
    }
    if let Some(n) = defaults.chunk_limit_size {
        d.chunk_limit_size = n;
    }
    if let Some(f) = defaults.flush_at_shutdown {
        d.flush_at_shutdown = f;
    }
    if let Some(s) = defaults.flush_interval {
        d.flush_interval = std::time::Duration::from_secs(s);
    }
    let keys: Vec<&str> = if b.arg.trim().is_empty() {
        default_keys.to_vec()
    } else {
        b.arg.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
    };
    let mut vars = Vec::new();
    for k in &keys {
        if *k == "tag" || *k == "time" {
            continue;
        }
        let name = k.strip_prefix("$.").unwrap_or(k);
        if name.is_empty() || name.split('.').any(|p| p.is_empty() || p.contains(['[', ']', '\'', '"'])) {
            return Err(b.error(format!(
                "<buffer {}>: chunk key '{k}': expected tag, time, a record field name or a $.a.b path",
                b.arg
            )));
        }
        vars.push(k.to_string());
    }
    if tag_required && !keys.contains(&"tag") {
        return Err(b.error("buffer chunk key must include 'tag' for forward output"));
    }
    let timekey = if keys.contains(&"time") {
        let secs = b.time("timekey")?.or(defaults.timekey.map(std::time::Duration::from_secs)).ok_or_else(|| {
            b.error(format!("<buffer {}> argument includes 'time', but timekey is not configured", b.arg))
        })?;
        if secs.as_secs() == 0 {
            return Err(b.error("timekey must be at least 1 second"));
        }
        let use_utc = b.bool("timekey_use_utc")?.unwrap_or(false);
        let utc_offset = match b.str("timekey_zone") {
            _ if use_utc => 0,
            None => crate::sys::local_utc_offset(),
            Some(z) => crate::format::parse_fixed_zone(z).ok_or_else(|| {
                b.error(format!("timekey_zone {z:?}: expected +HHMM, -HH:MM, UTC or Z (named zones are not supported)"))
            })?,
        };
        Some(TimeKey {
            secs: secs.as_secs() as i64,
            wait: b
                .time("timekey_wait")?
                .unwrap_or(std::time::Duration::from_secs(defaults.timekey_wait.unwrap_or(600))),
            utc_offset,
        })
    } else {
        for k in ["timekey", "timekey_wait", "timekey_use_utc", "timekey_zone"] {
            if b.str(k).is_some() {
                crate::warn!("{}: {k} has no effect: 'time' is not a chunk key of <buffer {}>", b.pos, b.arg);
            }
        }
        None
    };
    let flush_mode = match b.str("flush_mode") {
        None if defaults.flush_immediate && b.get("flush_interval").is_none() => FlushMode::Immediate,
        None | Some("default") => FlushMode::Default,
        Some("interval") => FlushMode::Interval,
        Some("immediate") => FlushMode::Immediate,
        Some("lazy") => FlushMode::Lazy,
        Some(o) => return Err(b.error(format!("flush_mode {o:?}: expected default, interval, immediate or lazy"))),
    };
    let overflow_action = match b.str("overflow_action") {
        None | Some("throw_exception") => OverflowAction::ThrowException,
        Some("block") => OverflowAction::Block,
        Some("drop_oldest_chunk") => OverflowAction::DropOldestChunk,
        Some(o) => {
            // At the parameter: for v0.12's flat buffer_queue_full_action, the line it is on.
            let pos = b.get("overflow_action").map_or(&b.pos, |a| &a.pos);
            return Err(ConfigError::at(
                pos,
                format!("overflow_action {o:?}: expected throw_exception, block or drop_oldest_chunk"),
            ));
        }
    };
    let retry_type = match b.str("retry_type") {
        None | Some("exponential_backoff") => RetryType::ExponentialBackoff,
        Some("periodic") => RetryType::Periodic,
        Some(o) => return Err(b.error(format!("retry_type {o:?}: expected exponential_backoff or periodic"))),
    };
    let flush_thread_count = match b.int("flush_thread_count")? {
        None => d.flush_thread_count,
        Some(n) if (1..=MAX_FLUSH_THREADS).contains(&n) => n as u32,
        Some(n) => {
            return Err(
                b.error(format!("flush_thread_count {n}: expected 1 to {MAX_FLUSH_THREADS} (chunks written at once)"))
            )
        }
    };
    let mut c = BufferConf {
        path: d.path.clone(),
        timekey,
        vars,
        retry_secondary_threshold: b.float("retry_secondary_threshold")?.unwrap_or(d.retry_secondary_threshold),
        flush_thread_count,
        chunk_limit_size: b.size("chunk_limit_size")?.map_or(d.chunk_limit_size, |v| v as usize),
        chunk_limit_records: b
            .int("chunk_limit_records")?
            .map(|v| v.clamp(1, u32::MAX as i64) as u32)
            .or(defaults.chunk_limit_records),
        total_limit_size: b.size("total_limit_size")?.map_or(d.total_limit_size, |v| v as usize),
        flush_mode,
        flush_interval: b.time("flush_interval")?.unwrap_or(d.flush_interval),
        flush_at_shutdown: b.bool("flush_at_shutdown")?.unwrap_or(d.flush_at_shutdown),
        overflow_action,
        retry_type,
        retry_wait: b.time("retry_wait")?.unwrap_or(d.retry_wait),
        retry_exponential_backoff_base: b
            .float("retry_exponential_backoff_base")?
            .unwrap_or(d.retry_exponential_backoff_base),
        retry_max_interval: b.time("retry_max_interval")?,
        retry_timeout: b.time("retry_timeout")?.unwrap_or(d.retry_timeout),
        retry_max_times: b.int("retry_max_times")?.map(|v| v.clamp(0, u32::MAX as i64) as u32),
        retry_forever: b.bool("retry_forever")?.unwrap_or(false),
        retry_randomize: b.bool("retry_randomize")?.unwrap_or(true),
    };
    // buffer.rb: `queue_limit_length` (v0.12's `buffer_queue_limit`), when given, makes
    // total_limit_size chunk_limit_size times that many chunks, whatever it said.
    if let Some(n) = b.int("queue_limit_length")? {
        if n < 1 {
            return Err(b.error(format!("queue_limit_length {n}: expected at least 1 (chunks)")));
        }
        c.total_limit_size = c.chunk_limit_size.saturating_mul(usize::try_from(n).unwrap_or(usize::MAX));
    }
    // fluentd's flush threads poll: every flush_thread_interval, and with chunks queued
    // every flush_thread_burst_interval. spate's flush task wakes on its flush timer and
    // on every enqueue, and writes queued chunks back to back: there is no poll to pace.
    for k in ["flush_thread_interval", "flush_thread_burst_interval"] {
        if let Some(v) = b.float(k)? {
            crate::warn!(
                "{}: {k} {v} has no effect: spate's flush task does not poll (it wakes on flush_interval and when a chunk is queued)",
                b.pos
            );
        }
    }
    if c.chunk_limit_size == 0 || c.total_limit_size < c.chunk_limit_size {
        return Err(b.error(format!(
            "total_limit_size ({}) must be at least chunk_limit_size ({})",
            c.total_limit_size, c.chunk_limit_size
        )));
    }
    match b.str("compress") {
        None | Some("text") => {}
        Some("gzip") => crate::warn!(
            "{}: <buffer> compress gzip is not implemented: chunks are kept uncompressed (what is sent or written is the same)",
            b.pos
        ),
        Some(o) => return Err(b.error(format!("compress {o:?}: expected text or gzip"))),
    }
    if b.str("queued_chunks_limit_size").is_some() {
        crate::warn!("{}: queued_chunks_limit_size is not implemented: total_limit_size bounds the queue", b.pos);
    }
    for k in ["delayed_commit_timeout", "disable_chunk_backup", "chunk_full_threshold"] {
        let _ = b.str(k);
    }
    b.warn_unused();
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str_with_warnings, EvalContext};

    fn out(body: &str) -> Element {
        let ctx = EvalContext::with_env("h", None, Default::default());
        let text = format!("<match **>\n  @type file\n{body}</match>\n");
        let (root, _) = parse_str_with_warnings(&text, "t.conf", std::path::Path::new("."), &ctx).unwrap();
        root.elements.into_iter().next().unwrap()
    }

    const FILE: BufferDefaults<'static> = BufferDefaults {
        keys: &["time"],
        tag_required: false,
        file_path: Some("/tmp/x"),
        timekey: Some(86400),
        timekey_wait: None,
        file_type: false,
        flush_interval: None,
        chunk_limit_size: None,
        chunk_limit_records: None,
        flush_immediate: false,
        flush_at_shutdown: None,
    };
    const FWD: BufferDefaults<'static> = BufferDefaults {
        keys: &["tag"],
        tag_required: false,
        file_path: None,
        timekey: None,
        timekey_wait: None,
        file_type: false,
        flush_interval: None,
        chunk_limit_size: None,
        chunk_limit_records: None,
        flush_immediate: false,
        flush_at_shutdown: None,
    };

    #[test]
    fn flush_immediate_default_yields_to_flush_mode_and_flush_interval() {
        let d = BufferDefaults { flush_immediate: true, keys: &[], ..FWD };
        let mode = |body: &str| from_output(&out(body), &d).unwrap().flush_mode;
        assert_eq!(mode(""), FlushMode::Immediate);
        assert_eq!(mode("  <buffer>\n    flush_interval 5s\n  </buffer>\n"), FlushMode::Default);
        assert_eq!(mode("  flush_interval 5s\n"), FlushMode::Default, "v0.12's flat parameter");
        assert_eq!(mode("  <buffer>\n    flush_mode lazy\n  </buffer>\n"), FlushMode::Lazy);
        assert_eq!(from_output(&out(""), &FWD).unwrap().flush_mode, FlushMode::Default);
    }

    #[test]
    fn flush_thread_count_and_v012_num_threads() {
        let b = from_output(&out("  <buffer>\n    flush_thread_count 8\n  </buffer>\n"), &FWD).unwrap();
        assert_eq!(b.flush_thread_count, 8);
        assert_eq!(from_output(&out(""), &FWD).unwrap().flush_thread_count, 1);
        assert_eq!(from_output(&out("  num_threads 4\n"), &FWD).unwrap().flush_thread_count, 4);
        for bad in ["0", "-1", "257"] {
            let e = from_output(&out(&format!("  <buffer>\n    flush_thread_count {bad}\n  </buffer>\n")), &FWD);
            let msg = e.unwrap_err().to_string();
            assert!(msg.starts_with("t.conf:3:") && msg.contains("expected 1 to 256"), "{bad}: {msg}");
        }
        assert!(from_output(&out("  num_threads 0\n"), &FWD).unwrap_err().to_string().contains("expected 1 to 256"));
    }

    #[test]
    fn v012_time_slice_format_maps_to_timekey() {
        // compat_parameters.rb: %S 1, %M 60, %H 3600, %d 86400.
        for (f, secs) in [("%Y%m%d%H%M%S", 1), ("%Y%m%d%H%M", 60), ("%Y%m%d%H", 3600), ("%Y%m%d", 86400)] {
            let b = from_output(&out(&format!("  time_slice_format {f}\n")), &FWD).unwrap();
            assert_eq!(b.timekey.as_ref().map(|k| k.secs), Some(secs), "{f}");
        }
        let e = out("  time_slice_format %Y%m\n");
        assert_eq!(
            from_output(&e, &FWD).unwrap_err().to_string(),
            "t.conf:3:3: time_slice_format only with %Y or %m is too long"
        );
        // time_slice_wait -> timekey_wait; utc -> timekey_use_utc; timezone -> timekey_zone.
        let b = from_output(&out("  time_slice_format %Y%m%d%H\n  time_slice_wait 10m\n  utc\n"), &FILE).unwrap();
        let k = b.timekey.unwrap();
        assert_eq!((k.secs, k.wait, k.utc_offset), (3600, Duration::from_secs(600), 0));
        let b = from_output(&out("  time_slice_format %Y%m%d\n  timezone +09:00\n"), &FILE).unwrap();
        assert_eq!(b.timekey.unwrap().utc_offset, 9 * 3600);
        let b = from_output(&out("  time_slice_wait 30s\n"), &FILE).unwrap();
        let k = b.timekey.unwrap();
        assert_eq!((k.secs, k.wait), (86400, Duration::from_secs(30)));
        let e = out("  time_slice_format %Y%m%d\n  utc\n  localtime\n");
        assert!(from_output(&e, &FILE).unwrap_err().to_string().contains("both of utc and localtime"));
        // With a <buffer> section the flat parameters are not mapped (as in fluentd).
        let b = from_output(&out("  buffer_chunk_limit 1m\n  <buffer>\n  </buffer>\n"), &FWD).unwrap();
        assert_eq!(b.chunk_limit_size, 8 << 20);
        let b = from_output(&out("  time_slice_format %Y%m%d%H\n  <buffer>\n  </buffer>\n"), &FWD).unwrap();
        assert!(b.timekey.is_none());
    }

    #[test]
    fn v012_flat_parameters_become_one_buffer_section() {
        // docs' out_file example: buffer_type/buffer_path and time_slice_format together
        // make one <buffer time> with @type file and that path.
        let body = "  buffer_type file\n  buffer_path /b/access.*.log\n  time_slice_format %Y-%m-%d.%H%M\n  time_slice_wait 1m\n";
        let b = from_output(&out(body), &FILE).unwrap();
        assert_eq!(b.path.as_deref(), Some(std::path::Path::new("/b/access.*.log")));
        let k = b.timekey.unwrap();
        assert_eq!((k.secs, k.wait), (60, Duration::from_secs(60)));
        assert_eq!(b.chunk_limit_size, FILE_CHUNK_LIMIT_SIZE);
        // buffer_queue_full_action: v0.12's `exception` is throw_exception.
        for (v, want) in [
            ("exception", OverflowAction::ThrowException),
            ("block", OverflowAction::Block),
            ("drop_oldest_chunk", OverflowAction::DropOldestChunk),
        ] {
            let b = from_output(&out(&format!("  buffer_queue_full_action {v}\n")), &FWD).unwrap();
            assert_eq!(b.overflow_action, want, "{v}");
        }
        let e = from_output(&out("  buffer_queue_full_action wait\n"), &FWD).unwrap_err().to_string();
        assert!(
            e.starts_with("t.conf:3:") && e.contains("expected throw_exception, block or drop_oldest_chunk"),
            "{e}"
        );
        // buffer_queue_limit is queue_limit_length: chunks of chunk_limit_size.
        let b = from_output(&out("  buffer_chunk_limit 2m\n  buffer_queue_limit 64\n"), &FWD).unwrap();
        assert_eq!((b.chunk_limit_size, b.total_limit_size), (2 << 20, 128 << 20));
        let b =
            from_output(&out("  retry_limit 5\n  max_retry_wait 30s\n  disable_retry_limit false\n"), &FWD).unwrap();
        assert_eq!(
            (b.retry_max_times, b.retry_max_interval, b.retry_forever),
            (Some(5), Some(Duration::from_secs(30)), false)
        );
    }

    #[test]
    fn queue_limit_length_sets_total_limit_size_over_it() {
        // buffer.rb: total_limit_size = chunk_limit_size * queue_limit_length.
        let body =
            "  <buffer>\n    chunk_limit_size 4m\n    total_limit_size 1g\n    queue_limit_length 8\n  </buffer>\n";
        let b = from_output(&out(body), &FWD).unwrap();
        assert_eq!(b.total_limit_size, 32 << 20);
        let b = from_output(&out("  <buffer>\n    queue_limit_length 4\n  </buffer>\n"), &FWD).unwrap();
        assert_eq!(b.total_limit_size, 32 << 20, "the default 8m chunks");
        let e = from_output(&out("  <buffer>\n    queue_limit_length 0\n  </buffer>\n"), &FWD).unwrap_err();
        assert!(e.to_string().contains("queue_limit_length 0: expected at least 1"), "{e}");
    }
}
