//! From a parsed configuration to running plugins, in two steps:
//! [`plan`] validates the whole config once (types, parameters, labels, patterns,
//! server addresses) into an immutable, `Send` [`Plan`]; [`build_shard`] instantiates
//! one shard's router, outputs and inputs from it. Errors name file:line and, for an
//! unknown plugin type, the types spate supports.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::time::Duration;

use crate::buffer::{BufferConf, FlushMode, OverflowAction, RetryType, TimeKey};
use crate::config::{ConfigError, Element};
use crate::filter::grep::{GrepConf, GrepFilter};
use crate::filter::record_transformer::{RecordTransformer, RecordTransformerConf};
use crate::filter::stdout::StdoutFilter;
use crate::filter::Filter;
use crate::input::forward::{ForwardInConf, ForwardInput};
use crate::input::sample::{SampleConf, SampleInput};
use crate::output::buffered::{BufferedOutput, Writer};
use crate::output::file::{FileOutConf, FileWriter};
use crate::output::forward::{ForwardConf, ForwardSender, HeartbeatType, ServerConf};
use crate::output::null::NullOutput;
use crate::output::secondary_file::SecondaryFile;
use crate::output::stdout::StdoutOutput;
use crate::output::Output;
use crate::router::{Label, MatchPattern, Router, Rule, Target};

pub const INPUT_TYPES: &[&str] = &["dummy", "forward", "sample"];
pub const OUTPUT_TYPES: &[&str] = &["copy", "file", "forward", "null", "relabel", "stdout"];
pub const SECONDARY_TYPES: &[&str] = &["file", "forward", "secondary_file"];
pub const FILTER_TYPES: &[&str] = &["grep", "record_transformer", "stdout"];

/// Which shards a plugin runs on (`<worker N>` / `<worker N-M>`); `None` = all.
pub type Workers = Option<(u32, u32)>;

fn on_shard(w: Workers, shard: usize) -> bool {
    w.is_none_or(|(a, b)| (a as usize..=b as usize).contains(&shard))
}

#[derive(Debug, Clone)]
pub enum SourcePlan {
    Forward(Box<ForwardInConf>),
    Sample(SampleConf),
}

#[derive(Debug, Clone)]
pub enum FilterPlan {
    Grep(String, GrepConf),
    RecordTransformer(String, RecordTransformerConf),
    Stdout(String),
}

#[derive(Debug, Clone)]
pub enum OutputPlan {
    Null(String),
    Stdout(String),
    Buffered(Box<BufferedPlan>),
    Copy(Vec<OutputPlan>),
    Relabel(usize),
}

/// What a buffered output writes chunks with.
#[derive(Debug, Clone)]
pub enum WriterPlan {
    Forward(ForwardConf),
    File(FileOutConf),
    SecondaryFile(SecondaryFile),
}

impl WriterPlan {
    fn build(&self, id: &str) -> Writer {
        match self {
            WriterPlan::Forward(c) => Writer::Forward(ForwardSender::new(id.to_string(), c.clone())),
            WriterPlan::File(c) => Writer::File(FileWriter::new(id.to_string(), c.clone())),
            WriterPlan::SecondaryFile(c) => Writer::SecondaryFile(c.clone()),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            WriterPlan::Forward(_) => "forward",
            WriterPlan::File(_) => "file",
            WriterPlan::SecondaryFile(_) => "secondary_file",
        }
    }
}

/// A buffered output: its writer, `<buffer>` and `<secondary>`.
#[derive(Debug, Clone)]
pub struct BufferedPlan {
    pub id: String,
    pub writer: WriterPlan,
    pub buffer: BufferConf,
    pub secondary: Option<WriterPlan>,
}

#[derive(Debug, Clone)]
pub enum RulePlan {
    Filter { pattern: MatchPattern, filter: FilterPlan, workers: Workers, at: String },
    Match { pattern: MatchPattern, output: OutputPlan, workers: Workers, at: String },
}

#[derive(Debug, Clone)]
pub struct LabelPlan {
    pub name: String,
    pub rules: Vec<RulePlan>,
}

/// The validated configuration, shared read-only by every shard.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workers: usize,
    pub log_level: Option<crate::log::Level>,
    pub sources: Vec<(SourcePlan, Workers, String)>,
    pub labels: Vec<LabelPlan>,
    pub shutdown_timeout: Duration,
}

/// One shard's plugins.
pub struct ShardGraph {
    pub router: Rc<Router>,
    pub inputs: Vec<Rc<ForwardInput>>,
    pub samples: Vec<Rc<SampleInput>>,
}

struct Ctx {
    /// File-buffer paths in use (two outputs may not share one).
    paths: Vec<std::path::PathBuf>,
    labels: HashMap<String, usize>,
    counters: HashMap<&'static str, usize>,
    hostname: String,
}

impl Ctx {
    fn id(&mut self, e: &Element, ty: &'static str) -> String {
        if let Some(id) = e.str("@id") {
            return id.to_string();
        }
        let n = self.counters.entry(ty).or_insert(0);
        *n += 1;
        format!("{ty}#{}", *n - 1)
    }
}

impl Ctx {
    fn check_path(&mut self, e: &Element, b: &BufferConf) -> Result<(), ConfigError> {
        if let Some(p) = &b.path {
            if self.paths.contains(p) {
                return Err(err(e, format!("Other 'file' buffer already uses the same buffer path {}", p.display())));
            }
            self.paths.push(p.clone());
        }
        Ok(())
    }
}

fn err(e: &Element, msg: String) -> ConfigError {
    ConfigError::at(&e.pos, msg)
}

