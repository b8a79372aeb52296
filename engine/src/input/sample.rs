//! `in_sample` (alias `dummy`): generates events from a JSON sample at a fixed rate, as
//! fluentd does (`rate` events per second in 10 slices, `size` events per emit,
//! `auto_increment_key`). Runs on every shard it is placed on.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::encode::{self, raw};
use spate_protocol::{EntriesFormat, EventBatch, EventTime, Mode, Options};

use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, Emitter, Input, InputPlan, Kind, Listening, LocalFuture, PlanCtx, Registration, ShardCtx,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "sample",
    aliases: &["dummy"],
    kind: Kind::Input,
    build: Build::Input(plan),
    params: "`tag`, `rate`, `size`, `sample`/`dummy`, `auto_increment_key`",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let id = ctx.id(e, "sample");
    let tag = e.str("tag").ok_or_else(|| e.error("in_sample needs tag"))?.to_string();
    let rate = e.int("rate")?.unwrap_or(1);
    let size = e.int("size")?.unwrap_or(1);
    if !(0..=u32::MAX as i64).contains(&rate) || !(1..=1_000_000).contains(&size) {
        return Err(e.error(format!(
            "rate must be within 0..{} and size within 1..1000000 (got rate {rate}, size {size})",
            u32::MAX
        )));
    }
    let sample = e.str("sample").or_else(|| e.str("dummy")).unwrap_or(r#"[{"message":"sample"}]"#);
    let samples = crate::input::sample::parse_samples(sample).map_err(|m| e.error(m))?;
    let _ = (e.bool("suspend")?, e.bool("reuse_record")?);
    Ok(Box::new(SampleConf {
        id,
        tag,
        rate: rate as u32,
        size: size as u32,
        auto_increment_key: e.str("auto_increment_key").map(str::to_string),
        samples,
        label: ctx.label_ref(e)?.unwrap_or(0),
    }))
}

impl InputPlan for SampleConf {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "sample"
    }
    fn label(&self) -> usize {
        self.label
    }
    fn describe(&self) -> String {
        format!("tag {} rate {}/s", self.tag, self.rate)
    }
    fn build(&self, _ctx: &Rc<ShardCtx>, emitter: Rc<dyn Emitter>) -> Result<Rc<dyn Input>, BuildError> {
        Ok(SampleInput::new(self.clone(), emitter))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SampleConf {
    pub id: String,
    pub tag: String,
    pub rate: u32,
    pub size: u32,
    pub auto_increment_key: Option<String>,
    /// Each sample record, encoded as a msgpack map body: (field count, fields).
    pub samples: Vec<(u32, Vec<u8>)>,
    pub label: usize,
}

/// Encodes a JSON sample (`{...}` or `[{...}, ...]`) into map bodies.
pub fn parse_samples(json: &str) -> Result<Vec<(u32, Vec<u8>)>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("sample is not valid JSON: {e}"))?;
    let items = match v {
        serde_json::Value::Array(a) => a,
        other => vec![other],
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let serde_json::Value::Object(m) = it else {
            return Err(format!("{i}th element of sample, {it}, is not a hash"));
        };
        let mp = spate_protocol::json::to_msgpack(it.to_string().as_bytes()).map_err(|e| e.to_string())?;
        // Strip the map header: keep the fields so a key can be appended.
        let hdr = spate_protocol::msgpack::head(&mp).ok().flatten().map_or(1, |h| h.hdr());
        out.push((m.len() as u32, mp[hdr..].to_vec()));
    }
    if out.is_empty() {
        return Err("sample is an empty array".into());
    }
    Ok(out)
}

pub struct SampleInput {
    conf: SampleConf,
    router: Rc<dyn Emitter>,
    stopping: Cell<bool>,
    index: Cell<usize>,
    counter: Cell<i64>,
}

impl SampleInput {
    pub fn new(conf: SampleConf, router: Rc<dyn Emitter>) -> Rc<Self> {
        Rc::new(SampleInput { conf, router, stopping: Cell::new(false), index: Cell::new(0), counter: Cell::new(0) })
    }

    fn record(&self, out: &mut Vec<u8>) {
        let i = self.index.get() % self.conf.samples.len();
        self.index.set(i + 1);
        let (n, body) = &self.conf.samples[i];
        match &self.conf.auto_increment_key {
            Some(k) => {
                raw::map_header(out, n + 1);
                out.extend_from_slice(body);
                raw::str(out, k.as_bytes());
                raw::int(out, self.counter.get());
                self.counter.set(self.counter.get() + 1);
            }
            None => {
                raw::map_header(out, *n);
                out.extend_from_slice(body);
            }
        }
    }

    fn emit(&self, num: u32) {
        let tag = Bytes::copy_from_slice(self.conf.tag.as_bytes());
        for _ in 0..num {
            let mut entries = Vec::new();
            let mut rec = Vec::new();
            for _ in 0..self.conf.size.max(1) {
                rec.clear();
                self.record(&mut rec);
                encode::entry(&mut entries, EventTime::now(), encode::TimeFormat::EventTime, &rec);
            }
            let Ok(batch) = EventBatch::from_entries(
                tag.clone(),
                Bytes::from(entries),
                EntriesFormat::Packed,
                Mode::PackedForward,
                Options::default(),
                100,
            ) else {
                continue;
            };
            if let Err(e) = self.router.emit(self.conf.label, batch) {
                crate::debug!("{}: emit failed: {e}", self.conf.id);
            }
        }
    }

    async fn run(&self) {
        const BINS: u32 = 10;
        let per_bin = self.conf.rate / BINS;
        let residual = self.conf.rate % BINS;
        while !self.stopping.get() {
            let second = Instant::now();
            for b in 0..BINS {
                if self.stopping.get() {
                    return;
                }
                self.emit(per_bin + u32::from(b < residual));
                let next = second + Duration::from_millis(100 * (b as u64 + 1));
                glommio::timer::sleep(next.saturating_duration_since(Instant::now())).await;
            }
        }
    }
}

impl Input for SampleInput {
    fn start(self: Rc<Self>, _first: bool) -> std::io::Result<Vec<Listening>> {
        glommio::spawn_local(async move { self.run().await }).detach();
        Ok(Vec::new())
    }

    fn stop(&self, _grace: Duration) -> LocalFuture<'_, ()> {
        self.stopping.set(true);
        Box::pin(async {})
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
