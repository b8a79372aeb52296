//! `out_cloudwatch_logs` (fluent-plugin-cloudwatch-logs 0.15): each chunk's events to
//! CloudWatch Logs `PutLogEvents`, grouped by log group and stream, as the plugin sends
//! them.
//!
//! Per chunk, as the plugin's `write`:
//! - each record gets its `<inject>` fields; the group is `log_group_name` (chunk
//!   placeholders expanded), the tag (`use_tag_as_group`) or the record's
//!   `log_group_name_key` (removed with `remove_log_group_name_key`); the stream alike.
//!   Events without a stream are skipped with a warning (and, a deliberate difference,
//!   events without a group too: the plugin retries those forever);
//! - a group or stream that does not exist is created with `auto_create_stream` (with
//!   `log_group_aws_tags`/`retention_in_days`, or the first record's `*_key` values),
//!   else its events are skipped with a warning;
//! - the message: `<format>` when given, else the `message_keys` values' `to_s` joined
//!   by spaces (empty ones left out), else the record's JSON; keys whose value is `""`
//!   are dropped first, an empty message is skipped, `max_message_length` cuts it
//!   (characters); the timestamp is the event time in milliseconds (floored);
//! - events sorted by timestamp (stably: the plugin's `sort_by` may reorder equal
//!   ones), sent in batches of at most `max_events_per_batch` events, 1,048,576 bytes
//!   (message bytes + 26 per event) and a span under 24 h; one event over 1 MiB makes
//!   the chunk unrecoverable (the plugin's TooLargeEventError);
//! - `ThrottlingException` is retried `put_log_events_retry_limit` times with backoff
//!   (`put_log_events_retry_wait` * 2^n, +-12.5%), then those events are dropped with an
//!   error line; a sequence-token error takes the expected token; a stream that vanished
//!   is created again (`auto_create_stream`); any other error retries the whole chunk
//!   with the buffer's policy. `concurrency` groups are sent at once.
//!
//! Credentials: `aws_key_id`/`aws_sec_key`, `<web_identity_credentials>`,
//! `aws_ecs_authentication`, else the AWS SDK's default chain ([`crate::aws::creds`]).

mod api;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use spate_protocol::encode::raw;
use spate_protocol::{EntriesFormat, EventTime, Events, RecordRef};

use crate::aws::creds::{env, Provider, Source, WebIdentity};
use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::format::{FormatConf, Zone};
use crate::http::{ClientConf, Scheme, Url};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};
use crate::s3::sigv4::Credentials;

pub use api::LogEvent;
use api::{Api, ApiError};

pub const PLUGIN: Registration = Registration {
    name: "cloudwatch_logs",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "fluent-plugin-cloudwatch-logs: one of `log_group_name` (chunk placeholders), `use_tag_as_group`, `log_group_name_key`; one of `log_stream_name`, `use_tag_as_stream`, `log_stream_name_key`; `remove_log_group_name_key`, `remove_log_stream_name_key`, `auto_create_stream` (false), `log_group_aws_tags` or `log_group_aws_tags_key` (`remove_log_group_aws_tags_key`), `retention_in_days` or `retention_in_days_key` (`remove_retention_in_days_key`), `message_keys`, `max_message_length`, `max_events_per_batch` (10000), `put_log_events_retry_wait` (1s), `put_log_events_retry_limit` (17), `put_log_events_disable_retry_limit`, `concurrency` (1), `log_rejected_request`, `json_handler` (yajl/json: the same JSON), `region` (else AWS_REGION/AWS_DEFAULT_REGION), `endpoint`, `ssl_verify_peer`, `<format>`, `<inject>`; credentials `aws_key_id`/`aws_sec_key`, `<web_identity_credentials>` (`role_arn`, `role_session_name`, `web_identity_token_file`, `policy`, `duration_seconds`), `aws_ecs_authentication`, else the AWS default chain (environment, shared credentials file, web identity from the environment, ECS, EC2 instance metadata). Not supported (config error): `aws_use_sts`, `http_proxy`",
};