/// Warns about parameters nothing read (fluentd warns too), with file:line.
pub fn warn_unused(e: &Element) {
    for a in e.unused_attrs() {
        crate::warn!(
            "{}: parameter '{}' in <{}{}{}> is not used.",
            a.pos,
            a.key,
            e.name,
            if e.arg.is_empty() { "" } else { " " },
            e.arg
        );
    }
}

/// Validates the configuration. `workers_override` is `--workers`.
pub fn plan(root: &Element, workers_override: Option<usize>, hostname: &str) -> Result<Plan, ConfigError> {
    let mut ctx =
        Ctx { paths: Vec::new(), labels: HashMap::new(), counters: HashMap::new(), hostname: hostname.to_string() };
    let mut workers = None;
    let mut log_level = None;
    // Labels first, so @label references can be checked in any order.
    let mut label_elems: Vec<(String, &Element, Workers)> = vec![(String::new(), root, None)];
    collect_labels(root, None, &mut label_elems)?;
    for (i, (name, e, _)) in label_elems.iter().enumerate().skip(1) {
        if ctx.labels.insert(name.clone(), i).is_some() {
            return Err(err(e, format!("label {name} is defined twice")));
        }
    }
    for s in root.elements_named("system") {
        if let Some(w) = s.int("workers")? {
            if !(1..=1024).contains(&w) {
                return Err(err(s, format!("workers must be between 1 and 1024, got {w}")));
            }
            workers = Some(w as usize);
        }
        if let Some(l) = s.str("log_level") {
            log_level = Some(crate::log::Level::parse(l).ok_or_else(|| {
                err(s, format!("unknown log_level {l:?}; expected trace, debug, info, warn, error or fatal"))
            })?);
        }
        // Other <system> parameters (root_dir, rpc_endpoint, ...) do not apply to spate.
        s.mark_all_used();
    }
    let workers = workers_override.or(workers).unwrap_or_else(|| crate::runtime::allowed_cpus().len());

    let mut sources = Vec::new();
    collect_sources(root, None, workers, &mut ctx, &mut sources)?;

    let mut labels = Vec::new();
    for (name, e, w) in &label_elems {
        let mut rules = Vec::new();
        collect_rules(e, *w, workers, &mut ctx, &mut rules, name.is_empty())?;
        labels.push(LabelPlan { name: name.clone(), rules });
    }
    for e in root.elements.iter() {
        if !matches!(e.name.as_str(), "source" | "match" | "filter" | "label" | "system" | "worker") {
            return Err(err(
                e,
                format!(
                    "unknown directive <{}>; expected <source>, <match>, <filter>, <label>, <system> or <worker>",
                    e.name
                ),
            ));
        }
    }
    Ok(Plan { workers, log_level, sources, labels, shutdown_timeout: Duration::from_secs(30) })
}

