//! Tag routing with fluentd's semantics: per label (the top level is label 0), rules in
//! config order; for a tag, the `<filter>`s that match it and come before the first
//! matching `<match>` apply in order, then that `<match>`'s output receives the events.
//! Events that match no `<match>` are dropped with a warning (once per tag). Outputs
//! that re-route (relabel, copy's stores) emit back through the router, which bounds
//! the depth of such chains.
//!
//! The resolved pipeline is cached per (label, tag); each shard owns its router.

pub mod pattern;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use spate_protocol::EventBatch;

pub use pattern::MatchPattern;

use crate::plugin::{emit_counted, EmitError, Emitter, Filter, Output};

pub enum Rule {
    Filter { pattern: MatchPattern, filter: Rc<dyn Filter> },
    Match { pattern: MatchPattern, output: Rc<dyn Output> },
}

/// A `<label>` (or the top level).
pub struct Label {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// A tag (copied) and its route.
type LastRoute = (Vec<u8>, Option<Rc<Route>>);

struct Route {
    filters: Vec<Rc<dyn Filter>>,
    output: Option<Rc<dyn Output>>,
}

/// Caps the number of cached tags per label: tags come from clients, so the cache must
/// not grow without bound.
const MAX_CACHED_TAGS: usize = 16 * 1024;
/// Re-routing chains (relabel) deeper than this are a configuration loop.
const MAX_RELABEL_DEPTH: usize = 16;

pub struct Router {
    labels: Vec<Label>,
    cache: Vec<RefCell<HashMap<Bytes, Rc<Route>>>>,
    /// The last route looked up, per label, with a copy of its tag: most traffic
    /// repeats its tag batch after batch (Message mode: frame after frame), and
    /// comparing a short tag is cheaper than hashing it. (A copy, not a `Bytes` of the
    /// receive buffer, which it would keep alive.)
    last: Vec<RefCell<LastRoute>>,
    depth: Cell<usize>,
}

impl Router {
    pub fn new(labels: Vec<Label>) -> Self {
        let cache = labels.iter().map(|_| RefCell::new(HashMap::new())).collect();
        let last = labels.iter().map(|_| RefCell::new((Vec::new(), None))).collect();
        Router { labels, cache, last, depth: Cell::new(0) }
    }

    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    fn route(&self, label: usize, tag: &[u8]) -> Option<Rc<Route>> {
        let last = self.last.get(label)?;
        {
            let l = last.borrow();
            if let (t, Some(r)) = &*l {
                if t[..] == *tag {
                    return Some(r.clone());
                }
            }
        }
        let r = self.lookup(label, tag)?;
        let mut l = last.borrow_mut();
        l.0.clear();
        l.0.extend_from_slice(tag);
        l.1 = Some(r.clone());
        Some(r)
    }

    fn lookup(&self, label: usize, tag: &[u8]) -> Option<Rc<Route>> {
        let cache = self.cache.get(label)?;
        if let Some(r) = cache.borrow().get(tag) {
            return Some(r.clone());
        }
        let mut filters = Vec::new();
        let mut output = None;
        for rule in &self.labels[label].rules {
            match rule {
                Rule::Filter { pattern, filter } if pattern.matches(tag) => filters.push(filter.clone()),
                Rule::Match { pattern, output: o } if pattern.matches(tag) => {
                    output = Some(o.clone());
                    break;
                }
                _ => {}
            }
        }
        if output.is_none() {
            let l = &self.labels[label].name;
            if l.is_empty() {
                crate::warn!("no patterns matched tag=\"{}\"", String::from_utf8_lossy(tag));
            } else {
                crate::warn!("no patterns matched tag=\"{}\" in label {}", String::from_utf8_lossy(tag), l);
            }
        }
        let r = Rc::new(Route { filters, output });
        let mut c = cache.borrow_mut();
        if c.len() >= MAX_CACHED_TAGS {
            c.clear();
        }
        c.insert(Bytes::copy_from_slice(tag), r.clone());
        Some(r)
    }

    /// Routes a batch through label `label`. `Ok` means every output that should hold
    /// the events accepted them (or the events were filtered out or matched nothing).
    pub fn emit(&self, label: usize, mut batch: EventBatch) -> Result<(), EmitError> {
        let Some(route) = self.route(label, &batch.tag) else {
            crate::error!("no label #{label}; {} events dropped", batch.count);
            return Ok(());
        };
        for f in &route.filters {
            match f.filter(batch, self) {
                Some(b) => batch = b,
                None => return Ok(()),
            }
        }
        match &route.output {
            None => Ok(()),
            Some(o) => emit_counted(&**o, &batch, self),
        }
    }

    /// Number of cached routes (for tests and metrics).
    pub fn cached_routes(&self) -> usize {
        self.cache.iter().map(|c| c.borrow().len()).sum()
    }
}

impl Emitter for Router {
    /// Emits on behalf of a plugin that re-routes (relabel and friends), bounding the
    /// depth of such chains.
    fn emit(&self, label: usize, batch: EventBatch) -> Result<(), EmitError> {
        let d = self.depth.get();
        // The input's own emit is level 1: more than MAX levels above it is a loop.
        if d > MAX_RELABEL_DEPTH {
            crate::error!(
                "relabel loop: more than {MAX_RELABEL_DEPTH} relabels for tag \"{}\"; events dropped",
                String::from_utf8_lossy(&batch.tag)
            );
            return Ok(());
        }
        self.depth.set(d + 1);
        let r = Router::emit(self, label, batch);
        self.depth.set(d);
        r
    }
}
