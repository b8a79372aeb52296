//! `out_exec_filter` (fluentd's built-in): runs `command` (`num_children` processes,
//! through `/bin/sh -c`), writes each chunk's events to a child's stdin formatted by
//! `<format>` (default `tsv`, with `<inject>`; time as unixtime, or a string with
//! `time_format`), reads the child's stdout line by line, parses each line with
//! `<parse>` (default `tsv`, no time) and emits the records under `tag` or the record's
//! `<extract> tag_key`, with the record's `<extract> time_key` as time, else now, into
//! the `<match>`'s label (or `@label`). Chunks go to the children in turn; a chunk is
//! committed once a child's stdin took it, as in fluentd. `child_respawn` (`none`/`0`,
//! `inf`/`-1`, or a count) restarts children that exit.
//!
//! A child's output is read by a thread of its own (lines of up to 1 MiB, longer ones
//! are dropped with a warning) and handed to the shard through a bounded channel, so a
//! child that writes faster than the shard routes waits.
//!
//! Not supported (config errors): v0.12's `in_format`/`out_format`/`in_keys`/... (use
//! `<format>`/`<parse>`/`<inject>`/`<extract>`), a `<parse>` that is not line-based
//! (`msgpack`, `multiline`).

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::encode::{self, raw};
use spate_protocol::{EntriesFormat, EventBatch, EventTime, Events, Mode, Options, RecordRef};

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::format::{FormatConf, TimeType};
use crate::parser::time::{TimeConf, TimeParser, TimeSettings};
use crate::parser::{ParseError, ParserConf, Sink};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "exec_filter",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "`command` (required; run by /bin/sh), `tag` or `<extract>` `tag_key` (required), `num_children` (1), `child_respawn` (`none`, `inf`/`-1` or a count), `remove_prefix`/`add_prefix`, `<format>` (default `tsv`; every formatter), `<inject>` (time as unixtime, a string with `time_format`), `<parse>` (default `tsv`; line-based parsers), `<extract>` (`tag_key`, `keep_tag_key`, `time_key`, `keep_time_key`, `time_type` float/unixtime/string, `time_format`), `@label`, `suppress_error_log_interval` (failed emits go to `@ERROR`, logged at most once per interval); `read_block_size` warns that it has no effect (line reader); default buffer: flush every 1 s. A chunk is committed once a child's stdin took it. Not supported (config errors): v0.12's `in_format`/`out_format`/`in_keys`/... (use the sections), a `<parse>` that is not line-based (`msgpack`, `multiline`); output lines over 1 MiB are dropped with a warning",
};

/// v0.12 parameters fluentd's exec_filter maps onto sections; spate asks for the sections.
const V012: &[&str] = &[
    "in_format",
    "in_keys",
    "out_format",
    "out_keys",
    "in_tag_key",
    "in_time_key",
    "in_time_format",
    "out_tag_key",
    "out_time_key",
    "out_time_format",
    "out_stream_buffer_size",
];

/// `<extract>`: the tag and time taken out of each parsed record.
#[derive(Debug, Clone)]
struct Extract {
    tag_key: Option<String>,
    keep_tag_key: bool,
    time_key: Option<String>,
    keep_time_key: bool,
    time: TimeConf,
}

