//! `out_elasticsearch`, `out_opensearch` and `elasticsearch_data_stream`: buffered
//! outputs whose writer turns a chunk into bulk requests ([`bulk`]),
//! sends them with spate's HTTP client and judges the answer per document
//! ([`response`]). A chunk leaves the buffer only when every
//! document in it was stored (or found as a duplicate on `create`) or sent to the error
//! path; 429 and 5xx documents stay in the chunk, alone, for the next retry.
//!
//! Before the first bulk request the writer asks the cluster for its version (`GET /`,
//! unless `verify_es_version_at_startup false`), which decides `_type`; a data stream is
//! created (ILM policy, index template, data stream) the first time it is written to.

pub mod bulk;
pub mod conf;
pub mod conn;
pub mod response;
pub mod timeparse;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ops::Range;
use std::rc::{Rc, Weak};
use std::time::Instant;

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::format::Zone;
use crate::http::{Client, ClientConf, Request, Url};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};
use bulk::{ChunkCtx, Encoder, ErrorEvent, Ops, Scratch};
use conf::{DocConf, Flavor, WriteOp};
use conn::ConnConf;
use response::{judge, Counts, ItemOutcome, Judged, Policy};

/// The registry rows.
pub const PLUGIN: Registration = Registration {
    name: "elasticsearch",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan_es),
    params: "fluent-plugin-elasticsearch's parameters, unchanged: connection (`host`, `port`, `hosts` with scheme/user/password per host, `scheme`, `path`, `user`, `password`, `cloud_id`/`cloud_auth`, `api_key`, `custom_headers`, `ssl_verify`, `ca_file`, `client_cert`, `client_key`, `ssl_version`/`ssl_min_version`/`ssl_max_version`, `request_timeout`, `compression_level` (gzip bodies), `reconnect_on_error`, `resurrect_after`, `verify_es_version_at_startup`, `default_elasticsearch_version`, `content_type`); documents (`index_name` and `logstash_prefix`/`logstash_dateformat` with `${tag}`/chunk-key/time placeholders, `logstash_format`, `logstash_prefix_separator`, `utc_index`, `time_key`, `time_key_format`, `time_key_exclude_timestamp`, `time_precision`, `include_timestamp`, `include_tag_key`, `tag_key`, `id_key`, `parent_key`, `routing_key`, `remove_keys`, `target_index_key`, `write_operation` index/create/update/upsert, `remove_keys_on_update`, `remove_keys_on_update_key`, `suppress_doc_wrap`, `emit_error_for_missing_id`, `type_name`, `suppress_type_name`, `pipeline`, `include_index_in_url`, `flatten_hashes`, `<metadata>` `include_chunk_id`, `bulk_message_request_threshold`, `time_parse_error_tag`, `unrecoverable_error_types`). Per-document results: 429/5xx retried alone, other errors to `@ERROR`/`<secondary>` (see below)",
};

pub const PLUGIN_OPENSEARCH: Registration = Registration {
    name: "opensearch",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan_os),
    params: "fluent-plugin-opensearch's parameters: as `out_elasticsearch` with `verify_os_version_at_startup`, `default_opensearch_version`, `unrecoverable_record_types`, `emit_error_label_event`, and no `type_name` (`_doc` below OpenSearch 2 unless `suppress_type_name`)",
};

pub const PLUGIN_DATA_STREAM: Registration = Registration {
    name: "elasticsearch_data_stream",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan_ds),
    params: "`data_stream_name` (placeholders allowed), `data_stream_template_name`, `data_stream_ilm_name`, `data_stream_ilm_policy`, `data_stream_ilm_policy_overwrite`, `data_stream_template_use_index_patterns_wildcard` (the ILM policy, index template and data stream are created on first use), `include_tag_key`, `tag_key`, `id_key`, `remove_keys`, `time_precision`, and the connection parameters of `out_elasticsearch`",
};

