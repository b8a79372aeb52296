//! S11's measuring limits: 1,000 Message-mode connections with acks at a fixed rate cost
//! the generator a write and an ack read per event on its one CPU, so the run also
//! measures the generator's own ceiling at S11's settings (into the loadgen sink, which
//! acks at once, on the CPU the systems get), and every fixed-rate result whose achieved
//! rate falls short of the offered one says so in its status: its latencies then include
//! the queue at the generator (latency is measured from the intended send time), and the
//! ceiling tells whether the system or the generator fell behind.

use serde_json::{json, Value};

use crate::{drive, f, start_sink, Ctx, Gen};

/// S11's load generator settings.
pub fn s11() -> Gen {
    Gen { mode: "message", connections: 1000, inflight: 8, batch: 1, ack: true, rate: Some(200_000), size: false }
}

/// S11's generator into the loadgen sink: what the generator itself reaches.
pub fn gen_ceiling(ctx: &Ctx) -> Value {
    let r = start_sink(crate::cpus().0, false).and_then(|s| {
        let g = s11();
        let r = drive(s.addr().port(), &g, ctx.warmup, ctx.duration, &ctx.dir);
        let _ = s.stop();
        r
    });
    match r {
        Ok(g) => json!({
            "events_per_sec": f(&g, "events_per_sec"),
            "offered_rate": s11().rate,
            "ack_latency_us": g.get("ack_latency_us").cloned().unwrap_or(Value::Null),
            "params": s11().json(),
        }),
        Err(e) => json!({"error": e}),
    }
}

/// A note for the status when a fixed rate was not reached (below 95 %).
pub fn rate_note(g: &Gen, achieved: f64) -> Option<String> {
    let want = g.rate? as f64;
    (achieved < want * 0.95).then(|| {
        format!(
            "; offered rate not reached ({achieved:.0} of {want:.0} events/s): latencies include the generator's queue, see ceilings"
        )
    })
}
