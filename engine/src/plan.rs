//! From a parsed configuration to running plugins, in two steps: [`plan`] validates the
//! whole config once (labels, patterns, `<worker>` sections, `<system>`, every plugin's
//! section through its registry row) into an immutable, `Send` [`Plan`];
//! [`build_graph`] instantiates one shard's outputs, filters, router and inputs from it
//! (on a reload, reusing the previous generation's unchanged plugins by key). Errors
//! name file:line and, for an unknown plugin type, the types spate supports.
//!
//! Every input emits through its own [`InputEmitter`] (which counts what it emitted,
//! fluentd's input `emit_records`/`emit_size`) into the shard's [`RouterSlot`], the one
//! place a reload swaps the router; every filter is wrapped in a [`CountedFilter`]
//! (fluentd's filter `emit_records`/`emit_size`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
use crate::metrics::{Catalog, Category, PluginSnapshot, Visitor};
use crate::plugin::{
    on_shard, Build, BuildError, EmitError, Emitter, Filter, FilterPlan, Input, InputPlan, Kind, OutputPlan, PlanCtx,
    ShardCtx, Workers,
};
use crate::registry::PLUGINS;
use crate::router::{Label, MatchPattern, Router, Rule};

/// A `<source>` with where it runs and where it is written.
#[derive(Debug)]
pub struct SourceEntry {
    pub plan: Box<dyn InputPlan>,
    pub workers: Workers,
    pub at: String,
    /// Its id, section text and placement: equal keys mean an unchanged source across a
    /// reload.
    pub key: String,
}

#[derive(Debug)]
pub enum RulePlan {
    Filter { pattern: MatchPattern, plan: Box<dyn FilterPlan>, workers: Workers, at: String, key: String },
    Match { pattern: MatchPattern, plan: Box<dyn OutputPlan>, workers: Workers, at: String },
}

#[derive(Debug)]
pub struct LabelPlan {
    pub name: String,
    pub rules: Vec<RulePlan>,
}

/// The validated configuration, shared read-only by every shard.
#[derive(Debug)]
pub struct Plan {
    pub workers: usize,
    pub log_level: Option<crate::log::Level>,
    pub sources: Vec<SourceEntry>,
    pub labels: Vec<LabelPlan>,
    pub shutdown_timeout: Duration,
    pub hostname: String,
    /// `<system>` beyond `workers` and `log_level`.
    pub system: crate::system::SystemConf,
    /// The plugins in monitor_agent's order, with the generation (reloads).
    pub catalog: Arc<Catalog>,
    /// `@log_level` per plugin id.
    pub plugin_log_levels: Vec<(String, crate::log::Level)>,
    /// The configuration as fluentd dumps it (secrets masked), for RPC getDump.
    pub config_text: String,
}

impl Plan {
    /// Label names by index (the top level is "").
    pub fn label_names(&self) -> Vec<String> {
        self.labels.iter().map(|l| l.name.clone()).collect()
    }

    /// The same plan as configuration generation `g` (reloads count up from 0).
    pub fn with_generation(mut self, g: u64) -> Plan {
        let mut c = (*self.catalog).clone();
        c.generation = g;
        self.catalog = Arc::new(c);
        self
    }

    pub fn generation(&self) -> u64 {
        self.catalog.generation
    }
}

/// The shard's current router: inputs emit through it, a reload replaces it.
pub struct RouterSlot(RefCell<Rc<Router>>);

impl RouterSlot {
    pub fn new(r: Rc<Router>) -> Rc<Self> {
        Rc::new(RouterSlot(RefCell::new(r)))
    }
    pub fn get(&self) -> Rc<Router> {
        self.0.borrow().clone()
    }
    pub fn set(&self, r: Rc<Router>) {
        *self.0.borrow_mut() = r;
    }
}

impl Emitter for RouterSlot {
    fn emit(&self, label: usize, batch: EventBatch) -> Result<(), EmitError> {
        let r = self.0.borrow();
        Emitter::emit(&**r, label, batch)
    }
}

