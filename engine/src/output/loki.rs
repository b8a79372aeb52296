//! `out_loki` (Grafana's fluent-plugin-grafana-loki, `@type loki`): each chunk is one
//! POST of Loki's JSON push body to `<url>/loki/api/v1/push`,
//! `{"streams":[{"stream":{labels},"values":[["<unix ns>","<line>"],...]}]}`.
//!
//! Per event, as the Ruby plugin's `line_to_loki` does: the `<label>` record accessors
//! become labels (names with `.`, `-`, `/` made `_`) and are deleted from the record;
//! with `extract_kubernetes_labels`, `record["kubernetes"]["labels"]` become labels too;
//! `remove_keys` are deleted; the rest is the line (`line_format` `key_value`, the
//! default, or `json`; `drop_single_key`: a record of one key is just its value).
//! Events are grouped into streams by their labels (with `extra_labels` merged, which
//! win; only string values are kept, `"` escaped as the plugin does), each stream's
//! entries sorted by time (stable). With `flush_thread_count` > 1 and
//! `include_thread_label` (default), a `fluentd_thread` label (`flush_thread_<n>`) keeps
//! concurrent writes in separate streams.
//!
//! Answers: 2xx commits the chunk; 429 and 5xx are retried; any other status is logged
//! and the chunk dropped, as the plugin does (Loki will not take it on a retry either).
//! Streams are keyed by their formatted labels, not by the raw values (a label whose
//! value is not a string is dropped either way, so such events share a stream here where
//! the plugin sends two streams with the same labels).

use std::collections::HashMap;
use std::io::Write as _;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use spate_protocol::event::write_json_str;
use spate_protocol::msgpack::Kind as MpKind;
use spate_protocol::{EntriesFormat, Events, RecordRef, ValueRef};

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::http::{Client, ClientConf, Request, Scheme, Url};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};
use crate::ruby::accessor::{delete_nest, Accessor, Dug};

pub const PLUGIN: Registration = Registration {
    name: "loki",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "fluent-plugin-grafana-loki: `url` (default https://logs-prod-us-central1.grafana.net; POSTs to `<url>/loki/api/v1/push`), `username`/`password` (basic auth), `bearer_token_file`, `tenant` (`X-Scope-OrgID`, with `${tag}` and chunk-key placeholders), `custom_headers`, `compress gzip`, `extra_labels`, `<label>` (label name, record accessor; empty: the name), `extract_kubernetes_labels`, `remove_keys`, `line_format` key_value/json, `drop_single_key`, `include_thread_label`, `cert`/`key` (client certificate), `ca_cert`, `insecure_tls`, `min_version` (TLS1_2/TLS1_3). Default buffer: memory, no chunk keys. Not supported (config error): `ciphers`",
};

/// Default `url` (the plugin's).
const DEFAULT_URL: &str = "https://logs-prod-us-central1.grafana.net";

#[derive(Debug, Clone)]
pub struct LokiPlan {
    pub url: Url,
    pub endpoint: String,
    pub tenant: Option<String>,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    /// `<label>`: (label name, sanitized; accessor).
    pub labels: Vec<(String, Accessor)>,
    pub extra_labels: Vec<(String, String)>,
    pub extract_kubernetes_labels: bool,
    pub remove_keys: Vec<Accessor>,
    pub json_lines: bool,
    pub drop_single_key: bool,
    /// `flush_thread_count` when `include_thread_label` applies (> 1), else 0.
    pub thread_label: u32,
    pub client: ClientConf,
    pub timekey_zone: crate::format::Zone,
}

/// The plugin's label name rule: `.`, `-` and `/` become `_`.
fn sanitize(name: &[u8], out: &mut Vec<u8>) {
    out.extend(name.iter().map(|&b| if matches!(b, b'.' | b'-' | b'/') { b'_' } else { b }));
}