/// fluent-plugin-elasticsearch's deprecated `elasticsearch_dynamic`: its one feature is
/// `${...}` in parameters, evaluated as Ruby per record, which spate does not run. A
/// configuration without `${` means what `out_elasticsearch` means, so it runs as that
/// (with the plugin's deprecation warning); one with `${` is a configuration error.
pub const PLUGIN_DYNAMIC: Registration = Registration {
    name: "elasticsearch_dynamic",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan_dynamic),
    params: "as `out_elasticsearch` (and `delimiter`) when no parameter has `${...}`; a `${...}` (Ruby evaluated per record) is a configuration error: use `out_elasticsearch` with `${tag}`/chunk-key placeholders",
};

/// Types that exist in fluentd's plugin ecosystem but not in spate.
pub const PLUGIN_UNSUPPORTED: Registration = Registration {
    name: "aws-elasticsearch-service",
    aliases: &["opensearch_data_stream"],
    kind: Kind::Output,
    build: Build::Buffered(plan_unsupported),
    params: "not supported (a clear configuration error): `aws-elasticsearch-service` and `<endpoint>` sign requests with AWS SigV4; `opensearch_data_stream` is not implemented",
};

fn plan_unsupported(e: &Element, _: &mut PlanCtx<'_>, _: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let ty = e.plugin_type().unwrap_or("");
    let why = match ty {
        "aws-elasticsearch-service" => "it signs requests with AWS SigV4, which spate does not implement; put a signing proxy in front of the domain and use @type elasticsearch",
        _ => "it is not implemented; use @type opensearch with index_name",
    };
    Err(e.error(format!("@type {ty} is not supported by spate: {why}")))
}

fn plan_dynamic(e: &Element, ctx: &mut PlanCtx<'_>, s: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    if let Some(a) = e.attrs.iter().find(|a| a.value.contains("${")) {
        return Err(ConfigError::at(
            &a.pos,
            format!(
                "{} {:?}: @type elasticsearch_dynamic evaluates ${{...}} as Ruby per record, which spate does not run; use @type elasticsearch with ${{tag}}/chunk-key placeholders instead",
                a.key, a.value
            ),
        ));
    }
    let _ = e.str("delimiter");
    crate::warn!(
        "{}: Elasticsearch dynamic plugin will be deprecated and removed in the future. Please consider to use normal Elasticsearch plugin (without ${{...}} it runs as @type elasticsearch)",
        e.pos
    );
    plan(e, ctx, s, Flavor::Elasticsearch, false, "elasticsearch_dynamic")
}

fn plan_es(e: &Element, ctx: &mut PlanCtx<'_>, s: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    plan(e, ctx, s, Flavor::Elasticsearch, false, "elasticsearch")
}

fn plan_os(e: &Element, ctx: &mut PlanCtx<'_>, s: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    plan(e, ctx, s, Flavor::OpenSearch, false, "opensearch")
}

fn plan_ds(e: &Element, ctx: &mut PlanCtx<'_>, s: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    plan(e, ctx, s, Flavor::Elasticsearch, true, "elasticsearch_data_stream")
}

/// The writer's plan.
#[derive(Debug)]
pub struct EsPlan {
    pub type_name: &'static str,
    pub doc: DocConf,
    pub conn: ConnConf,
    pub policy: Policy,
    /// Zone of the buffer's time slices, for strftime placeholders.
    pub timekey_zone: Zone,
    /// opensearch's `emit_error_label_event`.
    pub emit_error_label_event: bool,
}

fn plan(
    e: &Element,
    _ctx: &mut PlanCtx<'_>,
    setup: &mut WriterSetup,
    flavor: Flavor,
    data_stream: bool,
    type_name: &'static str,
) -> Result<Box<dyn WriterPlan>, ConfigError> {
    if e.single("endpoint")?.is_some() {
        return Err(e.error(
            "<endpoint> (AWS SigV4 signing) is not supported by spate; put a signing proxy in front of the domain",
        ));
    }
    let buffer = match setup.primary_buffer() {
        Some(b) => Some(b.clone()),
        None => setup.buffer(e, &BufferDefaults { keys: &["tag"], ..Default::default() })?,
    };
    let timekey_zone =
        buffer.as_ref().and_then(|b| b.timekey.as_ref()).map_or(Zone::Utc, |k| Zone::Fixed(k.utc_offset));
    let doc = DocConf::from_element(e, flavor, data_stream)?;
    let conn = ConnConf::from_element(e, flavor)?;
    let mut types: Vec<String> = match e.array("unrecoverable_error_types")? {
        Some(v) => v,
        // fluent-plugin-elasticsearch's default aborts the whole chunk on these types;
        // spate retries 429s per document instead (README), so only OOM stays fatal.
        None => vec!["out_of_memory_error".to_string()],
    };
    if flavor == Flavor::OpenSearch {
        types.extend(e.array("unrecoverable_record_types")?.unwrap_or_else(|| vec!["json_parse_exception".into()]));
    }
    Ok(Box::new(EsPlan {
        type_name,
        doc,
        conn,
        policy: Policy { unrecoverable_types: types },
        timekey_zone,
        emit_error_label_event: e.bool("emit_error_label_event")?.unwrap_or(true),
    }))
}

