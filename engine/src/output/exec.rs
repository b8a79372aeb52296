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
//! temporary file (`$TMPDIR/fluent-plugin-out-exec-<chunk id>`, removed when the command
//! exits), as fluentd does for a memory buffer.

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
    // out_exec's <inject> defaults: time as a string, in UTC.
    if let Some(i) = e.elements_named("inject").next() {
        if i.get("time_type").is_none() {
            format.inject.time_type = Some(TimeType::String);
        }
        if ["localtime", "utc", "timezone"].iter().all(|k| i.get(k).is_none()) {
            if let Some(t) = &mut format.inject.time {
                t.zone = Zone::Utc;
            }
        }
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

/// Runs `command path` through the shell, waiting at most `timeout` (then SIGKILL).
fn run(command: &str, path: &std::path::Path, timeout: Duration) -> std::io::Result<Ended> {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{command} {}", path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let until = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(if s.success() { Ended::Ok } else { Ended::Status(s.code(), s.signal()) });
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Ended::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl ExecWriter {
    async fn write_chunk(&self, chunk: &Chunk) -> Result<usize, WriteError> {
        let mut body = Vec::with_capacity(chunk.data.len());
        for ev in Events::new(&chunk.data, EntriesFormat::Packed) {
            self.plan.format.format(&mut body, &chunk.tag, ev.time, ev.record.as_bytes());
        }
        let len = body.len();
        let id: String = chunk.id.iter().map(|b| format!("{b:02x}")).collect();
        let path: PathBuf = std::env::temp_dir().join(format!("fluent-plugin-out-exec-{id}"));
        let (command, timeout) = (self.plan.command.clone(), self.plan.timeout);
        let p = path.clone();
        // Writing the file and waiting for the command block: off the shard.
        let r = glommio::executor()
            .spawn_blocking(move || {
                std::fs::write(&p, &body)?;
                let r = run(&command, &p, timeout);
                let _ = std::fs::remove_file(&p);
                r
            })
            .await;
        let prog = format!("{} {}", self.plan.command, path.display());
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