const MAX_EVENTS_SIZE: usize = 1_048_576;
const MAX_EVENT_SIZE: usize = 1024 * 1024;
const EVENT_HEADER_SIZE: usize = 26;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Where a name (group or stream) comes from.
#[derive(Debug, Clone)]
enum Name {
    Fixed(String),
    Tag,
    Key { key: String, remove: bool },
}

/// A per-group setting from the config or the first record's key.
#[derive(Debug, Clone)]
enum FromRecord<T> {
    None,
    Fixed(T),
    Key { key: String, remove: bool },
}

#[derive(Debug, Clone)]
pub struct CwPlan {
    group: Name,
    stream: Name,
    auto_create: bool,
    tags: FromRecord<Vec<(String, String)>>,
    retention: FromRecord<i64>,
    message_keys: Vec<String>,
    max_message_length: Option<usize>,
    max_events_per_batch: usize,
    retry_wait: Duration,
    retry_limit: i64,
    disable_retry_limit: bool,
    concurrency: usize,
    log_rejected: bool,
    /// `<format>` when given; its `<inject>` is applied before grouping instead.
    format: Option<FormatConf>,
    inject: crate::format::Inject,
    region: String,
    url: Url,
    source: Source,
    sts_tls: Option<crate::tls::ClientTls>,
    client: ClientConf,
    timekey_zone: Zone,
}

/// One of `keys` must be set (fluentd counts a key that is present, even `false`).
fn one_of(e: &Element, keys: [&str; 3]) -> Result<(), ConfigError> {
    if keys.iter().filter(|k| e.get(k).is_some()).count() != 1 {
        return Err(e.error(format!("Set only one of {}, {} and {}", keys[0], keys[1], keys[2])));
    }
    Ok(())
}