impl WriterPlan for EsPlan {
    fn concurrent_writes(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        self.type_name
    }

    fn describe(&self) -> String {
        let hosts: Vec<String> = self.conn.hosts.iter().map(|h| h.to_string()).collect();
        hosts.join(",")
    }

    fn build(&self, id: &str, ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        let client = Client::new(ClientConf {
            tls: self.conn.tls.clone(),
            connect_timeout: self.conn.request_timeout,
            timeout: self.conn.request_timeout,
            ..Default::default()
        });
        Ok(Rc::new(EsWriter {
            id: id.to_string(),
            type_name: self.type_name,
            doc: self.doc.clone(),
            ops: Ops::new(&self.doc),
            conn: self.conn.clone(),
            policy: self.policy.clone(),
            timekey_zone: self.timekey_zone,
            emit_error_label_event: self.emit_error_label_event,
            client,
            ctx: Rc::downgrade(ctx),
            major: Cell::new(None),
            next_host: Cell::new(0),
            dead_until: RefCell::new(vec![None; self.conn.hosts.len()]),
            streams: RefCell::new(HashSet::new()),
            scratch: RefCell::new(Scratch::default()),
            stats: EsStats::default(),
        }))
    }
}

/// Counters of one writer (shard-local).
#[derive(Debug, Default)]
pub struct EsStats {
    pub requests: Cell<u64>,
    pub request_failures: Cell<u64>,
    pub documents: RefCell<Counts>,
    /// Records without the `_id` that create/update/upsert need (dropped, as fluentd does).
    pub missing_id: Cell<u64>,
    /// Events that could not become documents (bad `target_index_key` value...).
    pub bad_events: Cell<u64>,
}

pub struct EsWriter {
    id: String,
    type_name: &'static str,
    doc: DocConf,
    ops: Ops,
    conn: ConnConf,
    policy: Policy,
    timekey_zone: Zone,
    emit_error_label_event: bool,
    client: Client,
    ctx: Weak<ShardCtx>,
    /// The cluster's major version once known.
    major: Cell<Option<u32>>,
    next_host: Cell<usize>,
    dead_until: RefCell<Vec<Option<Instant>>>,
    /// Data streams known to exist.
    streams: RefCell<HashSet<String>>,
    scratch: RefCell<Scratch>,
    pub stats: EsStats,
}

/// A request that failed as a whole.
#[derive(Debug)]
struct Failed {
    reason: String,
}

impl EsWriter {
    /// The next live node (round robin; a failed node sits out `resurrect_after`).
    fn pick_host(&self) -> usize {
        let n = self.conn.hosts.len();
        let now = Instant::now();
        let dead = self.dead_until.borrow();
        let start = self.next_host.get();
        for k in 0..n {
            let i = (start + k) % n;
            if dead[i].is_none_or(|t| now >= t) {
                self.next_host.set(i + 1);
                return i;
            }
        }
        // All failed recently: try the next one anyway.
        self.next_host.set(start + 1);
        start % n
    }

    fn mark_dead(&self, host: usize) {
        if let Some(d) = self.dead_until.borrow_mut().get_mut(host) {
            *d = Some(Instant::now() + self.conn.resurrect_after);
        }
        if self.conn.reconnect_on_error {
            self.client.reset();
        }
    }

