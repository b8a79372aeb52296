//! `<system>` beyond `workers` and `log_level` (which the planner reads): fluentd's
//! logging settings (`<log>` `format` and `time_format`, `suppress_repeated_stacktrace`,
//! `ignore_repeated_log_interval`, `ignore_same_log_interval`, `emit_error_log_interval`,
//! `log_event_verbose`) and the RPC endpoint (`rpc_endpoint`, `enable_get_dump`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{ConfigError, Element};

/// The `<system>` settings spate applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemConf {
    /// `workers` as written (the planner decides the effective count).
    pub workers: Option<usize>,
    /// `<log> format json` (`Some(false)`: `text`).
    pub log_json: Option<bool>,
    /// `<log> time_format` (strftime).
    pub log_time_format: Option<String>,
    /// Accepted: spate's log lines carry no stack traces, so there is nothing to
    /// suppress.
    pub suppress_repeated_stacktrace: bool,
    pub ignore_repeated_log_interval: Option<Duration>,
    pub ignore_same_log_interval: Option<Duration>,
    /// "events not accepted" warnings of inputs at most once per interval.
    pub emit_error_log_interval: Option<Duration>,
    /// Keep routing log events while shutting down.
    pub log_event_verbose: bool,
    pub rpc_endpoint: Option<SocketAddr>,
    pub enable_get_dump: bool,
}

/// fluentd's `rpc_endpoint` syntax: `host:port` or `[v6]:port`; spate needs an IP.
pub fn parse_endpoint(s: &str) -> Result<SocketAddr, String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("Invalid rpc_endpoint: {s}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| format!("Invalid rpc_endpoint: {s}"))?;
    let ip = match host {
        "localhost" => std::net::IpAddr::from([127, 0, 0, 1]),
        h => h
            .parse()
            .map_err(|_| format!("rpc_endpoint {s}: {h:?} is not an IP address (spate does not resolve names)"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

impl SystemConf {
    pub fn parse(s: &Element) -> Result<SystemConf, ConfigError> {
        let mut c = SystemConf {
            workers: s.int("workers")?.and_then(|w| usize::try_from(w).ok()),
            suppress_repeated_stacktrace: s.bool("suppress_repeated_stacktrace")?.unwrap_or(false),
            ignore_repeated_log_interval: s.time("ignore_repeated_log_interval")?,
            ignore_same_log_interval: s.time("ignore_same_log_interval")?,
            emit_error_log_interval: s.time("emit_error_log_interval")?,
            log_event_verbose: s.bool("log_event_verbose")?.unwrap_or(false),
            enable_get_dump: s.bool("enable_get_dump")?.unwrap_or(false),
            ..SystemConf::default()
        };
        if let Some(a) = s.get("rpc_endpoint") {
            c.rpc_endpoint = Some(parse_endpoint(&a.value).map_err(|m| ConfigError::at(&a.pos, m))?);
        }
        if let Some(l) = s.single("log")? {
            if let Some(f) = l.enum_of("format", &["text", "json"])? {
                c.log_json = Some(f == "json");
            }
            c.log_time_format = l.str("time_format").map(str::to_string);
            for k in ["path", "rotate_age", "rotate_size"] {
                if let Some(a) = l.get(k) {
                    return Err(ConfigError::at(
                        &a.pos,
                        format!("<log> {k} is not supported: spate logs to stderr (redirect it, or use your service manager's log rotation)"),
                    ));
                }
            }
            l.warn_unused();
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(parse_endpoint("127.0.0.1:24444"), Ok("127.0.0.1:24444".parse().unwrap()));
        assert_eq!(parse_endpoint("[::1]:24444"), Ok("[::1]:24444".parse().unwrap()));
        assert_eq!(parse_endpoint("localhost:1"), Ok("127.0.0.1:1".parse().unwrap()));
        assert!(parse_endpoint("example.com:1").is_err());
        assert!(parse_endpoint("127.0.0.1").is_err());
    }
}
