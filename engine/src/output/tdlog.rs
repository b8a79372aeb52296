//! `out_tdlog` (fluent-plugin-td, `@type tdlog`, td-agent's default `td.*.*` output):
//! each chunk is one gzipped upload of msgpack records to Treasure Data's import API,
//! as the plugin and td-client-ruby send it:
//! `PUT <import_endpoint>/v3/table/import_with_id/<db>/<table>/<chunk id hex>/msgpack.gz`
//! with `Authorization: TD1 <apikey>`. The chunk id makes a retried upload idempotent on
//! Treasure Data's side.
//!
//! - Records: the plugin's `format` sets `record['time'] = time.to_i` (in place when the
//!   record has `time`, else appended); a record of more than 512 keys is an error
//!   event (`@ERROR` when the config has one, else logged) and is not uploaded.
//! - Database and table: `database` and `table` (validated at start, as the plugin
//!   does), else the tag's last two parts (`td.<db>.<table>`), normalized as
//!   td-client's `normalize_database_name` (padded to 3 with `_`, lower-cased, other
//!   characters `_`, cut to 255).
//! - `auto_create_table` (default true): an upload answered 404 creates the table
//!   (`POST <api_endpoint>/v3/table/create/<db>/<table>/log`; on 404 the database
//!   first, `/v3/database/create/<db>`; 409 means it exists) and uploads again.
//! - Answers: 2xx commits; 429 and 5xx are retried; any other 4xx is unrecoverable
//!   (`<secondary>`), as the plugin raises `Fluent::UnrecoverableError` for
//!   td-client's `ClientError`s.
//!
//! Differences: the plugin creates (or, without `auto_create_table`, checks) a
//! configured `database`.`table` when it starts, and fails to start when that fails;
//! spate does it on the first upload that is answered 404. A tag without two parts has
//! no table: the plugin retries such a chunk forever, spate makes it unrecoverable.

use std::rc::{Rc, Weak};
use std::time::Duration;

use spate_protocol::encode::raw;
use spate_protocol::{EntriesFormat, Events};

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::http::{Client, ClientConf, Request, Response, Scheme, Url};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};

pub const PLUGIN: Registration = Registration {
    name: "tdlog",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "fluent-plugin-td: `apikey` (required), `auto_create_table` (true), `database` and `table` (else from the tag: `td.<db>.<table>`), `import_endpoint`/`endpoint` (api-import.treasuredata.com), `api_endpoint` (api.treasuredata.com), `use_ssl` (true; an endpoint with a scheme decides itself), `connect_timeout` (60), `read_timeout`/`send_timeout` (600). Default buffer: file, `<buffer tag>`, `flush_interval 300`, `chunk_limit_size 32m`, `chunk_limit_records 8096`. `use_gzip_command` and `tmpdir` have no effect (spate gzips in memory). Not supported (config error): `http_proxy`",
};

const DEFAULT_IMPORT_ENDPOINT: &str = "api-import.treasuredata.com";
const DEFAULT_API_ENDPOINT: &str = "api.treasuredata.com";
/// The plugin's `@key_num_limit`.
const KEY_NUM_LIMIT: usize = 512;

#[derive(Debug, Clone)]
pub struct TdPlan {
    apikey: String,
    auto_create_table: bool,
    /// `database` and `table` when both are configured.
    fixed: Option<(String, String)>,
    import: Url,
    api: Url,
    client: ClientConf,
}

/// td-client's endpoint rule: a URL with a scheme is used as it is; `host[:port]`
/// gets https (port 443) unless `use_ssl false` (http, port 80).
fn endpoint(e: &Element, key: &str, value: &str, ssl: bool) -> Result<Url, ConfigError> {
    let url = if value.contains("://") {
        value.to_string()
    } else {
        let (host, port) = match value.split_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| e.error_at(key, format!("Invalid endpoint: {value}")))?),
            None => (value, if ssl { 443 } else { 80 }),
        };
        format!("{}://{host}:{port}", if ssl { "https" } else { "http" })
    };
    Url::parse(&url).map_err(|x| e.error_at(key, format!("Invalid endpoint: {value} ({x})")))
}