fn name_of(e: &Element, fixed: &str, tag: &str, key: &str, remove: &str) -> Result<Name, ConfigError> {
    Ok(if let Some(v) = e.str(fixed) {
        Name::Fixed(v.to_string())
    } else if e.bool(tag)?.unwrap_or(false) {
        Name::Tag
    } else if let Some(k) = e.str(key) {
        Name::Key { key: k.to_string(), remove: e.bool(remove)?.unwrap_or(false) }
    } else {
        // `use_tag_as_* false` alone: the plugin has no name and fails every write.
        return Err(e.error_at(tag, format!("{tag} false leaves no {fixed}; set {fixed} or {key}")));
    })
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    for k in ["aws_use_sts", "http_proxy"] {
        if let Some(a) = e.get(k) {
            if k == "aws_use_sts" && !e.bool(k)?.unwrap_or(false) {
                continue;
            }
            return Err(ConfigError::at(&a.pos, format!("{k} is not supported by spate")));
        }
    }
    // Only read with aws_use_sts, which spate rejects above.
    for k in
        ["aws_sts_role_arn", "aws_sts_session_name", "aws_sts_external_id", "aws_sts_policy", "aws_sts_endpoint_url"]
    {
        let _ = e.str(k);
    }
    let _ = e.time("aws_sts_duration_seconds")?;
    if let Some(a) = e.get("aws_instance_profile_credentials_retries") {
        crate::info!("{}: aws_instance_profile_credentials_retries has no effect: spate asks the instance metadata once per renewal", a.pos);
        let _ = e.int("aws_instance_profile_credentials_retries")?;
    }
    one_of(e, ["log_group_name", "use_tag_as_group", "log_group_name_key"])?;
    one_of(e, ["log_stream_name", "use_tag_as_stream", "log_stream_name_key"])?;
    if e.get("log_group_aws_tags").is_some() && e.get("log_group_aws_tags_key").is_some() {
        return Err(e.error("Set only one of log_group_aws_tags, log_group_aws_tags_key"));
    }
    if e.get("retention_in_days").is_some() && e.get("retention_in_days_key").is_some() {
        return Err(e.error("Set only one of retention_in_days, retention_in_days_key"));
    }
    let group = name_of(e, "log_group_name", "use_tag_as_group", "log_group_name_key", "remove_log_group_name_key")?;
    let stream =
        name_of(e, "log_stream_name", "use_tag_as_stream", "log_stream_name_key", "remove_log_stream_name_key")?;
    let tags = match (e.hash("log_group_aws_tags")?, e.str("log_group_aws_tags_key")) {
        (Some(h), _) => FromRecord::Fixed(h),
        (None, Some(k)) => {
            FromRecord::Key { key: k.to_string(), remove: e.bool("remove_log_group_aws_tags_key")?.unwrap_or(false) }
        }
        _ => FromRecord::None,
    };
    let retention = match (e.int("retention_in_days")?, e.str("retention_in_days_key")) {
        (Some(d), _) => FromRecord::Fixed(d),
        (None, Some(k)) => {
            FromRecord::Key { key: k.to_string(), remove: e.bool("remove_retention_in_days_key")?.unwrap_or(false) }
        }
        _ => FromRecord::None,
    };
    let _ = e.enum_of("json_handler", &["yajl", "json"])?;
    let positive = |k: &str, d: i64| -> Result<i64, ConfigError> {
        match e.int(k)? {
            Some(v) if v < 1 => Err(e.error_at(k, format!("{k} {v}: must be at least 1"))),
            Some(v) => Ok(v),
            None => Ok(d),
        }
    };
    let region =
        e.str("region").map(str::to_string).or_else(|| env("AWS_REGION")).or_else(|| env("AWS_DEFAULT_REGION"));
    let region = region.ok_or_else(|| {
        e.error("no region: set region, or AWS_REGION in the environment (the AWS SDK's MissingRegionError)")
    })?;
    let url = match e.str("endpoint") {
        Some(u) => Url::parse(u).map_err(|x| e.error_at("endpoint", x.to_string()))?,
        None => Url::parse(&format!("https://logs.{region}.amazonaws.com")).map_err(|x| e.error(x.to_string()))?,
    };
    let verify = e.bool("ssl_verify_peer")?.unwrap_or(true);
    let tls = Some(crate::tls::system_client_tls(e, verify)?);
    // The plugin's order: (aws_use_sts,) web identity, ECS, then the keys.
    let source = if let Some(w) = e.single("web_identity_credentials")? {
        Source::WebIdentity(WebIdentity::from_section(w)?)
    } else if e.bool("aws_ecs_authentication")?.unwrap_or(false) {
        Source::Ecs
    } else if let (Some(k), Some(s)) = (e.str("aws_key_id"), e.str("aws_sec_key")) {
        Source::Static(Credentials { access_key: k.into(), secret_key: s.into(), session_token: None })
    } else {
        Source::Chain
    };
    let sts_tls = source.tls(e)?;
    let format = match e.elements_named("format").next() {
        Some(_) => {
            let mut f = crate::format::format_conf(e, "json", &ctx.hostname)?;
            f.inject = Default::default();
            Some(f)
        }
        None => None,
    };
    let inject = crate::format::inject::inject_conf(e, &ctx.hostname)?;
    let buffer = match setup.primary_buffer() {
        Some(b) => Some(b.clone()),
        None => setup.buffer(e, &BufferDefaults::default())?,
    };
    let timekey_zone =
        buffer.as_ref().and_then(|b| b.timekey.as_ref()).map_or(Zone::Local, |k| Zone::Fixed(k.utc_offset));
    let tls_for_client = if url.scheme == Scheme::Https { tls } else { None };
    Ok(Box::new(CwPlan {
        group,
        stream,
        auto_create: e.bool("auto_create_stream")?.unwrap_or(false),
        tags,
        retention,
        message_keys: e.array("message_keys")?.unwrap_or_default(),
        max_message_length: e.int("max_message_length")?.map(|n| n.max(0) as usize),
        max_events_per_batch: positive("max_events_per_batch", 10000)? as usize,
        retry_wait: e.time("put_log_events_retry_wait")?.unwrap_or(Duration::from_secs(1)),
        retry_limit: e.int("put_log_events_retry_limit")?.unwrap_or(17),
        disable_retry_limit: e.bool("put_log_events_disable_retry_limit")?.unwrap_or(false),
        concurrency: positive("concurrency", 1)? as usize,
        log_rejected: e.bool("log_rejected_request")?.unwrap_or(false),
        format,
        inject,
        region,
        url,
        source,
        sts_tls,
        client: ClientConf {
            tls: tls_for_client,
            connect_timeout: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
            keepalive: true,
            ..Default::default()
        },
        timekey_zone,
    }))
}

