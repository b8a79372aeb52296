//! spate-loadgen: a Forward protocol load generator and sink for testing any
//! Fluentd-compatible server (fluentd, fluent-bit, Vector, spate). The generator
//! ([`generator::run`]) sends in every Forward mode at a fixed open-loop rate or as fast
//! as the target takes it, with acks and HDR latency histograms; the sink
//! ([`sink::start`]) receives, acks, counts per tag and measures end-to-end latency from
//! a send stamp in each record. Both write the JSON reports of [`report`]. With
//! `--protocol http|tcp|udp|syslog` the generator drives in_http, in_tcp, in_udp and
//! in_syslog instead ([`lines`]).

pub mod capture;
mod fleet;
pub mod generator;
pub mod handshake;
pub mod lines;
mod plain;
pub mod records;
pub mod replay;
pub mod report;
pub mod sink;
pub mod slo;
pub mod sockets;
pub mod stats;
pub mod svg;
mod threaded;
pub mod tls;

/// Parses `30s`, `500ms`, `2m`, `1h` or plain seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("invalid duration {s:?} (e.g. 30s, 500ms, 2m)"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(v * mult))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
