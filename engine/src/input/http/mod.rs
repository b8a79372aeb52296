//! `in_http`: events over HTTP/1.1, as fluentd's `in_http.rb`. `POST /tag.name` (a path
//! `/a/b` is the tag `a.b`) with a JSON object or an array of objects
//! (`application/json`, `application/csp-report`), `application/x-ndjson`,
//! `application/msgpack` (a map or an array of maps), or a form (`json=`, `msgpack=`,
//! `ndjson=`); `?time=` (float seconds) sets the time, else the record's `time` field
//! (removed unless `keep_time_key`), else now. With a `<parse>` of another type the body
//! is parsed with it. `Content-Encoding: gzip|deflate` bodies are inflated up to
//! `decompression_size_limit`. `<transport tls>` serves HTTPS with in_forward's TLS
//! parameters ([`crate::tls::server_tls`]: `cert_path`, `private_key_path`, `ca_path`
//! with `client_cert_auth`, ...).
//!
//! Requests are parsed with `httparse`; keep-alive (HTTP/1.1 unless `Connection: close`;
//! HTTP/1.0 with `Connection: keep-alive`) and pipelining (requests answered in order)
//! are supported; `Expect: 100-continue` gets its interim answer; `Transfer-Encoding:
//! chunked` bodies are accepted. Responses follow fluentd's: 200 (`use_204_response`:
//! 204, `respond_with_empty_img`: a 1x1 GIF), 400 with the reason for a body that does
//! not parse (nothing of that request is emitted), 413 over `body_size_limit`, 403 for
//! CORS refusals, 500 when an output refused the events. A connection idle for
//! `keepalive_timeout` is closed. Memory per connection: the request being read, at most
//! the head limit (64 KiB) plus `body_size_limit` (plus the inflated body, at most
//! `decompression_size_limit`).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::task::JoinHandle;
use spate_protocol::{EntriesFormat, EventBatch, EventTime, Mode, Options};

mod request;

pub use request::{dechunk, inflate, parse_head, Head, RequestError, Response, HEAD_LIMIT};

use super::tcp::parse_addr;
use super::text::{add_field, Entries};
use crate::config::{Attr, ConfigError, Element};
use crate::parser::{ParseError, Parser, ParserConf};
use crate::plugin::{
    Build, BuildError, Emitter, Input, InputPlan, Kind, Listening, LocalFuture, PlanCtx, Registration, ShardCtx,
};
use crate::tls::Stream;

pub const PLUGIN: Registration = Registration {
    name: "http",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan),
    params: "`bind`, `port` (9880), `body_size_limit` (32m), `decompression_size_limit` (256m), `keepalive_timeout` (10s), `backlog`, `add_http_headers`, `add_query_params`, `add_remote_addr` (X-Forwarded-For first), `add_tag_prefix`, `cors_allow_origins` (`*` and `https://*.example.com` patterns), `cors_allow_credentials`, `respond_with_empty_img`, `use_204_response`, `dump_error_log`, `<parse>` (default: JSON/ndjson/msgpack/form bodies with `time_key`, `time_type`, `time_format`, `keep_time_key`; any parser type for other bodies). Keep-alive, pipelining, gzip/deflate bodies, `Expect: 100-continue`, chunked bodies; `<transport tls>` (HTTPS with in_forward's TLS parameters, `client_cert_auth`)",
};

/// A 1x1 transparent GIF (fluentd's EMPTY_GIF_IMAGE).
const EMPTY_GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\xff\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

#[derive(Debug, Clone)]
pub struct HttpConf {
    pub id: String,
    pub addr: SocketAddr,
    pub backlog: Option<i32>,
    pub body_size_limit: usize,
    pub decompression_size_limit: usize,
    pub keepalive_timeout: Duration,
    pub add_http_headers: bool,
    pub add_query_params: bool,
    pub add_remote_addr: bool,
    pub add_tag_prefix: Option<String>,
    pub cors_allow_origins: Option<Vec<String>>,
    pub cors_allow_credentials: bool,
    pub respond_with_empty_img: bool,
    pub use_204_response: bool,
    pub dump_error_log: bool,
    pub label: usize,
    /// The default body handling (JSON / msgpack), or a custom parser.
    pub json: ParserConf,
    pub msgpack: ParserConf,
    pub custom: Option<ParserConf>,
    /// `<transport tls>`: HTTPS (rustls, in_forward's TLS parameters).
    pub tls: Option<crate::tls::ServerTls>,
}

