//! fluent-plugin-prometheus's sources:
//! - `prometheus`: the HTTP endpoint (`bind`, `port` 24231, `metrics_path` `/metrics`,
//!   `aggregated_metrics_path` `/aggregated_metrics`, `content_encoding`) serving
//!   spate's own `spate_*` families, the `<metric>`s of prometheus filters and outputs,
//!   and what the monitors below published;
//! - `prometheus_monitor` (`fluentd_status_*`), `prometheus_output_monitor`
//!   (`fluentd_output_status_*`, `gauge_all`) and `prometheus_tail_monitor`
//!   (`fluentd_tail_file_*`, from in_tail's positions once spate has an in_tail): every
//!   `interval` they read every shard's values and publish the families, as the plugin's
//!   timers update its registry.
//!
//! Each runs on the first shard it is placed on; values are summed over all shards, so
//! there is one endpoint per process (fluentd binds `port + worker_id` per worker and
//! `/aggregated_metrics` merges them: here both paths serve the same sums).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::task::JoinHandle;

use crate::config::{ConfigError, Element};
use crate::filter::prometheus::metric::Labels;
use crate::input::httpd::{Handler, Request, Response, Server};
use crate::metrics::hub::Hub;
use crate::metrics::prom;
use crate::plugin::{
    Build, BuildError, Emitter, Input, InputPlan, Kind, Listening, LocalFuture, PlanCtx, Registration, ShardCtx,
};

/// How long an HTTP request waits for every shard's values.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `<source> @type prometheus`.
pub const PLUGIN: Registration = Registration {
    name: "prometheus",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan_endpoint),
    params: "fluent-plugin-prometheus's endpoint: `bind` (0.0.0.0), `port` (24231), `metrics_path` (`/metrics`), `aggregated_metrics_path` (`/aggregated_metrics`, the same sums), `content_encoding` (`identity`, `gzip`), `ignore_error_log_interval`; serves spate's `spate_*` metrics, `<metric>`s and the monitors' families, summed over shards",
};

/// `<source> @type prometheus_monitor`.
pub const MONITOR: Registration = Registration {
    name: "prometheus_monitor",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan_status),
    params: "`interval` (5s), `<labels>` (`${hostname}`, `${worker_id}`): `fluentd_status_buffer_queue_length`, `_buffer_total_bytes`, `_retry_count`, `_buffer_newest_timekey`, `_buffer_oldest_timekey`",
};

/// `<source> @type prometheus_output_monitor`.
pub const OUTPUT_MONITOR: Registration = Registration {
    name: "prometheus_output_monitor",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan_output),
    params: "`interval` (5s), `gauge_all` (true), `<labels>`: the `fluentd_output_status_*` family per output (labels `plugin_id`, `type`)",
};

/// `<source> @type prometheus_tail_monitor`.
pub const TAIL_MONITOR: Registration = Registration {
    name: "prometheus_tail_monitor",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan_tail),
    params: "`interval` (5s), `<labels>`: `fluentd_tail_file_*` of in_tail inputs (spate has no in_tail yet: nothing is exported)",
};

#[derive(Debug, Clone)]
struct EndpointConf {
    id: String,
    bind: String,
    port: u16,
    metrics_path: String,
    aggregated_metrics_path: String,
    gzip: bool,
    ignore_error_log_interval: Duration,
}

fn addr(e: &Element, bind: &str, port: u16) -> Result<std::net::SocketAddr, ConfigError> {
    let ip: std::net::IpAddr = bind
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| e.error(format!("bind {bind:?} is not an IP address (spate does not resolve bind names)")))?;
    Ok(std::net::SocketAddr::new(ip, port))
}

/// `port` as fluentd reads it (an integer that must fit a TCP port).
pub(crate) fn port(e: &Element, default: u16) -> Result<u16, ConfigError> {
    match e.int("port")? {
        None => Ok(default),
        Some(p) => u16::try_from(p).map_err(|_| e.error(format!("port {p} is not a TCP port (0-65535)"))),
    }
}

/// Refuses TLS on spate's HTTP endpoints (not implemented), naming the section.
pub(crate) fn refuse_tls(e: &Element) -> Result<(), ConfigError> {
    for t in e.elements_named("transport") {
        if t.arg.trim() == "tls" {
            return Err(t.error("<transport tls> on this HTTP endpoint is not supported by spate; serve it on loopback or behind a TLS proxy"));
        }
        t.mark_all_used();
    }
    for s in e.elements_named("ssl") {
        if s.bool("enable")?.unwrap_or(false) {
            return Err(s.error(
                "<ssl> on this HTTP endpoint is not supported by spate; serve it on loopback or behind a TLS proxy",
            ));
        }
        s.mark_all_used();
    }
    Ok(())
}