/// What an input emits through: counts its events, bytes and batches (fluentd's input
/// `emit_records` and `emit_size`) and hands them to the shard's current router.
pub struct InputEmitter {
    slot: Rc<RouterSlot>,
    records: Cell<u64>,
    size: Cell<u64>,
    batches: Cell<u64>,
}

impl InputEmitter {
    pub fn new(slot: Rc<RouterSlot>) -> Rc<Self> {
        Rc::new(InputEmitter { slot, records: Cell::new(0), size: Cell::new(0), batches: Cell::new(0) })
    }

    pub fn visit(&self, m: &mut dyn Visitor) {
        use crate::metrics::names::*;
        m.counter(EMIT_RECORDS, "Events the input emitted.", self.records.get());
        m.counter(EMIT_SIZE, "Bytes of events the input emitted.", self.size.get());
        m.counter(EMIT_COUNT, "Batches the input emitted.", self.batches.get());
    }
}

impl Emitter for InputEmitter {
    #[inline]
    fn emit(&self, label: usize, batch: EventBatch) -> Result<(), EmitError> {
        self.records.set(self.records.get() + batch.count as u64);
        self.size.set(self.size.get() + batch.entries.len() as u64);
        self.batches.set(self.batches.get() + 1);
        self.slot.emit(label, batch)
    }
}

/// A filter with what goes in and out counted.
pub struct CountedFilter {
    inner: Rc<dyn Filter>,
    records: Cell<u64>,
    size: Cell<u64>,
    out: Cell<u64>,
}

impl CountedFilter {
    pub fn new(inner: Box<dyn Filter>) -> Self {
        CountedFilter { inner: Rc::from(inner), records: Cell::new(0), size: Cell::new(0), out: Cell::new(0) }
    }

    pub fn inner(&self) -> &dyn Filter {
        &*self.inner
    }
}

impl Filter for CountedFilter {
    #[inline]
    fn filter(&self, batch: EventBatch, emitter: &dyn Emitter) -> Option<EventBatch> {
        self.records.set(self.records.get() + batch.count as u64);
        self.size.set(self.size.get() + batch.entries.len() as u64);
        let r = self.inner.filter(batch, emitter);
        if let Some(b) = &r {
            self.out.set(self.out.get() + b.count as u64);
        }
        r
    }

    fn start(self: Rc<Self>, emitter: Rc<dyn Emitter>) {
        self.inner.clone().start(emitter);
    }

    fn shutdown(&self, emitter: &dyn Emitter) {
        self.inner.shutdown(emitter);
    }

    fn visit_metrics(&self, m: &mut dyn Visitor) {
        use crate::metrics::names::*;
        m.counter(EMIT_RECORDS, "Events into the filter.", self.records.get());
        m.counter(EMIT_SIZE, "Bytes of events into the filter.", self.size.get());
        m.counter("events_out", "Events the filter passed on.", self.out.get());
        self.inner.visit_metrics(m);
    }
}

/// A source on this shard.
pub struct SourceInstance {
    pub id: String,
    pub type_name: &'static str,
    pub key: String,
    /// The first shard the source runs on (things that exist once: HTTP endpoints, the
    /// UDP heartbeat).
    pub first: bool,
    pub input: Rc<dyn Input>,
    pub emitter: Rc<InputEmitter>,
}

/// A filter on this shard.
pub struct FilterInstance {
    pub id: String,
    pub type_name: &'static str,
    pub key: String,
    pub filter: Rc<CountedFilter>,
}

/// One shard's plugins.
pub struct ShardGraph {
    pub ctx: Rc<ShardCtx>,
    pub router: Rc<Router>,
    pub inputs: Vec<Rc<dyn Input>>,
    pub sources: Vec<SourceInstance>,
    pub filters: Vec<FilterInstance>,
    pub slot: Rc<RouterSlot>,
}