    fn headers(&self, host: &Url, gzip: bool, major: u32) -> Vec<(String, String)> {
        let mut h = Vec::with_capacity(6);
        let ct = if self.doc.flavor == Flavor::Elasticsearch && major >= 9 {
            h.push(("Accept".to_string(), ES9_TYPE.to_string()));
            ES9_TYPE.to_string()
        } else {
            self.conn.content_type.clone()
        };
        h.push(("Content-Type".to_string(), ct));
        if let (Some(u), false) =
            (&host.user, self.conn.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")))
        {
            h.push(("Authorization".to_string(), crate::http::basic_auth(u, host.password.as_deref().unwrap_or(""))));
        }
        h.extend(self.conn.headers.iter().cloned());
        if gzip {
            h.push(("Content-Encoding".to_string(), "gzip".to_string()));
        }
        h
    }

    async fn call(&self, host: usize, method: &str, path: &str, body: &[u8]) -> Result<crate::http::Response, Failed> {
        let url = &self.conn.hosts[host];
        let target = url.target(path);
        let headers = self.headers(url, false, self.major.get().unwrap_or(self.conn.default_version));
        let req = Request { method, url, target: &target, headers: &headers, body };
        self.client.send(&req).await.map_err(|e| {
            self.mark_dead(host);
            Failed { reason: e.to_string() }
        })
    }

    /// The cluster's major version (`GET /`), once.
    async fn version(&self) -> Result<u32, WriteError> {
        if let Some(v) = self.major.get() {
            return Ok(v);
        }
        if !self.conn.verify_version {
            self.major.set(Some(self.conn.default_version));
            return Ok(self.conn.default_version);
        }
        let host = self.pick_host();
        let r = self.call(host, "GET", "/", b"").await.map_err(|f| {
            WriteError::Retry(format!("cannot detect the {} version: {}", self.doc.flavor.word(), f.reason))
        })?;
        let v = (r.status == 200)
            .then(|| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .flatten()
            .and_then(|j| j.pointer("/version/number").and_then(|n| n.as_str()).map(str::to_string));
        let Some(number) = v else {
            return Err(WriteError::Retry(format!(
                "cannot detect the {} version: GET / answered {} {}",
                self.doc.flavor.word(),
                r.status,
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
            )));
        };
        let major = number.split('.').next().and_then(|m| m.parse::<u32>().ok()).unwrap_or(self.conn.default_version);
        crate::info!("{}: {} {number} at {}", self.id, self.doc.flavor.word(), self.conn.hosts[host]);
        self.major.set(Some(major));
        Ok(major)
    }

    /// Creates the data stream (with its ILM policy and index template) unless it exists
    /// (out_elasticsearch_data_stream's create_ilm_policy, create_index_template,
    /// create_data_stream).
    async fn ensure_stream(&self, name: &str, cx: &ChunkCtx<'_>) -> Result<(), WriteError> {
        if self.streams.borrow().contains(name) {
            return Ok(());
        }
        let Some(ds) = &self.doc.data_stream else { return Ok(()) };
        let tpl = self::bulk::expand(&ds.template_name, cx);
        let ilm = self::bulk::expand(&ds.ilm_name, cx);
        let fail =
            |what: &str, r: String| WriteError::Retry(format!("cannot create data stream <{name}>: {what}: {r}"));
        let host = self.pick_host();
        let exists = |path: String| async move {
            match self.call(host, "GET", &path, b"").await {
                Ok(r) if r.status == 200 => Ok(true),
                Ok(r) if r.status == 404 => Ok(false),
                Ok(r) => Err(format!("GET {path} answered {}", r.status)),
                Err(f) => Err(f.reason),
            }
        };
        let put = |path: String, body: Vec<u8>| async move {
            match self.call(host, "PUT", &path, &body).await {
                Ok(r) if (200..300).contains(&r.status) => Ok(()),
                Ok(r) => Err(format!(
                    "PUT {path} answered {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
                )),
                Err(f) => Err(f.reason),
            }
        };
        let stream_exists = exists(format!("/_data_stream/{name}")).await.map_err(|r| fail("data stream", r))?;
        if !stream_exists {
            let tpl_exists = exists(format!("/_index_template/{tpl}")).await.map_err(|r| fail("index template", r))?;
            let ilm_needed = ds.ilm_policy_overwrite
                || (!tpl_exists && !exists(format!("/_ilm/policy/{ilm}")).await.map_err(|r| fail("ILM policy", r))?);
            if ilm_needed {
                put(format!("/_ilm/policy/{ilm}"), ds.ilm_policy.as_bytes().to_vec())
                    .await
                    .map_err(|r| fail("ILM policy", r))?;
            }
            if !tpl_exists {
                let wildcard = if ds.template_use_index_patterns_wildcard { "*" } else { "" };
                let body = serde_json::json!({
                    "index_patterns": [format!("{name}{wildcard}")],
                    "data_stream": {},
                    "template": {"settings": {"index.lifecycle.name": ilm}}
                });
                put(format!("/_index_template/{tpl}"), body.to_string().into_bytes())
                    .await
                    .map_err(|r| fail("index template", r))?;
            }
            put(format!("/_data_stream/{name}"), Vec::new()).await.map_err(|r| fail("data stream", r))?;
            crate::info!("{}: created data stream <{name}>", self.id);
        }
        self.streams.borrow_mut().insert(name.to_string());
        Ok(())
    }

    /// Hands error events to `@ERROR` or logs them (fluentd's emit_error_event).
    fn error_events(&self, events: &[ErrorEvent], chunk_events: bool) {
        for (i, ev) in events.iter().enumerate() {
            if i < 10 {
                crate::warn!(
                    "{}: dump an error event: error=\"{}\" tag=\"{}\" time={}",
                    self.id,
                    ev.reason,
                    String::from_utf8_lossy(&ev.tag),
                    ev.time.sec
                );
            } else if i == 10 {
                crate::warn!("{}: ... and {} more error events", self.id, events.len() - 10);
            }
        }
        if chunk_events || !self.emit_error_label_event {
            // Chunk events go to the error path with the chunk (buffered output).
            return;
        }
        let Some(ctx) = self.ctx.upgrade() else { return };
        for ev in events {
            if let Some(Err(e)) = ctx.emit_error_record(&ev.tag, ev.time, &ev.record) {
                crate::warn!("{}: @ERROR did not take an error event: {e}", self.id);
            }
        }
    }

    async fn write_chunk(&self, chunk: &Chunk, vars: &ChunkVars) -> Result<usize, WriteError> {
        let major = self.version().await?;
        let cx = ChunkCtx::of(chunk, self.timekey_zone, vars);
        let enc = {
            let encoder = Encoder { conf: &self.doc, ops: &self.ops, major };
            let mut s = self.scratch.borrow_mut();
            encoder.encode(&cx, &chunk.data, None, &mut s)
        };
        if enc.missing_id > 0 {
            OneShot::add(&self.stats.missing_id, enc.missing_id);
            crate::debug!(
                "{}: dropped {} records without the '_id' field write_operation {} needs",
                self.id,
                enc.missing_id,
                self.doc.write_operation.name()
            );
        }
        // Reports (time parse errors) go to @ERROR now; failed events with the chunk.
        self.error_events(&enc.reports, false);
        self.error_events(&enc.failed, true);
        OneShot::add(&self.stats.bad_events, enc.error_entries.len() as u64);
        let mut rejected: Vec<Range<usize>> = enc.error_entries.clone();
        let mut retry: Vec<Range<usize>> = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        let mut bytes = 0usize;
        let op = if self.doc.data_stream.is_some() { WriteOp::Create } else { self.doc.write_operation };
        for req in &enc.requests {
            if let Some(ds) = self.doc.data_stream.as_ref().and(req.index.as_deref()) {
                self.ensure_stream(ds, &cx).await?;
            }
            let host = self.pick_host();
            let url = &self.conn.hosts[host];
            let path = match &req.index {
                Some(i) => format!("/{}/_bulk", pct_path(i)),
                None => "/_bulk".to_string(),
            };
            let target = url.target(&path);
            // Uncompressed, the body is sent from the request as it is (a copy of a
            // chunk's Bulk body was 5% of out_elasticsearch's cycles).
            let body: std::borrow::Cow<'_, [u8]> = match self.conn.gzip {
                Some(level) => crate::http::gzip(req.body.clone(), level).await.into(),
                None => (&req.body[..]).into(),
            };
            let headers = self.headers(url, self.conn.gzip.is_some(), major);
            OneShot::add(&self.stats.requests, 1);
            let started = Instant::now();
            let res = self
                .client
                .send(&Request { method: "POST", url, target: &target, headers: &headers, body: &body })
                .await;
            let resp = match res {
                Ok(r) => r,
                Err(e) => {
                    self.mark_dead(host);
                    OneShot::add(&self.stats.request_failures, 1);
                    reasons.push(format!("could not push logs to {} cluster ({url}): {e}", self.doc.flavor.word()));
                    retry.extend(req.items.iter().cloned());
                    continue;
                }
            };
            if !(200..300).contains(&resp.status) {
                OneShot::add(&self.stats.request_failures, 1);
                if self.conn.reconnect_on_error {
                    self.client.reset();
                }
                reasons.push(format!("bulk request to {url} answered {}", resp.summary()));
                retry.extend(req.items.iter().cloned());
                continue;
            }
            bytes += body.len();
            match judge(&resp.body, req.items.len(), op.action(), &self.policy) {
                Err(e) => {
                    OneShot::add(&self.stats.request_failures, 1);
                    reasons.push(format!("bulk response from {url}: {e}"));
                    retry.extend(req.items.iter().cloned());
                }
                Ok((Judged::AllStored, c)) => self.stats.documents.borrow_mut().add(&c),
                Ok((Judged::Items(items), c)) => {
                    self.stats.documents.borrow_mut().add(&c);
                    let mut logged = 0;
                    for (item, range) in items.into_iter().zip(req.items.iter()) {
                        match item {
                            ItemOutcome::Stored | ItemOutcome::Duplicate => {}
                            ItemOutcome::Retry { reason, .. } => {
                                if reasons.len() < 5 {
                                    reasons.push(reason);
                                }
                                retry.push(range.clone());
                            }
                            ItemOutcome::Reject { reason, .. } => {
                                if logged < 10 {
                                    crate::warn!(
                                        "{}: dump an error event: error=\"{reason}\" tag=\"{}\" (rejected by {})",
                                        self.id,
                                        String::from_utf8_lossy(&chunk.tag),
                                        self.doc.flavor.word()
                                    );
                                }
                                logged += 1;
                                rejected.push(range.clone());
                            }
                        }
                    }
                    crate::debug!(
                        "{}: bulk of {} documents in {:?}: {c:?}",
                        self.id,
                        req.items.len(),
                        started.elapsed()
                    );
                }
            }
        }
        if retry.is_empty() && rejected.is_empty() {
            return Ok(bytes);
        }
        retry.sort_by_key(|r| r.start);
        rejected.sort_by_key(|r| r.start);
        let gather = |rs: &[Range<usize>]| {
            let mut v = Vec::with_capacity(rs.iter().map(|r| r.len()).sum());
            for r in rs {
                if let Some(s) = chunk.data.get(r.clone()) {
                    v.extend_from_slice(s);
                }
            }
            v
        };
        let reason = if retry.is_empty() {
            format!("{} documents rejected", rejected.len())
        } else {
            format!("{} of {} documents to retry: {}", retry.len(), chunk.count, reasons.join("; "))
        };
        Err(WriteError::Partial {
            retry: gather(&retry),
            retry_count: retry.len() as u32,
            rejected: gather(&rejected),
            rejected_count: rejected.len() as u32,
            reason,
        })
    }
}

/// `Cell<u64>` addition.
struct OneShot;

impl OneShot {
    fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }
}

/// Content type of Elasticsearch 9 (fluent-plugin-elasticsearch's ES9_CONTENT_TYPE).
const ES9_TYPE: &str = "application/vnd.elasticsearch+x-ndjson; compatible-with=9";

/// Percent-encodes an index name for a URL path.
fn pct_path(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~+".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

impl Writer for EsWriter {
    fn type_name(&self) -> &'static str {
        self.type_name
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(self.write_chunk(chunk, vars))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
