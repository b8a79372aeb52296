//! The plugin contracts: what an input, filter, output or buffered-output writer is, at
//! config time and on a shard.
//!
//! Every plugin has two halves:
//! - a *plan* (`InputPlan`, `FilterPlan`, `OutputPlan`, `WriterPlan`): the validated
//!   configuration, built once from its config section by the function its
//!   [`Registration`] names, immutable and `Send + Sync` (all shards share it);
//! - an *instance* built from the plan on each shard (`Input`, `Filter`, `Output`,
//!   `Writer`): shard-local (`Rc`, `Cell`), never shared with another shard.
//!
//! Dispatch through these traits happens per batch or per chunk (a vtable call per 1000
//! events costs nothing); the per-event loops stay inside each plugin, statically
//! dispatched.
//!
//! [`PlanCtx`] is what a plugin's config step may ask of the whole configuration (ids,
//! labels, nested plugins such as `<store>` and `<secondary>`); [`ShardCtx`] is what an
//! instance may ask of its shard (group commit, hostname, the shard's outputs). Layers
//! only point down: this file knows the buffer and the config tree, never a concrete
//! plugin, the router or the registry.
//!
//! Over 800 lines on purpose: every contract a plugin author implements is on one page
//! (the registry row, the four plan/instance trait pairs, the shard context).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spate_protocol::EventBatch;

use crate::buffer::sync::Syncer;
use crate::buffer::{BufferConf, BufferDefaults, BufferError, Chunk};
use crate::config::{ConfigError, Element, Pos};
use crate::metrics::{Category, PluginInfo, Visitor};

/// A future run on the shard's executor (not `Send`: shards share nothing).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Which shards a plugin runs on (`<worker N>` / `<worker N-M>`); `None` = all.
pub type Workers = Option<(u32, u32)>;

/// Whether a plugin placed on `w` runs on `shard`.
pub fn on_shard(w: Workers, shard: usize) -> bool {
    w.is_none_or(|(a, b)| (a as usize..=b as usize).contains(&shard))
}

// ---------------------------------------------------------------------------------------
// The registry's row type.

/// The kind of a plugin: where it may appear in a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `<source>`.
    Input,
    /// `<filter>`.
    Filter,
    /// `<match>` (and `<store>` inside copy).
    Output,
    /// Only inside `<secondary>` (buffered outputs are valid there too).
    Secondary,
}

impl Kind {
    /// The word used in messages ("unknown input plugin type ...").
    pub fn word(self) -> &'static str {
        match self {
            Kind::Input => "input",
            Kind::Filter => "filter",
            Kind::Output => "output",
            Kind::Secondary => "secondary",
        }
    }

    /// fluentd's file-name prefix for the kind (`in_forward`, `out_file`...).
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Input => "in_",
            Kind::Filter => "filter_",
            Kind::Output => "out_",
            Kind::Secondary => "out_",
        }
    }
}