#[derive(Debug, Clone)]
pub struct ExecFilterPlan {
    command: String,
    tag: Option<String>,
    remove_prefix: Option<String>,
    add_prefix: Option<String>,
    children: usize,
    /// Restarts left per child: -1 for ever.
    respawns: i64,
    format: FormatConf,
    parse: ParserConf,
    extract: Extract,
    label: usize,
    /// `suppress_error_log_interval`: after an "exec_filter failed to emit" line, the
    /// next one waits this long (zero: every failure is logged).
    suppress_error_log: Duration,
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    for k in V012 {
        if let Some(a) = e.get(k) {
            return Err(ConfigError::at(
                &a.pos,
                format!("{k}: v0.12's exec_filter parameters are not supported; use <format>, <parse>, <inject> and <extract>"),
            ));
        }
    }
    let command = e.str("command").ok_or_else(|| e.error("'command' parameter is required"))?.to_string();
    let mut format = crate::format::format_conf(e, "tsv", &ctx.hostname)?;
    // exec_filter's <inject>: time as unixtime, or a string when time_format is given.
    if let Some(i) = e.single("inject")? {
        if i.get("time_type").is_none() {
            format.inject.time_type =
                Some(if i.get("time_format").is_some() { TimeType::String } else { TimeType::Unixtime });
        }
    }
    if !matches!(format.formatter, crate::format::Formatter::Msgpack) {
        format.newline = "\n";
    }
    let parse = match e.single("parse")? {
        Some(p) => {
            let ty = p.plugin_type().unwrap_or("tsv").to_string();
            let mut c = ParserConf::with_type(p, &ty)?;
            if c.is_binary() || ty == "multiline" {
                return Err(p.error(format!("<parse @type {ty}>: exec_filter reads the command's output line by line in spate; use a line-based parser")));
            }
            c.set_estimate_current_event(p.bool("estimate_current_event")?.unwrap_or(false));
            p.warn_unused();
            c
        }
        None => {
            let p = Element::new("parse".into(), String::new(), Vec::new(), Vec::new(), e.pos.clone());
            let mut c = ParserConf::with_type(&p, "tsv")?;
            c.set_estimate_current_event(false);
            c
        }
    };
    // Without <extract>, its defaults: an empty section reads as one.
    let empty = Element::new("extract".into(), String::new(), Vec::new(), Vec::new(), e.pos.clone());
    let x = e.single("extract")?.unwrap_or(&empty);
    let time_format = x.str("time_format");
    let default_type = if time_format.is_some() { "string" } else { "float" };
    let time_type = x.enum_of("time_type", &["float", "unixtime", "string"])?;
    let settings = TimeSettings {
        time_type: Some(time_type.as_deref().unwrap_or(default_type)),
        time_format,
        fallbacks: Vec::new(),
        localtime: x.bool("localtime")?,
        utc: x.bool("utc")?,
        timezone: x.str("timezone"),
    };
    let extract = Extract {
        tag_key: x.str("tag_key").map(str::to_string),
        keep_tag_key: x.bool("keep_tag_key")?.unwrap_or(false),
        time_key: x.str("time_key").map(str::to_string),
        keep_time_key: x.bool("keep_time_key")?.unwrap_or(false),
        time: TimeConf::new(&settings).map_err(|m| x.error(format!("<extract>: {m}")))?,
    };
    x.warn_unused();
    let tag = e.str("tag").map(str::to_string);
    if tag.is_none() && extract.tag_key.is_none() {
        return Err(e.error("'tag' or '<extract> tag_key </extract>' option is required on exec_filter output"));
    }
    let children = match e.int("num_children")?.unwrap_or(1) {
        n @ 1..=64 => n as usize,
        n => return Err(e.error(format!("num_children {n}: expected 1 to 64"))),
    };
    let respawns = match e.str("child_respawn") {
        None | Some("none") | Some("0") => 0,
        Some("inf") | Some("-1") => -1,
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n.parse().unwrap_or(i64::MAX),
        Some(_) => {
            return Err(e.error("child_respawn option argument invalid: none(or 0), inf(or -1) or positive number"))
        }
    };
    if let Some(n) = e.size("read_block_size")? {
        // fluentd reads the output in blocks of this size for the msgpack parser only;
        // spate's parsers here are line-based (msgpack is refused above).
        let pos = e.get("read_block_size").map(|a| a.pos.to_string()).unwrap_or_default();
        crate::warn!("{pos}: read_block_size {n} has no effect: spate reads the command's output line by line");
    }
    let suppress_error_log = e.time("suppress_error_log_interval")?.unwrap_or_default();
    let label = ctx.label_ref(e)?.unwrap_or_else(|| ctx.current_label());
    if setup.primary_buffer().is_none() {
        // exec_filter's <buffer>: interval flushes every second.
        let defaults = BufferDefaults { flush_interval: Some(1), ..Default::default() };
        setup.buffer(e, &defaults)?;
    }
    Ok(Box::new(ExecFilterPlan {
        command,
        tag,
        remove_prefix: e.str("remove_prefix").map(|p| format!("{p}.")),
        add_prefix: e.str("add_prefix").map(|p| format!("{p}.")),
        children,
        respawns,
        format,
        parse,
        extract,
        label,
        suppress_error_log,
    }))
}

