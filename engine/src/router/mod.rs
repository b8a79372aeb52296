//! Tag routing with fluentd's semantics: per label (the top level is label 0), rules in
//! config order; for a tag, the `<filter>`s that match it and come before the first
//! matching `<match>` apply in order, then that `<match>` receives the events. Events
//! that match no `<match>` are dropped with a warning (once per tag). `@type copy`
//! delivers to every `<store>`, `@type relabel` continues in another label.
//!
//! The resolved pipeline is cached per (label, tag); each shard owns its router.

pub mod pattern;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use spate_protocol::EventBatch;

pub use pattern::MatchPattern;

use crate::filter::Filter;
use crate::output::{EmitError, Output};

/// Where a `<match>` sends events.
#[derive(Clone)]
pub enum Target {
    Output(Rc<Output>),
    /// `@type copy`: every store gets the events.
    Copy(Rc<[Target]>),
    /// `@type relabel`: continue in the label with this index.
    Relabel(usize),
}

pub enum Rule {
    Filter { pattern: MatchPattern, filter: Rc<Filter> },
    Match { pattern: MatchPattern, target: Target },
}

/// A `<label>` (or the top level).
pub struct Label {
    pub name: String,
    pub rules: Vec<Rule>,
}

struct Route {
    filters: Vec<Rc<Filter>>,
    target: Option<Target>,
}

/// Caps the number of cached tags per label: tags come from clients, so the cache must
/// not grow without bound.
const MAX_CACHED_TAGS: usize = 16 * 1024;
/// Relabel chains longer than this are a configuration loop.
const MAX_RELABEL_DEPTH: usize = 16;

pub struct Router {
    labels: Vec<Label>,
    cache: Vec<RefCell<HashMap<Bytes, Rc<Route>>>>,
}

impl Router {
    pub fn new(labels: Vec<Label>) -> Self {
        let cache = labels.iter().map(|_| RefCell::new(HashMap::new())).collect();
        Router { labels, cache }
    }

    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    fn route(&self, label: usize, tag: &[u8]) -> Rc<Route> {
        if let Some(r) = self.cache[label].borrow().get(tag) {
            return r.clone();
        }
        let mut filters = Vec::new();
        let mut target = None;
        for rule in &self.labels[label].rules {
            match rule {
                Rule::Filter { pattern, filter } if pattern.matches(tag) => filters.push(filter.clone()),
                Rule::Match { pattern, target: t } if pattern.matches(tag) => {
                    target = Some(t.clone());
                    break;
                }
                _ => {}
            }
        }
        if target.is_none() {
            let l = &self.labels[label].name;
            if l.is_empty() {
                crate::warn!("no patterns matched tag=\"{}\"", String::from_utf8_lossy(tag));
            } else {
                crate::warn!("no patterns matched tag=\"{}\" in label {}", String::from_utf8_lossy(tag), l);
            }
        }
        let r = Rc::new(Route { filters, target });
        let mut c = self.cache[label].borrow_mut();
        if c.len() >= MAX_CACHED_TAGS {
            c.clear();
        }
        c.insert(Bytes::copy_from_slice(tag), r.clone());
        r
    }

    /// Routes a batch through label `label`. `Ok` means every output that should hold
    /// the events accepted them (or the events were filtered out or matched nothing).
    pub fn emit(&self, label: usize, batch: EventBatch) -> Result<(), EmitError> {
        self.emit_depth(label, batch, 0)
    }

    fn emit_depth(&self, label: usize, mut batch: EventBatch, depth: usize) -> Result<(), EmitError> {
        let route = self.route(label, &batch.tag);
        for f in &route.filters {
            match f.filter(batch) {
                Some(b) => batch = b,
                None => return Ok(()),
            }
        }
        match &route.target {
            None => Ok(()),
            Some(t) => self.deliver(t, batch, depth),
        }
    }

    fn deliver(&self, t: &Target, batch: EventBatch, depth: usize) -> Result<(), EmitError> {
        match t {
            Target::Output(o) => o.emit(&batch),
            Target::Copy(stores) => {
                // Every store gets the events even if one fails; the first error is
                // reported so the input does not ack.
                let mut first_err = None;
                for s in stores.iter() {
                    if let Err(e) = self.deliver(s, batch.clone(), depth) {
                        first_err.get_or_insert(e);
                    }
                }
                first_err.map_or(Ok(()), Err)
            }
            Target::Relabel(l) => {
                if depth >= MAX_RELABEL_DEPTH {
                    crate::error!(
                        "relabel loop: more than {MAX_RELABEL_DEPTH} relabels for tag \"{}\"; events dropped",
                        String::from_utf8_lossy(&batch.tag)
                    );
                    return Ok(());
                }
                self.emit_depth(*l, batch, depth + 1)
            }
        }
    }

    /// Every output reachable from this router (for start, flush and shutdown).
    pub fn outputs(&self) -> Vec<Rc<Output>> {
        fn walk(t: &Target, out: &mut Vec<Rc<Output>>) {
            match t {
                Target::Output(o) => {
                    if !out.iter().any(|x| Rc::ptr_eq(x, o)) {
                        out.push(o.clone())
                    }
                }
                Target::Copy(s) => s.iter().for_each(|t| walk(t, out)),
                Target::Relabel(_) => {}
            }
        }
        let mut out = Vec::new();
        for l in &self.labels {
            for r in &l.rules {
                if let Rule::Match { target, .. } = r {
                    walk(target, &mut out);
                }
            }
        }
        out
    }

    /// Number of cached routes (for tests and metrics).
    pub fn cached_routes(&self) -> usize {
        self.cache.iter().map(|c| c.borrow().len()).sum()
    }
}