/// td-client's `validate_name`: 3 to 255 characters of `[a-z0-9_]`.
fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if !(3..=255).contains(&n) {
        let unit = if n == 1 { "character" } else { "characters" };
        return Err(format!("{what} name must be between 3 and 255 characters long. Got {n} {unit}."));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(format!("{what} name must only consist of lower-case alpha-numeric characters and '_'."));
    }
    Ok(())
}

/// td-client's `normalize_database_name` (and `normalize_table_name`).
pub fn normalize_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut chars: Vec<char> = name.chars().collect();
    while chars.len() < 3 {
        chars.push('_');
    }
    if chars.len() > 255 {
        chars.truncate(253);
        chars.extend(['_', '_']);
    }
    // `downcase` (Unicode) and then every character outside [a-z0-9_] is one `_`.
    let lower: String = chars.into_iter().collect::<String>().to_lowercase();
    Some(
        lower.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '_' }).collect(),
    )
}

fn plan(e: &Element, _ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let apikey = e.str("apikey").ok_or_else(|| e.error("'apikey' parameter is required"))?.to_string();
    if let Some(a) = e.get("http_proxy") {
        return Err(ConfigError::at(&a.pos, "http_proxy is not supported by spate (HTTP proxies)"));
    }
    for k in ["use_gzip_command", "tmpdir"] {
        if let Some(a) = e.get(k) {
            crate::info!("{}: {k} has no effect in spate: chunks are gzipped in memory", a.pos);
        }
    }
    let _ = e.bool("use_gzip_command")?;
    let fixed = match (e.str("database"), e.str("table")) {
        (Some(d), Some(t)) => {
            validate_name("Database", d)
                .map_err(|m| e.error_at("database", format!("Invalid database name {d:?}: {m}")))?;
            validate_name("Table", t).map_err(|m| e.error_at("table", format!("Invalid table name {t:?}: {m}")))?;
            Some((d.to_string(), t.to_string()))
        }
        _ => None,
    };
    let ssl = e.bool("use_ssl")?.unwrap_or(true);
    let import_key = if e.get("import_endpoint").is_some() { "import_endpoint" } else { "endpoint" };
    let import_value = e.str("import_endpoint").or(e.str("endpoint")).unwrap_or(DEFAULT_IMPORT_ENDPOINT);
    let import = endpoint(e, import_key, import_value, ssl)?;
    let api = endpoint(e, "api_endpoint", e.str("api_endpoint").unwrap_or(DEFAULT_API_ENDPOINT), ssl)?;
    let secs = |k: &str, d: u64| -> Result<Duration, ConfigError> {
        Ok(match e.int(k)? {
            Some(v) if v > 0 => Duration::from_secs(v as u64),
            Some(v) => return Err(e.error_at(k, format!("{k} {v}: must be positive"))),
            None => Duration::from_secs(d),
        })
    };
    let connect_timeout = secs("connect_timeout", 60)?;
    let timeout = secs("read_timeout", 600)?.max(secs("send_timeout", 600)?);
    let tls = if import.scheme == Scheme::Https || api.scheme == Scheme::Https {
        Some(crate::tls::system_client_tls(e, true)?)
    } else {
        None
    };
    let buffer = match setup.primary_buffer() {
        Some(_) => None,
        None => setup.buffer(
            e,
            &BufferDefaults {
                keys: &["tag"],
                file_type: true,
                flush_interval: Some(300),
                chunk_limit_size: Some(32 << 20),
                chunk_limit_records: Some(8096),
                ..Default::default()
            },
        )?,
    };
    let _ = buffer;
    // spate's chunks always hold one tag; the check is the plugin's configuration rule.
    let keys = e.single("buffer")?.map(|b| b.arg.trim()).filter(|a| !a.is_empty());
    if fixed.is_none() && keys.is_some_and(|k| !k.split(',').any(|k| k.trim() == "tag")) {
        return Err(e.error("'tag' must be included in <buffer ARG> when database and table are not specified"));
    }
    Ok(Box::new(TdPlan {
        apikey,
        auto_create_table: e.bool("auto_create_table")?.unwrap_or(true),
        fixed,
        import,
        api,
        client: ClientConf { tls, connect_timeout, timeout, keepalive: true, ..Default::default() },
    }))
}

