//! `in_monitor_agent`: fluentd's monitoring HTTP API and its periodic events.
//!
//! `GET /api/plugins.json` (and `/api/plugins` as LTSV) lists every plugin with
//! fluentd's keys (see `metrics::monitor`), values summed over shards; `?@id=`/`?id=`,
//! `?@type=`/`?type=` and `?tag=` select plugins as fluentd does; `?with_config=` and
//! `?with_retry=` override `include_config`/`include_retry` (fluentd <= 1.19); with
//! `?with_ivars=` the `instance_variables` object is present and empty (spate has no
//! Ruby instance variables); `?debug=1` pretty-prints. `/api/config.json` (and
//! `/api/config`) describe the process. Anything else is a JSON 404. With `tag`, every
//! `emit_interval` the plugin list is emitted as events (one record per plugin).
//!
//! Runs on the first shard it is placed on; fluentd's multi-worker `port + worker_id`
//! does not apply (one process, one endpoint, sums over shards).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use glommio::task::JoinHandle;
use serde_json::Value as J;
use spate_protocol::{EntriesFormat, EventBatch, EventTime, Mode, Options};

use crate::config::{ConfigError, Element};
use crate::input::httpd::{Handler, Request, Response, Server};
use crate::metrics::hub::Hub;
use crate::metrics::monitor::{self, Opts};
use crate::metrics::{Category, Merged};
use crate::plugin::{
    Build, BuildError, Emitter, Input, InputPlan, Kind, Listening, LocalFuture, PlanCtx, Registration, ShardCtx,
};
use crate::router::MatchPattern;

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "monitor_agent",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan),
    params: "`bind` (0.0.0.0), `port` (24220), `include_config` (true), `include_retry` (true), `tag` + `emit_interval` (60s), `@label`; `/api/plugins.json`, `/api/plugins` (LTSV), `/api/config.json`, `/api/config` with `?@id=`, `?@type=`, `?tag=`, `?with_config=`, `?with_retry=`, `?with_ivars=`, `?debug=1`; values summed over shards",
};

const COLLECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Conf {
    id: String,
    addr: std::net::SocketAddr,
    tag: Option<String>,
    emit_interval: Duration,
    include_config: bool,
    include_retry: bool,
    label: usize,
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let id = ctx.id(e, "monitor_agent");
    let bind = e.string_or("bind", "0.0.0.0");
    let port = crate::input::prometheus::port(e, 24220)?;
    let ip: std::net::IpAddr = bind
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| e.error(format!("bind {bind:?} is not an IP address (spate does not resolve bind names)")))?;
    let emit_interval = e.time("emit_interval")?.unwrap_or(Duration::from_secs(60));
    if emit_interval.is_zero() {
        return Err(e.error("emit_interval must be greater than 0"));
    }
    Ok(Box::new(Conf {
        id,
        addr: std::net::SocketAddr::new(ip, port),
        tag: e.str("tag").map(str::to_string),
        emit_interval,
        include_config: e.bool("include_config")?.unwrap_or(true),
        include_retry: e.bool("include_retry")?.unwrap_or(true),
        label: ctx.label_ref(e)?.unwrap_or(0),
    }))
}

impl InputPlan for Conf {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "monitor_agent"
    }
    fn label(&self) -> usize {
        self.label
    }
    fn describe(&self) -> String {
        match &self.tag {
            Some(t) => format!("http://{}/api/plugins.json, emits tag {t} every {:?}", self.addr, self.emit_interval),
            None => format!("http://{}/api/plugins.json", self.addr),
        }
    }
    fn build(&self, ctx: &Rc<ShardCtx>, emitter: Rc<dyn Emitter>) -> Result<Rc<dyn Input>, BuildError> {
        Ok(Rc::new(MonitorAgent {
            conf: self.clone(),
            hub: ctx.hub.clone(),
            emitter,
            server: RefCell::new(None),
            timer: RefCell::new(None),
        }))
    }
}

/// The monitor agent on its shard.
pub struct MonitorAgent {
    conf: Conf,
    hub: Option<Arc<Hub>>,
    emitter: Rc<dyn Emitter>,
    server: RefCell<Option<Server>>,
    timer: RefCell<Option<JoinHandle<()>>>,
}

/// fluentd's `Fluent::Config.bool_value`: `true`/`yes`/empty are true, `false`/`no` are
/// false, anything else is nil (false).
fn bool_value(v: &str) -> bool {
    matches!(v, "true" | "yes" | "")
}