fn parse_workers(e: &Element, workers: usize) -> Result<Workers, ConfigError> {
    let arg = e.arg.trim();
    let bad = || err(e, format!("<worker {arg}>: expected a worker id N or a range N-M"));
    let (a, b) = match arg.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u32>().map_err(|_| bad())?, b.trim().parse::<u32>().map_err(|_| bad())?),
        None => {
            let n = arg.parse::<u32>().map_err(|_| bad())?;
            (n, n)
        }
    };
    if a > b || b as usize >= workers {
        return Err(err(
            e,
            format!("<worker {arg}>: worker ids must be within 0..{} (workers {workers})", workers.saturating_sub(1)),
        ));
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
                    return Err(err(c, "<label> needs a name, e.g. <label @OUTPUT>".into()));
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
    workers: usize,
    ctx: &mut Ctx,
    out: &mut Vec<(SourcePlan, Workers, String)>,
) -> Result<(), ConfigError> {
    for c in &e.elements {
        match c.name.as_str() {
            "source" => {
                let at = c.pos.to_string();
                out.push((source(c, ctx)?, w, at));
            }
            "worker" => {
                let w2 = parse_workers(c, workers)?;
                collect_sources(c, w2, workers, ctx, out)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn collect_rules(
    e: &Element,
    w: Workers,
    workers: usize,
    ctx: &mut Ctx,
    out: &mut Vec<RulePlan>,
    top: bool,
) -> Result<(), ConfigError> {
    for c in &e.elements {
        match c.name.as_str() {
            "filter" => {
                let pattern = MatchPattern::parse(&c.arg).map_err(|x| err(c, x.to_string()))?;
                let filter = filter(c, ctx)?;
                out.push(RulePlan::Filter { pattern, filter, workers: w, at: c.pos.to_string() });
            }
            "match" => {
                let pattern = MatchPattern::parse(&c.arg).map_err(|x| err(c, x.to_string()))?;
                let output = output(c, ctx)?;
                out.push(RulePlan::Match { pattern, output, workers: w, at: c.pos.to_string() });
            }
            "worker" if top => {
                let w2 = parse_workers(c, workers)?;
                collect_rules(c, w2, workers, ctx, out, true)?;
            }
            "source" | "label" | "system" | "worker" => {}
            other if !top => {
                return Err(err(c, format!("<{other}> is not allowed inside <label>; expected <filter> or <match>")))
            }
            _ => {}
        }
    }
    Ok(())
}

fn plugin_type<'a>(e: &'a Element, kind: &str, supported: &[&str]) -> Result<&'a str, ConfigError> {
    e.plugin_type().ok_or_else(|| {
        err(e, format!("<{}> has no @type; spate supports {kind} types: {}", e.name, supported.join(", ")))
    })
}

fn unknown(e: &Element, kind: &str, ty: &str, supported: &[&str]) -> ConfigError {
    err(
        e,
        format!(
            "unknown {kind} plugin type '{ty}' in <{}{}{}>; spate supports: {}",
            e.name,
            if e.arg.is_empty() { "" } else { " " },
            e.arg,
            supported.join(", ")
        ),
    )
}

fn label_ref(e: &Element, ctx: &Ctx) -> Result<Option<usize>, ConfigError> {
    match e.str("@label") {
        None => Ok(None),
        Some(l) => ctx
            .labels
            .get(l)
            .copied()
            .map(Some)
            .ok_or_else(|| err(e, format!("@label {l} refers to no <label {l}> section"))),
    }
}

fn source(e: &Element, ctx: &mut Ctx) -> Result<SourcePlan, ConfigError> {
    let ty = plugin_type(e, "input", INPUT_TYPES)?;
    let _ = e.str("@log_level");
    let plan = match ty {
        "forward" => {
            let d = ForwardInConf::default();
            let mut c = ForwardInConf { id: ctx.id(e, "forward"), ..d.clone() };
            c.bind = e.str("bind").unwrap_or(&d.bind).to_string();
            if let Some(p) = e.int("port")? {
                c.port = u16::try_from(p).map_err(|_| err(e, format!("port {p} is out of range (0-65535)")))?;
            }
            c.backlog = e.int("backlog")?.map(|b| b as i32);
            c.linger_timeout = e.time("linger_timeout")?.unwrap_or(d.linger_timeout);
            c.resolve_hostname = e.bool("resolve_hostname")?.unwrap_or(false);
            c.deny_keepalive = e.bool("deny_keepalive")?.unwrap_or(false);
            c.send_keepalive_packet = e.bool("send_keepalive_packet")?.unwrap_or(false);
            c.chunk_size_limit = e.size("chunk_size_limit")?.map(|v| v as usize);
            c.chunk_size_warn_limit = e.size("chunk_size_warn_limit")?.map(|v| v as usize);
            c.decompression_size_limit =
                e.size("decompression_size_limit")?.map_or(d.decompression_size_limit, |v| v as usize);
            c.skip_invalid_event = e.bool("skip_invalid_event")?.unwrap_or(true);
            c.source_address_key = e.str("source_address_key").map(str::to_string);
            c.source_hostname_key = e.str("source_hostname_key").map(str::to_string);
            c.tag = e.str("tag").map(str::to_string);
            c.add_tag_prefix = e.str("add_tag_prefix").map(str::to_string);
            if let Some(m) = e.int("max_connections")? {
                c.max_connections = usize::try_from(m)
                    .ok()
                    .filter(|m| *m > 0)
                    .ok_or_else(|| err(e, format!("max_connections must be at least 1, got {m}")))?;
            }
            c.idle_timeout = e.time("idle_timeout")?.filter(|d| !d.is_zero());
            c.label = label_ref(e, ctx)?.unwrap_or(0);
            if c.addr().is_err() {
                return Err(err(
                    e,
                    format!("bind {:?} is not an IP address (spate does not resolve bind names)", c.bind),
                ));
            }
            if let Some(h) = e.time("handshake_timeout")? {
                if h.is_zero() {
                    return Err(err(e, "handshake_timeout must be greater than 0".into()));
                }
                c.handshake_timeout = h;
            }
            for t in e.elements_named("transport") {
                if let Some(l) = t.time("linger_timeout")? {
                    c.linger_timeout = l;
                }
                // server_tls reports unused parameters of a tls section itself.
                c.tls = crate::tls::server_tls(t)?;
                if c.tls.is_none() {
                    warn_unused(t);
                }
            }
            if let Some(s) = e.elements_named("security").next() {
                c.security = Some(crate::security::server_from_element(s)?);
            }
            SourcePlan::Forward(Box::new(c))
        }
        "sample" | "dummy" => {
            let id = ctx.id(e, "sample");
            let tag = e.str("tag").ok_or_else(|| err(e, "in_sample needs tag".into()))?.to_string();
            let rate = e.int("rate")?.unwrap_or(1);
            let size = e.int("size")?.unwrap_or(1);
            if !(0..=u32::MAX as i64).contains(&rate) || !(1..=1_000_000).contains(&size) {
                return Err(err(
                    e,
                    format!(
                        "rate must be within 0..{} and size within 1..1000000 (got rate {rate}, size {size})",
                        u32::MAX
                    ),
                ));
            }
            let sample = e.str("sample").or_else(|| e.str("dummy")).unwrap_or(r#"[{"message":"sample"}]"#);
            let samples = crate::input::sample::parse_samples(sample).map_err(|m| err(e, m))?;
            let _ = (e.bool("suspend")?, e.bool("reuse_record")?);
            SourcePlan::Sample(SampleConf {
                id,
                tag,
                rate: rate as u32,
                size: size as u32,
                auto_increment_key: e.str("auto_increment_key").map(str::to_string),
                samples,
                label: label_ref(e, ctx)?.unwrap_or(0),
            })
        }
        other => return Err(unknown(e, "input", other, INPUT_TYPES)),
    };
    warn_unused(e);
    Ok(plan)
}

fn filter(e: &Element, ctx: &mut Ctx) -> Result<FilterPlan, ConfigError> {
    let ty = plugin_type(e, "filter", FILTER_TYPES)?;
    let _ = e.str("@log_level");
    let plan = match ty {
        "grep" => {
            let id = ctx.id(e, "grep");
            let conf = crate::filter::grep::conf_from_element(e)?;
            GrepFilter::new(&conf).map_err(|x| err(e, x.to_string()))?;
            FilterPlan::Grep(id, conf)
        }
        "record_transformer" => {
            let id = ctx.id(e, "record_transformer");
            let conf = crate::filter::record_transformer::conf_from_element(e, &ctx.hostname)?;
            RecordTransformer::new(&conf).map_err(|x| err(e, x.to_string()))?;
            FilterPlan::RecordTransformer(id, conf)
        }
        "stdout" => {
            match e.str("output_type") {
                None | Some("json") => {}
                Some(o) => {
                    return Err(err(e, format!("filter_stdout output_type {o} is not supported yet; supported: json")))
                }
            }
            for f in e.elements_named("format") {
                match f.plugin_type() {
                    None | Some("stdout") | Some("json") => f.mark_all_used(),
                    Some(other) => {
                        return Err(err(
                            f,
                            format!(
                                "<format @type {other}> is not supported by filter_stdout yet; supported: stdout, json"
                            ),
                        ))
                    }
                }
            }
            FilterPlan::Stdout(ctx.id(e, "stdout"))
        }
        other => return Err(unknown(e, "filter", other, FILTER_TYPES)),
    };
    warn_unused(e);
    Ok(plan)
}

fn output(e: &Element, ctx: &mut Ctx) -> Result<OutputPlan, ConfigError> {
    let ty = plugin_type(e, "output", OUTPUT_TYPES)?;
    let _ = e.str("@log_level");
    let plan = match ty {
        "null" => {
            for b in e.elements_named("buffer") {
                b.mark_all_used();
            }
            OutputPlan::Null(ctx.id(e, "null"))
        }
        "stdout" => {
            match e.str("output_type") {
                None | Some("json") => {}
                Some(o) => {
                    return Err(err(e, format!("out_stdout output_type {o} is not supported yet; supported: json")))
                }
            }
            for f in e.elements_named("format") {
                match f.plugin_type() {
                    None | Some("stdout") | Some("json") => {}
                    Some(other) => {
                        return Err(err(
                            f,
                            format!(
                                "<format @type {other}> is not supported by out_stdout yet; supported: stdout, json"
                            ),
                        ))
                    }
                }
                f.mark_all_used();
            }
            for b in e.elements_named("buffer") {
                b.mark_all_used();
            }
            OutputPlan::Stdout(ctx.id(e, "stdout"))
        }
        "forward" => {
            let id = ctx.id(e, "forward");
            let writer = WriterPlan::Forward(forward_conf(e)?);
            let mut buffer = BufferConf::default();
            for b in e.elements_named("buffer") {
                buffer = buffer_conf(b, &["tag"], true)?;
            }
            v012_buffer_params(e, &mut buffer)?;
            ctx.check_path(e, &buffer)?;
            let secondary = secondary(e, buffer.timekey.is_some())?;
            OutputPlan::Buffered(Box::new(BufferedPlan { id, writer, buffer, secondary }))
        }
        "file" => {
            let id = ctx.id(e, "file");
            let path = e.str("path").ok_or_else(|| err(e, "out_file needs path".into()))?.to_string();
            let defaults = BufferDefaults {
                keys: &["time"],
                tag_required: false,
                file_path: Some(&path),
                timekey: Some(crate::output::file::DEFAULT_TIMEKEY),
            };
            let mut bufs = e.elements_named("buffer");
            let buffer = match bufs.next() {
                Some(b) => buffer_conf_with(b, &defaults)?,
                None => buffer_conf_with(
                    &Element::new("buffer".into(), "time".into(), Vec::new(), Vec::new(), e.pos.clone()),
                    &defaults,
                )?,
            };
            ctx.check_path(e, &buffer)?;
            let (timekey, zone) = match &buffer.timekey {
                Some(k) => (Some(k.secs), crate::format::Zone::Fixed(k.utc_offset)),
                None => (None, crate::format::Zone::Local),
            };
            let fc = crate::output::file::file_conf(e, timekey, zone, &ctx.hostname)?;
            let secondary = secondary(e, buffer.timekey.is_some())?;
            OutputPlan::Buffered(Box::new(BufferedPlan { id, writer: WriterPlan::File(fc), buffer, secondary }))
        }
        "copy" => {
            let _ = e.str("copy_mode");
            let mut stores = Vec::new();
            for s in e.elements_named("store") {
                let _ = s.bool("ignore_error")?;
                stores.push(output(s, ctx)?);
            }
            if stores.is_empty() {
                return Err(err(e, "@type copy needs at least one <store>".into()));
            }
            OutputPlan::Copy(stores)
        }
        "relabel" => match label_ref(e, ctx)? {
            Some(l) => OutputPlan::Relabel(l),
            None => return Err(err(e, "@type relabel needs @label".into())),
        },
        other => return Err(unknown(e, "output", other, OUTPUT_TYPES)),
    };
    warn_unused(e);
    Ok(plan)
}

fn forward_conf(e: &Element) -> Result<ForwardConf, ConfigError> {
    let d = ForwardConf::default();
    let mut c = ForwardConf {
        require_ack_response: e.bool("require_ack_response")?.unwrap_or(false),
        ack_response_timeout: e.time("ack_response_timeout")?.unwrap_or(d.ack_response_timeout),
        send_timeout: e.time("send_timeout")?.unwrap_or(d.send_timeout),
        connect_timeout: e.time("connect_timeout")?.unwrap_or(d.connect_timeout),
        time_as_integer: e.bool("time_as_integer")?.unwrap_or(false),
        ..d
    };
    match e.str("compress") {
        None | Some("text") => {}
        Some("gzip") => c.compress_gzip = true,
        Some(other) => return Err(err(e, format!("compress {other:?} is not supported; expected text or gzip"))),
    }
    // Settings that change what goes on the wire must not be silently ignored.
    c.tls = crate::tls::client_tls(e)?;
    let security = match e.elements_named("security").next() {
        Some(s) => {
            let host =
                s.str("self_hostname").ok_or_else(|| err(s, "<security> needs self_hostname".into()))?.to_string();
            let key = s.str("shared_key").unwrap_or("").to_string();
            warn_unused(s);
            Some((host, key))
        }
        None => None,
    };
    c.heartbeat_type = match e.str("heartbeat_type") {
        None | Some("transport") => HeartbeatType::Transport,
        Some("tcp") => {
            crate::warn!("{}: 'heartbeat_type tcp' is deprecated. use 'transport' instead.", e.pos);
            HeartbeatType::Transport
        }
        Some("none") => HeartbeatType::None,
        Some("udp") => HeartbeatType::Udp,
        Some(o) => {
            return Err(err(e, format!("heartbeat_type {o:?} is not supported; supported: transport, tcp, udp, none")))
        }
    };
    c.heartbeat_interval = e.time("heartbeat_interval")?.unwrap_or(c.heartbeat_interval);
    if c.heartbeat_interval.is_zero() {
        return Err(err(e, "heartbeat_interval must be greater than 0".into()));
    }
    c.phi_failure_detector = e.bool("phi_failure_detector")?.unwrap_or(true);
    c.phi_threshold = e.int("phi_threshold")?.map_or(c.phi_threshold, |v| v as f64);
    c.hard_timeout = e.time("hard_timeout")?.unwrap_or(c.hard_timeout);
    c.recover_wait = e.time("recover_wait")?.unwrap_or(c.recover_wait);
    c.keepalive = e.bool("keepalive")?.unwrap_or(false);
    c.keepalive_timeout = e.time("keepalive_timeout")?;
    if !c.keepalive && c.keepalive_timeout.is_some() {
        crate::warn!("{}: The value of keepalive_timeout is ignored. if you want to use keepalive, please add `keepalive true` to your conf.", e.pos);
    }
    c.expire_dns_cache = e.time("expire_dns_cache")?;
    c.dns_round_robin = e.bool("dns_round_robin")?.unwrap_or(false);
    if c.dns_round_robin && c.heartbeat_type == HeartbeatType::Udp {
        return Err(err(
            e,
            "forward output heartbeat type must be 'transport' or 'none' to use dns_round_robin option".into(),
        ));
    }
    for k in ["ignore_network_errors_at_startup", "verify_connection_at_startup", "read_interval_msec", "read_length"] {
        let _ = e.str(k);
    }
    for (i, s) in e.elements_named("server").enumerate() {
        let host = s.str("host").ok_or_else(|| err(s, "<server> needs host".into()))?.to_string();
        let port = match s.int("port")? {
            Some(p) => u16::try_from(p).map_err(|_| err(s, format!("port {p} is out of range")))?,
            None => 24224,
        };
        let weight = s.int("weight")?.unwrap_or(60).clamp(0, 1_000_000) as u32;
        let standby = s.bool("standby")?.unwrap_or(false);
        let name = s.str("name").map_or_else(|| format!("{host}:{port}"), str::to_string);
        let cred = match &security {
            Some((host, key)) => Some(crate::security::ClientCredentials {
                self_hostname: host.clone(),
                shared_key: s.str("shared_key").map_or_else(|| key.clone(), str::to_string),
                username: s.str("username").unwrap_or("").to_string(),
                password: s.str("password").unwrap_or("").to_string(),
            }),
            None => {
                if s.str("shared_key").is_some() || s.str("username").is_some() {
                    return Err(err(
                        s,
                        "<server> shared_key / username need a <security> section (self_hostname) in out_forward"
                            .into(),
                    ));
                }
                None
            }
        };
        let addrs: Vec<_> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|x| err(s, format!("cannot resolve host {host:?}: {x}")))?
            .collect();
        let _ = i;
        warn_unused(s);
        c.servers.push(ServerConf { name, host, port, weight, standby, addrs, cred });
    }
    if c.servers.is_empty() {
        return Err(err(e, "out_forward needs at least one <server>".into()));
    }
    Ok(c)
}

/// `<secondary>`: where chunks go when retries run out.
fn secondary(e: &Element, time_key: bool) -> Result<Option<WriterPlan>, ConfigError> {
    let mut it = e.elements_named("secondary");
    let Some(s) = it.next() else { return Ok(None) };
    if let Some(x) = it.next() {
        return Err(err(x, "only one <secondary> is allowed".into()));
    }
    let ty = plugin_type(s, "secondary", SECONDARY_TYPES)?;
    let w = match ty {
        "secondary_file" => {
            let c = crate::output::secondary_file::conf(s)?;
            if !time_key && (c.directory.contains('%') || c.basename.contains('%')) {
                return Err(err(
                    s,
                    "out_secondary_file: basename or directory has an incompatible placeholder, remove time formats, like `%Y%m%d`, from basename or directory".into(),
                ));
            }
            WriterPlan::SecondaryFile(c)
        }
        "file" => {
            // As a secondary, out_file writes the primary's chunks; its own path has no
            // time slice unless the placeholders are in it.
            let fc = crate::output::file::file_conf(s, None, crate::format::Zone::Local, &crate::config::hostname())?;
            warn_unused(s);
            WriterPlan::File(fc)
        }
        "forward" => {
            if s.elements_named("buffer").next().is_some() {
                return Err(err(s, "<secondary> cannot have its own <buffer>: it writes the primary's chunks".into()));
            }
            let c = forward_conf(s)?;
            warn_unused(s);
            WriterPlan::Forward(c)
        }
        other => return Err(unknown(s, "secondary", other, SECONDARY_TYPES)),
    };
    Ok(Some(w))
}

/// fluentd v0.12's flat buffer parameters, which fluentd v1 still maps onto `<buffer>`.
fn v012_buffer_params(e: &Element, b: &mut BufferConf) -> Result<(), ConfigError> {
    match e.str("buffer_type") {
        None | Some("memory") => {}
        Some("file") => {
            let path = e.str("buffer_path").ok_or_else(|| err(e, "buffer_type file needs buffer_path".into()))?;
            b.path = Some(std::path::PathBuf::from(path));
            b.chunk_limit_size = crate::buffer::FILE_CHUNK_LIMIT_SIZE;
            b.total_limit_size = crate::buffer::FILE_TOTAL_LIMIT_SIZE;
            b.flush_at_shutdown = false;
        }
        Some(o) => return Err(err(e, format!("unknown buffer_type '{o}'; supported: memory, file"))),
    }
    if let Some(v) = e.bool("flush_at_shutdown")? {
        b.flush_at_shutdown = v;
    }
    if let Some(v) = e.time("flush_interval")? {
        b.flush_interval = v;
    }
    if let Some(v) = e.size("buffer_chunk_limit")? {
        b.chunk_limit_size = v as usize;
    }
    if let Some(v) = e.int("buffer_queue_limit")? {
        b.total_limit_size = b.chunk_limit_size.saturating_mul(v.max(1) as usize);
    }
    if let Some(v) = e.time("retry_wait")? {
        b.retry_wait = v;
    }
    if let Some(v) = e.time("max_retry_wait")? {
        b.retry_max_interval = Some(v);
    }
    if let Some(v) = e.int("retry_limit")? {
        b.retry_max_times = Some(v.clamp(0, u32::MAX as i64) as u32);
    }
    if let Some(v) = e.bool("disable_retry_limit")? {
        b.retry_forever = v;
    }
    let _ = e.int("num_threads")?;
    Ok(())
}

/// Parses `<buffer>`. `default_keys` are the plugin's chunk keys when the section
/// has no argument; `tag` is required for out_forward (as in fluentd).
pub fn buffer_conf(b: &Element, default_keys: &[&str], tag_required: bool) -> Result<BufferConf, ConfigError> {
    buffer_conf_with(b, &BufferDefaults { keys: default_keys, tag_required, file_path: None, timekey: None })
}

/// A plugin's `<buffer>` defaults (fluentd's `config_section :buffer` overrides).
pub struct BufferDefaults<'a> {
    pub keys: &'a [&'a str],
    pub tag_required: bool,
    /// `Some(path)`: the default type is `file` with this path (out_file).
    pub file_path: Option<&'a str>,
    /// Default `timekey` in seconds.
    pub timekey: Option<u64>,
}