fn usize_param(e: &Element, key: &str, default: usize) -> Result<usize, ConfigError> {
    Ok(e.size(key)?.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX)))
}

/// A `<parse>` for one of the default body types, with the section's time settings and
/// in_http's defaults (`time_key time`, times as numbers).
fn default_parser(p: Option<&Element>, pos: &crate::config::Pos, ty: &str) -> Result<ParserConf, ConfigError> {
    let mut attrs: Vec<Attr> = Vec::new();
    if let Some(p) = p {
        for a in &p.attrs {
            if a.key != "@type" && a.key != "type" {
                attrs.push(a.clone());
            }
        }
    }
    if !attrs.iter().any(|a| a.key == "time_key") {
        attrs.push(Attr { key: "time_key".into(), value: "time".into(), pos: pos.clone() });
    }
    if !attrs.iter().any(|a| a.key == "time_type" || a.key == "time_format") {
        attrs.push(Attr { key: "time_type".into(), value: "float".into(), pos: pos.clone() });
    }
    let e = Element::new("parse".into(), String::new(), attrs, Vec::new(), pos.clone());
    ParserConf::with_type(&e, ty)
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let cors_allow_origins = e.array("cors_allow_origins")?;
    let cors_allow_credentials = e.bool("cors_allow_credentials")?.unwrap_or(false);
    if cors_allow_credentials && cors_allow_origins.as_ref().is_none_or(|o| o.iter().any(|x| x == "*")) {
        return Err(e.error("Cannot enable cors_allow_credentials without specific origins"));
    }
    let add_tag_prefix = e.str("add_tag_prefix").map(str::to_string);
    if add_tag_prefix.as_deref() == Some("") {
        return Err(e.error("'add_tag_prefix' parameter must not be empty"));
    }
    let mut tls = None;
    if let Some(t) = e.single("transport")? {
        // server_tls reports unused parameters of a tls section itself.
        tls = crate::tls::server_tls(t)?;
        if tls.is_none() {
            t.warn_unused();
        }
    }
    // Or the <parse> fluentd's compat layer makes of v0.12's flat `format`,
    // `time_key`, `time_format`, ...
    let v012 = crate::parser::v012_section(e)?;
    let parse = e.single("parse")?.or(v012.as_ref());
    let custom = match parse.and_then(|p| p.plugin_type()) {
        Some("in_http") | None => None,
        Some(_) => Some(ParserConf::from_element(parse.unwrap_or(e))?),
    };
    let pos = parse.map_or(e.pos.clone(), |p| p.pos.clone());
    let json = default_parser(parse, &pos, "json")?;
    let msgpack = default_parser(parse, &pos, "msgpack")?;
    if let Some(p) = parse {
        p.mark_all_used();
    }
    Ok(Box::new(HttpConf {
        id: ctx.id(e, "http"),
        addr: parse_addr(e, 9880)?,
        backlog: e.int("backlog")?.map(|b| b as i32),
        body_size_limit: usize_param(e, "body_size_limit", 32 << 20)?,
        decompression_size_limit: usize_param(e, "decompression_size_limit", 256 << 20)?,
        keepalive_timeout: e.time("keepalive_timeout")?.unwrap_or(Duration::from_secs(10)),
        add_http_headers: e.bool("add_http_headers")?.unwrap_or(false),
        add_query_params: e.bool("add_query_params")?.unwrap_or(false),
        add_remote_addr: e.bool("add_remote_addr")?.unwrap_or(false),
        add_tag_prefix,
        cors_allow_origins,
        cors_allow_credentials,
        respond_with_empty_img: e.bool("respond_with_empty_img")?.unwrap_or(false),
        use_204_response: e.bool("use_204_response")?.unwrap_or(false),
        dump_error_log: e.bool("dump_error_log")?.unwrap_or(true),
        label: ctx.label_ref(e)?.unwrap_or(0),
        json,
        msgpack,
        custom,
        tls,
    }))
}

