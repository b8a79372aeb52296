//! `out_route` (fluent-plugin-route): re-routes events by tag. The tag is first changed
//! by the plugin's own `remove_tag_prefix` / `add_tag_prefix`; the `<route PATTERN>`s
//! (fluentd tag patterns, default `**`) are tried in order against that tag, each
//! matching route emits the events with the tag changed by its own prefixes, to its
//! `@label` (none: the label the plugin is in; `@ROOT`: the top level), and the first
//! matching route without `copy` ends the search.
//!
//! A prefix change is the plugin's: `remove_tag_prefix p` removes `p.` from the start of
//! the tag; `add_tag_prefix a` puts `a.` in front (also when nothing was removed). The
//! routes found for a tag are cached (`match_cache_size` tags, per shard) and so are the
//! tags each route makes (`tag_cache_size`); when a cache is full the older half goes, as
//! in the plugin. `<store>` is rejected, as the plugin rejects it.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;
use spate_protocol::{EntriesFormat, EventBatch};

use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx, Registration, ShardCtx,
};
use crate::router::MatchPattern;

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "route",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Output(plan),
    params: "`<route PATTERN>` (`@label`, `remove_tag_prefix`, `add_tag_prefix`, `copy`), `remove_tag_prefix`, `add_tag_prefix`, `match_cache_size`, `tag_cache_size`",
};

/// `tag_modifier(remove, add)`.
#[derive(Debug, Clone, Default)]
struct TagMod {
    /// `remove_tag_prefix + "."` ("" for none).
    remove: Vec<u8>,
    /// `add_tag_prefix + "."` ("" for none).
    add: Vec<u8>,
}

impl TagMod {
    fn new(remove: Option<&str>, add: Option<&str>) -> TagMod {
        let dotted = |p: Option<&str>| p.map_or(Vec::new(), |p| format!("{p}.").into_bytes());
        TagMod { remove: dotted(remove), add: dotted(add) }
    }

    fn is_identity(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// `tag.start_with?(removed) ? tag.sub(removed, added) : added + tag`.
    fn apply(&self, tag: &[u8]) -> Vec<u8> {
        let rest = tag.strip_prefix(self.remove.as_slice()).unwrap_or(tag);
        let mut out = Vec::with_capacity(self.add.len() + rest.len());
        out.extend_from_slice(&self.add);
        out.extend_from_slice(rest);
        out
    }
}

#[derive(Debug, Clone)]
struct Route {
    pattern: MatchPattern,
    label: usize,
    modify: TagMod,
    copy: bool,
}

#[derive(Debug)]
struct RoutePlan {
    id: String,
    routes: Vec<Route>,
    default_mod: Option<TagMod>,
    match_cache_size: usize,
    tag_cache_size: usize,
}

fn label_of(e: &Element, ctx: &PlanCtx<'_>) -> Result<usize, ConfigError> {
    match e.str("@label") {
        None => Ok(ctx.current_label()),
        Some("@ROOT") => Ok(0),
        Some(l) => ctx.label_named(l).ok_or_else(|| e.error(format!("@label {l} refers to no <label {l}> section"))),
    }
}

fn size(e: &Element, key: &str) -> Result<usize, ConfigError> {
    match e.int(key)? {
        None => Ok(256),
        Some(n) if n >= 1 => Ok(n.min(1 << 20) as usize),
        Some(n) => Err(e.error(format!("{key} must be at least 1, got {n}"))),
    }
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let id = ctx.id(e, "route");
    if e.elements_named("store").next().is_some() {
        return Err(e.error("<store> section is not available in route plugin"));
    }
    let mut routes = Vec::new();
    for r in e.elements_named("route") {
        let spec = if r.arg.trim().is_empty() { "**" } else { r.arg.trim() };
        let pattern = MatchPattern::parse(spec).map_err(|x| r.error(x.to_string()))?;
        routes.push(Route {
            pattern,
            label: label_of(r, ctx)?,
            modify: TagMod::new(r.str("remove_tag_prefix"), r.str("add_tag_prefix")),
            copy: r.bool("copy")?.unwrap_or(false),
        });
        r.warn_unused();
    }
    if routes.is_empty() {
        return Err(e.error("route needs at least one <route PATTERN> section"));
    }
    let (remove, add) = (e.str("remove_tag_prefix"), e.str("add_tag_prefix"));
    let default_mod = (remove.is_some() || add.is_some()).then(|| TagMod::new(remove, add));
    Ok(Box::new(RoutePlan {
        id,
        routes,
        default_mod,
        match_cache_size: size(e, "match_cache_size")?,
        tag_cache_size: size(e, "tag_cache_size")?,
    }))
}

impl OutputPlan for RoutePlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "route"
    }
    fn describe(&self, labels: &[String]) -> String {
        let to: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                let l = labels.get(r.label).map_or("?", |l| if l.is_empty() { "(top level)" } else { l });
                format!("<route {}> -> {l}{}", r.pattern.as_str(), if r.copy { " (copy)" } else { "" })
            })
            .collect();
        format!("route {} {}", self.id, to.join(", "))
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        Ok(Rc::new(RouteOutput {
            id: self.id.clone(),
            metrics: OutputMetrics::default(),
            routes: self.routes.clone(),
            default_mod: self.default_mod.clone(),
            match_cache: RefCell::new(Cache::new(self.match_cache_size)),
            tag_caches: self.routes.iter().map(|_| RefCell::new(Cache::new(self.tag_cache_size))).collect(),
        }))
    }
}