impl WriterPlan for TdPlan {
    fn concurrent_writes(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "tdlog"
    }

    fn describe(&self) -> String {
        let to = match &self.fixed {
            Some((d, t)) => format!("{d}.{t}"),
            None => "td.<db>.<table> from the tag".into(),
        };
        format!("Treasure Data import {}:{} -> {to}", self.import.host, self.import.port)
    }

    fn build(&self, id: &str, ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(TdWriter {
            id: id.to_string(),
            client: Client::new(self.client.clone()),
            plan: self.clone(),
            ctx: Rc::downgrade(ctx),
            reported: Default::default(),
        }))
    }
}

pub struct TdWriter {
    id: String,
    client: Client,
    plan: TdPlan,
    ctx: Weak<ShardCtx>,
    /// Chunks whose error events went out already: the plugin emits them once, in
    /// `format`; spate builds the body on every attempt.
    reported: std::cell::RefCell<std::collections::VecDeque<[u8; 16]>>,
}

/// Chunk ids remembered in [`TdWriter::reported`].
const REPORTED: usize = 256;

/// How an answer is handled (td-client's `raise_error` classes, as the plugin rescues
/// them).
fn classify(resp: &Response, what: &str) -> WriteError {
    let msg = format!("{what}: {}", resp.summary());
    match resp.status {
        429 => WriteError::Retry(msg),
        400..=499 => WriteError::Fatal(msg),
        _ => WriteError::Retry(msg),
    }
}