impl InputPlan for HttpConf {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "http"
    }
    fn label(&self) -> usize {
        self.label
    }
    fn describe(&self) -> String {
        self.addr.to_string()
    }
    fn build(&self, _ctx: &Rc<ShardCtx>, emitter: Rc<dyn Emitter>) -> Result<Rc<dyn Input>, BuildError> {
        Ok(HttpInput::new(self.clone(), emitter))
    }
}

/// `x-www-form-urlencoded` pairs (also the query string), bytes kept as sent.
fn form(q: &[u8]) -> Vec<(String, Vec<u8>)> {
    form_urlencoded::parse(q).map(|(k, v)| (k.into_owned(), v.into_owned().into_bytes())).collect()
}

/// fluentd's CORS origin check (`*` wildcards in an allowed origin).
fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|a| {
        a == origin
            || (!a.is_empty() && {
                let (s, e) = a.split_once('*').unwrap_or((a.as_str(), ""));
                a.contains('*') && origin.starts_with(s) && origin.ends_with(e)
            })
    })
}

/// The per-shard request handler: parsers and reused buffers.
pub struct Handler {
    pub conf: HttpConf,
    json: Parser,
    msgpack: Parser,
    custom: Option<Parser>,
}

impl Handler {
    pub fn new(conf: HttpConf) -> Handler {
        Handler {
            json: conf.json.build(),
            msgpack: conf.msgpack.build(),
            custom: conf.custom.as_ref().map(ParserConf::build),
            conf,
        }
    }

    fn cors_headers(&self, h: &Head, r: &mut Response) {
        let Some(allowed) = &self.conf.cors_allow_origins else { return };
        if allowed.iter().any(|o| o == "*") {
            r.headers.push(("Access-Control-Allow-Origin", "*".into()));
        } else if let Some(o) = h.origin.as_deref().filter(|o| origin_allowed(allowed, o)) {
            r.headers.push(("Access-Control-Allow-Origin", o.to_string()));
            if self.conf.cors_allow_credentials {
                r.headers.push(("Access-Control-Allow-Credentials", "true".into()));
            }
        }
    }

    /// Handles one complete request: the response, and the batch to emit (if any).
    pub fn handle(&mut self, h: &Head, body: &[u8], peer: Option<SocketAddr>) -> (Response, Option<EventBatch>) {
        match h.method.as_str() {
            "GET" => return (Response::new("200 OK", "").closing(), None),
            "OPTIONS" => return (self.preflight(h), None),
            _ => {}
        }
        if let Some(allowed) = &self.conf.cors_allow_origins {
            let ok = allowed.iter().any(|o| o == "*") || h.origin.as_deref().is_none_or(|o| origin_allowed(allowed, o));
            if !ok {
                return (Response::new("403 Forbidden", "").closing(), None);
            }
        }
        let inflated;
        let body =
            if h.content_encoding.eq_ignore_ascii_case("gzip") || h.content_encoding.eq_ignore_ascii_case("deflate") {
                match inflate(&h.content_encoding.to_ascii_lowercase(), body, self.conf.decompression_size_limit) {
                    Ok(b) => {
                        inflated = b;
                        &inflated[..]
                    }
                    Err(e) => {
                        if self.conf.dump_error_log {
                            crate::warn!("{}: fails to decode payload: {e}", self.conf.id);
                        }
                        return (Response::new("400 Bad Request", format!("400 Bad Request\n{e}\n")).closing(), None);
                    }
                }
            } else {
                body
            };
        let mut r = match self.events(h, body, peer) {
            Ok(batch) => {
                let mut r = if self.conf.respond_with_empty_img {
                    let mut r = Response::new("200 OK", EMPTY_GIF);
                    r.headers.push(("Content-Type", "image/gif; charset=utf-8".into()));
                    r
                } else if self.conf.use_204_response {
                    Response::new("204 No Content", "")
                } else {
                    Response::new("200 OK", "")
                };
                self.cors_headers(h, &mut r);
                return (r, batch);
            }
            Err(reason) => {
                if self.conf.dump_error_log {
                    crate::error!(
                        "{}: failed to process request from {}: {reason}",
                        self.conf.id,
                        peer.map_or_else(|| "?".into(), |p| p.to_string())
                    );
                }
                Response::new("400 Bad Request", format!("400 Bad Request\n{reason}\n"))
            }
        };
        self.cors_headers(h, &mut r);
        (r, None)
    }