pub fn buffer_conf_with(b: &Element, defaults: &BufferDefaults<'_>) -> Result<BufferConf, ConfigError> {
    let default_keys = defaults.keys;
    let tag_required = defaults.tag_required;
    let mut d = BufferConf::default();
    let ty = b.plugin_type().or(defaults.file_path.map(|_| "file"));
    match ty {
        None | Some("memory") => {}
        Some("file") => {
            let path = b.str("path").or(defaults.file_path).ok_or_else(|| {
                err(b, "<buffer @type file> needs path (the directory for this output's chunk files)".into())
            })?;
            d.path = Some(std::path::PathBuf::from(path));
            d.chunk_limit_size = crate::buffer::FILE_CHUNK_LIMIT_SIZE;
            d.total_limit_size = crate::buffer::FILE_TOTAL_LIMIT_SIZE;
            // fluentd: persistent buffers keep their chunks over a restart by default.
            d.flush_at_shutdown = false;
            for k in ["path_suffix", "file_permission", "dir_permission"] {
                let _ = b.str(k);
            }
        }
        Some(other) => return Err(err(b, format!("unknown buffer type '{other}'; supported: memory, file"))),
    }
    let keys: Vec<&str> = if b.arg.trim().is_empty() {
        default_keys.to_vec()
    } else {
        b.arg.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
    };
    let mut vars = Vec::new();
    for k in &keys {
        if *k == "tag" || *k == "time" {
            continue;
        }
        let name = k.strip_prefix("$.").unwrap_or(k);
        if name.is_empty() || name.split('.').any(|p| p.is_empty() || p.contains(['[', ']', '\'', '"'])) {
            return Err(err(
                b,
                format!("<buffer {}>: chunk key '{k}': expected tag, time, a record field name or a $.a.b path", b.arg),
            ));
        }
        vars.push(k.to_string());
    }
    if tag_required && !keys.contains(&"tag") {
        return Err(err(b, "buffer chunk key must include 'tag' for forward output".into()));
    }
    let timekey = if keys.contains(&"time") {
        let secs = b.time("timekey")?.or(defaults.timekey.map(std::time::Duration::from_secs)).ok_or_else(|| {
            err(b, format!("<buffer {}> argument includes 'time', but timekey is not configured", b.arg))
        })?;
        if secs.as_secs() == 0 {
            return Err(err(b, "timekey must be at least 1 second".into()));
        }
        let use_utc = b.bool("timekey_use_utc")?.unwrap_or(false);
        let utc_offset = match b.str("timekey_zone") {
            _ if use_utc => 0,
            None => local_utc_offset(),
            Some(z) => crate::format::parse_fixed_zone(z).ok_or_else(|| {
                err(b, format!("timekey_zone {z:?}: expected +HHMM, -HH:MM, UTC or Z (named zones are not supported)"))
            })?,
        };
        Some(TimeKey {
            secs: secs.as_secs() as i64,
            wait: b.time("timekey_wait")?.unwrap_or(std::time::Duration::from_secs(600)),
            utc_offset,
        })
    } else {
        for k in ["timekey", "timekey_wait", "timekey_use_utc", "timekey_zone"] {
            if b.str(k).is_some() {
                crate::warn!("{}: {k} has no effect: 'time' is not a chunk key of <buffer {}>", b.pos, b.arg);
            }
        }
        None
    };
    let flush_mode = match b.str("flush_mode") {
        None | Some("default") => FlushMode::Default,
        Some("interval") => FlushMode::Interval,
        Some("immediate") => FlushMode::Immediate,
        Some("lazy") => FlushMode::Lazy,
        Some(o) => return Err(err(b, format!("flush_mode {o:?}: expected default, interval, immediate or lazy"))),
    };
    let overflow_action = match b.str("overflow_action") {
        None | Some("throw_exception") => OverflowAction::ThrowException,
        Some("block") => OverflowAction::Block,
        Some("drop_oldest_chunk") => OverflowAction::DropOldestChunk,
        Some(o) => {
            return Err(err(b, format!("overflow_action {o:?}: expected throw_exception, block or drop_oldest_chunk")))
        }
    };
    let retry_type = match b.str("retry_type") {
        None | Some("exponential_backoff") => RetryType::ExponentialBackoff,
        Some("periodic") => RetryType::Periodic,
        Some(o) => return Err(err(b, format!("retry_type {o:?}: expected exponential_backoff or periodic"))),
    };
    if let Some(n) = b.int("flush_thread_count")? {
        if n != 1 {
            crate::warn!("{}: flush_thread_count {n} is ignored: each shard flushes with one task (shards already flush in parallel)", b.pos);
        }
    }
    let c = BufferConf {
        path: d.path.clone(),
        timekey,
        vars,
        retry_secondary_threshold: b.float("retry_secondary_threshold")?.unwrap_or(d.retry_secondary_threshold),
        chunk_limit_size: b.size("chunk_limit_size")?.map_or(d.chunk_limit_size, |v| v as usize),
        chunk_limit_records: b.int("chunk_limit_records")?.map(|v| v.clamp(1, u32::MAX as i64) as u32),
        total_limit_size: b.size("total_limit_size")?.map_or(d.total_limit_size, |v| v as usize),
        flush_mode,
        flush_interval: b.time("flush_interval")?.unwrap_or(d.flush_interval),
        flush_at_shutdown: b.bool("flush_at_shutdown")?.unwrap_or(d.flush_at_shutdown),
        overflow_action,
        retry_type,
        retry_wait: b.time("retry_wait")?.unwrap_or(d.retry_wait),
        retry_exponential_backoff_base: b
            .float("retry_exponential_backoff_base")?
            .unwrap_or(d.retry_exponential_backoff_base),
        retry_max_interval: b.time("retry_max_interval")?,
        retry_timeout: b.time("retry_timeout")?.unwrap_or(d.retry_timeout),
        retry_max_times: b.int("retry_max_times")?.map(|v| v.clamp(0, u32::MAX as i64) as u32),
        retry_forever: b.bool("retry_forever")?.unwrap_or(false),
        retry_randomize: b.bool("retry_randomize")?.unwrap_or(true),
    };
    if c.chunk_limit_size == 0 || c.total_limit_size < c.chunk_limit_size {
        return Err(err(
            b,
            format!(
                "total_limit_size ({}) must be at least chunk_limit_size ({})",
                c.total_limit_size, c.chunk_limit_size
            ),
        ));
    }
    match b.str("compress") {
        None | Some("text") => {}
        Some("gzip") => crate::warn!(
            "{}: <buffer> compress gzip is not implemented: chunks are kept uncompressed (what is sent or written is the same)",
            b.pos
        ),
        Some(o) => return Err(err(b, format!("compress {o:?}: expected text or gzip"))),
    }
    if b.str("queued_chunks_limit_size").is_some() {
        crate::warn!("{}: queued_chunks_limit_size is not implemented: total_limit_size bounds the queue", b.pos);
    }
    for k in ["delayed_commit_timeout", "disable_chunk_backup", "chunk_full_threshold"] {
        let _ = b.str(k);
    }
    warn_unused(b);
    Ok(c)
}