impl ShardGraph {
    /// Every output on this shard (including copy's stores), for start, flush and
    /// shutdown, and for tests that read their counters.
    pub fn outputs(&self) -> Vec<Rc<dyn crate::plugin::Output>> {
        self.ctx.outputs()
    }

    /// Every plugin's values on this shard.
    pub fn snapshot(&self) -> Vec<PluginSnapshot> {
        let mut out = Vec::new();
        for s in &self.sources {
            let mut p = PluginSnapshot::new(&s.id, Category::Input, s.type_name);
            s.emitter.visit(&mut p);
            s.input.visit_metrics(&mut p);
            out.push(p);
        }
        for f in &self.filters {
            let mut p = PluginSnapshot::new(&f.id, Category::Filter, f.type_name);
            f.filter.visit_metrics(&mut p);
            out.push(p);
        }
        for o in self.ctx.outputs() {
            let mut p = PluginSnapshot::new(o.id(), Category::Output, o.type_name());
            o.visit_metrics(&mut p);
            out.push(p);
        }
        out
    }
}

/// Validates the configuration. `workers_override` is `--workers`.
pub fn plan(root: &Element, workers_override: Option<usize>, hostname: &str) -> Result<Plan, ConfigError> {
    let mut workers = None;
    let mut log_level = None;
    let mut system = crate::system::SystemConf::default();
    // Labels first, so @label references can be checked in any order.
    let mut label_elems: Vec<(String, &Element, Workers)> = vec![(String::new(), root, None)];
    collect_labels(root, None, &mut label_elems)?;
    for (i, (name, e, _)) in label_elems.iter().enumerate().skip(1) {
        if label_elems[1..i].iter().any(|(n, _, _)| n == name) {
            return Err(e.error(format!("label {name} is defined twice")));
        }
    }
    for s in root.elements_named("system") {
        if let Some(w) = s.int("workers")? {
            if !(1..=1024).contains(&w) {
                return Err(s.error(format!("workers must be between 1 and 1024, got {w}")));
            }
            workers = Some(w as usize);
        }
        if let Some(l) = s.str("log_level") {
            log_level = Some(crate::log::Level::parse(l).ok_or_else(|| {
                s.error(format!("unknown log_level {l:?}; expected trace, debug, info, warn, error or fatal"))
            })?);
        }
        system = crate::system::SystemConf::parse(s)?;
        // Other <system> parameters (root_dir, ...) do not apply to spate.
        s.mark_all_used();
    }
    if let Some(second) = root.elements_named("system").nth(1) {
        return Err(second.error("<system> is duplicated. <system> should be only one"));
    }
    let workers = workers_override.or(workers).unwrap_or_else(|| crate::sys::allowed_cpus().len());
    let names = label_elems.iter().map(|(n, _, _)| n.clone()).collect();
    let mut ctx = PlanCtx::new(PLUGINS, crate::output::buffered::plan, names, hostname, workers);

    let mut sources = Vec::new();
    collect_sources(root, None, &mut ctx, &mut sources)?;

    let mut labels = Vec::new();
    for (i, (name, e, w)) in label_elems.iter().enumerate() {
        let mut rules = Vec::new();
        ctx.set_current_label(i);
        collect_rules(e, *w, &mut ctx, &mut rules, name.is_empty())?;
        labels.push(LabelPlan { name: name.clone(), rules });
    }
    if let Some((id, pos)) = ctx.duplicate_ids() {
        return Err(ConfigError::at(
            &pos,
            format!("Duplicated plugin id `{id}`. Check whole configuration and fix it."),
        ));
    }
    let (catalog, plugin_log_levels) = catalog(&ctx, &labels);
    for e in root.elements.iter() {
        if !matches!(e.name.as_str(), "source" | "match" | "filter" | "label" | "system" | "worker") {
            return Err(e.error(format!(
                "unknown directive <{}>; expected <source>, <match>, <filter>, <label>, <system> or <worker>",
                e.name
            )));
        }
    }
    if count_named(root, "source") == 0 && count_named(root, "match") == 0 {
        crate::warn!(
            "{}: the configuration has no <source> and no <match>: spate would run and do nothing (a YAML \
             config read as fluent.conf syntax? name it *.yaml or pass --config-file-type yaml)",
            root.pos
        );
    }
    Ok(Plan {
        workers,
        log_level,
        sources,
        labels,
        shutdown_timeout: Duration::from_secs(30),
        hostname: hostname.to_string(),
        system,
        catalog: Arc::new(catalog),
        plugin_log_levels,
        config_text: crate::config::dump::to_text(root),
    })
}