impl WriterPlan for ExecFilterPlan {
    fn type_name(&self) -> &'static str {
        "exec_filter"
    }
    fn describe(&self) -> String {
        format!("exec_filter {:?} x{}", self.command, self.children)
    }
    fn build(&self, id: &str, ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        let w = Rc::new(ExecFilterWriter {
            id: id.to_string(),
            plan: self.clone(),
            ctx: Rc::downgrade(ctx),
            children: RefCell::new(Vec::new()),
            next: Cell::new(0),
            next_error_log: Cell::new(None),
            lines: flume::bounded(1024),
            task: RefCell::new(None),
        });
        for i in 0..self.children {
            let c = w.spawn(i).map_err(|source| BuildError::Io { plugin: id.to_string(), source })?;
            w.children.borrow_mut().push(c);
        }
        Ok(w)
    }
}

/// One child process.
struct ChildProc {
    process: Child,
    /// Taken while a write is in progress (on a blocking thread).
    stdin: Option<ChildStdin>,
    respawns: i64,
    alive: bool,
}

/// What a reader thread hands to the shard.
enum FromChild {
    Line(Vec<u8>),
    Exited(usize),
}

pub struct ExecFilterWriter {
    id: String,
    plan: ExecFilterPlan,
    ctx: Weak<ShardCtx>,
    children: RefCell<Vec<ChildProc>>,
    next: Cell<usize>,
    /// Until when "failed to emit" lines are suppressed (`suppress_error_log_interval`).
    next_error_log: Cell<Option<Instant>>,
    lines: (flume::Sender<FromChild>, flume::Receiver<FromChild>),
    task: RefCell<Option<glommio::task::JoinHandle<()>>>,
}

/// The longest line read from a child (longer ones are dropped).
const MAX_LINE: usize = 1 << 20;

impl ExecFilterWriter {
    /// Starts child `i` and its reader thread.
    fn spawn(&self, i: usize) -> std::io::Result<ChildProc> {
        let mut process = Command::new("/bin/sh")
            .arg("-c")
            .arg(&self.plan.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = process.stdin.take();
        let stdout = process.stdout.take().ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
        let tx = self.lines.0.clone();
        let id = self.id.clone();
        std::thread::Builder::new().name(format!("{id}-child{i}")).spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = Vec::new();
            'lines: loop {
                line.clear();
                match r.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.len() > MAX_LINE && line.last() != Some(&b'\n') => {
                        crate::warn!("{id}: a line of the command's output over 1 MiB was dropped");
                        // Skip to the end of that line, a buffer at a time (never held whole).
                        loop {
                            let (done, used) = match r.fill_buf() {
                                Ok([]) | Err(_) => break 'lines,
                                Ok(b) => match memchr::memchr(b'\n', b) {
                                    Some(i) => (true, i + 1),
                                    None => (false, b.len()),
                                },
                            };
                            r.consume(used);
                            if done {
                                break;
                            }
                        }
                    }
                    Ok(_) => {
                        let l = line.strip_suffix(b"\n").unwrap_or(&line);
                        let l = l.strip_suffix(b"\r").unwrap_or(l);
                        if tx.send(FromChild::Line(l.to_vec())).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(FromChild::Exited(i));
        })?;
        Ok(ChildProc { process, stdin, respawns: self.plan.respawns, alive: true })
    }