    fn preflight(&self, h: &Head) -> Response {
        let Some(allowed) = &self.conf.cors_allow_origins else { return Response::new("403 Forbidden", "").closing() };
        if h.acr_method.as_deref() != Some("POST") {
            return Response::new("403 Forbidden", "").closing();
        }
        let mut r = Response::new("200 OK", "").closing();
        r.headers.push(("Access-Control-Allow-Methods", "POST".into()));
        r.headers.push(("Access-Control-Allow-Headers", h.acr_headers.clone().unwrap_or_default()));
        if allowed.iter().any(|o| o == "*") {
            r.headers.push(("Access-Control-Allow-Origin", "*".into()));
        } else if let Some(o) = h.origin.as_deref().filter(|o| origin_allowed(allowed, o)) {
            r.headers.push(("Access-Control-Allow-Origin", o.to_string()));
            if self.conf.cors_allow_credentials {
                r.headers.push(("Access-Control-Allow-Credentials", "true".into()));
            }
        } else {
            return Response::new("403 Forbidden", "").closing();
        }
        r
    }

    /// The request's events as one batch (None: no events), or why it is a 400.
    fn events(&mut self, h: &Head, body: &[u8], peer: Option<SocketAddr>) -> Result<Option<EventBatch>, String> {
        let path = h.path.strip_prefix('/').unwrap_or(&h.path);
        let mut tag: String = path.split('/').collect::<Vec<_>>().join(".");
        if let Some(p) = &self.conf.add_tag_prefix {
            tag = format!("{p}.{tag}");
        }
        let query = h.query.as_deref().map(|q| form(q.as_bytes())).unwrap_or_default();
        let (kind, data): (K, std::borrow::Cow<'_, [u8]>) = if self.custom.is_some() {
            (K::Custom, std::borrow::Cow::Borrowed(body))
        } else {
            let ct = h.content_type.to_ascii_lowercase();
            let mut params = query.clone();
            // The body is the last parameter of its name (fluentd sets params[name] =
            // body), so it wins over the query's; borrowed, not copied.
            let mut body_param = None;
            if ct.starts_with("application/x-www-form-urlencoded") {
                params.extend(form(body));
            } else if ct.starts_with("application/json") || ct.starts_with("application/csp-report") {
                body_param = Some("json");
            } else if ct.starts_with("application/msgpack") {
                body_param = Some("msgpack");
            } else if ct.starts_with("application/x-ndjson") {
                body_param = Some("ndjson");
            } else if ct.starts_with("multipart/form-data") {
                return Err("multipart/form-data bodies are not supported by spate; send json= as x-www-form-urlencoded or application/json".into());
            }
            let mut get = |k: &str| {
                if body_param == Some(k) {
                    return Some(std::borrow::Cow::Borrowed(body));
                }
                params.iter().rposition(|(n, _)| n == k).map(|i| std::borrow::Cow::Owned(params.swap_remove(i).1))
            };
            if let Some(m) = get("msgpack") {
                (K::Msgpack, m)
            } else if let Some(j) = get("json") {
                (K::Json, j)
            } else if let Some(n) = get("ndjson") {
                (K::Ndjson, n)
            } else {
                return Err("'json', 'ndjson' or 'msgpack' parameter is required".into());
            }
        };
        // Records are about as long as their JSON, plus an entry header each.
        let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 64);
        let mut sink = Entries::default();
        let mut first_error: Option<ParseError> = None;
        let time_param =
            query.iter().rev().find(|(k, _)| k == "time").map(|(_, v)| crate::parser::record::ruby_to_f(v));
        let mut run = |p: &mut Parser, text: &[u8], out: &mut Vec<u8>, sink: &mut Entries| {
            let before = sink.failed;
            p.parse(text, out, sink);
            if sink.failed != before && first_error.is_none() {
                first_error = sink.last_error.clone();
            }
        };
        match kind {
            K::Json => run(&mut self.json, &data, &mut out, &mut sink),
            K::Msgpack => run(&mut self.msgpack, &data, &mut out, &mut sink),
            K::Ndjson => {
                for line in data.split(|&c| c == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if !line.is_empty() {
                        run(&mut self.json, line, &mut out, &mut sink);
                    }
                }
            }
            K::Custom => {
                if let Some(p) = self.custom.as_mut() {
                    run(p, &data, &mut out, &mut sink);
                }
            }
        }
        // A body that does not parse (or whose time does not) is a 400 and emits nothing;
        // elements of an array that are not objects are skipped, as fluentd does.
        if let Some(e) = first_error {
            if sink.count == 0 || !matches!(e, ParseError::NotObject) {
                return Err(e.to_string());
            }
        }
        if sink.count == 0 {
            return Ok(None);
        }
        self.decorate(&mut out, h, &query, peer, time_param);
        Ok(Some(EventBatch {
            tag: Bytes::from(tag),
            wire_len: out.len(),
            entries: Bytes::from(out),
            format: EntriesFormat::Packed,
            count: sink.count,
            invalid: 0,
            mode: Mode::PackedForward,
            option: Options::default(),
        }))
    }

    /// Adds HTTP_*, QUERY_* and REMOTE_ADDR fields, and `?time=`, to every entry.
    fn decorate(
        &self,
        out: &mut Vec<u8>,
        h: &Head,
        query: &[(String, Vec<u8>)],
        peer: Option<SocketAddr>,
        time: Option<f64>,
    ) {
        let c = &self.conf;
        if !c.add_http_headers && !c.add_query_params && !c.add_remote_addr && time.is_none() {
            return;
        }
        let remote = h.forwarded_for.clone().or_else(|| peer.map(|p| p.ip().to_string())).unwrap_or_default();
        let t = time.map(|t| {
            if t == 0.0 || !t.is_finite() || t < 0.0 {
                EventTime::now()
            } else {
                EventTime::new(t.trunc().min(u32::MAX as f64) as u32, ((t.fract() * 1e9) as u32).min(999_999_999))
            }
        });
        let mut rebuilt = Vec::with_capacity(out.len() + 64);
        for ev in spate_protocol::Events::new(out, EntriesFormat::Packed) {
            rebuilt.push(0x92);
            spate_protocol::encode::raw::event_time(&mut rebuilt, t.unwrap_or(ev.time));
            let map = rebuilt.len();
            rebuilt.extend_from_slice(ev.record.as_bytes());
            if c.add_http_headers {
                for (k, v) in &h.headers {
                    let name = format!("HTTP_{}", k.replace('-', "_").to_ascii_uppercase());
                    add_field(&mut rebuilt, map, name.as_bytes(), v);
                }
            }
            if c.add_query_params {
                for (k, v) in query {
                    let name = format!("QUERY_{}", k.replace('-', "_").to_ascii_uppercase());
                    add_field(&mut rebuilt, map, name.as_bytes(), v);
                }
            }
            if c.add_remote_addr {
                add_field(&mut rebuilt, map, b"REMOTE_ADDR", remote.as_bytes());
            }
        }
        *out = rebuilt;
    }
}

