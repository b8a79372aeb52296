//! `out_http` (fluentd core): each chunk, formatted with `<format>` (default `json`,
//! one object per line; `json_array` makes it one JSON array), is sent in one POST or
//! PUT to `endpoint` (with `${tag}`, chunk-key and time placeholders). A 2xx answer
//! commits the chunk; a status in `retryable_response_codes` (default 503) or a
//! connection error is retried; any other status is unrecoverable (straight to
//! `<secondary>`, else dropped) with `error_response_as_unrecoverable true` (the
//! default), or logged and dropped without it, as fluentd does.

use std::rc::Rc;
use std::time::Duration;

use spate_protocol::{EntriesFormat, Events};

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::format::{FormatConf, Formatter, Inject, Zone};
use crate::http::{Client, ClientConf, Request, Scheme, Url};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};

pub const PLUGIN: Registration = Registration {
    name: "http",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "`endpoint` (`${tag}`, chunk-key and time placeholders; another host needs `allowed_hosts`), `http_method` post/put, `content_type` (default from the formatter), `json_array`, `<format>` (any formatter; default `json`), `headers`, `headers_from_placeholders`, `compress gzip`, `open_timeout`, `read_timeout`, `ssl_timeout`, `reuse_connections`, `tls_ca_cert_path`, `tls_client_cert_path`, `tls_private_key_path`, `tls_verify_mode` none/peer, `tls_version`, `error_response_as_unrecoverable`, `retryable_response_codes` (default 503), `<auth>` `method basic` (`username`, `password`). Not supported (config errors): `proxy`, `<auth> method aws_sigv4`, `tls_private_key_passphrase`",
};

#[derive(Debug, Clone)]
pub struct HttpPlan {
    pub endpoint: String,
    /// The host the configured endpoint names (placeholders may not change it unless
    /// `allowed_hosts` lists the result).
    pub endpoint_host: String,
    pub allowed_hosts: Vec<String>,
    pub method: &'static str,
    pub content_type: String,
    pub json_array: bool,
    pub format: FormatConf,
    pub headers: Vec<(String, String)>,
    pub headers_from_placeholders: Vec<(String, String)>,
    pub gzip: bool,
    pub client: ClientConf,
    pub retryable: Vec<u16>,
    pub error_response_as_unrecoverable: bool,
    pub timekey_zone: Zone,
}