/// The local time zone's offset from UTC in seconds (for time slices).
fn local_utc_offset() -> i64 {
    // SAFETY: localtime_r writes only into the tm we pass.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    }
}

/// Instantiates one shard's plugins. Fails only when a file buffer's directory cannot
/// be opened or recovered.
pub fn build_shard(plan: &Plan, shard: usize) -> Result<ShardGraph, crate::buffer::BufferError> {
    let mut labels = Vec::new();
    for l in &plan.labels {
        let mut rules = Vec::new();
        for r in &l.rules {
            match r {
                RulePlan::Filter { pattern, filter, workers, .. } if on_shard(*workers, shard) => {
                    let f = match filter {
                        FilterPlan::Grep(_, c) => GrepFilter::new(c).map(Filter::Grep),
                        FilterPlan::RecordTransformer(_, c) => RecordTransformer::new(c).map(Filter::RecordTransformer),
                        FilterPlan::Stdout(id) => Ok(Filter::Stdout(StdoutFilter::new(id.clone()))),
                    };
                    // Validated by plan(): construction cannot fail here.
                    if let Ok(f) = f {
                        rules.push(Rule::Filter { pattern: pattern.clone(), filter: Rc::new(f) });
                    }
                }
                RulePlan::Match { pattern, output, workers, .. } if on_shard(*workers, shard) => {
                    rules.push(Rule::Match { pattern: pattern.clone(), target: target(output, shard, plan.workers)? });
                }
                _ => {}
            }
        }
        labels.push(Label { name: l.name.clone(), rules });
    }
    let router = Rc::new(Router::new(labels));
    let mut inputs = Vec::new();
    let mut samples = Vec::new();
    for (s, w, _) in &plan.sources {
        if !on_shard(*w, shard) {
            continue;
        }
        match s {
            SourcePlan::Forward(c) => inputs.push(ForwardInput::new((**c).clone(), router.clone())),
            SourcePlan::Sample(c) => samples.push(SampleInput::new(c.clone(), router.clone())),
        }
    }
    Ok(ShardGraph { router, inputs, samples })
}

