//! `out_exec` (fluentd core): each chunk is formatted into a file (`<format>`, default
//! `tsv`), and `command` runs with the file's path as its last argument; exit status 0
//! commits the chunk, anything else (or `command_timeout`) retries it.
//!
//! As fluentd runs it: through the shell when the command needs one (spate always
//! uses `/bin/sh -c '<command> <path>'`, which is the same for commands without shell
//! syntax), stdin closed, stdout discarded, stderr spate's. `<inject>` defaults to
//! `time_type string` in UTC, as out_exec sets it.
//!
//! Difference: with a file buffer fluentd passes the chunk file itself, which holds the
//! formatted lines; spate's chunk files hold msgpack, so the command always gets a
//! temporary file (`$TMPDIR/fluent-plugin-out-exec-<random>`, created new and removed
//! when the command exits), as fluentd does for a memory buffer. The wait runs on the
//! shard's timers, so a slow command holds no thread.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use spate_protocol::{EntriesFormat, Events};

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::format::{FormatConf, TimeType, Zone};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};

pub const PLUGIN: Registration = Registration {
    name: "exec",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "`command` (required; run by /bin/sh with the formatted chunk's file path appended), `command_timeout` (270 s; then killed and retried), `<format>` (default `tsv`, every formatter above), `<inject>` (default `time_type string`, UTC). Exit status 0 commits the chunk; anything else retries it",
};

#[derive(Debug, Clone)]
pub struct ExecPlan {
    command: String,
    timeout: Duration,
    format: FormatConf,
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let command = e.str("command").ok_or_else(|| e.error("'command' parameter is required"))?.to_string();
    let timeout = e.time("command_timeout")?.unwrap_or(Duration::from_secs(270));
    let mut format = crate::format::format_conf(e, "tsv", &ctx.hostname)?;
    // out_exec's <inject> defaults: time as a string, in UTC (also for v0.12's flat
    // include_time_key, which fluentd turns into an <inject> with these defaults).
    let section = e.elements_named("inject").next();
    let src = section.unwrap_or(e);
    if section.is_some() && src.get("time_type").is_none() {
        format.inject.time_type = Some(TimeType::String);
    }
    if ["localtime", "utc", "timezone"].iter().all(|k| src.get(k).is_none()) {
        if let Some(t) = &mut format.inject.time {
            t.zone = Zone::Utc;
        }
    }
    // fluentd: a text formatter's line, chomped, and "\n" (msgpack is written as is).
    if !matches!(format.formatter, crate::format::Formatter::Msgpack) {
        format.newline = "\n";
    }
    if setup.primary_buffer().is_none() {
        setup.buffer(e, &BufferDefaults::default())?;
    }
    Ok(Box::new(ExecPlan { command, timeout, format }))
}

impl WriterPlan for ExecPlan {
    fn type_name(&self) -> &'static str {
        "exec"
    }

    fn describe(&self) -> String {
        format!("exec {:?}", self.command)
    }

    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(ExecWriter { id: id.to_string(), plan: self.clone() }))
    }
}

pub struct ExecWriter {
    id: String,
    plan: ExecPlan,
}

/// How the command ended.
#[derive(Debug, PartialEq)]
enum Ended {
    Ok,
    Status(Option<i32>, Option<i32>),
    TimedOut,
}

/// Writes `body` to a new file of its own in the temporary directory (never an
/// existing one: `create_new` with a random name); returns its path.
fn write_temp(body: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let name = format!("fluent-plugin-out-exec-{}", spate_protocol::hex(&crate::sys::random16()));
    let path = std::env::temp_dir().join(name);
    use std::os::unix::fs::OpenOptionsExt;
    // 0600, as Ruby's Tempfile: the records are nobody else's to read.
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    f.write_all(body)?;
    Ok(path)
}

/// The command's process and its file: killed and removed however the write ends
/// (also when the write is dropped at shutdown).
struct Running {
    child: Option<std::process::Child>,
    path: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                // Reaped later by a thread of its own: waiting here could block the shard.
                std::thread::spawn(move || {
                    let _ = c.wait();
                });
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs `command path` through the shell and waits (on the shard, with timers: the
/// blocking thread stays free) at most `timeout`, then SIGKILL.
async fn run(command: &str, running: &mut Running, timeout: Duration) -> std::io::Result<Ended> {
    use std::os::unix::process::ExitStatusExt;
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{command} {}", running.path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let child = running.child.insert(child);
    let until = Instant::now() + timeout;
    let mut wait = Duration::from_millis(1);
    loop {
        if let Some(s) = child.try_wait()? {
            running.child = None;
            return Ok(if s.success() { Ended::Ok } else { Ended::Status(s.code(), s.signal()) });
        }
        if Instant::now() >= until {
            // Running's Drop kills and reaps it.
            return Ok(Ended::TimedOut);
        }
        glommio::timer::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(50));
    }
}

impl ExecWriter {
    async fn write_chunk(&self, chunk: &Chunk) -> Result<usize, WriteError> {
        let mut body = Vec::with_capacity(chunk.data.len());
        for ev in Events::new(&chunk.data, EntriesFormat::Packed) {
            self.plan.format.format(&mut body, &chunk.tag, ev.time, ev.record.as_bytes());
        }
        let len = body.len();
        // Writing the file blocks: off the shard.
        let path = glommio::executor()
            .spawn_blocking(move || write_temp(&body))
            .await
            .map_err(|e| WriteError::Retry(format!("{}: cannot write the chunk's file: {e}", self.id)))?;
        let prog = format!("{} {}", self.plan.command, path.display());
        let mut running = Running { child: None, path };
        let r = run(&self.plan.command, &mut running, self.plan.timeout).await;
        drop(running);
        match r {
            Ok(Ended::Ok) => Ok(len),
            Ok(Ended::Status(code, signal)) => Err(WriteError::Retry(format!(
                "command exits with error code prog={prog:?} status={} signal={}",
                code.map_or("nil".into(), |c| c.to_string()),
                signal.map_or("nil".into(), |s| s.to_string())
            ))),
            Ok(Ended::TimedOut) => Err(WriteError::Retry(format!(
                "command did not exit within command_timeout ({:?}), killed: prog={prog:?}",
                self.plan.timeout
            ))),
            Err(e) => Err(WriteError::Retry(format!("{}: cannot run {prog:?}: {e}", self.id))),
        }
    }
}

impl Writer for ExecWriter {
    fn type_name(&self) -> &'static str {
        "exec"
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, _vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(self.write_chunk(chunk))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