fn plan(e: &Element, _ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let base = e.str("url").unwrap_or(DEFAULT_URL).to_string();
    let endpoint = format!("{}/loki/api/v1/push", base.trim_end_matches('/'));
    let url = Url::parse(&endpoint)
        .map_err(|x| e.error_at("url", format!("URL parameter must have HTTP/HTTPS scheme: {base:?} ({x})")))?;
    if let Some(a) = e.get("ciphers") {
        return Err(ConfigError::at(
            &a.pos,
            "ciphers is not supported by spate: it uses rustls's cipher suites (TLS 1.2 and 1.3); remove it",
        ));
    }
    let mut headers = e.hash("custom_headers")?.unwrap_or_default();
    if let Some(u) = e.str("username") {
        headers.push(("Authorization".into(), crate::http::basic_auth(u, e.str("password").unwrap_or(""))));
    } else if let Some(a) = e.get("password") {
        return Err(ConfigError::at(
            &a.pos,
            "password without username: the plugin sends basic auth only with a username",
        ));
    }
    if let Some(f) = e.str("bearer_token_file") {
        let tok = std::fs::read_to_string(f)
            .map_err(|x| e.error_at("bearer_token_file", format!("bearer_token_file {f} not found ({x})")))?;
        // The plugin sends the file as it is; a trailing newline cannot go in a header.
        let tok = tok.trim_end_matches(['\r', '\n']);
        if tok.is_empty() {
            return Err(e.error_at("bearer_token_file", format!("bearer_token_file {f} is empty")));
        }
        headers.push(("Authorization".into(), format!("Bearer {tok}")));
    }
    let mut labels = Vec::new();
    for l in e.elements_named("label") {
        for a in &l.attrs {
            let path = if a.value.is_empty() { a.key.as_str() } else { a.value.as_str() };
            let acc = Accessor::parse(path).map_err(|x| ConfigError::at(&a.pos, x.to_string()))?;
            let mut name = Vec::new();
            sanitize(a.key.as_bytes(), &mut name);
            labels.push((String::from_utf8_lossy(&name).into_owned(), acc));
        }
        l.mark_all_used();
    }
    let remove_keys = e
        .array("remove_keys")?
        .unwrap_or_default()
        .iter()
        .map(|k| Accessor::parse(k).map_err(|x| e.error_at("remove_keys", x.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let json_lines = e.enum_of("line_format", &["json", "key_value"])?.as_deref() == Some("json");
    let tls = if url.scheme == Scheme::Https || e.get("ca_cert").is_some() || e.get("cert").is_some() {
        if let Some(c) = e.str("ca_cert") {
            if !std::path::Path::new(c).exists() {
                return Err(e.error_at("ca_cert", format!("CA certificate file {c} not found")));
            }
        }
        let verify = !e.bool("insecure_tls")?.unwrap_or(false);
        let (version, min, max) = match e.str("min_version") {
            Some("TLS1_3") | Some("TLSv1_3") => ("TLSv1_3", None, None),
            Some("TLS1_2") | Some("TLSv1_2") | None => ("TLSv1_2", Some("TLSv1_2"), Some("TLSv1_3")),
            Some(v) => {
                return Err(e.error_at(
                    "min_version",
                    format!("min_version {v}: rustls implements TLS 1.2 and 1.3; supported: TLS1_2, TLS1_3"),
                ))
            }
        };
        let cert = e.str("cert");
        let key = e.str("key");
        let p = crate::tls::HttpTlsParams {
            ca_files: e.str("ca_cert").map(|c| vec![c.to_string()]).unwrap_or_default(),
            // The plugin presents a client certificate only with both.
            client_cert: cert.filter(|_| key.is_some()),
            client_key: key.filter(|_| cert.is_some()),
            client_key_pass: None,
            verify,
            verify_hostname: verify,
            version,
            min_version: min,
            max_version: max,
            names: ("ca_cert", "cert", "key"),
            allow_self_signed: false,
            system_roots: Default::default(),
        };
        let t = crate::tls::http_client_tls(e, &p)?;
        (url.scheme == Scheme::Https).then_some(t)
    } else {
        let _ = e.bool("insecure_tls")?;
        None
    };
    let buffer = match setup.primary_buffer() {
        Some(b) => Some(b.clone()),
        None => setup.buffer(e, &BufferDefaults { keys: &[], ..Default::default() })?,
    };
    let threads = buffer.as_ref().map_or(1, |b| b.flush_thread_count);
    let thread_label = if e.bool("include_thread_label")?.unwrap_or(true) && threads > 1 { threads } else { 0 };
    let timekey_zone = buffer
        .as_ref()
        .and_then(|b| b.timekey.as_ref())
        .map_or(crate::format::Zone::Local, |k| crate::format::Zone::Fixed(k.utc_offset));
    let extra_labels = e.hash("extra_labels")?.unwrap_or_default();
    Ok(Box::new(LokiPlan {
        url,
        endpoint,
        tenant: e.str("tenant").map(str::to_string),
        headers,
        gzip: e.enum_of("compress", &["gzip"])?.is_some(),
        labels,
        extra_labels,
        extract_kubernetes_labels: e.bool("extract_kubernetes_labels")?.unwrap_or(false),
        remove_keys,
        json_lines,
        drop_single_key: e.bool("drop_single_key")?.unwrap_or(false),
        thread_label,
        client: ClientConf {
            tls,
            connect_timeout: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
            keepalive: true,
            ..Default::default()
        },
        timekey_zone,
    }))
}

impl WriterPlan for LokiPlan {
    fn concurrent_writes(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "loki"
    }

    fn describe(&self) -> String {
        format!("POST {}", self.endpoint)
    }

    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(LokiWriter {
            id: id.to_string(),
            client: Client::new(self.client.clone()),
            plan: self.clone(),
            writes: std::cell::Cell::new(0),
        }))
    }
}

pub struct LokiWriter {
    id: String,
    client: Client,
    plan: LokiPlan,
    /// Chunks written so far (picks the `fluentd_thread` label).
    writes: std::cell::Cell<u64>,
}

/// One stream of a body being built.
struct Stream {
    /// `{"k":"v",...}` as the first event of the stream had them.
    labels: Vec<u8>,
    /// (time in ns, the line's JSON value in `Body::lines`).
    entries: Vec<(u64, Range<usize>)>,
}

/// Scratch for building one body (reused across the events of a chunk).
#[derive(Default)]
struct Scratch {
    /// Label names and values of the current event (ranges into `arena`).
    labels: Vec<(Range<usize>, Range<usize>)>,
    arena: Vec<u8>,
    /// The canonical key of the current label set (sorted pairs).
    key: Vec<u8>,
    order: Vec<usize>,
    /// The line before JSON escaping, and one value's text.
    text: Vec<u8>,
    value: Vec<u8>,
}

impl Scratch {
    /// Sets label `name` (sanitized already) to `value`, replacing an earlier one in its
    /// place (a Ruby Hash assignment).
    fn set(&mut self, name: &[u8], value: &[u8]) {
        self.set_with(|a| a.extend_from_slice(name), value);
    }

    /// [`Scratch::set`] with the name written by `name` (sanitizing as it goes).
    fn set_with(&mut self, name: impl FnOnce(&mut Vec<u8>), value: &[u8]) {
        let n0 = self.arena.len();
        name(&mut self.arena);
        let n = n0..self.arena.len();
        self.arena.extend_from_slice(value);
        let v = n.end..self.arena.len();
        match self.labels.iter_mut().find(|(k, _)| self.arena[k.clone()] == self.arena[n.clone()]) {
            Some(slot) => slot.1 = v,
            None => self.labels.push((n, v)),
        }
    }
}

/// Deletes what `acc` names from the record in `rec` (`alt`: scratch).
fn delete(rec: &mut Vec<u8>, alt: &mut Vec<u8>, acc: &Accessor) {
    alt.clear();
    if ValueRef::new(rec).is_some_and(|v| delete_nest(v, &acc.steps, alt)) {
        std::mem::swap(rec, alt);
    }
}

impl LokiWriter {
    /// The push body of `entries` (packed), and how many events it holds.
    pub fn body(&self, entries: &[u8], thread: Option<u32>) -> (Vec<u8>, usize) {
        let p = &self.plan;
        let mut s = Scratch::default();
        let mut streams: Vec<Stream> = Vec::new();
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut lines: Vec<u8> = Vec::with_capacity(entries.len());
        let mut count = 0usize;
        // The record as it is edited (deletions), and the other half of each edit.
        let (mut rec, mut alt) = (Vec::new(), Vec::new());
        let mut thread_name = Vec::new();
        if let Some(n) = thread {
            let _ = write!(thread_name, "flush_thread_{n}");
        }
        for ev in Events::new(entries, EntriesFormat::Packed) {
            count += 1;
            s.labels.clear();
            s.arena.clear();
            rec.clear();
            rec.extend_from_slice(ev.record.as_bytes());
            let line_at = lines.len();
            if ValueRef::new(&rec).is_some_and(|v| v.kind() == MpKind::Map) {
                for (label, acc) in &p.labels {
                    if let Some(Dug::Value(v)) = RecordRef::new(&rec).map(|r| acc.dig(r)) {
                        if let (MpKind::Str, Some(v)) = (v.kind(), v.as_str()) {
                            s.set(label.as_bytes(), v);
                        }
                    }
                    delete(&mut rec, &mut alt, acc);
                }
                if p.extract_kubernetes_labels {
                    let k8s = RecordRef::new(&rec)
                        .and_then(|r| r.get(b"kubernetes"))
                        .and_then(|k| k.as_map())
                        .and_then(|k| k.get(b"labels"))
                        .and_then(|l| l.as_map());
                    for (k, v) in k8s.iter().flat_map(|l| l.fields()) {
                        if let (Some(k), MpKind::Str, Some(v)) = (k.as_str(), v.kind(), v.as_str()) {
                            s.set_with(|a| sanitize(k, a), v);
                        }
                    }
                }
                for acc in &p.remove_keys {
                    delete(&mut rec, &mut alt, acc);
                }
                self.line(&rec, &mut s.text, &mut s.value, &mut lines);
            } else {
                // Not a Hash: the line is its to_s.
                s.text.clear();
                if let Some(v) = ValueRef::new(&rec) {
                    crate::ruby::value::write_to_s(v, &mut s.text);
                }
                write_json_str(&s.text, &mut lines);
            }
            if thread.is_some() {
                s.set(b"fluentd_thread", &thread_name);
            }
            for (k, v) in &p.extra_labels {
                s.set(k.as_bytes(), v.as_bytes());
            }
            // The stream key: the label pairs sorted by name.
            s.order.clear();
            s.order.extend(0..s.labels.len());
            {
                let (labels, arena) = (&s.labels, &s.arena);
                s.order.sort_by(|&a, &b| arena[labels[a].0.clone()].cmp(&arena[labels[b].0.clone()]));
            }
            s.key.clear();
            for &i in &s.order {
                let (k, v) = &s.labels[i];
                s.key.extend_from_slice(&(k.len() as u32).to_le_bytes());
                s.key.extend_from_slice(&s.arena[k.clone()]);
                s.key.extend_from_slice(&(v.len() as u32).to_le_bytes());
                s.key.extend_from_slice(&s.arena[v.clone()]);
            }
            let si = match index.get(&s.key[..]) {
                Some(&i) => i,
                None => {
                    let mut l = Vec::with_capacity(s.arena.len() + 8 * s.labels.len() + 2);
                    l.push(b'{');
                    for (i, (k, v)) in s.labels.iter().enumerate() {
                        if i > 0 {
                            l.push(b',');
                        }
                        write_json_str(&s.arena[k.clone()], &mut l);
                        l.push(b':');
                        // The plugin's format_labels: `v.gsub('"', '\"')`.
                        s.value.clear();
                        for &b in &s.arena[v.clone()] {
                            if b == b'"' {
                                s.value.push(b'\\');
                            }
                            s.value.push(b);
                        }
                        write_json_str(&s.value, &mut l);
                    }
                    l.push(b'}');
                    streams.push(Stream { labels: l, entries: Vec::new() });
                    index.insert(s.key.clone(), streams.len() - 1);
                    streams.len() - 1
                }
            };
            let ns = u64::from(ev.time.sec) * 1_000_000_000 + u64::from(ev.time.nsec);
            streams[si].entries.push((ns, line_at..lines.len()));
        }
        let mut body = Vec::with_capacity(lines.len() + streams.len() * 64 + count * 28 + 16);
        body.extend_from_slice(b"{\"streams\":[");
        for (i, st) in streams.iter_mut().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            st.entries.sort_by_key(|e| e.0);
            body.extend_from_slice(b"{\"stream\":");
            body.extend_from_slice(&st.labels);
            body.extend_from_slice(b",\"values\":[");
            for (j, (ns, r)) in st.entries.iter().enumerate() {
                if j > 0 {
                    body.push(b',');
                }
                let _ = write!(body, "[\"{ns}\",");
                body.extend_from_slice(&lines[r.clone()]);
                body.push(b']');
            }
            body.extend_from_slice(b"]}");
        }
        body.extend_from_slice(b"]}");
        (body, count)
    }

    /// The line of a record (a map), as a JSON value appended to `out` (`t`, `v_s`:
    /// scratch).
    fn line(&self, rec: &[u8], t: &mut Vec<u8>, v_s: &mut Vec<u8>, out: &mut Vec<u8>) {
        let Some(r) = RecordRef::new(rec) else { return write_json_str(b"", out) };
        if self.plan.drop_single_key && r.len() == 1 {
            if let Some((_, v)) = r.fields().next() {
                // The value as it is (the plugin dumps it with the body: a string stays a
                // string, anything else is its JSON).
                v.write_json(out);
                return;
            }
        }
        t.clear();
        if self.plan.json_lines {
            r.write_json(t);
        } else {
            for (i, (k, v)) in r.fields().enumerate() {
                if i > 0 {
                    t.push(b' ');
                }
                crate::ruby::value::write_to_s(k, t);
                t.push(b'=');
                v_s.clear();
                if matches!(v.kind(), MpKind::Str) {
                    crate::ruby::value::scrub(v.as_str().unwrap_or_default(), v_s);
                } else {
                    crate::ruby::value::write_to_s(v, v_s);
                }
                let quote = v_s.iter().any(|&b| b == b' ' || b == b'=');
                if quote {
                    t.push(b'"');
                }
                for &b in v_s.iter() {
                    if b == b'"' || b == b'\\' {
                        t.push(b'\\');
                    }
                    t.push(b);
                }
                if quote {
                    t.push(b'"');
                }
            }
        }
        write_json_str(t, out);
    }

    async fn write_chunk(&self, chunk: &Chunk, vars: &ChunkVars) -> Result<usize, WriteError> {
        let n = self.writes.get();
        self.writes.set(n + 1);
        let thread = (self.plan.thread_label > 1).then(|| (n % u64::from(self.plan.thread_label)) as u32);
        let (mut body, _) = self.body(&chunk.data, thread);
        let mut headers = self.plan.headers.clone();
        headers.push(("Content-Type".into(), "application/json".into()));
        if let Some(t) = &self.plan.tenant {
            let cx = crate::output::elasticsearch::bulk::ChunkCtx::of(chunk, self.plan.timekey_zone, vars);
            headers.push(("X-Scope-OrgID".into(), crate::output::elasticsearch::bulk::expand(t, &cx)));
        }
        if self.plan.gzip {
            headers.push(("Content-Encoding".into(), "gzip".into()));
            body = crate::http::gzip(body, 6).await;
        }
        let target = self.plan.url.target("");
        let req = Request { method: "POST", url: &self.plan.url, target: &target, headers: &headers, body: &body };
        let resp = self.client.send(&req).await.map_err(|e| WriteError::Retry(e.to_string()))?;
        if (200..300).contains(&resp.status) {
            crate::debug!("{}: {} {} from {}", self.id, resp.status, resp.reason, self.plan.endpoint);
            return Ok(body.len());
        }
        let summary = resp.summary();
        if resp.status == 429 || (500..600).contains(&resp.status) {
            return Err(WriteError::Retry(summary));
        }
        crate::warn!(
            "{}: failed to write post to {} ({summary}); the chunk's {} events are dropped (as fluent-plugin-grafana-loki does: Loki refuses them again on a retry)",
            self.id,
            self.plan.endpoint,
            chunk.count
        );
        Ok(0)
    }
}

impl Writer for LokiWriter {
    fn type_name(&self) -> &'static str {
        "loki"
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(self.write_chunk(chunk, vars))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
