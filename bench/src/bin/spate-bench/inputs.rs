//! Scenarios on the inputs beyond Forward (bench/README.md): S8, in_http JSON batches
//! -> null, and S9, syslog RFC 5424 over TCP -> the syslog parser -> null. Owns their
//! load-generator settings, the spate-loadgen arguments for a `protocol/format` mode,
//! and each system's config for them (spate and fluentd share fluentd's syntax;
//! fluent-bit gets `in_http` and `in_syslog` with upstream's `syslog-rfc5424` parser).

use std::path::Path;

use super::Gen;
use crate::systems::Kind;

/// S8: HTTP POSTs of JSON arrays of 1000 R1 events to `/spate.loadgen`, 4 keep-alive
/// connections, one request in flight each. A 2xx response confirms a request (the
/// input emitted its events), so it counts as acked.
pub fn s8() -> (&'static str, Gen) {
    ("http", Gen { mode: "http/json", connections: 4, inflight: 1, batch: 1000, ack: true, rate: None, size: false })
}

/// S9: RFC 5424 lines (R1's host and message) over 4 TCP connections, 1000 lines per
/// write. Syslog has no acks and the pipeline ends in null, so loss is not verifiable.
pub fn s9() -> (&'static str, Gen) {
    (
        "syslog",
        Gen {
            mode: "syslog/syslog5424",
            connections: 4,
            inflight: 1,
            batch: 1000,
            ack: false,
            rate: None,
            size: false,
        },
    )
}

/// spate-loadgen arguments for a scenario's load: `--protocol P --format F` for a
/// `P/F` mode (responses confirm HTTP requests: no `--ack`), else `--mode` and the
/// Forward ack settings.
pub fn gen_args(g: &Gen) -> Vec<String> {
    match g.mode.split_once('/') {
        Some((p, f)) => vec!["--protocol".into(), p.into(), "--format".into(), f.into()],
        None => {
            let mut a = vec!["--mode".to_string(), g.mode.to_string()];
            if g.ack {
                a.extend(["--ack".to_string(), "--inflight".to_string(), g.inflight.to_string()]);
            }
            a
        }
    }
}

/// Writes the config of an input scenario's pipeline (`http` or `syslog`) in `dir` and
/// returns the command-line arguments; None for the Forward pipelines of `systems.rs`.
pub fn config(kind: Kind, pipeline: &str, port: u16, dir: &Path) -> Option<std::io::Result<Vec<String>>> {
    if pipeline != "http" && pipeline != "syslog" {
        return None;
    }
    Some(write(kind, pipeline, port, dir))
}

fn write(kind: Kind, pipeline: &str, port: u16, dir: &Path) -> std::io::Result<Vec<String>> {
    match kind {
        Kind::Spate | Kind::Fluentd => {
            let source = if pipeline == "http" {
                format!("<source>\n  @type http\n  bind 127.0.0.1\n  port {port}\n</source>\n")
            } else {
                format!(
                    "<source>\n  @type syslog\n  bind 127.0.0.1\n  port {port}\n  tag spate.loadgen\n  <transport tcp>\n  </transport>\n  <parse>\n    @type syslog\n    message_format rfc5424\n  </parse>\n</source>\n"
                )
            };
            let workers = if kind == Kind::Spate { "<system>\n  workers 1\n</system>\n" } else { "" };
            let conf = format!("{workers}{source}<match **>\n  @type null\n</match>\n");
            let path = dir.join("fluent.conf");
            std::fs::write(&path, conf)?;
            Ok(vec!["-c".to_string(), path.display().to_string(), "-q".to_string()])
        }
        Kind::FluentBit => {
            let (service, input) = if pipeline == "http" {
                // The tag is the request path, as with fluentd.
                (String::new(), format!("[INPUT]\n    Name http\n    Listen 127.0.0.1\n    Port {port}\n"))
            } else {
                // Upstream's conf/parsers.conf definition, so the run does not depend on
                // where fluent-bit's own parsers file is installed.
                let parsers = dir.join("parsers.conf");
                std::fs::write(
                    &parsers,
                    "[PARSER]\n    Name        syslog-rfc5424\n    Format      regex\n    Regex       ^\\<(?<pri>[0-9]{1,5})\\>1 (?<time>[^ ]+) (?<host>[^ ]+) (?<ident>[^ ]+) (?<pid>[-0-9]+) (?<msgid>[^ ]+) (?<extradata>(\\[(.*?)\\]|-)) (?<message>.+)$\n    Time_Key    time\n    Time_Format %Y-%m-%dT%H:%M:%S.%L%z\n    Time_Keep   On\n",
                )?;
                (
                    format!("    Parsers_File {}\n", parsers.display()),
                    format!(
                        "[INPUT]\n    Name syslog\n    Mode tcp\n    Listen 127.0.0.1\n    Port {port}\n    Parser syslog-rfc5424\n    Tag spate.loadgen\n"
                    ),
                )
            };
            let conf = format!(
                "[SERVICE]\n    Flush 0.1\n    Log_Level warn\n{service}\n{input}\n[OUTPUT]\n    Name null\n    Match *\n"
            );
            let path = dir.join("fluent-bit.conf");
            std::fs::write(&path, conf)?;
            Ok(vec!["-c".to_string(), path.display().to_string()])
        }
    }
}