fn target(o: &OutputPlan, shard: usize, workers: usize) -> Result<Target, crate::buffer::BufferError> {
    Ok(match o {
        OutputPlan::Null(id) => Target::Output(Rc::new(Output::Null(NullOutput::new(id.clone())))),
        OutputPlan::Stdout(id) => Target::Output(Rc::new(Output::Stdout(StdoutOutput::new(id.clone())))),
        OutputPlan::Buffered(p) => {
            let buffer = match &p.buffer.path {
                None => crate::buffer::Buffer::new(p.buffer.clone(), shard as u32),
                Some(path) => {
                    let (store, recovered) = crate::buffer::file::FileStore::open(
                        path,
                        shard as u32,
                        workers as u32,
                        crate::buffer::sync::shard(),
                    )?;
                    crate::buffer::Buffer::with_store(p.buffer.clone(), shard as u32, store, recovered)
                }
            };
            let writer = p.writer.build(&p.id);
            let secondary = p.secondary.as_ref().map(|w| w.build(&format!("{}.secondary", p.id)));
            Target::Output(Rc::new(Output::Buffered(BufferedOutput::new(p.id.clone(), buffer, writer, secondary))))
        }
        OutputPlan::Copy(stores) => {
            Target::Copy(stores.iter().map(|s| target(s, shard, workers)).collect::<Result<Vec<_>, _>>()?.into())
        }
        OutputPlan::Relabel(l) => Target::Relabel(*l),
    })
}