impl WriterPlan for CwPlan {
    fn concurrent_writes(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "cloudwatch_logs"
    }

    fn describe(&self) -> String {
        format!("CloudWatch Logs {}:{} ({})", self.url.host, self.url.port, self.region)
    }

    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        let creds = Provider::new(self.source.clone(), &self.region, self.sts_tls.clone());
        Ok(Rc::new(CwWriter {
            id: id.to_string(),
            api: Api::new(self.client.clone(), self.url.clone(), self.region.clone(), creds),
            plan: self.clone(),
            known: RefCell::new(HashMap::new()),
        }))
    }
}

pub struct CwWriter {
    id: String,
    api: Api,
    plan: CwPlan,
    /// Groups known to exist, with their streams' next sequence tokens (the plugin's
    /// `@sequence_tokens`).
    known: RefCell<HashMap<String, HashMap<String, Option<String>>>>,
}

/// Events of one group and stream, with what creating the group takes from the first
/// record.
struct Batch {
    group: String,
    stream: String,
    tags: Option<Vec<(String, String)>>,
    retention: Option<i64>,
    events: Vec<LogEvent>,
}

/// A record made ready to send, with what it says about its group.
struct Prepared {
    record: Vec<u8>,
    /// Group and stream from the tag or the record (None for fixed names).
    names: [Option<String>; 2],
    tags: Option<Vec<(String, String)>>,
    retention: Option<i64>,
}

/// A value's text as a name or tag (strings as they are, others as `to_s`).
fn text(v: spate_protocol::ValueRef<'_>) -> Option<String> {
    if v.is_nil() {
        return None;
    }
    let mut o = Vec::new();
    v.write_text(&mut o);
    Some(String::from_utf8_lossy(&o).into_owned())
}