/// fluentd's monitor_agent order: inputs, then per label its outputs (a copy before its
/// stores) and its filters; and the plugins' `@log_level`s.
fn catalog(ctx: &PlanCtx<'_>, labels: &[LabelPlan]) -> (Catalog, Vec<(String, crate::log::Level)>) {
    let mut planned: Vec<_> = ctx.planned().to_vec();
    let rank = |c: Category| match c {
        Category::Input => 0,
        Category::Output => 1,
        Category::Filter => 2,
    };
    // Inputs in configuration order whatever their @label.
    planned.sort_by_key(|p| {
        let input = p.info.category == Category::Input;
        (!input, if input { 0 } else { p.label }, rank(p.info.category))
    });
    // monitor_agent's ?tag= looks top-level outputs up by their <match> pattern.
    if let Some(top) = labels.first() {
        for r in &top.rules {
            if let RulePlan::Match { pattern, plan, .. } = r {
                if let Some(p) =
                    planned.iter_mut().find(|p| p.info.category == Category::Output && p.info.id == plan.id())
                {
                    p.info.pattern = Some(pattern.as_str().to_string());
                }
            }
        }
    }
    let levels = planned.iter().filter_map(|p| p.log_level.map(|l| (p.info.id.clone(), l))).collect();
    (Catalog { generation: 0, plugins: planned.into_iter().map(|p| p.info).collect() }, levels)
}

/// Directives called `name` at the top level and inside `<label>`/`<worker>`.
fn count_named(e: &Element, name: &str) -> usize {
    e.elements
        .iter()
        .map(|c| match c.name.as_str() {
            n if n == name => 1,
            "label" | "worker" => count_named(c, name),
            _ => 0,
        })
        .sum()
}

fn parse_workers(e: &Element, workers: usize) -> Result<Workers, ConfigError> {
    let arg = e.arg.trim();
    let bad = || e.error(format!("<worker {arg}>: expected a worker id N or a range N-M"));
    let (a, b) = match arg.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u32>().map_err(|_| bad())?, b.trim().parse::<u32>().map_err(|_| bad())?),
        None => {
            let n = arg.parse::<u32>().map_err(|_| bad())?;
            (n, n)
        }
    };
    if a > b || b as usize >= workers {
        return Err(e.error(format!(
            "<worker {arg}>: worker ids must be within 0..{} (workers {workers})",
            workers.saturating_sub(1)
        )));
    }
    Ok(Some((a, b)))
}