/// What a request body holds.
enum K {
    Json,
    Ndjson,
    Msgpack,
    Custom,
}

// ---------------------------------------------------------------------------------------
// The server

/// Counters (shard-local).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    pub connections: Cell<u64>,
    pub requests: Cell<u64>,
    pub events: Cell<u64>,
    pub bad_requests: Cell<u64>,
    pub too_large: Cell<u64>,
    pub refused_events: Cell<u64>,
}

fn inc(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

pub struct HttpInput {
    pub metrics: HttpMetrics,
    handler: std::cell::RefCell<Handler>,
    router: Rc<dyn Emitter>,
    stopping: Cell<bool>,
    tasks: std::cell::RefCell<Vec<JoinHandle<()>>>,
    conns: std::cell::RefCell<std::collections::HashMap<u64, JoinHandle<()>>>,
    next: Cell<u64>,
}

impl HttpInput {
    pub fn new(conf: HttpConf, router: Rc<dyn Emitter>) -> Rc<Self> {
        Rc::new(HttpInput {
            metrics: HttpMetrics::default(),
            handler: std::cell::RefCell::new(Handler::new(conf)),
            router,
            stopping: Cell::new(false),
            tasks: Default::default(),
            conns: Default::default(),
            next: Cell::new(0),
        })
    }

    /// The input's configuration (also what the instruction-count example builds its
    /// [`Handler`] from).
    pub fn conf(&self) -> HttpConf {
        self.handler.borrow().conf.clone()
    }

    /// The listener is pooled per shard (it survives a reload): accept errors are the
    /// pool's, and a stopping input hands back what it took.
    async fn accept_loop(self: Rc<Self>, l: super::net::Listener) {
        loop {
            let s = l.accept().await;
            if self.stopping.get() {
                l.give_back(s);
                return;
            }
            inc(&self.metrics.connections, 1);
            let id = self.next.get();
            self.next.set(id + 1);
            let me = self.clone();
            let h = glommio::spawn_local(async move {
                let peer = s.peer_addr().ok();
                let tls = me.handler.borrow().conf.tls.clone();
                match Stream::accept_if(s, tls.as_ref(), crate::tls::HANDSHAKE_TIMEOUT).await {
                    Ok(st) => me.serve(st, peer).await,
                    Err(e) => {
                        inc(&me.metrics.bad_requests, 1);
                        crate::debug!("{}: TLS handshake with {peer:?} failed: {e}", me.handler.borrow().conf.id);
                    }
                }
                me.conns.borrow_mut().remove(&id);
            })
            .detach();
            self.conns.borrow_mut().insert(id, h);
        }
    }

    async fn serve(&self, mut s: Stream, peer: Option<SocketAddr>) {
        let conf = self.conf();
        let mut buf: Vec<u8> = Vec::new();
        let mut chunked = Vec::new();
        let mut out = Vec::new();
        let mut continued = false;
        loop {
            // Answer every complete request in the buffer, in order (pipelining).
            let mut close = false;
            loop {
                let head = match parse_head(&buf) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(e) => {
                        inc(&self.metrics.bad_requests, 1);
                        let status = if e == RequestError::HeadTooLarge {
                            "431 Request Header Fields Too Large"
                        } else {
                            "400 Bad Request"
                        };
                        Response::new(status, format!("{status}\n{e}\n")).write(false, &mut out);
                        close = true;
                        break;
                    }
                };
                let limit = conf.body_size_limit;
                if head.content_length.is_some_and(|l| l > limit) {
                    inc(&self.metrics.too_large, 1);
                    Response::new("413 Request Entity Too Large", "Too large").write(false, &mut out);
                    close = true;
                    break;
                }
                let body_range = if head.chunked {
                    match dechunk(&buf[head.head_len..], limit, &mut chunked) {
                        Ok(Some(n)) => Some((None, head.head_len + n)),
                        Ok(None) => None,
                        Err(e) => {
                            inc(&self.metrics.bad_requests, 1);
                            let st = if matches!(e, RequestError::TooLarge(_)) {
                                "413 Request Entity Too Large"
                            } else {
                                "400 Bad Request"
                            };
                            Response::new(st, format!("{e}\n")).write(false, &mut out);
                            close = true;
                            break;
                        }
                    }
                } else {
                    let end = head.head_len + head.content_length.unwrap_or(0);
                    (buf.len() >= end).then_some((Some(head.head_len..end), end))
                };
                let Some((range, end)) = body_range else {
                    if head.expect.as_deref() == Some("100-continue") && !continued {
                        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        continued = true;
                    }
                    break;
                };
                continued = false;
                if head.expect.as_deref().is_some_and(|e| e != "100-continue") {
                    Response::new("417 Expectation Failed", "").write(false, &mut out);
                    close = true;
                    break;
                }
                inc(&self.metrics.requests, 1);
                let body: &[u8] = match &range {
                    Some(r) => &buf[r.clone()],
                    None => &chunked,
                };
                let (mut resp, batch) = self.handler.borrow_mut().handle(&head, body, peer);
                if let Some(b) = batch {
                    let n = b.count as u64;
                    if let Err(e) = self.emit(conf.label, b).await {
                        inc(&self.metrics.refused_events, n);
                        if conf.dump_error_log {
                            crate::error!("{}: failed to emit data: {e}", conf.id);
                        }
                        resp = Response::new("500 Internal Server Error", format!("500 Internal Server Error\n{e}\n"));
                    } else {
                        inc(&self.metrics.events, n);
                    }
                }
                if resp.status.starts_with("400") {
                    inc(&self.metrics.bad_requests, 1);
                }
                let keep = head.keep_alive && !resp.close;
                resp.write(keep, &mut out);
                buf.drain(..end);
                if !keep {
                    close = true;
                    break;
                }
            }
            if !out.is_empty() {
                if s.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
            if close || self.stopping.get() {
                let _ = s.close().await;
                return;
            }
            // Read more, bounded: a head is at most HEAD_LIMIT, a body body_size_limit.
            let cap = HEAD_LIMIT + conf.body_size_limit + 64;
            if buf.len() > cap {
                inc(&self.metrics.too_large, 1);
                return;
            }
            let start = buf.len();
            let window = (64 << 10).min(cap - start + 1);
            // What is waiting is taken without zero-filling the window first (plain
            // TCP: TLS records go through rustls).
            buf.reserve(window);
            if let Some(fd) = s.plain_fd() {
                match crate::sys::recv_waiting(fd, &mut buf, window) {
                    Some(Ok(n)) if n > 0 => continue,
                    Some(_) => return,
                    None => {}
                }
            }
            buf.resize(start + window, 0);
            let r = glommio::timer::timeout(conf.keepalive_timeout, async {
                s.read(&mut buf[start..]).await.map_err(glommio::GlommioError::from)
            })
            .await;
            match r {
                Ok(n) if n > 0 => buf.truncate(start + n),
                _ => {
                    // Closed, failed, or idle for keepalive_timeout.
                    return;
                }
            }
        }
    }

    /// Emits, waiting while a `block` buffer is full.
    async fn emit(&self, label: usize, b: EventBatch) -> Result<(), crate::plugin::EmitError> {
        let mut pause = Duration::from_millis(5);
        loop {
            match self.router.emit(label, b.clone()) {
                Err(e) if e.is_block() && !self.stopping.get() => {
                    glommio::timer::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                r => return r,
            }
        }
    }
}

impl Input for HttpInput {
    fn start(self: Rc<Self>, _first: bool) -> std::io::Result<Vec<Listening>> {
        let conf = self.conf();
        let l = super::net::listen(conf.addr, conf.backlog)?;
        let local = l.local_addr();
        let me = self.clone();
        let t = glommio::spawn_local(async move { me.accept_loop(l).await }).detach();
        self.tasks.borrow_mut().push(t);
        Ok(vec![Listening { addr: local, what: "http" }])
    }

    fn stop(&self, grace: Duration) -> LocalFuture<'_, ()> {
        Box::pin(async move {
            self.stopping.set(true);
            for t in self.tasks.borrow_mut().drain(..) {
                t.cancel();
            }
            let end = std::time::Instant::now() + grace;
            while !self.conns.borrow().is_empty() && std::time::Instant::now() < end {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            for (_, h) in self.conns.borrow_mut().drain() {
                h.cancel();
            }
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins() {
        let allowed = vec!["https://*.example.com".to_string(), "http://exact.test".to_string(), String::new()];
        assert!(origin_allowed(&allowed, "https://app.example.com"));
        assert!(origin_allowed(&allowed, "http://exact.test"));
        assert!(!origin_allowed(&allowed, "https://evil.test"));
        assert!(!origin_allowed(&allowed, "http://exact.test.evil"));
    }
}