/// Splits events (sorted) into PutLogEvents batches: count, bytes and a span under a day.
pub fn batches(events: &[LogEvent], max_events: usize) -> Result<Vec<(std::ops::Range<usize>, usize)>, String> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0usize, 0usize);
    for (i, ev) in events.iter().enumerate() {
        let size = ev.message.len() + EVENT_HEADER_SIZE;
        if size > MAX_EVENT_SIZE {
            return Err(format!(
                "Log event is discarded because it is too large: {size} bytes exceeds limit of {MAX_EVENT_SIZE}"
            ));
        }
        let n = i - start;
        let span = n > 0 && ev.timestamp - events[start].timestamp >= DAY_MS;
        if n > 0 && (bytes + size > MAX_EVENTS_SIZE || span || n >= max_events) {
            out.push((start..i, bytes));
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < events.len() {
        out.push((start..events.len(), bytes));
    }
    Ok(out)
}

/// Ruby's `String#slice(0, n)`: the first `n` characters.
fn cut_chars(s: &mut String, n: usize) {
    if let Some((i, _)) = s.char_indices().nth(n) {
        s.truncate(i);
    }
}

impl CwWriter {
    /// The record with its injected fields, without the removed keys and the keys
    /// whose value is `""`; and its group, stream, tags and retention.
    fn prepare(&self, tag: &[u8], t: EventTime, rec: RecordRef<'_>, scratch: &mut Vec<u8>) -> Prepared {
        let p = &self.plan;
        let injected = p.inject.fields(tag, t, scratch);
        let tag_s = String::from_utf8_lossy(tag).into_owned();
        // The plugin injects before it groups: an injected key is seen as the record's.
        let pick = |n: &Name| match n {
            Name::Fixed(_) => None,
            Name::Tag => Some(tag_s.clone()),
            Name::Key { key, .. } => match injected.get(key.as_bytes()) {
                Some(iv) => {
                    let mut o = Vec::new();
                    iv.write_to_s(&mut o);
                    Some(String::from_utf8_lossy(&o).into_owned())
                }
                None => rec.get(key.as_bytes()).and_then(text),
            },
        };
        let names = [pick(&p.group), pick(&p.stream)];
        let tags = match &p.tags {
            FromRecord::None => None,
            FromRecord::Fixed(h) => Some(h.clone()),
            FromRecord::Key { key, .. } => rec.get(key.as_bytes()).and_then(|v| v.as_map()).map(|m| {
                m.fields()
                    .filter_map(|(k, v)| Some((String::from_utf8_lossy(k.as_str()?).into_owned(), text(v)?)))
                    .collect()
            }),
        };
        let retention = match &p.retention {
            FromRecord::None => None,
            FromRecord::Fixed(d) => Some(*d),
            FromRecord::Key { key, .. } => match injected.get(key.as_bytes()) {
                Some(crate::format::InjectValue::Int(i)) => Some(i),
                Some(_) => None,
                None => rec.get(key.as_bytes()).and_then(|v| v.as_i64()),
            },
        };
        let removed = |k: &[u8]| {
            matches!(&p.group, Name::Key { key, remove: true } if key.as_bytes() == k)
                || matches!(&p.stream, Name::Key { key, remove: true } if key.as_bytes() == k)
                || matches!(&p.tags, FromRecord::Key { key, remove: true } if key.as_bytes() == k)
                || matches!(&p.retention, FromRecord::Key { key, remove: true } if key.as_bytes() == k)
        };
        let mut body = Vec::with_capacity(rec.as_bytes().len() + 64);
        let mut n = 0u32;
        for (k, v) in rec.fields() {
            let Some(ks) = k.as_str() else {
                n += 1;
                body.extend_from_slice(k.as_bytes());
                body.extend_from_slice(v.as_bytes());
                continue;
            };
            if removed(ks) {
                continue;
            }
            match injected.get(ks) {
                Some(iv) => {
                    body.extend_from_slice(k.as_bytes());
                    iv.write_msgpack(&mut body);
                }
                None if v.as_str() == Some(b"") => continue,
                None => {
                    body.extend_from_slice(k.as_bytes());
                    body.extend_from_slice(v.as_bytes());
                }
            }
            n += 1;
        }
        for (k, v) in injected.iter() {
            if rec.get(k.as_bytes()).is_none() && !removed(k.as_bytes()) {
                raw::str(&mut body, k.as_bytes());
                v.write_msgpack(&mut body);
                n += 1;
            }
        }
        let mut out = Vec::with_capacity(body.len() + 5);
        raw::map_header(&mut out, n);
        out.extend_from_slice(&body);
        Prepared { record: out, names, tags, retention }
    }

    /// The event's message (None when empty).
    fn message(&self, tag: &[u8], t: EventTime, record: &[u8]) -> Option<String> {
        let rec = RecordRef::new(record)?;
        let mut o = Vec::with_capacity(record.len() + 16);
        if let Some(f) = &self.plan.format {
            f.format(&mut o, tag, t, record);
        } else if !self.plan.message_keys.is_empty() {
            let mut first = true;
            for k in &self.plan.message_keys {
                let mut v = Vec::new();
                if let Some(x) = rec.get(k.as_bytes()) {
                    x.write_text(&mut v);
                }
                if v.is_empty() {
                    continue;
                }
                if !first {
                    o.push(b' ');
                }
                first = false;
                o.extend_from_slice(&v);
            }
        } else {
            rec.write_json(&mut o);
        }
        // AWS wants UTF-8: invalid bytes become U+FFFD (the plugin's `scrub!`).
        let mut s = String::from_utf8_lossy(&o).into_owned();
        if s.is_empty() {
            return None;
        }
        if let Some(n) = self.plan.max_message_length {
            cut_chars(&mut s, n);
        }
        Some(s)
    }

    /// The chunk's events by group and stream, in first-seen order.
    fn group(&self, chunk: &Chunk, vars: &ChunkVars) -> Vec<Batch> {
        let cx = crate::output::elasticsearch::bulk::ChunkCtx::of(chunk, self.plan.timekey_zone, vars);
        let fixed = |n: &Name| match n {
            Name::Fixed(s) => Some(crate::output::elasticsearch::bulk::expand(s, &cx)),
            _ => None,
        };
        let (fixed_group, fixed_stream) = (fixed(&self.plan.group), fixed(&self.plan.stream));
        let mut batches: Vec<Batch> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut scratch = Vec::new();
        let (mut no_group, mut no_stream, mut empty) = (0u64, 0u64, 0u64);
        for ev in Events::new(&chunk.data, EntriesFormat::Packed) {
            let Prepared { record, names: [g, s], tags, retention } =
                self.prepare(&chunk.tag, ev.time, ev.record, &mut scratch);
            let (g, s) = (g.or_else(|| fixed_group.clone()), s.or_else(|| fixed_stream.clone()));
            let (Some(g), Some(s)) = (g.clone(), s) else {
                if g.is_none() {
                    no_group += 1;
                } else {
                    no_stream += 1;
                }
                continue;
            };
            let Some(message) = self.message(&chunk.tag, ev.time, &record) else {
                empty += 1;
                continue;
            };
            let timestamp = (ev.time.sec as i64) * 1000 + (ev.time.nsec / 1_000_000) as i64;
            let i = match index.get(&(g.clone(), s.clone())) {
                Some(&i) => i,
                None => {
                    // Tags from the config may hold chunk placeholders (the plugin expands them).
                    let tags = match (&self.plan.tags, tags) {
                        (FromRecord::Fixed(_), Some(t)) => Some(
                            t.into_iter()
                                .map(|(k, v)| {
                                    (
                                        crate::output::elasticsearch::bulk::expand(&k, &cx),
                                        crate::output::elasticsearch::bulk::expand(&v, &cx),
                                    )
                                })
                                .collect(),
                        ),
                        (_, t) => t,
                    };
                    index.insert((g.clone(), s.clone()), batches.len());
                    batches.push(Batch { group: g, stream: s, tags, retention, events: Vec::new() });
                    batches.len() - 1
                }
            };
            let b = &mut batches[i];
            b.events.push(LogEvent { timestamp, message });
        }
        if no_stream > 0 {
            crate::warn!("{}: stream_name is nil: {no_stream} events skipped", self.id);
        }
        if no_group > 0 {
            crate::warn!("{}: log group name is nil: {no_group} events skipped", self.id);
        }
        if empty > 0 {
            crate::warn!(
                "{}: Within specified message_key(s): ({}) do not have non-empty record. Skip. ({empty} events)",
                self.id,
                self.plan.message_keys.join(",")
            );
        }
        for b in &mut batches {
            b.events.sort_by_key(|e| e.timestamp);
        }
        batches
    }

    /// The plugin's `log_group_exists?` / create; false when the events are skipped.
    async fn ensure_group(&self, b: &Batch) -> Result<bool, WriteError> {
        if self.known.borrow().contains_key(&b.group) {
            return Ok(true);
        }
        if self.api.log_group_exists(&b.group).await.map_err(retry)? {
            self.known.borrow_mut().entry(b.group.clone()).or_default();
            return Ok(true);
        }
        if !self.plan.auto_create {
            crate::warn!("{}: Log group '{}' does not exist", self.id, b.group);
            return Ok(false);
        }
        match self.api.create_log_group(&b.group, b.tags.as_deref()).await {
            Ok(()) => {
                if let Some(days) = b.retention {
                    if let Err(e) = self.api.put_retention_policy(&b.group, days).await {
                        crate::warn!("{}: failed to set retention policy for Log group '{}': {e}", self.id, b.group);
                    }
                }
            }
            Err(ApiError::Aws { ref code, .. }) if code == "ResourceAlreadyExistsException" => {}
            Err(e) => return Err(retry(e)),
        }
        self.known.borrow_mut().entry(b.group.clone()).or_default();
        Ok(true)
    }

    async fn create_stream(&self, group: &str, stream: &str) -> Result<(), WriteError> {
        match self.api.create_log_stream(group, stream).await {
            Ok(()) => {}
            Err(ApiError::Aws { ref code, .. }) if code == "ResourceAlreadyExistsException" => {}
            Err(e) => return Err(retry(e)),
        }
        self.known.borrow_mut().entry(group.to_string()).or_default().insert(stream.to_string(), None);
        Ok(())
    }

    async fn ensure_stream(&self, group: &str, stream: &str) -> Result<bool, WriteError> {
        if self.known.borrow().get(group).is_some_and(|s| s.contains_key(stream)) {
            return Ok(true);
        }
        if let Some(token) = self.api.find_log_stream(group, stream).await.map_err(retry)? {
            self.known.borrow_mut().entry(group.to_string()).or_default().insert(stream.to_string(), token);
            return Ok(true);
        }
        if !self.plan.auto_create {
            crate::warn!("{}: Log stream '{stream}' does not exist", self.id);
            return Ok(false);
        }
        self.create_stream(group, stream).await?;
        Ok(true)
    }

    fn token(&self, group: &str, stream: &str) -> Option<String> {
        self.known.borrow().get(group).and_then(|s| s.get(stream).cloned()).flatten()
    }

    fn set_token(&self, group: &str, stream: &str, t: Option<String>) {
        self.known.borrow_mut().entry(group.to_string()).or_default().insert(stream.to_string(), t);
    }

    /// The plugin's `put_events`: one batch, with its retries.
    async fn put(&self, group: &str, stream: &str, events: &[LogEvent], bytes: usize) -> Result<(), WriteError> {
        let mut tries: i64 = 0;
        loop {
            let token = self.token(group, stream);
            match self.api.put_log_events(group, stream, events, token.as_deref()).await {
                Ok((next, rejected)) => {
                    if let (Some(r), true) = (rejected, self.plan.log_rejected) {
                        crate::warn!("{}: {r} (Called PutLogEvents API: group={group} stream={stream} events_count={} events_bytesize={bytes})", self.id, events.len());
                    }
                    if tries > 0 {
                        crate::warn!("{}: retry succeeded", self.id);
                    }
                    self.set_token(group, stream, next);
                    return Ok(());
                }
                Err(ApiError::Aws { code, expected_token, .. })
                    if code == "InvalidSequenceTokenException" || code == "DataAlreadyAcceptedException" =>
                {
                    crate::warn!("{}: updating upload sequence token forcefully because unrecoverable error occured: {code} log_group={group} log_stream={stream}", self.id);
                    glommio::timer::sleep(Duration::from_secs(1)).await;
                    self.set_token(group, stream, expected_token);
                    tries += 1;
                }
                Err(ApiError::Aws { code, message, .. })
                    if code == "ResourceNotFoundException"
                        && self.plan.auto_create
                        && message == "The specified log stream does not exist." =>
                {
                    crate::warn!("{}: Creating log stream because \"The specified log stream does not exist.\" error is got: log_group={group} log_stream={stream}", self.id);
                    self.create_stream(group, stream).await?;
                    tries += 1;
                }
                Err(ApiError::Aws { code, message, .. }) if code == "ThrottlingException" => {
                    if self.plan.retry_limit < 1 {
                        crate::warn!("{}: failed to PutLogEvents and discard logs because put_log_events_retry_limit is less than 1: {code}: {message}", self.id);
                        return Ok(());
                    }
                    if !self.plan.disable_retry_limit && self.plan.retry_limit < tries {
                        crate::error!("{}: failed to PutLogEvents and discard logs because retry count exceeded put_log_events_retry_limit: {code}: {message} ({} events)", self.id, events.len());
                        return Ok(());
                    }
                    let base = self.plan.retry_wait.as_secs_f64() * 2f64.powi(tries.min(30) as i32);
                    let jitter = base * 0.25 * (unit_random() - 0.5);
                    crate::warn!(
                        "{}: failed to PutLogEvents: {code}: {message}; next retry in {:.2}s",
                        self.id,
                        base + jitter
                    );
                    glommio::timer::sleep(Duration::from_secs_f64((base + jitter).max(0.0))).await;
                    tries += 1;
                }
                Err(e) => return Err(retry(e)),
            }
        }
    }

    async fn send_batch(&self, b: &Batch) -> Result<(), WriteError> {
        if !self.ensure_group(b).await? || !self.ensure_stream(&b.group, &b.stream).await? {
            return Ok(());
        }
        let parts = batches(&b.events, self.plan.max_events_per_batch)
            .map_err(|m| WriteError::Fatal(format!("{m} (log group {})", b.group)))?;
        for (range, bytes) in parts {
            self.put(&b.group, &b.stream, &b.events[range], bytes).await?;
        }
        Ok(())
    }

    async fn write_chunk(&self, chunk: &Chunk, vars: &ChunkVars) -> Result<usize, WriteError> {
        let groups = self.group(chunk, vars);
        let bytes: usize = groups.iter().flat_map(|b| &b.events).map(|e| e.message.len()).sum();
        let next = std::cell::Cell::new(0usize);
        let worker = || async {
            loop {
                let i = next.get();
                let Some(b) = groups.get(i) else { return Ok::<(), WriteError>(()) };
                next.set(i + 1);
                self.send_batch(b).await?;
            }
        };
        let workers: Vec<_> = (0..self.plan.concurrency.min(groups.len().max(1))).map(|_| Box::pin(worker())).collect();
        for r in join_all(workers).await {
            r?;
        }
        Ok(bytes)
    }
}

/// A number in [0, 1) for jitter.
fn unit_random() -> f64 {
    let r = crate::sys::random16();
    (u64::from_le_bytes(r[..8].try_into().unwrap_or_default()) >> 11) as f64 / (1u64 << 53) as f64
}

/// Polls every future until all are done (the `concurrency` workers of one chunk).
async fn join_all<F: std::future::Future + Unpin>(mut fs: Vec<F>) -> Vec<F::Output> {
    let mut out: Vec<Option<F::Output>> = fs.iter().map(|_| None).collect();
    futures_lite::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in fs.iter_mut().enumerate() {
            if out[i].is_none() {
                match std::pin::Pin::new(&mut *f).poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

fn retry(e: ApiError) -> WriteError {
    WriteError::Retry(e.to_string())
}

impl Writer for CwWriter {
    fn type_name(&self) -> &'static str {
        "cloudwatch_logs"
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(self.write_chunk(chunk, vars))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: i64, n: usize) -> LogEvent {
        LogEvent { timestamp: t, message: "x".repeat(n) }
    }

    #[test]
    fn batches_follow_the_put_log_events_limits() {
        let b = batches(&[ev(1, 10), ev(2, 10), ev(3, 10)], 2).unwrap();
        assert_eq!(b.iter().map(|(e, n)| (e.len(), *n)).collect::<Vec<_>>(), [(2, 72), (1, 36)]);
        // 1,048,576 bytes with the 26-byte headers.
        let big = MAX_EVENTS_SIZE / 2 - EVENT_HEADER_SIZE;
        let b = batches(&[ev(1, big), ev(2, big), ev(3, 1)], 10000).unwrap();
        assert_eq!(b.iter().map(|(e, _)| e.len()).collect::<Vec<_>>(), [2, 1]);
        // A span of 24 h or more starts a new batch.
        let b = batches(&[ev(0, 1), ev(DAY_MS - 1, 1), ev(DAY_MS, 1)], 10000).unwrap();
        assert_eq!(b.iter().map(|(e, _)| e.len()).collect::<Vec<_>>(), [2, 1]);
        assert!(batches(&[ev(0, MAX_EVENT_SIZE)], 10).unwrap_err().contains("too large"));
    }

    #[test]
    fn messages_are_cut_by_characters() {
        let mut s = "héllo".to_string();
        cut_chars(&mut s, 2);
        assert_eq!(s, "hé");
        let mut s = "ab".to_string();
        cut_chars(&mut s, 5);
        assert_eq!(s, "ab");
    }
}
