//! `out_label_router` (fluent-plugin-label-router, which fluent-operator's and the
//! logging-operator's rendered configs use): routes Kubernetes events by their metadata
//! to `<route>`s, each with a `@label` and an optional new `tag`.
//!
//! As the plugin (`out_label_router.rb`): an event goes to every `<route>` whose first
//! matching `<match>` is not `negate`d; a `<match>` matches when every selector given
//! holds: `labels` (a subset of `$.kubernetes.labels`), `namespaces` (contains
//! `$.kubernetes.namespace_name`), `namespaces_regex` (any Ruby regexp matches it),
//! `namespace_labels` (a subset of `$.kubernetes_namespace.labels`), `hosts`
//! (`$.kubernetes.host`), `container_names` (`$.kubernetes.container_name`). Events no
//! route takes go to `default_route` / `default_tag` when given, else nowhere. With
//! `sticky_tags` (the default) the routes found for a tag's first events are used for
//! every later event of that tag without looking at the records (kept per shard, up to
//! 16384 tags, then forgotten). `emit_mode batch` (default) emits one batch per route,
//! `record` one event at a time. A route without `@label` re-enters the label the plugin
//! is in; `@ROOT` is the top level. `metrics true` (prometheus counters) is rejected:
//! spate has no prometheus endpoint; `metrics_labels` only label those counters.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use spate_protocol::{EntriesFormat, EventBatch, RecordRef, ValueRef};

use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx, Registration, ShardCtx,
};
use crate::ruby::accessor::{Accessor, Dug};
use crate::ruby::regex::RubyRegex;
use crate::ruby::value::write_to_s;

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "label_router",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Output(plan),
    params: "`<route>` (`@label`, `tag`, `<match>` with `labels`, `namespaces`, `namespaces_regex`, `namespace_labels`, `hosts`, `container_names`, `negate`), `default_route`, `default_tag`, `sticky_tags`, `emit_mode` (`batch`, `record`); `metrics true` is rejected (no prometheus endpoint)",
};

/// Tags remembered by `sticky_tags` per shard.
const MAX_STICKY_TAGS: usize = 16 * 1024;

#[derive(Debug, Clone, Default)]
struct Selector {
    labels: Vec<(Vec<u8>, Vec<u8>)>,
    namespaces: Vec<Vec<u8>>,
    namespaces_regex: Vec<RubyRegex>,
    namespace_labels: Vec<(Vec<u8>, Vec<u8>)>,
    hosts: Vec<Vec<u8>>,
    container_names: Vec<Vec<u8>>,
    negate: bool,
}

#[derive(Debug, Clone)]
struct Route {
    label: usize,
    /// `tag`: the new tag (None: keep the event's).
    tag: Option<Bytes>,
    matches: Vec<Selector>,
}

#[derive(Debug)]
struct LabelRouterPlan {
    id: String,
    /// The `<route>`s, then the default route if any (it has no `<match>`).
    routes: Vec<Route>,
    default: bool,
    sticky: bool,
    batch: bool,
}

fn strings(v: Vec<String>) -> Vec<Vec<u8>> {
    v.into_iter().map(String::into_bytes).collect()
}

fn pairs(v: Vec<(String, String)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    v.into_iter().map(|(k, x)| (k.into_bytes(), x.into_bytes())).collect()
}