/// A cache that drops its older half when full (the plugin's).
struct Cache<V> {
    cap: usize,
    map: HashMap<Bytes, V>,
    order: VecDeque<Bytes>,
}

impl<V: Clone> Cache<V> {
    fn new(cap: usize) -> Self {
        Cache { cap, map: HashMap::new(), order: VecDeque::new() }
    }

    fn get(&self, k: &[u8]) -> Option<V> {
        self.map.get(k).cloned()
    }

    fn put(&mut self, k: Bytes, v: V) {
        if self.map.len() >= self.cap {
            for old in self.order.drain(..(self.cap / 2).max(1).min(self.order.len())) {
                self.map.remove(&old);
            }
        }
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
        }
    }
}

/// The route output on one shard.
pub struct RouteOutput {
    id: String,
    metrics: OutputMetrics,
    routes: Vec<Route>,
    default_mod: Option<TagMod>,
    /// tag -> (the tag after the plugin's own prefixes, the routes it takes).
    match_cache: RefCell<Cache<(Bytes, Rc<[usize]>)>>,
    /// Per route: tag -> the tag the route emits.
    tag_caches: Vec<RefCell<Cache<Bytes>>>,
}

impl RouteOutput {
    fn targets(&self, tag: &Bytes) -> (Bytes, Rc<[usize]>) {
        if let Some(hit) = self.match_cache.borrow().get(tag) {
            return hit;
        }
        let modified = match &self.default_mod {
            Some(m) => Bytes::from(m.apply(tag)),
            None => tag.clone(),
        };
        let mut targets = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            if r.pattern.matches(&modified) {
                targets.push(i);
                if !r.copy {
                    break;
                }
            }
        }
        let v: (Bytes, Rc<[usize]>) = (modified, Rc::from(targets));
        self.match_cache.borrow_mut().put(tag.clone(), v.clone());
        v
    }

    fn route_tag(&self, i: usize, tag: &Bytes) -> Bytes {
        let r = &self.routes[i];
        if r.modify.is_identity() {
            return tag.clone();
        }
        if let Some(t) = self.tag_caches[i].borrow().get(tag) {
            return t;
        }
        let t = Bytes::from(r.modify.apply(tag));
        self.tag_caches[i].borrow_mut().put(tag.clone(), t.clone());
        t
    }
}

impl Output for RouteOutput {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "route"
    }
    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }

    fn emit(&self, batch: &EventBatch, emitter: &dyn Emitter) -> Result<(), EmitError> {
        let (modified, targets) = self.targets(&batch.tag);
        let mut first_err = None;
        for &i in targets.iter() {
            let mut b = batch.clone();
            if b.format == EntriesFormat::Message {
                // Re-routed batches are packed, as other re-emitted batches.
                let mut v = Vec::with_capacity(b.entries.len() + 1);
                v.push(0x92);
                v.extend_from_slice(&b.entries);
                match batch.with_packed_entries(Bytes::from(v), batch.count) {
                    Some(p) => b = p,
                    None => continue,
                }
            }
            b.tag = self.route_tag(i, &modified);
            if let Err(e) = emitter.emit(self.routes[i].label, b) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests;
