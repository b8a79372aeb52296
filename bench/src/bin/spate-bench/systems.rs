//! The systems under test: how to find each one (`$SPATE` / `$FLUENTD` / `$FLUENT_BIT`
//! or `PATH`), its version and cost-relevant settings, and the same pipeline written in
//! each system's own config syntax.

use std::path::{Path, PathBuf};
use std::process::Command;

use spate_testkit::process::on_path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Spate,
    Fluentd,
    FluentBit,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Spate => "spate",
            Kind::Fluentd => "fluentd",
            Kind::FluentBit => "fluent-bit",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "spate" => Some(Kind::Spate),
            "fluentd" => Some(Kind::Fluentd),
            "fluent-bit" | "fluentbit" => Some(Kind::FluentBit),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct System {
    pub kind: Kind,
    pub cmd: PathBuf,
    pub version: String,
    /// Settings that change the system's cost, recorded with every result.
    pub settings: String,
}

/// The pipeline a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipeline {
    /// forward -> null
    Null,
    /// forward -> grep(message =~ /error/) -> null
    GrepNull,
    /// forward -> forward (memory buffer, flush 100 ms) -> sink
    Relay { sink_port: u16 },
    /// forward -> file buffer (flush 100 ms) -> forward with acks -> sink
    DurableRelay { sink_port: u16 },
    /// S1M: forward -> prometheus filter (records per tag) -> null, with every metric
    /// source configured (monitor_agent, prometheus, prometheus_monitor,
    /// prometheus_output_monitor, prometheus_tail_monitor) and spate's own log events
    /// routed (spate only).
    NullMetrics { monitor_port: u16, prometheus_port: u16 },
    /// forward -> out_elasticsearch (memory buffer, flush 100 ms) -> a bulk endpoint
    Elasticsearch { bulk_port: u16 },
    /// forward -> out_kafka2 (fluent-bit: `kafka`), acks=all, one broker (S10, `kafka.rs`)
    Kafka { broker_port: u16 },
}

fn version_of(cmd: &Path, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd).args(args).output().ok()?;
    let s = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    s.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_string)
}

/// Next to this executable (target/release), where `cargo build --release` puts it.
pub fn sibling(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join(name);
    p.is_file().then_some(p)
}

/// Finds a system (at `$var` when given, else its usual variable or `PATH`), or says
/// why it was not found.
pub fn find(kind: Kind, var: Option<&str>) -> Result<System, String> {
    let (env, bin) = match kind {
        Kind::Spate => ("SPATE", "spate"),
        Kind::Fluentd => ("FLUENTD", "fluentd"),
        Kind::FluentBit => ("FLUENT_BIT", "fluent-bit"),
    };
    let env = var.unwrap_or(env);
    let cmd = match std::env::var_os(env) {
        Some(p) => PathBuf::from(p),
        None => {
            let found = if kind == Kind::Spate { sibling(bin).or_else(|| on_path(bin)) } else { on_path(bin) };
            found.ok_or_else(|| format!("not found: ${env} unset and no `{bin}` on PATH"))?
        }
    };
    if !cmd.is_file() {
        return Err(format!("not found: {} does not exist", cmd.display()));
    }
    let version = version_of(&cmd, &["--version"]).ok_or_else(|| format!("{} --version failed", cmd.display()))?;
    let settings = match kind {
        Kind::Spate => "workers 1; events validated in place".to_string(),
        Kind::Fluentd => {
            // fluentd >= 1.19 validates every event (skip_invalid_event true); 1.18 copies bytes.
            let v = version.split_whitespace().nth(1).unwrap_or("");
            let mut it = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
            let (maj, min) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            if (maj, min) >= (1, 19) {
                "workers 1; skip_invalid_event true (default since 1.19: every event decoded and validated)".to_string()
            } else {
                "workers 1; no per-event validation (fluentd < 1.19 default)".to_string()
            }
        }
        Kind::FluentBit => "1 worker thread; defaults".to_string(),
    };
    Ok(System { kind, cmd, version, settings })
}