/// Builds an input's plan from its `<source>`.
pub type InputBuilder = fn(&Element, &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError>;
/// Builds a filter's plan from its `<filter>`.
pub type FilterBuilder = fn(&Element, &mut PlanCtx<'_>) -> Result<Box<dyn FilterPlan>, ConfigError>;
/// Builds an unbuffered output's plan from its `<match>` (or `<store>`).
pub type OutputBuilder = fn(&Element, &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError>;
/// Builds a buffered output's writer from its `<match>`, `<store>` or `<secondary>`.
pub type WriterBuilder = fn(&Element, &mut PlanCtx<'_>, &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError>;

/// Plans a buffered output of a registered type around its writer builder.
pub type BufferedPlanner =
    fn(&Element, &mut PlanCtx<'_>, &'static str, WriterBuilder) -> Result<Box<dyn OutputPlan>, ConfigError>;

/// How a registered plugin is built.
#[derive(Clone, Copy)]
pub enum Build {
    Input(InputBuilder),
    Filter(FilterBuilder),
    /// An output that is not buffered (null, stdout, copy, relabel...).
    Output(OutputBuilder),
    /// A buffered output: spate wraps its writer in the generic buffered output (buffer,
    /// flush, retries, `<secondary>`). Valid in `<match>` and as a `<secondary>`.
    Buffered(WriterBuilder),
    /// A writer that is only valid inside `<secondary>` (secondary_file).
    SecondaryOnly(WriterBuilder),
    /// Not buffered unless its section has a `<buffer>` (then the writer, wrapped as
    /// [`Build::Buffered`] is); valid as a `<secondary>`: fluentd's plugins that
    /// implement both `process` and `write` and prefer unbuffered processing (null).
    Either {
        output: OutputBuilder,
        writer: WriterBuilder,
    },
}

/// One row of the plugin registry: a plugin's names, how it is built, and what the
/// README's plugin table says about it.
#[derive(Clone, Copy)]
pub struct Registration {
    /// The `@type` name.
    pub name: &'static str,
    /// Other accepted `@type` names (fluentd's old names, such as `dummy`).
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub build: Build,
    /// The parameters (and notes) for the README's plugin table, in Markdown.
    pub params: &'static str,
}

impl Registration {
    /// Whether `@type ty` names this plugin.
    pub fn named(&self, ty: &str) -> bool {
        self.name == ty || self.aliases.contains(&ty)
    }

    /// Whether the plugin may appear where `kind` is expected.
    pub fn fits(&self, kind: Kind) -> bool {
        match (kind, self.build) {
            (Kind::Secondary, Build::Buffered(_) | Build::SecondaryOnly(_) | Build::Either { .. }) => true,
            (k, _) => k == self.kind,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Config time.

/// What a plugin's config step can use: the plugin table (for nested plugins), the
/// label names, plugin ids, and the checks that span the whole configuration.
pub struct PlanCtx<'a> {
    table: &'a [Registration],
    /// Plans a buffered output around a writer (the generic buffered output lives above
    /// this layer, so it is handed in).
    buffered: BufferedPlanner,
    labels: HashMap<String, usize>,
    label_names: Vec<String>,
    counters: HashMap<&'static str, usize>,
    /// File-buffer paths in use (two outputs may not share one).
    paths: Vec<std::path::PathBuf>,
    /// Names plugins registered process-wide (`register_name`), with their signature.
    names: HashMap<(&'static str, String), String>,
    /// Every plugin planned so far, with its label (for monitor_agent and reload).
    infos: Vec<PlannedPlugin>,
    /// `@id`s written in the configuration, with where (duplicates are an error).
    explicit_ids: Vec<(String, Pos)>,
    /// The label whose rules are being planned (0: the top level).
    current_label: usize,
    pub hostname: String,
    pub workers: usize,
}

/// A plugin as planned: what monitor_agent lists and what reload compares.
#[derive(Debug, Clone)]
pub struct PlannedPlugin {
    pub info: PluginInfo,
    pub label: usize,
    /// `@log_level` of the plugin, if set.
    pub log_level: Option<crate::log::Level>,
    /// The section as text (without the `<match>` pattern) and the label table: equal
    /// keys mean an unchanged plugin across a reload.
    pub key: String,
}

impl<'a> PlanCtx<'a> {
    /// `label_names[0]` is the top level (""); the others are `<label>` names in order.
    pub fn new(
        table: &'a [Registration],
        buffered: BufferedPlanner,
        label_names: Vec<String>,
        hostname: &str,
        workers: usize,
    ) -> Self {
        let labels = label_names.iter().enumerate().skip(1).map(|(i, n)| (n.clone(), i)).collect();
        PlanCtx {
            table,
            buffered,
            labels,
            label_names,
            counters: HashMap::new(),
            paths: Vec::new(),
            names: HashMap::new(),
            infos: Vec::new(),
            explicit_ids: Vec::new(),
            current_label: 0,
            hostname: hostname.to_string(),
            workers,
        }
    }

    /// Registers a process-wide name (a Prometheus metric name...) with a signature;
    /// `Err(previous signature)` when it was registered with another one.
    pub fn register_name(&mut self, namespace: &'static str, name: &str, signature: &str) -> Result<(), String> {
        match self.names.get(&(namespace, name.to_string())) {
            Some(prev) if prev != signature => Err(prev.clone()),
            Some(_) => Ok(()),
            None => {
                self.names.insert((namespace, name.to_string()), signature.to_string());
                Ok(())
            }
        }
    }

    /// Records a planned plugin (inputs and filters are recorded by the planner,
    /// outputs by [`PlanCtx::output`]). Returns its reuse key. A bad `@log_level` is an
    /// error here.
    pub fn record_plugin(
        &mut self,
        e: &Element,
        category: Category,
        id: &str,
        label: usize,
    ) -> Result<String, ConfigError> {
        // Plugins hold label indices (their own label, `@label` targets, where they
        // re-emit), and indices are positions: a reload that adds, removes or moves a
        // `<label>` renumbers them, so the label table is part of every key and such a
        // reload builds every plugin anew.
        let key = format!("{id}\u{0}{}\u{0}{}", crate::config::dump::section_key(e), self.label_names.join("\u{1}"));
        let log_level = match e.str("@log_level") {
            None => None,
            Some(l) => Some(crate::log::Level::parse(l).ok_or_else(|| {
                e.error(format!("unknown @log_level {l:?}; expected trace, debug, info, warn, error or fatal"))
            })?),
        };
        let info = PluginInfo {
            id: id.to_string(),
            category,
            type_name: e.plugin_type().unwrap_or_default().to_string(),
            config: crate::config::dump::masked_attrs(e),
            pattern: None,
        };
        self.infos.push(PlannedPlugin { info, label, log_level, key: key.clone() });
        Ok(key)
    }

    /// Every plugin planned, in planning order.
    pub fn planned(&self) -> &[PlannedPlugin] {
        &self.infos
    }

    /// The `@id`s written twice, with the second place (fluentd refuses those).
    pub fn duplicate_ids(&self) -> Option<(String, Pos)> {
        for (i, (id, pos)) in self.explicit_ids.iter().enumerate() {
            if self.explicit_ids[..i].iter().any(|(x, _)| x == id) {
                return Some((id.clone(), pos.clone()));
            }
        }
        None
    }

    /// The plugin id: `@id`, or `type#n` counting plugins of that type.
    pub fn id(&mut self, e: &Element, ty: &'static str) -> String {
        if let Some(a) = e.get("@id") {
            self.explicit_ids.push((a.value.clone(), a.pos.clone()));
            return a.value.clone();
        }
        let n = self.counters.entry(ty).or_insert(0);
        *n += 1;
        format!("{ty}#{}", *n - 1)
    }

    /// The index of the label `@label` names (`None` without `@label`).
    pub fn label_ref(&self, e: &Element) -> Result<Option<usize>, ConfigError> {
        match e.str("@label") {
            None => Ok(None),
            Some(l) => self
                .labels
                .get(l)
                .copied()
                .map(Some)
                .ok_or_else(|| e.error(format!("@label {l} refers to no <label {l}> section"))),
        }
    }

    /// The index of a label by name, if it exists (`@ERROR`, `@FLUENT_LOG`...).
    pub fn label_named(&self, name: &str) -> Option<usize> {
        self.labels.get(name).copied()
    }

    /// The label the plugin being planned is in (0: the top level): where events an
    /// output re-emits go unless it says otherwise (fluentd's `router` of a plugin).
    pub fn current_label(&self) -> usize {
        self.current_label
    }

    /// Set by the planner while it walks a label's rules.
    pub fn set_current_label(&mut self, label: usize) {
        self.current_label = label;
    }

    /// A label's name by index ("" for the top level).
    pub fn label_name(&self, i: usize) -> &str {
        self.label_names.get(i).map_or("", String::as_str)
    }

    /// Claims a file-buffer directory for one output.
    pub fn claim_path(&mut self, e: &Element, b: &BufferConf) -> Result<(), ConfigError> {
        if let Some(p) = &b.path {
            if self.paths.contains(p) {
                return Err(e.error(format!("Other 'file' buffer already uses the same buffer path {}", p.display())));
            }
            self.paths.push(p.clone());
        }
        Ok(())
    }

    /// Claims a directory a plugin keeps its own files in (`what` names the parameter):
    /// no other plugin, file buffer included, may use it.
    pub fn claim_dir(&mut self, e: &Element, p: &std::path::Path, what: &str) -> Result<(), ConfigError> {
        if self.paths.iter().any(|q| q == p) {
            return Err(e.error(format!("{what} {} is already used by another plugin or file buffer", p.display())));
        }
        self.paths.push(p.to_path_buf());
        Ok(())
    }

    /// The registered plugins that fit `kind`, sorted by name (for "supported: ...").
    pub fn supported(&self, kind: Kind) -> Vec<&'static str> {
        supported(self.table, kind)
    }

    /// The registration for `@type` of `e` as a `kind`, or the error fluentd users
    /// expect: the file:line and the types spate supports.
    pub fn lookup(&self, e: &Element, kind: Kind) -> Result<&'a Registration, ConfigError> {
        let Some(ty) = e.plugin_type() else {
            return Err(e.error(format!(
                "{} has no @type; spate supports {} types: {}",
                e.header(),
                kind.word(),
                self.supported(kind).join(", ")
            )));
        };
        let _ = e.str("@log_level");
        self.table.iter().find(|r| r.named(ty) && r.fits(kind)).ok_or_else(|| {
            e.error(format!(
                "unknown {} plugin type '{ty}' in {}; spate supports: {}",
                kind.word(),
                e.header(),
                self.supported(kind).join(", ")
            ))
        })
    }

    /// Builds the output `e` describes (`<match>` or `<store>`), buffered or not.
    pub fn output(&mut self, e: &Element) -> Result<Box<dyn OutputPlan>, ConfigError> {
        let reg = self.lookup(e, Kind::Output)?;
        // Recorded before its nested stores, so copy comes before its stores.
        let slot = self.infos.len();
        let label = self.current_label;
        let plan = match reg.build {
            Build::Output(f) => f(e, self)?,
            Build::Buffered(f) => (self.buffered)(e, self, reg.name, f)?,
            Build::Either { writer, .. } if e.elements_named("buffer").next().is_some() => {
                (self.buffered)(e, self, reg.name, writer)?
            }
            Build::Either { output, .. } => output(e, self)?,
            _ => return Err(e.error(format!("{} cannot be used in {}", reg.name, e.header()))),
        };
        e.warn_unused();
        let key = self.record_plugin(e, Category::Output, plan.id(), label)?;
        let rec = self.infos.pop();
        if let Some(rec) = rec {
            self.infos.insert(slot.min(self.infos.len()), rec);
        }
        Ok(Box::new(Keyed { key, inner: plan }))
    }

    /// Builds the writer of a `<secondary>` for a primary of type `primary` whose buffer
    /// is `primary_buffer` (fluentd v1: without `@type` the secondary is the primary's
    /// type).
    pub fn secondary(
        &mut self,
        s: &Element,
        primary: &str,
        primary_buffer: &BufferConf,
    ) -> Result<Box<dyn WriterPlan>, ConfigError> {
        let reg = match s.plugin_type() {
            Some(_) => self.lookup(s, Kind::Secondary)?,
            None => self
                .table
                .iter()
                .find(|r| r.named(primary) && r.fits(Kind::Secondary))
                .ok_or_else(|| s.error(format!("<secondary> has no @type and the primary's type '{primary}' cannot be a secondary; spate supports secondary types: {}", self.supported(Kind::Secondary).join(", "))))?,
        };
        let (Build::Buffered(f) | Build::SecondaryOnly(f) | Build::Either { writer: f, .. }) = reg.build else {
            return Err(s.error(format!("{} cannot be a <secondary>", reg.name)));
        };
        if s.elements_named("buffer").next().is_some() {
            return Err(s.error("<secondary> cannot have its own <buffer>: it writes the primary's chunks"));
        }
        let mut setup = WriterSetup { secondary: Some(primary_buffer.clone()), buffer: None };
        let w = f(s, self, &mut setup)?;
        s.warn_unused();
        Ok(w)
    }
}

/// The plugins in `table` that fit `kind`, names sorted.
pub fn supported(table: &[Registration], kind: Kind) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = table.iter().filter(|r| r.fits(kind)).map(|r| r.name).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// An output plan with its reuse key: on a reload, [`ShardCtx::build_output`] hands
/// back the running instance when the key (its `@id` and its section's text) is
/// unchanged.
#[derive(Debug)]
struct Keyed {
    key: String,
    inner: Box<dyn OutputPlan>,
}

impl OutputPlan for Keyed {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
    fn describe(&self, labels: &[String]) -> String {
        self.inner.describe(labels)
    }
    fn build(&self, ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        self.inner.build(ctx)
    }
    fn reuse_key(&self) -> Option<&str> {
        Some(&self.key)
    }
}

/// Handed to a buffered output's writer builder: reads the `<buffer>` section with the
/// plugin's own defaults (chunk keys, a default file path, timekey).
pub struct WriterSetup {
    /// `Some(primary's buffer)` when building a `<secondary>`.
    secondary: Option<BufferConf>,
    buffer: Option<BufferConf>,
}

impl WriterSetup {
    /// A setup for a primary output (the `<match>` itself).
    pub fn primary() -> Self {
        WriterSetup { secondary: None, buffer: None }
    }

    /// When the writer is being built for `<secondary>`: the primary's buffer (the
    /// secondary writes the primary's chunks and has no buffer of its own).
    pub fn primary_buffer(&self) -> Option<&BufferConf> {
        self.secondary.as_ref()
    }

    /// Reads `e`'s `<buffer>` (plus fluentd v0.12's flat buffer parameters) with this
    /// plugin's defaults. Returns `None` for a secondary.
    pub fn buffer(&mut self, e: &Element, defaults: &BufferDefaults<'_>) -> Result<Option<BufferConf>, ConfigError> {
        if self.secondary.is_some() {
            return Ok(None);
        }
        let conf = crate::buffer::conf::from_output(e, defaults)?;
        self.buffer = Some(conf.clone());
        Ok(Some(conf))
    }

    /// The buffer the builder read, if it called [`WriterSetup::buffer`].
    pub fn take_buffer(&mut self) -> Option<BufferConf> {
        self.buffer.take()
    }
}

// ---------------------------------------------------------------------------------------
// Shard time.

/// What a plugin instance may use of its shard. One per shard; shard-local.
pub struct ShardCtx {
    pub shard: usize,
    pub workers: usize,
    pub hostname: Arc<str>,
    /// The shard's group commit (file buffers write through it; inputs wait on it
    /// before acking).
    pub syncer: Rc<Syncer>,
    /// Every output built on this shard (including `<store>`s), for start, flush and
    /// shutdown.
    outputs: RefCell<Vec<Rc<dyn Output>>>,
    /// Outputs built with a reuse key, with the outputs built inside them (stores).
    keyed: RefCell<Vec<KeyedOutput>>,
    /// During a reload: the previous generation's keyed outputs and all its outputs.
    previous: RefCell<Vec<KeyedOutput>>,
    previous_all: RefCell<Vec<Rc<dyn Output>>>,
    /// How readers reach every shard's metrics (`None` in tests that build shards by
    /// hand).
    pub hub: Option<Arc<crate::metrics::hub::Hub>>,
    /// The `@ERROR` label and the shard's router, when the configuration has that label
    /// (weak: the router owns the outputs that hold this context).
    error_route: RefCell<Option<(usize, std::rc::Weak<dyn Emitter>)>>,
    /// The shard's router (weak, as above), for plugins that emit events of their own
    /// from a timer (flowcounter).
    router: RefCell<Option<std::rc::Weak<dyn Emitter>>>,
}

/// An output built from a keyed plan and the outputs built inside it.
type KeyedOutput = (String, Rc<dyn Output>, Vec<Rc<dyn Output>>);

impl ShardCtx {
    pub fn new(shard: usize, workers: usize, hostname: &str) -> Rc<Self> {
        Self::with_hub(shard, workers, hostname, None)
    }

    pub fn with_hub(
        shard: usize,
        workers: usize,
        hostname: &str,
        hub: Option<Arc<crate::metrics::hub::Hub>>,
    ) -> Rc<Self> {
        Rc::new(ShardCtx {
            shard,
            workers,
            hostname: Arc::from(hostname),
            syncer: Rc::new(Syncer::for_shard(shard as u32)),
            outputs: RefCell::new(Vec::new()),
            keyed: RefCell::new(Vec::new()),
            previous: RefCell::new(Vec::new()),
            previous_all: RefCell::new(Vec::new()),
            hub,
            error_route: RefCell::new(None),
            router: RefCell::new(None),
        })
    }

    /// Where error events go (fluentd's `router.emit_error_event`): the `@ERROR` label.
    pub fn set_error_route(&self, label: usize, router: std::rc::Weak<dyn Emitter>) {
        *self.error_route.borrow_mut() = Some((label, router));
    }

    /// The router (its reload-following slot) plugins emit their own events through.
    pub fn set_router(&self, router: std::rc::Weak<dyn Emitter>) {
        *self.router.borrow_mut() = Some(router);
    }

    /// Emits `batch` into `label` (0: the root) as fluentd's `router.emit` from a
    /// plugin; None before the router exists (or after it is gone).
    pub fn emit_to(&self, label: usize, batch: EventBatch) -> Option<Result<(), EmitError>> {
        let r = self.router.borrow().clone()?.upgrade()?;
        Some(r.emit(label, batch))
    }

    /// The configuration has no `@ERROR` label (any more: a reload removed it).
    pub fn clear_error_route(&self) {
        *self.error_route.borrow_mut() = None;
    }

    /// Emits error events into `@ERROR`. `None` when the configuration has no such label
    /// (the caller logs and counts them instead, as fluentd dumps them to its log).
    pub fn emit_error(&self, batch: EventBatch) -> Option<Result<(), EmitError>> {
        let (label, router) = self.error_route.borrow().clone()?;
        let router = router.upgrade()?;
        Some(router.emit(label, batch))
    }

    /// [`ShardCtx::emit_error`] of one event: `record` (a msgpack map) at `time` under
    /// `tag` (fluentd's `router.emit_error_event(tag, time, record, error)`).
    pub fn emit_error_record(
        &self,
        tag: &[u8],
        time: spate_protocol::EventTime,
        record: &[u8],
    ) -> Option<Result<(), EmitError>> {
        if !self.has_error_route() {
            return None;
        }
        let mut entries = Vec::with_capacity(record.len() + 16);
        spate_protocol::encode::raw::array_header(&mut entries, 2);
        spate_protocol::encode::raw::event_time(&mut entries, time);
        entries.extend_from_slice(record);
        let batch = EventBatch {
            tag: bytes::Bytes::copy_from_slice(tag),
            wire_len: entries.len(),
            entries: bytes::Bytes::from(entries),
            format: spate_protocol::EntriesFormat::Packed,
            count: 1,
            invalid: 0,
            mode: spate_protocol::Mode::PackedForward,
            option: Default::default(),
        };
        self.emit_error(batch)
    }

    /// Whether an `@ERROR` label receives error events.
    pub fn has_error_route(&self) -> bool {
        self.error_route.borrow().is_some()
    }

    /// Builds an output from its plan and remembers it. During a reload, an output
    /// whose plan has the same reuse key as one of the previous generation is that
    /// running instance (with the outputs nested in it).
    pub fn build_output(self: &Rc<Self>, plan: &dyn OutputPlan) -> Result<Rc<dyn Output>, BuildError> {
        if let Some(key) = plan.reuse_key() {
            let found = {
                let mut prev = self.previous.borrow_mut();
                prev.iter().position(|(k, _, _)| k == key).map(|i| prev.swap_remove(i))
            };
            if let Some((k, o, nested)) = found {
                let mut outs = self.outputs.borrow_mut();
                outs.extend(nested.iter().cloned());
                outs.push(o.clone());
                self.keyed.borrow_mut().push((k, o.clone(), nested));
                return Ok(o);
            }
        }
        let start = self.outputs.borrow().len();
        let o = plan.build(self)?;
        let nested = self.outputs.borrow().get(start..).map(<[_]>::to_vec).unwrap_or_default();
        self.outputs.borrow_mut().push(o.clone());
        if let Some(key) = plan.reuse_key() {
            self.keyed.borrow_mut().push((key.to_string(), o.clone(), nested));
        }
        Ok(o)
    }

    /// Every output built on this shard, in build order.
    pub fn outputs(&self) -> Vec<Rc<dyn Output>> {
        self.outputs.borrow().clone()
    }

    /// Starts building a new generation (reload): the current outputs become the
    /// previous ones, which [`ShardCtx::build_output`] reuses by key and buffered
    /// outputs may take buffers from ([`ShardCtx::previous_outputs`]).
    pub fn begin_generation(&self) {
        *self.previous.borrow_mut() = std::mem::take(&mut *self.keyed.borrow_mut());
        *self.previous_all.borrow_mut() = std::mem::take(&mut *self.outputs.borrow_mut());
    }

    /// The previous generation's outputs (during a reload).
    pub fn previous_outputs(&self) -> Vec<Rc<dyn Output>> {
        self.previous_all.borrow().clone()
    }

    /// Ends a reload: the previous outputs the new generation does not use, to be shut
    /// down (or retired, when a new output took their buffer).
    pub fn end_generation(&self) -> Vec<Rc<dyn Output>> {
        self.previous.borrow_mut().clear();
        let now = self.outputs.borrow();
        std::mem::take(&mut *self.previous_all.borrow_mut())
            .into_iter()
            .filter(|o| !now.iter().any(|n| Rc::ptr_eq(n, o)))
            .collect()
    }

    /// Undoes [`ShardCtx::begin_generation`] when building the new generation failed:
    /// the previous outputs are current again.
    pub fn abort_generation(&self) {
        let prev_all = std::mem::take(&mut *self.previous_all.borrow_mut());
        *self.outputs.borrow_mut() = prev_all;
        let mut keyed = self.keyed.borrow_mut();
        keyed.clear();
        keyed.append(&mut self.previous.borrow_mut());
    }
}

/// Why a plugin could not be built on a shard (the plan was valid, the machine said no).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Buffer(#[from] BufferError),
    #[error("{plugin}: {source}")]
    Io { plugin: String, source: std::io::Error },
}

// ---------------------------------------------------------------------------------------
// Routing: what inputs, filters and outputs emit into.

/// Why an output did not accept a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("{id}: {source}")]
    Buffer { id: String, source: BufferError },
    #[error("{id}: write failed: {reason}")]
    Write { id: String, reason: String },
}

impl EmitError {
    /// A buffer with `overflow_action block` is full: the input should wait and retry.
    pub fn is_block(&self) -> bool {
        matches!(self, EmitError::Buffer { source, .. } if source.is_block())
    }
}

/// The router, as plugins see it: inputs emit their batches into a label (0 is the top
/// level); outputs and filters that re-route (relabel, rewrite_tag_filter, the `@ERROR`
/// label) emit through it too. `Ok` means every output that should hold the events
/// accepted them.
pub trait Emitter {
    fn emit(&self, label: usize, batch: EventBatch) -> Result<(), EmitError>;
}

// ---------------------------------------------------------------------------------------
// Inputs.

/// An input's validated configuration.
pub trait InputPlan: Send + Sync + std::fmt::Debug {
    fn id(&self) -> &str;
    fn type_name(&self) -> &'static str;
    /// The label its events go to (0: the top level).
    fn label(&self) -> usize;
    /// What `--dry-run` prints after the type (address, tag, rate...).
    fn describe(&self) -> String;
    /// The input on one shard; `emitter` is that shard's router.
    fn build(&self, ctx: &Rc<ShardCtx>, emitter: Rc<dyn Emitter>) -> Result<Rc<dyn Input>, BuildError>;
}

/// An address an input listens on (reported once every shard is up).
#[derive(Debug, Clone)]
pub struct Listening {
    pub addr: SocketAddr,
    /// The input type, for the log line ("listening on ... (forward)").
    pub what: &'static str,
}

/// An input on one shard.
pub trait Input: Any {
    /// Binds its sockets and starts its tasks on the current executor. `first` is true
    /// on one shard only (for things that exist once, such as a UDP heartbeat socket).
    fn start(self: Rc<Self>, first: bool) -> std::io::Result<Vec<Listening>>;
    /// Stops accepting; lets connections finish what they are reading for `grace`.
    fn stop(&self, grace: Duration) -> LocalFuture<'_, ()>;
    /// Reports the input's own counters (what it emitted is counted for it).
    fn visit_metrics(&self, _m: &mut dyn Visitor) {}
    /// For tests and metrics readers that know the concrete type.
    fn as_any(&self) -> &dyn Any;
}

// ---------------------------------------------------------------------------------------
// Filters.

/// A filter's validated configuration.
pub trait FilterPlan: Send + Sync + std::fmt::Debug {
    fn id(&self) -> &str;
    fn type_name(&self) -> &'static str;
    /// Extra text for `--dry-run` (may be empty).
    fn describe(&self) -> String {
        String::new()
    }
    fn build(&self, ctx: &Rc<ShardCtx>) -> Result<Box<dyn Filter>, BuildError>;
}

/// A filter on one shard: takes a batch and returns the batch to pass on (the same one
/// when nothing changed, so pass-through stays zero-copy), or `None` when every event
/// was dropped. `emitter` lets a filter send events elsewhere (the `@ERROR` label).
pub trait Filter {
    fn filter(&self, batch: EventBatch, emitter: &dyn Emitter) -> Option<EventBatch>;
    /// Reports the filter's own counters (events in and out are counted for it).
    fn visit_metrics(&self, _m: &mut dyn Visitor) {}
    /// Starts the filter's own tasks (timers) on the shard's executor; `emitter` is the
    /// shard's router. Most filters have none.
    fn start(self: Rc<Self>, _emitter: Rc<dyn Emitter>) {}
    /// At shutdown, after the inputs stopped and before the outputs flush: a filter that
    /// holds events (concat) emits them.
    fn shutdown(&self, _emitter: &dyn Emitter) {}
}

// ---------------------------------------------------------------------------------------
// Outputs.

pub use crate::metrics::output::OutputMetrics;

/// An output's validated configuration.
pub trait OutputPlan: Send + Sync + std::fmt::Debug {
    fn id(&self) -> &str;
    fn type_name(&self) -> &'static str;
    /// What `--dry-run` prints for this output; `labels` names labels by index.
    fn describe(&self, labels: &[String]) -> String;
    /// The output on one shard. Nested outputs (copy's stores) are built through
    /// [`ShardCtx::build_output`] so the shard knows them all.
    fn build(&self, ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError>;
    /// What identifies this output across a reload (set by [`PlanCtx::output`]).
    fn reuse_key(&self) -> Option<&str> {
        None
    }
}

/// An output on one shard. `emit` is synchronous: it accepts the batch (stored in the
/// output's buffer, or written, for unbuffered outputs) or rejects it; inputs ack only
/// what every matched output accepted.
pub trait Output: Any {
    /// The plugin id (`@id`, or `type#n`).
    fn id(&self) -> &str;
    fn type_name(&self) -> &'static str;
    fn metrics(&self) -> &OutputMetrics;
    fn emit(&self, batch: &EventBatch, emitter: &dyn Emitter) -> Result<(), EmitError>;
    /// Starts background tasks (flushers) on the current executor.
    fn start(self: Rc<Self>) {}
    /// Flush buffers now (SIGUSR1).
    fn flush_now(&self) {}
    /// Stops accepting, flushes what it should, returns once done or `deadline` passed.
    fn shutdown(&self, _deadline: Instant) -> LocalFuture<'_, ()> {
        Box::pin(async {})
    }
    /// Whether a blocked input may retry a batch of `bytes` (buffer has room again).
    fn has_room(&self, _bytes: usize) -> bool {
        true
    }
    /// Reports the output's counters (default: the common [`OutputMetrics`]).
    fn visit_metrics(&self, m: &mut dyn Visitor) {
        self.metrics().visit(m, false);
    }
    /// Reload: a new output took over this one's buffer; stop flushing after the write
    /// in progress and leave the buffer as it is.
    fn retire(&self) {}
    fn as_any(&self) -> &dyn Any;
}

// ---------------------------------------------------------------------------------------
// Buffered-output writers.

/// How writing a chunk failed, which decides what the buffered output does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Try again later, with the chunk's retry policy (backoff, `retry_timeout`,
    /// `<secondary>`).
    #[error("{0}")]
    Retry(String),
    /// Resend now without counting a retry (fluentd's rollback: out_forward's ack
    /// timeout detached the server).
    #[error("rollback: {0}")]
    Rollback(String),
    /// The chunk can never be written (fluentd's UnrecoverableError): straight to
    /// `<secondary>` when there is one, else dropped with an error line.
    #[error("unrecoverable: {0}")]
    Fatal(String),
    /// Part of the chunk was confirmed (a bulk API answering per document): `rejected`
    /// holds the entries that can never be written (to the error path: the `@ERROR`
    /// label, else `<secondary>`, else logged and dropped) and `retry` the entries to
    /// try again with the chunk's retry policy; the chunk keeps only those. Both are
    /// packed `[time, record]` entries of the chunk.
    #[error("{reason}")]
    Partial { retry: Vec<u8>, retry_count: u32, rejected: Vec<u8>, rejected_count: u32, reason: String },
}

/// Record-field chunk keys of a chunk, by name (for `${key}` placeholders).
pub type ChunkVars = [(String, String)];

/// A writer's validated configuration.
pub trait WriterPlan: Send + Sync + std::fmt::Debug {
    fn type_name(&self) -> &'static str;
    /// The destination, for `--dry-run`.
    fn describe(&self) -> String;
    fn build(&self, id: &str, ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError>;
    /// Whether several chunks may be written at once (`flush_thread_count` > 1): the
    /// writer keeps no state between a write's awaits that another write could upset.
    fn concurrent_writes(&self) -> bool {
        false
    }
}

/// Where a buffered output's chunks go. Called with one chunk at a time, its data
/// loaded, unless its plan allows [`WriterPlan::concurrent_writes`] (then with up to
/// `flush_thread_count` chunks at once); returns the bytes written once the destination
/// confirmed them.
pub trait Writer {
    fn type_name(&self) -> &'static str;
    fn write<'a>(&'a self, chunk: &'a Chunk, vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>>;
    /// Starts the writer's own tasks (heartbeats).
    fn start(self: Rc<Self>) {}
    /// Stops them (shutdown).
    fn stop(&self) {}
    fn as_any(&self) -> &dyn Any;
}

/// Hands a batch to an output and counts it in the output's metrics (fluentd's
/// emit_records / emit_count): the router and copy deliver through this.
#[inline]
pub fn emit_counted(o: &dyn Output, batch: &EventBatch, emitter: &dyn Emitter) -> Result<(), EmitError> {
    if crate::log::emitting_events() {
        // This output carries spate's own log events: its lines must not become events.
        crate::log::mark_sink(o.id());
    }
    let r = o.emit(batch, emitter);
    let m = o.metrics();
    match r {
        Ok(()) => {
            OutputMetrics::add(&m.emit_records, batch.count as u64);
            OutputMetrics::add(&m.emit_size, batch.entries.len() as u64);
            OutputMetrics::add(&m.emit_count, 1);
        }
        Err(_) => OutputMetrics::add(&m.emit_errors, 1),
    }
    r
}
