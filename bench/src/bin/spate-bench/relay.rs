//! S4's sink side (issue 17): the loadgen sink already serves its connections from one
//! epoll thread each (round-robin over its workers, `loadgen/src/sink.rs`), so what is
//! added here is (1) its ceiling measured with several connections, not only S1's four,
//! and the headroom check "sink ceiling >= 1.5x spate's best figure of the run"; and
//! (2) `S4-multi`: the relay with two sink connections at once, by running each system
//! with two workers on the same one CPU (spate: `workers 2`, two shards each with its
//! own out_forward connection; fluentd: `workers 2`, two worker processes; fluent-bit:
//! `Workers 2` on the forward output, two output threads), so the sink's per-connection
//! ceiling is not what limits the relay.

use std::path::Path;

use serde_json::{json, Value};

use crate::systems::Kind;
use crate::{drive, f, start_sink, Ctx, Gen};

/// Connection counts the sink's ceiling is measured with.
const SINK_CONNECTIONS: [u32; 3] = [1, 2, 8];

/// Generator -> sink with 1, 2 and 8 connections (S1's frames: packed 1000, acks, plus
/// the `size` option out_forward sends), the sink on the CPU the systems under test
/// get: events/s per connection count.
///
/// The second map is the sink's capacity: events it received per CPU-second its worker
/// used. The generator, on the other CPU, may be what limits the first figure; the
/// sink's one CPU then still has room, and the capacity says how much.
pub fn sink_ceilings(ctx: &Ctx) -> (Value, Value) {
    let mut out = serde_json::Map::new();
    let mut capacity = serde_json::Map::new();
    for n in SINK_CONNECTIONS {
        let v = start_sink(crate::cpus().0, false).and_then(|s| {
            // Frames with `size`, as relays send them (fluentd's and spate's
            // out_forward): the sink counts those without walking their events.
            let g = Gen { connections: n, size: true, ..Gen::s1() };
            let r = drive(s.addr().port(), &g, ctx.warmup, ctx.duration, &ctx.dir);
            let rep = s.stop();
            r.map(|g| (g, rep))
        });
        let (eps, cap) = match v {
            // A size that disagreed (or a bad frame) makes the sink's counts suspect.
            Ok((_, rep)) if rep.size_mismatches > 0 || rep.bad_frames > 0 => {
                let e = format!("{} size mismatches, {} bad frames", rep.size_mismatches, rep.bad_frames);
                (json!({ "error": e }), Value::Null)
            }
            Ok((g, rep)) => {
                let cap = if rep.worker_cpu_s > 0.0 { rep.events_received as f64 / rep.worker_cpu_s } else { 0.0 };
                (json!(f(&g, "events_per_sec")), json!(cap))
            }
            Err(e) => (json!({"error": e}), Value::Null),
        };
        out.insert(n.to_string(), eps);
        capacity.insert(n.to_string(), cap);
    }
    (Value::Object(out), Value::Object(capacity))
}

/// The run's headroom: the sink's best capacity (else its measured ceiling) against 1.5x spate's best events/s in this
/// run (issue 17's goal; meaningful in an `all` run, which has S1), or Null when the run
/// did not measure the sink by connections (no S4) or spate has no figure.
pub fn headroom(ceilings: &Value, results: &[Value]) -> Value {
    let Some(m) = ceilings.get("sink_by_connections").and_then(Value::as_object) else {
        return Value::Null;
    };
    let mut best_sink = f(ceilings, "gen_to_sink_events_per_sec");
    for v in m.values() {
        best_sink = best_sink.max(v.as_f64().unwrap_or(0.0));
    }
    // What the sink can take on its CPU, where measured (the generator may have been
    // the limit of the throughput figures).
    let mut best_capacity = 0.0f64;
    if let Some(c) = ceilings.get("sink_capacity_by_connections").and_then(Value::as_object) {
        for v in c.values() {
            best_capacity = best_capacity.max(v.as_f64().unwrap_or(0.0));
        }
    }
    let best = results
        .iter()
        .filter(|r| r["system"] == "spate" && r["status"].as_str().is_some_and(|s| s.starts_with("ok")))
        .max_by(|a, b| f(a, "events_per_sec").total_cmp(&f(b, "events_per_sec")));
    match best {
        Some(r) if best_sink > 0.0 && f(r, "events_per_sec") > 0.0 => {
            // What the sink was measured to take is bound by the generator on the other
            // CPU as soon as the sink is the faster of the two (its worker then idles
            // part of the time), so the goal is judged on the sink's capacity per
            // CPU-second where it was measured. Both ratios are kept. (On loopback the
            // kernel charges part of the receive work to the sender: as it does for the
            // systems under test, whose figures this is compared with.)
            let eps = f(r, "events_per_sec");
            let measured_ratio = best_sink / eps;
            let ratio = if best_capacity > 0.0 { best_capacity / eps } else { measured_ratio };
            json!({
                "sink_ceiling_events_per_sec": best_sink,
                "sink_capacity_events_per_cpu_second": best_capacity,
                "measured_ratio": measured_ratio,
                "capacity_ratio": best_capacity / eps,
                "spate_best_events_per_sec": eps,
                "spate_best_scenario": r["scenario"],
                "ratio": ratio,
                "goal": 1.5,
                "met": ratio >= 1.5,
            })
        }
        _ => Value::Null,
    }
}

/// Rewrites a relay config written by `systems::config` for two workers (see the module
/// doc): the same pipeline, two connections to the sink.
pub fn two_workers(kind: Kind, dir: &Path) -> std::io::Result<()> {
    match kind {
        Kind::Spate => {
            let p = dir.join("fluent.conf");
            let c = std::fs::read_to_string(&p)?;
            std::fs::write(&p, c.replacen("workers 1", "workers 2", 1))
        }
        Kind::Fluentd => {
            let p = dir.join("fluent.conf");
            let c = std::fs::read_to_string(&p)?;
            std::fs::write(&p, format!("<system>\n  workers 2\n</system>\n{c}"))
        }
        Kind::FluentBit => {
            let p = dir.join("fluent-bit.conf");
            let c = std::fs::read_to_string(&p)?;
            std::fs::write(
                &p,
                c.replacen("    Name forward\n    Match *\n", "    Name forward\n    Match *\n    Workers 2\n", 1),
            )
        }
    }
}