fn collect_labels<'a>(
    e: &'a Element,
    w: Workers,
    out: &mut Vec<(String, &'a Element, Workers)>,
) -> Result<(), ConfigError> {
    for c in &e.elements {
        match c.name.as_str() {
            "label" => {
                let name = c.arg.trim();
                if name.is_empty() {
                    return Err(c.error("<label> needs a name, e.g. <label @OUTPUT>"));
                }
                out.push((name.to_string(), c, w));
            }
            "worker" => {
                // Worker bounds are checked when sources and rules are collected.
                collect_labels(c, w, out)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn collect_sources(
    e: &Element,
    w: Workers,
    ctx: &mut PlanCtx<'_>,
    out: &mut Vec<SourceEntry>,
) -> Result<(), ConfigError> {
    for c in &e.elements {
        match c.name.as_str() {
            "source" => {
                let reg = ctx.lookup(c, Kind::Input)?;
                let Build::Input(f) = reg.build else {
                    return Err(c.error(format!("{} is registered without an input builder", reg.name)));
                };
                let plan = f(c, ctx)?;
                c.warn_unused();
                let key = ctx.record_plugin(c, Category::Input, plan.id(), plan.label())?;
                let key = format!("{key}\u{0}{w:?}");
                out.push(SourceEntry { plan, workers: w, at: c.pos.to_string(), key });
            }
            "worker" => {
                let w2 = parse_workers(c, ctx.workers)?;
                collect_sources(c, w2, ctx, out)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn collect_rules(
    e: &Element,
    w: Workers,
    ctx: &mut PlanCtx<'_>,
    out: &mut Vec<RulePlan>,
    top: bool,
) -> Result<(), ConfigError> {
    for c in &e.elements {
        match c.name.as_str() {
            "filter" => {
                let pattern = MatchPattern::parse(&c.arg).map_err(|x| c.error(x.to_string()))?;
                let reg = ctx.lookup(c, Kind::Filter)?;
                let Build::Filter(f) = reg.build else {
                    return Err(c.error(format!("{} is registered without a filter builder", reg.name)));
                };
                let plan = f(c, ctx)?;
                c.warn_unused();
                let key = ctx.record_plugin(c, Category::Filter, plan.id(), ctx.current_label())?;
                let key = format!("{key}\u{0}{w:?}");
                out.push(RulePlan::Filter { pattern, plan, workers: w, at: c.pos.to_string(), key });
            }
            "match" => {
                let pattern = MatchPattern::parse(&c.arg).map_err(|x| c.error(x.to_string()))?;
                let plan = ctx.output(c)?;
                out.push(RulePlan::Match { pattern, plan, workers: w, at: c.pos.to_string() });
            }
            "worker" if top => {
                let w2 = parse_workers(c, ctx.workers)?;
                collect_rules(c, w2, ctx, out, true)?;
            }
            "source" | "label" | "system" | "worker" => {}
            other if !top => {
                return Err(c.error(format!("<{other}> is not allowed inside <label>; expected <filter> or <match>")))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Instantiates one shard's plugins. Fails only when the machine refuses something a
/// valid plan asks for (a file buffer's directory cannot be opened or recovered).
pub fn build_shard(plan: &Plan, shard: usize) -> Result<ShardGraph, BuildError> {
    build_graph(plan, &ShardCtx::new(shard, plan.workers, &plan.hostname), None)
}

/// Builds a shard's plugins on `ctx`. With `prev` (a reload), unchanged inputs, filters
/// and outputs (same key) are the running instances, buffered outputs may take over
/// the previous ones' buffers, and the router slot is the previous one; nothing of
/// `prev` changes until the caller commits (sets the slot's router, starts and stops
/// plugins). On error the caller must call `ctx.abort_generation()`.
pub fn build_graph(plan: &Plan, ctx: &Rc<ShardCtx>, prev: Option<&ShardGraph>) -> Result<ShardGraph, BuildError> {
    let shard = ctx.shard;
    if prev.is_some() {
        ctx.begin_generation();
    }
    let mut labels = Vec::new();
    let mut filters = Vec::new();
    for l in &plan.labels {
        let mut rules = Vec::new();
        for r in &l.rules {
            match r {
                RulePlan::Filter { pattern, plan, workers, key, .. } if on_shard(*workers, shard) => {
                    let reused = prev.and_then(|p| p.filters.iter().find(|f| f.key == *key)).map(|f| f.filter.clone());
                    let f = match reused {
                        Some(f) => f,
                        None => Rc::new(CountedFilter::new(plan.build(ctx)?)),
                    };
                    filters.push(FilterInstance {
                        id: plan.id().to_string(),
                        type_name: plan.type_name(),
                        key: key.clone(),
                        filter: f.clone(),
                    });
                    rules.push(Rule::Filter { pattern: pattern.clone(), filter: f });
                }
                RulePlan::Match { pattern, plan, workers, .. } if on_shard(*workers, shard) => {
                    rules.push(Rule::Match { pattern: pattern.clone(), output: ctx.build_output(&**plan)? });
                }
                _ => {}
            }
        }
        labels.push(Label { name: l.name.clone(), rules });
    }
    let router = Rc::new(Router::new(labels));
    let slot = match prev {
        Some(p) => p.slot.clone(),
        None => RouterSlot::new(router.clone()),
    };
    let weak: std::rc::Weak<dyn crate::plugin::Emitter> =
        Rc::downgrade(&(slot.clone() as Rc<dyn crate::plugin::Emitter>));
    ctx.set_router(weak);
    // Error events go through the slot, so they follow a reload to the new routes.
    match plan.labels.iter().position(|l| l.name == "@ERROR") {
        Some(i) => {
            let weak: std::rc::Weak<dyn crate::plugin::Emitter> =
                Rc::downgrade(&(slot.clone() as Rc<dyn crate::plugin::Emitter>));
            ctx.set_error_route(i, weak);
        }
        None => ctx.clear_error_route(),
    }
    let mut inputs = Vec::new();
    let mut sources = Vec::new();
    for s in &plan.sources {
        if !on_shard(s.workers, shard) {
            continue;
        }
        let first = s.workers.map_or(0, |(a, _)| a as usize) == shard;
        let reused = prev.and_then(|p| p.sources.iter().find(|x| x.key == s.key));
        let (input, emitter) = match reused {
            Some(x) => (x.input.clone(), x.emitter.clone()),
            None => {
                let em = InputEmitter::new(slot.clone());
                (s.plan.build(ctx, em.clone())?, em)
            }
        };
        inputs.push(input.clone());
        sources.push(SourceInstance {
            id: s.plan.id().to_string(),
            type_name: s.plan.type_name(),
            key: s.key.clone(),
            first,
            input,
            emitter,
        });
    }
    Ok(ShardGraph { ctx: ctx.clone(), router, inputs, sources, filters, slot })
}

/// A human-readable plugin graph (`--dry-run`).
pub fn describe(plan: &Plan) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "workers {}", plan.workers);
    let wk = |w: &Workers| {
        w.map_or(String::new(), |(a, b)| if a == b { format!(" [worker {a}]") } else { format!(" [workers {a}-{b}]") })
    };
    let names = plan.label_names();
    let label = |i: usize| {
        if i == 0 {
            "(top level)".to_string()
        } else {
            names.get(i).cloned().unwrap_or_default()
        }
    };
    for src in &plan.sources {
        let p = &src.plan;
        let _ = writeln!(
            s,
            "source {} @type {} {} -> {}{}  ({})",
            p.id(),
            p.type_name(),
            p.describe(),
            label(p.label()),
            wk(&src.workers),
            src.at
        );
    }
    for l in &plan.labels {
        let _ = writeln!(s, "{}:", if l.name.is_empty() { "top level" } else { &l.name });
        for r in &l.rules {
            match r {
                RulePlan::Filter { pattern, plan, workers, at, .. } => {
                    let extra = plan.describe();
                    let sep = if extra.is_empty() { "" } else { " " };
                    let _ = writeln!(
                        s,
                        "  <filter {}> {} {}{sep}{extra}{}  ({at})",
                        pattern.as_str(),
                        plan.type_name(),
                        plan.id(),
                        wk(workers)
                    );
                }
                RulePlan::Match { pattern, plan, workers, at } => {
                    let _ =
                        writeln!(s, "  <match {}> {}{}  ({at})", pattern.as_str(), plan.describe(&names), wk(workers));
                }
            }
        }
    }
    s
}
