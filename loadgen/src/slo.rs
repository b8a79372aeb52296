//! `--slo 'ack_p99<=5ms,errors==0,events_per_sec>=1000000'`: service level objectives
//! parsed before the run (a typo is an error then, not after a 10-minute test) and checked
//! against the report at its end; each failed objective gives one line saying what was
//! measured.

use crate::report::{RunReport, SloResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Le,
    Ge,
    Lt,
    Gt,
    Eq,
    Ne,
}

/// One objective: `metric op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub text: String,
    metric: String,
    op: Op,
    /// In the metric's unit (µs for latencies).
    value: f64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SloError {
    #[error("--slo {0:?}: expected METRIC OP VALUE with OP one of <= >= < > == != (e.g. ack_p99<=5ms)")]
    Syntax(String),
    #[error("--slo {0:?}: unknown metric {1:?}; supported: {METRICS}, and for latencies (ack_, connect_) p50 p90 p99 p999 max")]
    Metric(String, String),
    #[error(
        "--slo {0:?}: invalid value {1:?} (a number; latencies take us, ms or s; counts and rates take k, M or G)"
    )]
    Value(String, String),
}

const METRICS: &str = "events_per_sec, events_sent, events_acked, errors, ack_timeouts, reconnects, bytes_per_sec, achieved_rate, connects, churned, duration_s, fairness_min, fairness_max";

fn is_latency(m: &str) -> bool {
    m.starts_with("ack_p") || m.starts_with("connect_p") || m == "ack_max" || m == "connect_max"
}

/// The metric's value in a report (latencies in µs).
fn measure(r: &RunReport, m: &str) -> Option<f64> {
    let lat = |l: &crate::report::Latency, q: &str| -> Option<f64> {
        Some(match q {
            "p50" => l.p50,
            "p90" => l.p90,
            "p99" => l.p99,
            "p999" => l.p999,
            "max" => l.max,
            _ => return None,
        } as f64)
    };
    if let Some(q) = m.strip_prefix("ack_") {
        if q != "timeouts" {
            return lat(&r.ack_latency_us, q);
        }
    }
    if let Some(q) = m.strip_prefix("connect_") {
        return lat(&r.connect_latency_us, q);
    }
    Some(match m {
        "events_per_sec" => r.events_per_sec,
        "events_sent" => r.events_sent as f64,
        "events_acked" => r.events_acked as f64,
        "errors" => r.errors as f64,
        "ack_timeouts" => r.ack_timeouts as f64,
        "reconnects" => r.reconnects as f64,
        "bytes_per_sec" => r.bytes_per_sec,
        "achieved_rate" => r.achieved_rate,
        "connects" => r.connects as f64,
        "churned" => r.churned as f64,
        "duration_s" => r.duration_s,
        "fairness_min" => r.fairness.min as f64,
        "fairness_max" => r.fairness.max as f64,
        _ => return None,
    })
}

fn parse_value(text: &str, metric: &str, v: &str) -> Result<f64, SloError> {
    let bad = || SloError::Value(text.into(), v.into());
    let (num, mult) = if is_latency(metric) {
        if let Some(n) = v.strip_suffix("ms") {
            (n, 1e3)
        } else if let Some(n) = v.strip_suffix("us").or_else(|| v.strip_suffix("µs")) {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1e6)
        } else {
            (v, 1.0)
        }
    } else if let Some(n) = v.strip_suffix('k') {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('M') {
        (n, 1e6)
    } else if let Some(n) = v.strip_suffix('G') {
        (n, 1e9)
    } else {
        (v, 1.0)
    };
    let x: f64 = num.trim().parse().map_err(|_| bad())?;
    if !x.is_finite() {
        return Err(bad());
    }
    Ok(x * mult)
}

/// Parses a comma-separated list of objectives.
pub fn parse(s: &str) -> Result<Vec<Objective>, SloError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ops = [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("!=", Op::Ne), ("<", Op::Lt), (">", Op::Gt)];
        let Some((at, sym, op)) = ops
            .iter()
            .filter_map(|(sym, op)| part.find(sym).map(|at| (at, *sym, *op)))
            .min_by_key(|x| (x.0, 2 - x.1.len()))
        else {
            return Err(SloError::Syntax(part.into()));
        };
        let metric = part[..at].trim().to_string();
        let value = part[at + sym.len()..].trim();
        if metric.is_empty() || value.is_empty() {
            return Err(SloError::Syntax(part.into()));
        }
        if measure(&RunReport::default(), &metric).is_none() {
            return Err(SloError::Metric(part.into(), metric));
        }
        let value = parse_value(part, &metric, value)?;
        out.push(Objective { text: part.into(), metric, op, value });
    }
    Ok(out)
}

/// Checks every objective against the report.
pub fn check(objs: &[Objective], r: &RunReport) -> Vec<SloResult> {
    objs.iter()
        .map(|o| {
            let m = measure(r, &o.metric).unwrap_or(f64::NAN);
            let ok = match o.op {
                Op::Le => m <= o.value,
                Op::Ge => m >= o.value,
                Op::Lt => m < o.value,
                Op::Gt => m > o.value,
                Op::Eq => m == o.value,
                Op::Ne => m != o.value,
            };
            SloResult { objective: o.text.clone(), measured: m, ok }
        })
        .collect()
}

/// The one-line reason for a failed objective.
pub fn reason(s: &SloResult) -> String {
    let metric = s.objective.split(['<', '>', '=', '!']).next().unwrap_or("").trim();
    let measured = if is_latency(metric) {
        if s.measured >= 1e6 {
            format!("{:.3}s", s.measured / 1e6)
        } else if s.measured >= 1e3 {
            format!("{:.3}ms", s.measured / 1e3)
        } else {
            format!("{}us", s.measured)
        }
    } else if s.measured.fract() == 0.0 {
        format!("{}", s.measured)
    } else {
        format!("{:.1}", s.measured)
    };
    format!("SLO failed: {} (measured {measured})", s.objective)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Latency;

    #[test]
    fn objectives_parse_check_and_explain() {
        let o = parse("ack_p99<=5ms, errors==0,events_per_sec>=1M").unwrap();
        assert_eq!(o.len(), 3);
        let mut r = RunReport {
            ack_latency_us: Latency { p99: 4_000, ..Default::default() },
            events_per_sec: 2e6,
            ..Default::default()
        };
        assert!(check(&o, &r).iter().all(|s| s.ok));
        r.ack_latency_us.p99 = 7_310;
        r.errors = 3;
        let res = check(&o, &r);
        let failed: Vec<String> = res.iter().filter(|s| !s.ok).map(reason).collect();
        assert_eq!(
            failed,
            vec![
                "SLO failed: ack_p99<=5ms (measured 7.310ms)".to_string(),
                "SLO failed: errors==0 (measured 3)".to_string()
            ]
        );
        assert!(matches!(parse("ack_p98<=5ms"), Err(SloError::Metric(..))));
        assert!(matches!(parse("errors=0"), Err(SloError::Syntax(_))));
        assert!(matches!(parse("errors<=lots"), Err(SloError::Value(..))));
        assert_eq!(parse("connect_max<1s").unwrap()[0].value, 1e6);
    }
}