/// Writes the pipeline's config in `dir` and returns the command-line arguments.
pub fn config(kind: Kind, p: Pipeline, port: u16, dir: &Path) -> std::io::Result<Vec<String>> {
    match kind {
        Kind::Spate | Kind::Fluentd => {
            let filter = match p {
                Pipeline::GrepNull => {
                    "<filter **>\n  @type grep\n  <regexp>\n    key message\n    pattern /error/\n  </regexp>\n</filter>\n".to_string()
                }
                Pipeline::NullMetrics { monitor_port, prometheus_port } => format!(
                    "<source>\n  @type monitor_agent\n  bind 127.0.0.1\n  port {monitor_port}\n</source>\n\
                     <source>\n  @type prometheus\n  bind 127.0.0.1\n  port {prometheus_port}\n</source>\n\
                     <source>\n  @type prometheus_monitor\n</source>\n\
                     <source>\n  @type prometheus_output_monitor\n</source>\n\
                     <source>\n  @type prometheus_tail_monitor\n</source>\n\
                     <filter **>\n  @type prometheus\n  <metric>\n    name records_total\n    type counter\n    desc Records per tag.\n    <labels>\n      tag ${{tag}}\n    </labels>\n  </metric>\n</filter>\n\
                     <match fluent.**>\n  @type null\n</match>\n"
                ),
                _ => String::new(),
            };
            let out = match p {
                Pipeline::Null | Pipeline::GrepNull | Pipeline::NullMetrics { .. } => {
                    "<match **>\n  @type null\n</match>\n".to_string()
                }
                Pipeline::Relay { sink_port } => format!(
                    "<match **>\n  @type forward\n  <server>\n    host 127.0.0.1\n    port {sink_port}\n  </server>\n  <buffer>\n    flush_interval 0.1s\n    chunk_limit_size 8m\n    total_limit_size 512m\n  </buffer>\n</match>\n"
                ),
                Pipeline::DurableRelay { sink_port } => format!(
                    "<match **>\n  @type forward\n  require_ack_response true\n  <server>\n    host 127.0.0.1\n    port {sink_port}\n  </server>\n  <buffer>\n    @type file\n    path {}\n    flush_interval 0.1s\n    chunk_limit_size 8m\n    total_limit_size 512m\n  </buffer>\n</match>\n",
                    dir.join("buffer").display()
                ),
                Pipeline::Elasticsearch { bulk_port } => format!(
                    "<match **>\n  @type elasticsearch\n  host 127.0.0.1\n  port {bulk_port}\n  verify_es_version_at_startup false\n  default_elasticsearch_version 8\n  <buffer>\n    flush_thread_count 2\n    flush_interval 0.1s\n    chunk_limit_size 8m\n    total_limit_size 512m\n  </buffer>\n</match>\n"
                ),
                Pipeline::Kafka { broker_port } => crate::kafka::fluent_match(broker_port),
            };
            let workers = if kind == Kind::Spate { "<system>\n  workers 1\n</system>\n" } else { "" };
            let conf = format!(
                "{workers}<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n{filter}{out}"
            );
            let path = dir.join("fluent.conf");
            std::fs::write(&path, conf)?;
            let mut args = vec!["-c".to_string(), path.display().to_string()];
            // Quiet logging for both; fluentd keeps its supervisor (its real footprint).
            args.push("-q".into());
            Ok(args)
        }
        Kind::FluentBit => {
            let filter = if p == Pipeline::GrepNull {
                "[FILTER]\n    Name grep\n    Match *\n    Regex message error\n\n"
            } else {
                ""
            };
            let out = match p {
                Pipeline::Null | Pipeline::GrepNull | Pipeline::NullMetrics { .. } => {
                    "[OUTPUT]\n    Name null\n    Match *\n".to_string()
                }
                Pipeline::Relay { sink_port } => {
                    format!("[OUTPUT]\n    Name forward\n    Match *\n    Host 127.0.0.1\n    Port {sink_port}\n")
                }
                Pipeline::DurableRelay { sink_port } => format!(
                    "[OUTPUT]\n    Name forward\n    Match *\n    Host 127.0.0.1\n    Port {sink_port}\n    Require_ack_response true\n"
                ),
                Pipeline::Elasticsearch { bulk_port } => format!(
                    "[OUTPUT]\n    Name es\n    Match *\n    Host 127.0.0.1\n    Port {bulk_port}\n    Suppress_Type_Name On\n    Workers 2\n"
                ),
                Pipeline::Kafka { broker_port } => crate::kafka::fluent_bit_output(broker_port),
            };
            // Durable: chunks in the filesystem, written with fsync (storage.sync full).
            let (storage, input_storage) = match p {
                Pipeline::DurableRelay { .. } => (
                    format!("    storage.path {}\n    storage.sync full\n", dir.join("flb-storage").display()),
                    "    storage.type filesystem\n",
                ),
                _ => (String::new(), ""),
            };
            let conf = format!(
                "[SERVICE]\n    Flush 0.1\n    Log_Level warn\n{storage}\n[INPUT]\n    Name forward\n    Listen 127.0.0.1\n    Port {port}\n{input_storage}\n{filter}{out}"
            );
            let path = dir.join("fluent-bit.conf");
            std::fs::write(&path, conf)?;
            Ok(vec!["-c".to_string(), path.display().to_string()])
        }
    }
}