    /// Routes what the children print; restarts the ones that exit.
    async fn route(self: Rc<Self>) {
        let mut parser = self.plan.parse.build();
        let mut time = TimeParser::new(self.plan.extract.time.clone());
        let (mut parsed, mut entries) = (Vec::new(), Vec::new());
        loop {
            let Ok(msg) = self.lines.1.recv_async().await else { return };
            match msg {
                FromChild::Exited(i) => self.exited(i),
                FromChild::Line(l) => {
                    parsed.clear();
                    let mut sink = Collect::default();
                    parser.parse(&l, &mut parsed, &mut sink);
                    for (range, t) in sink.records {
                        let Some(rec) = parsed.get(range).and_then(RecordRef::new) else { continue };
                        self.emit_record(rec, t, &mut time, &mut entries);
                    }
                    if let Some(e) = sink.error {
                        crate::warn!(
                            "{}: the command's output did not parse: {e}: {:?}",
                            self.id,
                            String::from_utf8_lossy(&l[..l.len().min(256)])
                        );
                    }
                }
            }
        }
    }

    /// One parsed record: extract tag and time, emit.
    fn emit_record(&self, rec: RecordRef<'_>, t: Option<EventTime>, time: &mut TimeParser, entries: &mut Vec<u8>) {
        let x = &self.plan.extract;
        let tag_v = x.tag_key.as_deref().and_then(|k| rec.get(k.as_bytes()));
        let mut tag = tag_v.and_then(|v| v.as_str()).map(|s| String::from_utf8_lossy(s).into_owned());
        if let (Some(t), Some(p)) = (tag.as_mut(), &self.plan.add_prefix) {
            t.insert_str(0, p);
        }
        let Some(tag) = tag.or_else(|| self.plan.tag.clone()) else {
            // fluentd's router.emit(nil, ...) raises; it is logged like any failed emit.
            let why = format!("the record has no tag ('{}'), dropped", x.tag_key.as_deref().unwrap_or(""));
            self.emit_failed(rec.as_bytes(), &why);
            return;
        };
        let time_v = x.time_key.as_deref().and_then(|k| rec.get(k.as_bytes()));
        let t = t.or_else(|| time_v.and_then(|v| time.parse_value(v).ok())).unwrap_or_else(EventTime::now);
        // The record without the extracted keys (unless kept).
        let drop_key = |k: &[u8]| {
            (!x.keep_tag_key && x.tag_key.as_deref().map(str::as_bytes) == Some(k))
                || (!x.keep_time_key && x.time_key.as_deref().map(str::as_bytes) == Some(k))
        };
        let mut body = Vec::with_capacity(rec.as_bytes().len());
        let kept: Vec<_> = rec.fields().filter(|(k, _)| !k.as_str().is_some_and(drop_key)).collect();
        raw::map_header(&mut body, kept.len() as u32);
        for (k, v) in kept {
            body.extend_from_slice(k.as_bytes());
            body.extend_from_slice(v.as_bytes());
        }
        entries.clear();
        encode::entry(entries, t, encode::TimeFormat::EventTime, &body);
        let tag = Bytes::from(tag.into_bytes());
        let batch = EventBatch {
            tag: tag.clone(),
            wire_len: entries.len(),
            entries: Bytes::copy_from_slice(entries),
            format: EntriesFormat::Packed,
            count: 1,
            invalid: 0,
            mode: Mode::PackedForward,
            option: Options::default(),
        };
        let Some(ctx) = self.ctx.upgrade() else { return };
        if let Some(Err(e)) = ctx.emit_to(self.plan.label, batch) {
            self.emit_failed(&body, &e.to_string());
            // As fluentd's router.emit_error_event: the record goes to @ERROR if any.
            if let Some(Err(e)) = ctx.emit_error_record(&tag, t, &body) {
                crate::warn!("{}: the record that failed to emit could not go to @ERROR either: {e}", self.id);
            }
        }
    }

    /// Logs a record that could not be emitted, at most once per
    /// `suppress_error_log_interval` (fluentd logs it as an error, with the record).
    fn emit_failed(&self, record: &[u8], why: &str) {
        let now = Instant::now();
        if self.next_error_log.get().is_some_and(|t| now < t) {
            return;
        }
        self.next_error_log.set((!self.plan.suppress_error_log.is_zero()).then(|| now + self.plan.suppress_error_log));
        let mut json = Vec::new();
        if let Some(r) = RecordRef::new(record) {
            r.write_json(&mut json);
        }
        crate::error!("{}: exec_filter failed to emit: {why}; record: {}", self.id, String::from_utf8_lossy(&json));
    }