fn not_found() -> Response {
    Response::json(404, r#"{"message":"Not found"}"#)
}

impl MonitorAgent {
    fn opts(&self, req: &Request) -> Opts {
        Opts {
            with_config: req.param("with_config").map_or(self.conf.include_config, bool_value),
            with_retry: req.param("with_retry").map_or(self.conf.include_retry, bool_value),
            ivars: req.param("with_ivars").map(|v| v.split(',').map(str::to_string).collect()),
            debug: req.param("debug").is_some(),
        }
    }

    /// fluentd's `build_object`: `?tag=`, then `?@id=`/`?id=`, then `?@type=`/`?type=`.
    fn select(m: &Merged, req: &Request, opts: &Opts) -> Vec<J> {
        let one = |id: &str, cat: Category| {
            let info = m.catalog.plugins.iter().find(|i| i.id == id && i.category == cat)?;
            let p = m.plugins.iter().find(|p| p.id == id && p.category == cat);
            Some(monitor::plugin_json(info, p, opts))
        };
        if let Some(tag) = req.param("tag") {
            // The first top-level <match> whose pattern matches (fluentd: outputs only).
            let hit = m.catalog.plugins.iter().find(|i| {
                i.category == Category::Output
                    && i.pattern
                        .as_deref()
                        .and_then(|p| MatchPattern::parse(p).ok())
                        .is_some_and(|p| p.matches(tag.as_bytes()))
            });
            return hit.and_then(|i| one(&i.id, i.category)).into_iter().collect();
        }
        if let Some(id) = req.param("@id").or_else(|| req.param("id")) {
            return m
                .catalog
                .plugins
                .iter()
                .find(|i| i.id == id)
                .and_then(|i| one(&i.id, i.category))
                .into_iter()
                .collect();
        }
        let ty = req.param("@type").or_else(|| req.param("type"));
        m.catalog
            .plugins
            .iter()
            .filter(|i| ty.is_none_or(|t| i.type_name == t))
            .filter_map(|i| one(&i.id, i.category))
            .collect()
    }

    async fn handle(self: Rc<Self>, req: Request) -> Response {
        if req.method != "GET" && req.method != "HEAD" {
            return not_found();
        }
        let opts = self.opts(&req);
        match req.path.as_str() {
            "/api/plugins.json" | "/api/plugins" => {
                let m = match self.collect().await {
                    Ok(m) => m,
                    Err(e) => return Response::json(500, serde_json::json!({ "message": e }).to_string()),
                };
                let list = Self::select(&m, &req, &opts);
                if req.path == "/api/plugins" {
                    Response::text(200, monitor::ltsv(&list))
                } else {
                    Response::json(200, monitor::plugins_json(&list, opts.debug))
                }
            }
            "/api/config.json" | "/api/config" => {
                let cfg = monitor::config_json(self.hub.as_ref().and_then(|h| h.config_path.as_deref()));
                if req.path == "/api/config" {
                    Response::text(200, monitor::ltsv(&[cfg]))
                } else if opts.debug {
                    Response::json(200, serde_json::to_string_pretty(&cfg).unwrap_or_default())
                } else {
                    Response::json(200, cfg.to_string())
                }
            }
            _ => not_found(),
        }
    }

    async fn collect(&self) -> Result<Merged, String> {
        let hub = self.hub.as_ref().ok_or("no metrics hub on this shard")?;
        hub.collect(COLLECT_TIMEOUT).await.map_err(|e| e.to_string())
    }

    /// `tag`: every `emit_interval`, one event per plugin (without config and retry, as
    /// fluentd emits them).
    async fn emit_loop(self: Rc<Self>, tag: String) {
        let opts = Opts::default();
        loop {
            glommio::timer::sleep(self.conf.emit_interval).await;
            let m = match self.collect().await {
                Ok(m) => m,
                Err(e) => {
                    crate::warn!("{}: reading the plugins' values failed: {e}", self.conf.id);
                    continue;
                }
            };
            let now = EventTime::now();
            let mut entries = Vec::new();
            let mut n = 0u32;
            for info in &m.catalog.plugins {
                let p = m.plugins.iter().find(|p| p.id == info.id && p.category == info.category);
                let rec = monitor::plugin_json(info, p, &opts).to_string();
                let Ok(packed) = spate_protocol::json::to_msgpack(rec.as_bytes()) else { continue };
                spate_protocol::encode::entry(
                    &mut entries,
                    now,
                    spate_protocol::encode::TimeFormat::EventTime,
                    &packed,
                );
                n += 1;
            }
            if n == 0 {
                continue;
            }
            let batch = EventBatch::from_entries(
                Bytes::from(tag.clone()),
                Bytes::from(entries),
                EntriesFormat::Packed,
                Mode::PackedForward,
                Options::default(),
                100,
            );
            match batch {
                Ok(b) => {
                    if let Err(e) = self.emitter.emit(self.conf.label, b) {
                        crate::warn!("{}: emitting the plugin list failed: {e}", self.conf.id);
                    }
                }
                Err(e) => crate::warn!("{}: building the plugin list events failed: {e}", self.conf.id),
            }
        }
    }
}

impl Input for MonitorAgent {
    fn start(self: Rc<Self>, first: bool) -> std::io::Result<Vec<Listening>> {
        if !first {
            return Ok(Vec::new());
        }
        let a = self.conf.addr;
        let l = crate::input::net::listen(a, None)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: cannot listen on {a}: {e}", self.conf.id)))?;
        let local = l.local_addr();
        let me = self.clone();
        let h: Handler = Rc::new(move |req| {
            let me = me.clone();
            Box::pin(async move { me.handle(req).await })
        });
        *self.server.borrow_mut() = Some(Server::start(l, self.conf.id.clone(), h));
        if let Some(tag) = self.conf.tag.clone() {
            let me = self.clone();
            *self.timer.borrow_mut() = Some(glommio::spawn_local(async move { me.emit_loop(tag).await }).detach());
        }
        Ok(vec![Listening { addr: local, what: "monitor_agent" }])
    }

    fn stop(&self, _grace: Duration) -> LocalFuture<'_, ()> {
        if let Some(s) = self.server.borrow_mut().take() {
            s.stop();
        }
        if let Some(t) = self.timer.borrow_mut().take() {
            t.cancel();
        }
        Box::pin(async {})
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