fn plan_endpoint(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let id = ctx.id(e, "prometheus");
    // fluentd resolves every input's @label (event_emitter.rb), so it must name a
    // <label>; this input emits no events, so nothing goes there.
    ctx.label_ref(e)?;
    refuse_tls(e)?;
    let bind = e.string_or("bind", "0.0.0.0");
    let port = port(e, 24231)?;
    addr(e, &bind, port)?;
    let path = |k: &str, d: &str| -> Result<String, ConfigError> {
        let p = e.string_or(k, d);
        if !p.starts_with('/') {
            return Err(e.error(format!("{k} {p:?} must start with /")));
        }
        Ok(p)
    };
    let gzip = e.enum_of("content_encoding", &["identity", "gzip"])?.as_deref() == Some("gzip");
    Ok(Box::new(EndpointConf {
        id,
        metrics_path: path("metrics_path", "/metrics")?,
        aggregated_metrics_path: path("aggregated_metrics_path", "/aggregated_metrics")?,
        bind,
        port,
        gzip,
        ignore_error_log_interval: e.time("ignore_error_log_interval")?.unwrap_or(Duration::from_secs(3600)),
    }))
}

impl InputPlan for EndpointConf {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "prometheus"
    }
    fn label(&self) -> usize {
        0
    }
    fn describe(&self) -> String {
        format!("http://{}:{}{}", self.bind, self.port, self.metrics_path)
    }
    fn build(&self, ctx: &Rc<ShardCtx>, _emitter: Rc<dyn Emitter>) -> Result<Rc<dyn Input>, BuildError> {
        Ok(Rc::new(Endpoint {
            conf: self.clone(),
            hub: ctx.hub.clone(),
            server: RefCell::new(None),
            last_error_log: Cell::new(None),
        }))
    }
}

/// The endpoint on its shard.
pub struct Endpoint {
    conf: EndpointConf,
    hub: Option<Arc<Hub>>,
    server: RefCell<Option<Server>>,
    last_error_log: Cell<Option<Instant>>,
}

impl Endpoint {
    async fn handle(self: Rc<Self>, req: Request) -> Response {
        if req.method != "GET" && req.method != "HEAD" {
            return Response::text(405, "only GET\n");
        }
        if req.path != self.conf.metrics_path && req.path != self.conf.aggregated_metrics_path {
            return Response::text(404, "Not Found\n");
        }
        match self.render().await {
            Ok(text) => {
                let mut r = Response::new(200, prom::CONTENT_TYPE, Vec::new());
                if self.conf.gzip {
                    r.body = spate_protocol::compress::gzip(text.as_bytes(), 6);
                    r.headers.push(("Content-Encoding", "gzip".into()));
                } else {
                    r.body = text.into_bytes();
                    r.headers.push(("Content-Encoding", "identity".into()));
                }
                r
            }
            Err(e) => {
                let now = Instant::now();
                let quiet = self.last_error_log.get().is_some_and(|t| now - t < self.conf.ignore_error_log_interval);
                if !quiet {
                    self.last_error_log.set(Some(now));
                    crate::error!("{}: in_prometheus: failed to render metrics: {e}", self.conf.id);
                }
                Response::text(500, format!("in_prometheus server error: <{e}>\n"))
            }
        }
    }

    async fn render(&self) -> Result<String, String> {
        let hub = self.hub.as_ref().ok_or("no metrics hub on this shard")?;
        let m = hub.collect(COLLECT_TIMEOUT).await.map_err(|e| e.to_string())?;
        let mut fams = prom::spate_families(&m);
        for f in prom::user_families(&m).into_iter().chain(hub.exported()) {
            prom::add_family(&mut fams, f);
        }
        Ok(prom::render(&fams))
    }
}

