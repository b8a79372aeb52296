//! From a parsed configuration to running plugins, in two steps: [`plan`] validates the
//! whole config once (labels, patterns, `<worker>` sections, every plugin's section
//! through its registry row) into an immutable, `Send` [`Plan`]; [`build_shard`]
//! instantiates one shard's outputs, filters, router and inputs from it. Errors name
//! file:line and, for an unknown plugin type, the types spate supports.

use std::rc::Rc;
use std::time::Duration;

use crate::config::{ConfigError, Element};
use crate::plugin::{
    on_shard, Build, BuildError, Filter, FilterPlan, Input, InputPlan, Kind, OutputPlan, PlanCtx, ShardCtx, Workers,
};
use crate::registry::PLUGINS;
use crate::router::{Label, MatchPattern, Router, Rule};

/// A `<source>` with where it runs and where it is written.
#[derive(Debug)]
pub struct SourceEntry {
    pub plan: Box<dyn InputPlan>,
    pub workers: Workers,
    pub at: String,
}

#[derive(Debug)]
pub enum RulePlan {
    Filter { pattern: MatchPattern, plan: Box<dyn FilterPlan>, workers: Workers, at: String },
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
}

impl Plan {
    /// Label names by index (the top level is "").
    pub fn label_names(&self) -> Vec<String> {
        self.labels.iter().map(|l| l.name.clone()).collect()
    }
}

/// One shard's plugins.
pub struct ShardGraph {
    pub ctx: Rc<ShardCtx>,
    pub router: Rc<Router>,
    pub inputs: Vec<Rc<dyn Input>>,
    /// Every filter on this shard (for their start and shutdown hooks).
    pub filters: Vec<Rc<dyn Filter>>,
}

impl ShardGraph {
    /// Every output on this shard (including copy's stores), for start, flush and
    /// shutdown, and for tests that read their counters.
    pub fn outputs(&self) -> Vec<Rc<dyn crate::plugin::Output>> {
        self.ctx.outputs()
    }
}

/// Validates the configuration. `workers_override` is `--workers`.
pub fn plan(root: &Element, workers_override: Option<usize>, hostname: &str) -> Result<Plan, ConfigError> {
    let mut workers = None;
    let mut log_level = None;
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
        // Other <system> parameters (root_dir, rpc_endpoint, ...) do not apply to spate.
        s.mark_all_used();
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
    })
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
                out.push(SourceEntry { plan, workers: w, at: c.pos.to_string() });
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
                out.push(RulePlan::Filter { pattern, plan, workers: w, at: c.pos.to_string() });
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
    let ctx = ShardCtx::new(shard, plan.workers, &plan.hostname);
    let mut labels = Vec::new();
    let mut filters = Vec::new();
    for l in &plan.labels {
        let mut rules = Vec::new();
        for r in &l.rules {
            match r {
                RulePlan::Filter { pattern, plan, workers, .. } if on_shard(*workers, shard) => {
                    let filter: Rc<dyn Filter> = Rc::from(plan.build(&ctx)?);
                    filters.push(filter.clone());
                    rules.push(Rule::Filter { pattern: pattern.clone(), filter });
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
    if let Some(i) = plan.labels.iter().position(|l| l.name == "@ERROR") {
        let weak: std::rc::Weak<dyn crate::plugin::Emitter> =
            Rc::downgrade(&(router.clone() as Rc<dyn crate::plugin::Emitter>));
        ctx.set_error_route(i, weak);
    }
    let mut inputs = Vec::new();
    for s in &plan.sources {
        if on_shard(s.workers, shard) {
            inputs.push(s.plan.build(&ctx, router.clone())?);
        }
    }
    Ok(ShardGraph { ctx, router, inputs, filters })
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
                RulePlan::Filter { pattern, plan, workers, at } => {
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