/// `event_emitter_router(label)`: `@ROOT` is the top level; None is the plugin's label.
fn route_label(e: &Element, name: Option<&str>, ctx: &PlanCtx<'_>, what: &str) -> Result<usize, ConfigError> {
    match name {
        None => Ok(ctx.current_label()),
        Some("@ROOT") => Ok(0),
        Some(l) => ctx.label_named(l).ok_or_else(|| {
            e.error(format!("{what} {l:?} refers to no <label {l}> section (fluentd: label not found)"))
        }),
    }
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let id = ctx.id(e, "label_router");
    if e.bool("metrics")?.unwrap_or(false) {
        return Err(e.error(
            "label_router metrics true: its prometheus counters are not supported (spate has no prometheus endpoint); \
             remove it",
        ));
    }
    let _ = e.hash("default_metrics_labels")?;
    let mut routes = Vec::new();
    for r in e.elements_named("route") {
        let label = route_label(r, r.str("@label"), ctx, "@label")?;
        let tag = r.str("tag").filter(|t| !t.is_empty()).map(|t| Bytes::copy_from_slice(t.as_bytes()));
        let _ = r.hash("metrics_labels")?;
        let mut matches = Vec::new();
        for m in r.elements_named("match") {
            let mut regexes = Vec::new();
            for p in m.array("namespaces_regex")?.unwrap_or_default() {
                regexes.push(
                    RubyRegex::new(&p, false, false).map_err(|x| m.error(format!("namespaces_regex {p:?}: {x}")))?,
                );
            }
            matches.push(Selector {
                labels: pairs(m.hash("labels")?.unwrap_or_default()),
                namespaces: strings(m.array("namespaces")?.unwrap_or_default()),
                namespaces_regex: regexes,
                namespace_labels: pairs(m.hash("namespace_labels")?.unwrap_or_default()),
                hosts: strings(m.array("hosts")?.unwrap_or_default()),
                container_names: strings(m.array("container_names")?.unwrap_or_default()),
                negate: m.bool("negate")?.unwrap_or(false),
            });
            m.warn_unused();
        }
        r.warn_unused();
        routes.push(Route { label, tag, matches });
    }
    let default_route = e.str("default_route").unwrap_or("");
    let default_tag = e.str("default_tag").unwrap_or("");
    let default = !default_route.is_empty() || !default_tag.is_empty();
    if default {
        // The plugin looks the label up even when it is "" (and fails there).
        let label = route_label(e, Some(default_route), ctx, "default_route")?;
        let tag = (!default_tag.is_empty()).then(|| Bytes::copy_from_slice(default_tag.as_bytes()));
        routes.push(Route { label, tag, matches: Vec::new() });
    }
    let batch = match e.str("emit_mode") {
        None | Some("batch") => true,
        Some("record") => false,
        Some(o) => return Err(e.error(format!("emit_mode: valid options are record,batch but got {o}"))),
    };
    Ok(Box::new(LabelRouterPlan { id, routes, default, sticky: e.bool("sticky_tags")?.unwrap_or(true), batch }))
}

impl OutputPlan for LabelRouterPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "label_router"
    }
    fn describe(&self, labels: &[String]) -> String {
        let to: Vec<&str> = self
            .routes
            .iter()
            .map(|r| labels.get(r.label).map_or("?", |l| if l.is_empty() { "(top level)" } else { l }))
            .collect();
        format!("label_router {} -> {}", self.id, to.join(", "))
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        Ok(Rc::new(LabelRouter {
            id: self.id.clone(),
            metrics: OutputMetrics::default(),
            routes: self.routes.clone(),
            default: self.default,
            sticky: self.sticky,
            batch: self.batch,
            sticky_map: RefCell::new(HashMap::new()),
            access: Access::new(),
        }))
    }
}

/// The record paths the plugin reads.
struct Access {
    labels: Accessor,
    namespace_labels: Accessor,
    namespace: Accessor,
    host: Accessor,
    container: Accessor,
}

impl Access {
    fn new() -> Access {
        let a = |p: &str| Accessor::parse(p).unwrap_or_else(|_| Accessor { steps: Vec::new() });
        Access {
            labels: a("$.kubernetes.labels"),
            namespace_labels: a("$.kubernetes_namespace.labels"),
            namespace: a("$.kubernetes.namespace_name"),
            host: a("$.kubernetes.host"),
            container: a("$.kubernetes.container_name"),
        }
    }
}

/// One event's metadata (`input_metadata`); strings borrowed from the record.
struct Meta<'a> {
    labels: Option<RecordRef<'a>>,
    namespace_labels: Option<RecordRef<'a>>,
    namespace: Text<'a>,
    host: Text<'a>,
    container: Text<'a>,
}

/// A value's `to_s`, borrowed when it is a string.
enum Text<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Text<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Text::Borrowed(b) => b,
            Text::Owned(v) => v,
        }
    }
}