impl Input for Endpoint {
    fn start(self: Rc<Self>, first: bool) -> std::io::Result<Vec<Listening>> {
        if !first {
            return Ok(Vec::new());
        }
        let a = std::net::SocketAddr::new(
            self.conf.bind.trim_start_matches('[').trim_end_matches(']').parse().map_err(std::io::Error::other)?,
            self.conf.port,
        );
        let l = crate::input::net::listen(a, None)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: cannot listen on {a}: {e}", self.conf.id)))?;
        let local = l.local_addr();
        let me = self.clone();
        let h: Handler = Rc::new(move |req| {
            let me = me.clone();
            Box::pin(async move { me.handle(req).await })
        });
        *self.server.borrow_mut() = Some(Server::start(l, self.conf.id.clone(), h));
        Ok(vec![Listening { addr: local, what: "prometheus" }])
    }

    fn stop(&self, _grace: Duration) -> LocalFuture<'_, ()> {
        if let Some(s) = self.server.borrow_mut().take() {
            s.stop();
        }
        Box::pin(async {})
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

// ---------------------------------------------------------------------------------------
// The monitors.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Status,
    Output { gauge_all: bool },
    Tail,
}

#[derive(Debug, Clone)]
struct MonitorConf {
    id: String,
    which: Which,
    interval: Duration,
    labels: Vec<(String, String)>,
}

fn plan_monitor(
    e: &Element,
    ctx: &mut PlanCtx<'_>,
    name: &'static str,
    which: Which,
) -> Result<Box<dyn InputPlan>, ConfigError> {
    let id = ctx.id(e, name);
    // As the endpoint's: checked, and no events go there.
    ctx.label_ref(e)?;
    let interval = e.time("interval")?.unwrap_or(Duration::from_secs(5));
    if interval.is_zero() {
        return Err(e.error("interval must be greater than 0"));
    }
    let labels = Labels::parse(e)?.static_values(e, name, &ctx.hostname)?;
    Ok(Box::new(MonitorConf { id, which, interval, labels }))
}

fn plan_status(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    plan_monitor(e, ctx, "prometheus_monitor", Which::Status)
}

fn plan_output(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let gauge_all = e.bool("gauge_all")?.unwrap_or(true);
    plan_monitor(e, ctx, "prometheus_output_monitor", Which::Output { gauge_all })
}

fn plan_tail(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    plan_monitor(e, ctx, "prometheus_tail_monitor", Which::Tail)
}

impl InputPlan for MonitorConf {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        match self.which {
            Which::Status => "prometheus_monitor",
            Which::Output { .. } => "prometheus_output_monitor",
            Which::Tail => "prometheus_tail_monitor",
        }
    }
    fn label(&self) -> usize {
        0
    }
    fn describe(&self) -> String {
        format!("every {:?}", self.interval)
    }
    fn build(&self, ctx: &Rc<ShardCtx>, _emitter: Rc<dyn Emitter>) -> Result<Rc<dyn Input>, BuildError> {
        Ok(Rc::new(Monitor { conf: self.clone(), hub: ctx.hub.clone(), task: RefCell::new(None) }))
    }
}

/// A monitor on its shard.
pub struct Monitor {
    conf: MonitorConf,
    hub: Option<Arc<Hub>>,
    task: RefCell<Option<JoinHandle<()>>>,
}

impl Monitor {
    async fn run(self: Rc<Self>) {
        let Some(hub) = self.hub.clone() else { return };
        loop {
            match hub.collect(COLLECT_TIMEOUT).await {
                Ok(m) => {
                    let fams = match self.conf.which {
                        Which::Status => prom::status_families(&m, &self.conf.labels),
                        Which::Output { gauge_all } => prom::output_status_families(&m, &self.conf.labels, gauge_all),
                        Which::Tail => prom::tail_families(&m, &self.conf.labels),
                    };
                    hub.publish(&self.conf.id, fams);
                }
                Err(e) => crate::warn!("{}: reading the plugins' values failed: {e}", self.conf.id),
            }
            glommio::timer::sleep(self.conf.interval).await;
        }
    }
}

impl Input for Monitor {
    fn start(self: Rc<Self>, first: bool) -> std::io::Result<Vec<Listening>> {
        if first {
            let me = self.clone();
            *self.task.borrow_mut() = Some(glommio::spawn_local(async move { me.run().await }).detach());
        }
        Ok(Vec::new())
    }

    fn stop(&self, _grace: Duration) -> LocalFuture<'_, ()> {
        if let Some(t) = self.task.borrow_mut().take() {
            t.cancel();
            if let Some(h) = &self.hub {
                h.unpublish(&self.conf.id);
            }
        }
        Box::pin(async {})
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