fn secs(e: &Element, key: &str, default: u64) -> Result<Duration, ConfigError> {
    Ok(match e.int(key)? {
        Some(v) if v >= 0 => Duration::from_secs(v as u64),
        Some(v) => return Err(e.error_at(key, format!("{key} {v}: must not be negative"))),
        None => Duration::from_secs(default),
    })
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let endpoint = e.str("endpoint").ok_or_else(|| e.error("'endpoint' parameter is required"))?.to_string();
    // fluentd parses the endpoint with its placeholders replaced by a dummy host part.
    let probe = {
        let mut s = String::new();
        let mut rest = endpoint.as_str();
        while let Some(i) = rest.find(['$', '%']) {
            s.push_str(&rest[..i]);
            match rest[i + 1..].strip_prefix('{').and_then(|r| r.find('}').map(|j| (r, j))) {
                Some((r, j)) => {
                    s.push_str("placeholder.invalid");
                    rest = &r[j + 1..];
                }
                None => {
                    s.push_str(&rest[i..i + 1]);
                    rest = &rest[i + 1..];
                }
            }
        }
        s.push_str(rest);
        s
    };
    let url =
        Url::parse(&probe).map_err(|x| e.error_at("endpoint", format!("Invalid endpoint URI: {endpoint} ({x})")))?;
    if let Some(p) = e.str("proxy") {
        return Err(e.error_at("proxy", format!("proxy {p:?}: HTTP proxies are not supported by spate")));
    }
    let method = match e.enum_of("http_method", &["put", "post"])?.as_deref() {
        Some("put") => "PUT",
        _ => "POST",
    };
    let mut format = crate::format::format_conf(e, "json", &ctx.hostname)?;
    if e.elements_named("inject").next().is_some() {
        crate::warn!("{}: out_http does not take <inject> (as in fluentd); ignored", e.pos);
        format.inject = Inject::default();
    }
    let fmt_type = match &format.formatter {
        Formatter::Json => "json",
        Formatter::Csv(_) => "csv",
        Formatter::Tsv(_) | Formatter::Ltsv(_) => "tsv",
        Formatter::Msgpack => "msgpack",
        _ => "text",
    };
    let json_array = e.bool("json_array")?.unwrap_or(false);
    if json_array && fmt_type != "json" {
        return Err(e.error_at("json_array", "json_array option could be used with json formatter only"));
    }
    let content_type = match e.str("content_type") {
        Some(c) => c.to_string(),
        None => match fmt_type {
            "json" if json_array => "application/json",
            "json" => "application/x-ndjson",
            "csv" => "text/csv",
            "tsv" => "text/tab-separated-values",
            "msgpack" => "application/x-msgpack",
            _ => "text/plain",
        }
        .to_string(),
    };
    let mut headers = e.hash("headers")?.unwrap_or_default();
    if let Some(a) = e.single("auth")? {
        match a.enum_of("method", &["basic", "aws_sigv4"])?.as_deref() {
            None | Some("basic") => {
                let u = a.str("username").unwrap_or("");
                let p = a.str("password").unwrap_or("");
                headers.push(("Authorization".to_string(), crate::http::basic_auth(u, p)));
            }
            _ => return Err(a.error("<auth> method aws_sigv4 is not supported by spate (AWS request signing)")),
        }
        a.warn_unused();
    }
    let tls = if url.scheme == Scheme::Https {
        if let Some(a) = e.get("tls_ciphers") {
            crate::warn!("{}: tls_ciphers is ignored: spate uses rustls's cipher suites", a.pos);
        }
        let verify = e.enum_of("tls_verify_mode", &["none", "peer"])?.as_deref() != Some("none");
        let p = crate::tls::HttpTlsParams {
            ca_files: e.str("tls_ca_cert_path").map(|c| vec![c.to_string()]).unwrap_or_default(),
            client_cert: e.str("tls_client_cert_path"),
            client_key: e.str("tls_private_key_path"),
            client_key_pass: e.str("tls_private_key_passphrase"),
            verify,
            verify_hostname: verify,
            version: e.str("tls_version").unwrap_or("TLSv1_2"),
            min_version: None,
            max_version: None,
            names: ("tls_ca_cert_path", "tls_client_cert_path", "tls_private_key_path"),
            allow_self_signed: false,
            system_roots: Default::default(),
        };
        Some(crate::tls::http_client_tls(e, &p)?)
    } else {
        None
    };
    let buffer = match setup.primary_buffer() {
        Some(b) => Some(b.clone()),
        None => setup.buffer(e, &BufferDefaults { keys: &["tag"], ..Default::default() })?,
    };
    let timekey_zone =
        buffer.as_ref().and_then(|b| b.timekey.as_ref()).map_or(Zone::Local, |k| Zone::Fixed(k.utc_offset));
    let retryable = match e.array("retryable_response_codes")? {
        Some(v) => v
            .iter()
            .map(|c| {
                c.parse::<u16>().map_err(|_| {
                    e.error_at(
                        "retryable_response_codes",
                        format!("retryable_response_codes: {c:?} is not a status code"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![503],
    };
    let open = secs(e, "open_timeout", 60)?;
    let ssl = secs(e, "ssl_timeout", open.as_secs())?;
    Ok(Box::new(HttpPlan {
        endpoint_host: url.host.clone(),
        endpoint,
        allowed_hosts: e.array("allowed_hosts")?.unwrap_or_default(),
        method,
        content_type,
        json_array,
        format,
        headers,
        headers_from_placeholders: e.hash("headers_from_placeholders")?.unwrap_or_default(),
        gzip: e.enum_of("compress", &["text", "gzip"])?.as_deref() == Some("gzip"),
        client: ClientConf {
            tls,
            // The TLS handshake is bounded by ssl_timeout, the TCP connect by open_timeout.
            connect_timeout: open.max(ssl),
            timeout: secs(e, "read_timeout", 60)?,
            keepalive: e.bool("reuse_connections")?.unwrap_or(false),
            ..Default::default()
        },
        retryable,
        error_response_as_unrecoverable: e.bool("error_response_as_unrecoverable")?.unwrap_or(true),
        timekey_zone,
    }))
}

impl WriterPlan for HttpPlan {
    fn concurrent_writes(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "http"
    }

    fn describe(&self) -> String {
        format!("{} {}", self.method, self.endpoint)
    }

    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(HttpWriter { id: id.to_string(), client: Client::new(self.client.clone()), plan: self.clone() }))
    }
}

pub struct HttpWriter {
    id: String,
    client: Client,
    plan: HttpPlan,
}

impl HttpWriter {
    /// The request body: every event formatted; `json_array` wraps them as fluentd
    /// does (`"[" + (each line + ",") with the last "," chopped + "]"`).
    pub fn body(&self, tag: &[u8], entries: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(entries.len() + entries.len() / 2 + 2);
        if self.plan.json_array {
            b.push(b'[');
        }
        for ev in Events::new(entries, EntriesFormat::Packed) {
            self.plan.format.format(&mut b, tag, ev.time, ev.record.as_bytes());
            if self.plan.json_array {
                b.push(b',');
            }
        }
        if self.plan.json_array {
            if b.last() == Some(&b',') {
                b.pop();
            }
            b.push(b']');
        }
        b
    }

    async fn write_chunk(&self, chunk: &Chunk, vars: &ChunkVars) -> Result<usize, WriteError> {
        let cx = crate::output::elasticsearch::bulk::ChunkCtx::of(chunk, self.plan.timekey_zone, vars);
        let endpoint = crate::output::elasticsearch::bulk::expand(&self.plan.endpoint, &cx);
        let url = Url::parse(&endpoint).map_err(|e| WriteError::Fatal(e.to_string()))?;
        if url.host != self.plan.endpoint_host {
            // A placeholder changed the host (fluentd's parse_endpoint).
            if self.plan.allowed_hosts.is_empty() {
                return Err(WriteError::Fatal(
                    "allowed_hosts is strictly required when using placeholders in the endpoint host".into(),
                ));
            }
            if !self.plan.allowed_hosts.contains(&url.host) {
                return Err(WriteError::Fatal(format!("Not allowed host: {}", url.host)));
            }
        }
        let mut headers = self.plan.headers.clone();
        for (k, v) in &self.plan.headers_from_placeholders {
            headers.push((k.clone(), crate::output::elasticsearch::bulk::expand(v, &cx)));
        }
        if self.plan.gzip {
            headers.push(("Content-Encoding".into(), "gzip".into()));
        }
        headers.push(("Content-Type".into(), self.plan.content_type.clone()));
        let mut body = self.body(&chunk.tag, &chunk.data);
        if self.plan.gzip {
            body = crate::http::gzip(body, 6).await;
        }
        let target = url.target("");
        let req = Request { method: self.plan.method, url: &url, target: &target, headers: &headers, body: &body };
        let resp = self.client.send(&req).await.map_err(|e| WriteError::Retry(e.to_string()))?;
        if (200..300).contains(&resp.status) {
            crate::debug!("{}: {} {} to {url}", self.id, resp.status, resp.reason);
            return Ok(body.len());
        }
        let msg = resp.summary();
        if self.plan.retryable.contains(&resp.status) {
            return Err(WriteError::Retry(msg));
        }
        if self.plan.error_response_as_unrecoverable {
            return Err(WriteError::Fatal(msg));
        }
        crate::error!("{}: got error response from '{} {url}' : {msg}", self.id, self.plan.method);
        Ok(0)
    }
}

impl Writer for HttpWriter {
    fn type_name(&self) -> &'static str {
        "http"
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(self.write_chunk(chunk, vars))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