    fn exited(&self, i: usize) {
        let mut cs = self.children.borrow_mut();
        let Some(c) = cs.get_mut(i) else { return };
        c.alive = false;
        let status = c.process.try_wait().ok().flatten();
        crate::warn!("{}: child process {i} exited ({status:?})", self.id);
        if c.respawns == 0 {
            return;
        }
        let left = if c.respawns > 0 { c.respawns - 1 } else { -1 };
        drop(cs);
        match self.spawn(i) {
            Ok(mut n) => {
                n.respawns = left;
                crate::info!("{}: respawning child process {i} (respawns left: {left})", self.id);
                if let Some(slot) = self.children.borrow_mut().get_mut(i) {
                    let mut old = std::mem::replace(slot, n);
                    std::thread::spawn(move || {
                        let _ = old.process.wait();
                    });
                }
            }
            Err(e) => crate::error!("{}: cannot respawn child process {i}: {e}", self.id),
        }
    }

    async fn write_chunk(&self, chunk: &Chunk) -> Result<usize, WriteError> {
        let tag = match &self.plan.remove_prefix {
            Some(p) if chunk.tag.starts_with(p.as_bytes()) && chunk.tag.len() > p.len() => chunk.tag.slice(p.len()..),
            _ => chunk.tag.clone(),
        };
        let mut body = Vec::with_capacity(chunk.data.len());
        for ev in Events::new(&chunk.data, EntriesFormat::Packed) {
            self.plan.format.format(&mut body, &tag, ev.time, ev.record.as_bytes());
        }
        let n = self.children.borrow().len();
        for _ in 0..n {
            let i = (self.next.get() + 1) % n;
            self.next.set(i);
            let stdin = match self.children.borrow_mut().get_mut(i) {
                Some(c) if c.alive => c.stdin.take(),
                _ => None,
            };
            let Some(mut stdin) = stdin else { continue };
            let data = body.clone();
            // Writing to a pipe blocks: off the shard.
            let r = glommio::executor()
                .spawn_blocking(move || {
                    let r = stdin.write_all(&data).and_then(|_| stdin.flush());
                    (stdin, r)
                })
                .await;
            let (stdin, r) = r;
            if let Some(c) = self.children.borrow_mut().get_mut(i) {
                if r.is_ok() {
                    c.stdin = Some(stdin);
                }
            }
            match r {
                Ok(()) => return Ok(body.len()),
                Err(e) => crate::warn!("{}: writing to child process {i} failed: {e}", self.id),
            }
        }
        Err(WriteError::Retry(format!("{}: no healthy child processes exist", self.id)))
    }
}

/// Collects a line's parsed records.
#[derive(Default)]
struct Collect {
    records: Vec<(std::ops::Range<usize>, Option<EventTime>)>,
    start: usize,
    error: Option<ParseError>,
}

impl Sink for Collect {
    fn begin(&mut self, out: &mut Vec<u8>) {
        self.start = out.len();
    }
    fn record(&mut self, out: &mut Vec<u8>, time: Option<EventTime>) {
        self.records.push((self.start..out.len(), time));
    }
    fn error(&mut self, err: ParseError) {
        self.error = Some(err);
    }
}

impl Writer for ExecFilterWriter {
    fn type_name(&self) -> &'static str {
        "exec_filter"
    }
    fn write<'a>(&'a self, chunk: &'a Chunk, _vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(self.write_chunk(chunk))
    }
    fn start(self: Rc<Self>) {
        let me = self.clone();
        *self.task.borrow_mut() = Some(glommio::spawn_local(async move { me.route().await }).detach());
    }
    fn stop(&self) {
        // Closing stdin ends well-behaved children; the rest are killed.
        for c in self.children.borrow_mut().iter_mut() {
            c.stdin = None;
            c.respawns = 0;
            let _ = c.process.kill();
            let _ = c.process.try_wait();
        }
        if let Some(t) = self.task.borrow_mut().take() {
            t.cancel();
        }
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