/// A human-readable plugin graph (`--dry-run`).
pub fn describe(plan: &Plan) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "workers {}", plan.workers);
    let wk = |w: &Workers| {
        w.map_or(String::new(), |(a, b)| if a == b { format!(" [worker {a}]") } else { format!(" [workers {a}-{b}]") })
    };
    for (src, w, at) in &plan.sources {
        match src {
            SourcePlan::Forward(c) => {
                let label = if c.label == 0 { "(top level)".to_string() } else { plan.labels[c.label].name.clone() };
                let _ =
                    writeln!(s, "source {} @type forward {}:{} -> {}{}  ({at})", c.id, c.bind, c.port, label, wk(w));
            }
            SourcePlan::Sample(c) => {
                let label = if c.label == 0 { "(top level)".to_string() } else { plan.labels[c.label].name.clone() };
                let _ = writeln!(
                    s,
                    "source {} @type sample tag {} rate {}/s -> {}{}  ({at})",
                    c.id,
                    c.tag,
                    c.rate,
                    label,
                    wk(w)
                );
            }
        }
    }
    fn out_desc(o: &OutputPlan, plan: &Plan) -> String {
        match o {
            OutputPlan::Null(id) => format!("null {id}"),
            OutputPlan::Stdout(id) => format!("stdout {id}"),
            OutputPlan::Buffered(p) => {
                let dest = match &p.writer {
                    WriterPlan::Forward(c) => {
                        let servers: Vec<String> = c
                            .servers
                            .iter()
                            .map(|s| format!("{}:{}{}", s.host, s.port, if s.standby { " (standby)" } else { "" }))
                            .collect();
                        format!("{}{}", servers.join(", "), if c.require_ack_response { ", acks" } else { "" })
                    }
                    WriterPlan::SecondaryFile(c) => format!("{}/{}", c.directory, c.basename),
                    WriterPlan::File(c) => c.template.clone(),
                };
                let buf = match &p.buffer.path {
                    Some(path) => format!("file buffer {}", path.display()),
                    None => "memory buffer".to_string(),
                };
                let sec = p.secondary.as_ref().map_or(String::new(), |w| format!(", secondary {}", w.name()));
                format!(
                    "{} {} -> {dest} ({buf}, flush {:?} every {:?}{sec})",
                    p.writer.name(),
                    p.id,
                    p.buffer.effective_flush_mode(),
                    p.buffer.flush_interval
                )
            }
            OutputPlan::Copy(stores) => {
                format!("copy [{}]", stores.iter().map(|x| out_desc(x, plan)).collect::<Vec<_>>().join("; "))
            }
            OutputPlan::Relabel(l) => format!("relabel -> {}", plan.labels[*l].name),
        }
    }
    for l in &plan.labels {
        let _ = writeln!(s, "{}:", if l.name.is_empty() { "top level" } else { &l.name });
        for r in &l.rules {
            match r {
                RulePlan::Filter { pattern, filter, workers, at } => {
                    let f = match filter {
                        FilterPlan::Grep(id, _) => format!("grep {id}"),
                        FilterPlan::RecordTransformer(id, _) => format!("record_transformer {id}"),
                        FilterPlan::Stdout(id) => format!("stdout {id}"),
                    };
                    let _ = writeln!(s, "  <filter {}> {f}{}  ({at})", pattern.as_str(), wk(workers));
                }
                RulePlan::Match { pattern, output, workers, at } => {
                    let _ =
                        writeln!(s, "  <match {}> {}{}  ({at})", pattern.as_str(), out_desc(output, plan), wk(workers));
                }
            }
        }
    }
    s
}