impl TdWriter {
    /// The upload body before gzip: each record with `time` set, as msgpack maps one
    /// after another.
    fn body(&self, chunk: &Chunk) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.data.len() + chunk.count as usize * 8);
        let report = !self.reported.borrow().contains(&chunk.id);
        let mut any = false;
        for ev in Events::new(&chunk.data, EntriesFormat::Packed) {
            let n = ev.record.len();
            let has_time = ev.record.get(b"time").is_some();
            let keys = n + usize::from(!has_time);
            if keys > KEY_NUM_LIMIT {
                if report {
                    self.error_event(&chunk.tag, ev.time, ev.record.as_bytes(), keys);
                }
                any = true;
                continue;
            }
            raw::map_header(&mut out, keys as u32);
            for (k, v) in ev.record.fields() {
                out.extend_from_slice(k.as_bytes());
                if k.as_str() == Some(b"time") {
                    raw::int(&mut out, i64::from(ev.time.sec));
                } else {
                    out.extend_from_slice(v.as_bytes());
                }
            }
            if !has_time {
                raw::str(&mut out, b"time");
                raw::int(&mut out, i64::from(ev.time.sec));
            }
        }
        if any && report {
            let mut r = self.reported.borrow_mut();
            if r.len() >= REPORTED {
                r.pop_front();
            }
            r.push_back(chunk.id);
        }
        out
    }

    /// The plugin's `router.emit_error_event` for a record of too many keys.
    fn error_event(&self, tag: &[u8], time: spate_protocol::EventTime, record: &[u8], keys: usize) {
        let reason = format!("too many number of keys ({keys} keys)");
        let routed = self.ctx.upgrade().and_then(|c| c.emit_error_record(tag, time, record));
        match routed {
            Some(Ok(())) => {}
            Some(Err(e)) => crate::warn!("{}: @ERROR did not take an error event ({reason}): {e}", self.id),
            None => crate::warn!(
                "{}: dump an error event: error_class=RuntimeError error=\"{reason}\" tag=\"{}\" time={}",
                self.id,
                String::from_utf8_lossy(tag),
                time.sec
            ),
        }
    }

    fn headers(&self, content_type: &str) -> Vec<(String, String)> {
        let mut date = Vec::new();
        let now = spate_protocol::EventTime::now();
        crate::format::strftime(&mut date, "%a, %d %b %Y %H:%M:%S %z", i64::from(now.sec), 0, crate::format::Zone::Utc);
        vec![
            ("Authorization".into(), format!("TD1 {}", self.plan.apikey)),
            ("Date".into(), String::from_utf8_lossy(&date).into_owned()),
            ("Content-Type".into(), content_type.into()),
            ("User-Agent".into(), format!("spate/{} (fluent-plugin-td compatible)", env!("CARGO_PKG_VERSION"))),
        ]
    }

    async fn post(&self, path: &str) -> Result<Response, WriteError> {
        let target = self.plan.api.target(path);
        // httpclient sends a form POST (td-client passes its params as a form).
        let headers = self.headers("application/x-www-form-urlencoded");
        let req = Request { method: "POST", url: &self.plan.api, target: &target, headers: &headers, body: b"" };
        self.client.send(&req).await.map_err(|e| WriteError::Retry(format!("{} {target}: {e}", self.plan.api.host)))
    }

    /// The plugin's `ensure_database_and_table`.
    async fn create_table(&self, db: &str, table: &str) -> Result<(), WriteError> {
        crate::info!("{}: Creating table {db}.{table} on TreasureData", self.id);
        let path = format!("/v3/table/create/{db}/{table}/log");
        let r = self.post(&path).await?;
        match r.status {
            200 | 409 => return Ok(()),
            404 => {}
            _ => return Err(classify(&r, "Create log table failed")),
        }
        let r = self.post(&format!("/v3/database/create/{db}")).await?;
        if !matches!(r.status, 200 | 409) {
            return Err(classify(&r, "Create database failed"));
        }
        let r = self.post(&path).await?;
        if !matches!(r.status, 200 | 409) {
            return Err(classify(&r, "Create log table failed"));
        }
        Ok(())
    }

    async fn write_chunk(&self, chunk: &Chunk) -> Result<usize, WriteError> {
        let (db, table) = match &self.plan.fixed {
            Some((d, t)) => (d.clone(), t.clone()),
            None => {
                let tag = String::from_utf8_lossy(&chunk.tag);
                // Ruby's `split('.')` drops trailing empty parts.
                let parts: Vec<&str> = tag.trim_end_matches('.').split('.').collect();
                let named = match parts.as_slice() {
                    [.., d, t] => normalize_name(d).zip(normalize_name(t)),
                    _ => None,
                };
                named.ok_or_else(|| {
                    WriteError::Fatal(format!(
                        "tag {tag:?} names no database and table (td.<database>.<table>) and none is configured"
                    ))
                })?
            }
        };
        let body = crate::http::gzip(self.body(chunk), 6).await;
        let id: String = chunk.id.iter().map(|b| format!("{b:02x}")).collect();
        let target = self.plan.import.target(&format!("/v3/table/import_with_id/{db}/{table}/{id}/msgpack.gz"));
        let headers = self.headers("application/octet-stream");
        let mut created = false;
        loop {
            let req =
                Request { method: "PUT", url: &self.plan.import, target: &target, headers: &headers, body: &body };
            let resp = self.client.send(&req).await.map_err(|e| {
                WriteError::Retry(format!("Failed to upload to Treasure Data '{db}.{table}' table: {e}"))
            })?;
            if (200..300).contains(&resp.status) {
                crate::debug!("{}: uploaded {} bytes to {db}.{table}", self.id, body.len());
                return Ok(body.len());
            }
            if resp.status == 404 && self.plan.auto_create_table && !created {
                self.create_table(&db, &table).await?;
                created = true;
                continue;
            }
            return Err(classify(&resp, "Import failed"));
        }
    }
}

impl Writer for TdWriter {
    fn type_name(&self) -> &'static str {
        "tdlog"
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, _vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(self.write_chunk(chunk))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_td_client_normalizes_and_validates_them() {
        assert_eq!(normalize_name("Web-Logs").as_deref(), Some("web_logs"));
        assert_eq!(normalize_name("a").as_deref(), Some("a__"));
        assert_eq!(normalize_name("Ünï").as_deref(), Some("_n_"));
        assert_eq!(normalize_name(&"x".repeat(300)).map(|s| s.len()), Some(255));
        assert_eq!(normalize_name(""), None);
        assert!(validate_name("Database", "ok_db1").is_ok());
        assert_eq!(
            validate_name("Database", "a").unwrap_err(),
            "Database name must be between 3 and 255 characters long. Got 1 character."
        );
        assert!(validate_name("Table", "Bad-Name").unwrap_err().contains("lower-case alpha-numeric"));
    }
}