fn text_of(d: Dug<'_>) -> Text<'_> {
    match d {
        Dug::Value(v) => match v.as_str() {
            Some(s) => Text::Borrowed(s),
            None => {
                let mut o = Vec::new();
                write_to_s(v, &mut o);
                Text::Owned(o)
            }
        },
        _ => Text::Borrowed(b""),
    }
}

fn map_of(d: Dug<'_>) -> Option<RecordRef<'_>> {
    match d {
        Dug::Value(v) => v.as_map(),
        _ => None,
    }
}

/// `(match.to_a - input.to_a).empty?`: every selector pair is in the record's map with
/// the same string value.
fn subset(want: &[(Vec<u8>, Vec<u8>)], have: Option<RecordRef<'_>>) -> bool {
    want.iter().all(|(k, v)| have.and_then(|m| m.get(k)).and_then(|x: ValueRef<'_>| x.as_str()) == Some(v.as_slice()))
}

impl Selector {
    /// `filter_select`.
    fn select(&self, m: &Meta<'_>, scratch: &mut Vec<u8>) -> bool {
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| h == m.host.bytes()) {
            return false;
        }
        if !self.container_names.is_empty() && !self.container_names.iter().any(|c| c == m.container.bytes()) {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == m.namespace.bytes()) {
            return false;
        }
        if !self.namespaces_regex.is_empty()
            && !self.namespaces_regex.iter().any(|r| r.is_match(m.namespace.bytes(), scratch))
        {
            return false;
        }
        if !self.namespace_labels.is_empty() && !subset(&self.namespace_labels, m.namespace_labels) {
            return false;
        }
        subset(&self.labels, m.labels)
    }
}

impl Route {
    /// The first `<match>` that selects decides (`!negate`); none: false.
    fn matches(&self, m: &Meta<'_>, scratch: &mut Vec<u8>) -> bool {
        self.matches.iter().find(|s| s.select(m, scratch)).is_some_and(|s| !s.negate)
    }
}

/// The label_router output on one shard.
pub struct LabelRouter {
    id: String,
    metrics: OutputMetrics,
    routes: Vec<Route>,
    default: bool,
    sticky: bool,
    batch: bool,
    /// `sticky_tags`: tag -> the indexes of the routes its events go to.
    sticky_map: RefCell<HashMap<Bytes, Vec<usize>>>,
    access: Access,
}

impl LabelRouter {
    fn send(
        &self,
        route: &Route,
        batch: &EventBatch,
        entries: Bytes,
        count: u32,
        emitter: &dyn Emitter,
    ) -> Result<(), EmitError> {
        let Some(mut b) = batch.with_packed_entries(entries, count) else { return Ok(()) };
        if let Some(t) = &route.tag {
            b.tag = t.clone();
        }
        emitter.emit(route.label, b)
    }

    fn whole(batch: &EventBatch) -> Bytes {
        match batch.format {
            EntriesFormat::Packed => batch.entries.clone(),
            EntriesFormat::Message => {
                let mut v = Vec::with_capacity(batch.entries.len() + 1);
                v.push(0x92);
                v.extend_from_slice(&batch.entries);
                Bytes::from(v)
            }
        }
    }
}

impl Output for LabelRouter {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "label_router"
    }
    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }

    fn emit(&self, batch: &EventBatch, emitter: &dyn Emitter) -> Result<(), EmitError> {
        let mut first_err: Option<EmitError> = None;
        let mut note = |r: Result<(), EmitError>| {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        if self.sticky {
            let known = self.sticky_map.borrow().get(&batch.tag).cloned();
            if let Some(routes) = known {
                // The whole batch to each route found before, records unread.
                for i in routes {
                    if let Some(r) = self.routes.get(i) {
                        note(self.send(r, batch, Self::whole(batch), batch.count, emitter));
                    }
                }
                return first_err.map_or(Ok(()), Err);
            }
        }
        let n = self.routes.len();
        let mut per_route: Vec<(Vec<u8>, u32)> = if self.batch { vec![(Vec::new(), 0); n] } else { Vec::new() };
        let mut hit_routes: Vec<bool> = vec![false; n];
        let mut scratch = Vec::new();
        let mut record_mode: Vec<(usize, Vec<u8>)> = Vec::new();
        let real = if self.default { n - 1 } else { n };
        for ev in batch.events() {
            let rec = ev.record;
            let meta = Meta {
                labels: map_of(self.access.labels.dig(rec)),
                namespace_labels: map_of(self.access.namespace_labels.dig(rec)),
                namespace: text_of(self.access.namespace.dig(rec)),
                host: text_of(self.access.host.dig(rec)),
                container: text_of(self.access.container.dig(rec)),
            };
            let mut orphan = true;
            for i in 0..n {
                let is_default = i >= real;
                let take = if is_default { orphan } else { self.routes[i].matches(&meta, &mut scratch) };
                if !take {
                    continue;
                }
                if !is_default {
                    orphan = false;
                }
                hit_routes[i] = true;
                if self.batch {
                    let (dst, count) = &mut per_route[i];
                    batch.format.append_packed(dst, ev.raw);
                    *count += 1;
                } else {
                    let mut entry = Vec::with_capacity(ev.raw.len() + 1);
                    batch.format.append_packed(&mut entry, ev.raw);
                    record_mode.push((i, entry));
                }
            }
        }
        let found: Vec<usize> = (0..n).filter(|&i| hit_routes[i]).collect();
        // A tag none of whose events went anywhere is looked at again next time.
        if self.sticky && !found.is_empty() {
            let mut m = self.sticky_map.borrow_mut();
            if m.len() >= MAX_STICKY_TAGS {
                m.clear();
            }
            m.insert(batch.tag.clone(), found);
        }
        if self.batch {
            for (i, (entries, count)) in per_route.into_iter().enumerate() {
                if count > 0 {
                    note(self.send(&self.routes[i], batch, Bytes::from(entries), count, emitter));
                }
            }
        } else {
            for (i, entry) in record_mode {
                note(self.send(&self.routes[i], batch, Bytes::from(entry), 1, emitter));
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
