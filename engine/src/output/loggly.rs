//! `out_loggly` and `out_loggly_buffered` (fluent-plugin-loggly): records as JSON to
//! Loggly's HTTP inputs, as the plugin posts them.
//!
//! - `@type loggly` (a v0.12 unbuffered output): one `POST <loggly_url path>` per
//!   record, `Content-Type: application/json`, the body the record's JSON. The plugin
//!   posts from `emit`; spate flushes a memory buffer at once (`flush_mode immediate`
//!   unless `flush_mode`/`flush_interval` say otherwise) and posts the chunk's records
//!   one by one, in order.
//! - `@type loggly_buffered`: one POST per chunk, `Content-Type: text`, the records'
//!   JSON joined by `\n` (Loggly's bulk endpoint). With `output_include_time` (default
//!   true) a record whose `timestamp` is missing, nil or false gets
//!   `Time.at(time).iso8601(time_precision_digits)`, in the local zone.
//!
//! Both post to the URL's path only, as the plugin's `Net::HTTP::Post.new(@uri.path)`
//! does: a query string is not sent.
//!
//! Answers: the plugin logs any answer but 200 and any connection error, and drops the
//! record (or chunk). spate drops only what Loggly refused (a 4xx other than 429),
//! with the same error line; a connection error, 429 or 5xx is retried with the
//! buffer's retry policy, and `@type loggly` then resumes after the records already
//! posted (the chunk's delivery progress), so none is posted twice.

use std::rc::Rc;
use std::time::Duration;

use spate_protocol::{EntriesFormat, EventTime, Events};

use crate::buffer::progress::Progress;
use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::http::{Client, ClientConf, Request, Response, Scheme, Url};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};
use crate::ruby::time::{strftime, Zone};

pub const PLUGIN: Registration = Registration {
    name: "loggly",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan_single),
    params: "fluent-plugin-loggly: `loggly_url` (required; posted to its path, one record per request, `application/json`). A memory buffer flushed at once (`flush_mode immediate`) unless `<buffer>` says otherwise. Connection errors, 429 and 5xx are retried (the plugin drops the record); other answers but 200 drop the record with an error line, as the plugin does",
};

pub const PLUGIN_BUFFERED: Registration = Registration {
    name: "loggly_buffered",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan_bulk),
    params: "fluent-plugin-loggly: `loggly_url` (required; Loggly's bulk endpoint, posted to its path), `output_include_time` (true: adds `timestamp`, ISO 8601 in the local zone, when the record has none), `time_precision_digits` (0). One request per chunk, records' JSON joined by newlines, `Content-Type: text`. Connection errors, 429 and 5xx are retried (the plugin drops the chunk)",
};

/// `Some(digits)`: `loggly_buffered`, adding `timestamp` with that many fraction
/// digits when `output_include_time`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flavour {
    Single,
    Bulk { timestamp: Option<u32> },
}

#[derive(Debug, Clone)]
pub struct LogglyPlan {
    url: Url,
    /// The URL's path (what the plugin posts to).
    target: String,
    flavour: Flavour,
    client: ClientConf,
}

fn plan_single(e: &Element, ctx: &mut PlanCtx<'_>, s: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    plan(e, ctx, s, Flavour::Single)
}

fn plan_bulk(e: &Element, ctx: &mut PlanCtx<'_>, s: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let digits = match e.int("time_precision_digits")? {
        None => 0,
        Some(d) if (0..=9).contains(&d) => d as u32,
        Some(d) => return Err(e.error_at("time_precision_digits", format!("{d}: expected 0 to 9"))),
    };
    let timestamp = e.bool("output_include_time")?.unwrap_or(true).then_some(digits);
    plan(e, ctx, s, Flavour::Bulk { timestamp })
}

fn plan(
    e: &Element,
    _ctx: &mut PlanCtx<'_>,
    setup: &mut WriterSetup,
    flavour: Flavour,
) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let raw = e.str("loggly_url").ok_or_else(|| e.error("'loggly_url' parameter is required"))?;
    let url = Url::parse(raw).map_err(|x| e.error_at("loggly_url", x.to_string()))?;
    // The path as written (Url keeps it without a trailing `/`, for joining).
    let after_scheme = raw.split_once("://").map_or(raw, |(_, r)| r);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or_default().to_string();
    if path.is_empty() {
        // Net::HTTP::Post.new("") raises on every record.
        return Err(
            e.error_at("loggly_url", format!("{raw:?} has no path (Loggly's is /inputs/<token> or /bulk/<token>)"))
        );
    }
    let tls = if url.scheme == Scheme::Https { Some(crate::tls::system_client_tls(e, true)?) } else { None };
    if setup.primary_buffer().is_none() {
        let defaults = BufferDefaults { flush_immediate: flavour == Flavour::Single, ..Default::default() };
        setup.buffer(e, &defaults)?;
    }
    Ok(Box::new(LogglyPlan {
        target: path,
        url,
        flavour,
        // Net::HTTP's defaults: 60 s to connect and to read.
        client: ClientConf {
            tls,
            connect_timeout: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
            keepalive: true,
            ..Default::default()
        },
    }))
}

impl WriterPlan for LogglyPlan {
    fn type_name(&self) -> &'static str {
        match self.flavour {
            Flavour::Single => "loggly",
            Flavour::Bulk { .. } => "loggly_buffered",
        }
    }

    fn describe(&self) -> String {
        format!("Loggly {}:{}{}", self.url.host, self.url.port, self.target)
    }

    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(LogglyWriter { id: id.to_string(), client: Client::new(self.client.clone()), plan: self.clone() }))
    }
}

pub struct LogglyWriter {
    id: String,
    client: Client,
    plan: LogglyPlan,
}

/// The record's JSON; with `timestamp: Some(digits)`, a `timestamp` that is missing,
/// nil or false is set (`record['timestamp'] ||= ...`).
pub fn record_json(
    out: &mut Vec<u8>,
    record: spate_protocol::RecordRef<'_>,
    time: EventTime,
    timestamp: Option<u32>,
    zone: Zone,
) {
    let Some(digits) = timestamp else {
        record.write_json(out);
        return;
    };
    let stamp = || {
        let mut s = Vec::with_capacity(40);
        strftime(&mut s, "%Y-%m-%dT%H:%M:%S", i64::from(time.sec), time.nsec, zone);
        if digits > 0 {
            let f = format!(".%{digits}N");
            strftime(&mut s, &f, i64::from(time.sec), time.nsec, zone);
        }
        strftime(&mut s, "%:z", i64::from(time.sec), time.nsec, zone);
        s
    };
    // A Ruby Hash keeps the last of duplicate keys: that one decides.
    let last = record.fields().filter(|(k, _)| k.as_str() == Some(b"timestamp")).last();
    let set = match last {
        None => true,
        Some((_, v)) => v.is_nil() || v.as_bool() == Some(false),
    };
    if !set {
        record.write_json(out);
        return;
    }
    // In place when the record has one (a Ruby Hash keeps the key's position), else
    // appended.
    let s = stamp();
    let mut r = Vec::with_capacity(record.as_bytes().len() + 48);
    spate_protocol::encode::raw::map_header(&mut r, record.len() as u32 + u32::from(last.is_none()));
    for (k, v) in record.fields() {
        r.extend_from_slice(k.as_bytes());
        if k.as_str() == Some(b"timestamp") {
            spate_protocol::encode::raw::str(&mut r, &s);
        } else {
            r.extend_from_slice(v.as_bytes());
        }
    }
    if last.is_none() {
        spate_protocol::encode::raw::str(&mut r, b"timestamp");
        spate_protocol::encode::raw::str(&mut r, &s);
    }
    match spate_protocol::RecordRef::new(&r) {
        Some(rec) => rec.write_json(out),
        None => record.write_json(out),
    }
}

/// What an answer means: 200 is delivered; 429, 5xx retry; anything else is refused
/// for good (the plugin's `log.error response.body`).
enum Answer {
    Ok,
    Retry(String),
    Refused(String),
}

fn answer(r: &Response) -> Answer {
    match r.status {
        200 => Answer::Ok,
        429 | 500..=599 => Answer::Retry(r.summary()),
        _ => Answer::Refused(r.summary()),
    }
}

impl LogglyWriter {
    fn headers(content_type: &str) -> Vec<(String, String)> {
        vec![
            ("Content-Type".into(), content_type.into()),
            ("User-Agent".into(), format!("spate/{} (fluent-plugin-loggly compatible)", env!("CARGO_PKG_VERSION"))),
        ]
    }

    async fn post(&self, headers: &[(String, String)], body: &[u8]) -> Result<Answer, WriteError> {
        let req = Request { method: "POST", url: &self.plan.url, target: &self.plan.target, headers, body };
        match self.client.send(&req).await {
            Ok(r) => Ok(answer(&r)),
            Err(e) => Err(WriteError::Retry(format!(
                "Error connecting to loggly verify the url {}:{}{}: {e}",
                self.plan.url.host, self.plan.url.port, self.plan.target
            ))),
        }
    }

    /// `@type loggly`: one POST per record, resuming after the records already posted.
    async fn write_each(&self, chunk: &Chunk) -> Result<usize, WriteError> {
        let headers = Self::headers("application/json");
        let done = chunk.acked();
        let (mut pos, mut events) = (done.bytes.min(chunk.data.len()), done.events);
        let mut sent = 0;
        let mut body = Vec::new();
        for ev in Events::new(&chunk.data[pos..], EntriesFormat::Packed) {
            body.clear();
            ev.record.write_json(&mut body);
            match self.post(&headers, &body).await? {
                Answer::Ok => sent += body.len(),
                Answer::Retry(why) => return Err(WriteError::Retry(why)),
                Answer::Refused(why) => crate::error!("{}: record dropped: Loggly answered {why}", self.id),
            }
            pos += ev.raw.len();
            events += 1;
            chunk.record_acked(Progress { bytes: pos, events });
        }
        Ok(sent)
    }

    /// `@type loggly_buffered`: the chunk's records in one POST.
    async fn write_bulk(&self, chunk: &Chunk, timestamp: Option<u32>) -> Result<usize, WriteError> {
        let mut body = Vec::with_capacity(chunk.data.len() + chunk.count as usize * 40);
        for (i, ev) in Events::new(&chunk.data, EntriesFormat::Packed).enumerate() {
            if i > 0 {
                body.push(b'\n');
            }
            record_json(&mut body, ev.record, ev.time, timestamp, Zone::Local);
        }
        match self.post(&Self::headers("text"), &body).await? {
            Answer::Ok => Ok(body.len()),
            Answer::Retry(why) => Err(WriteError::Retry(why)),
            Answer::Refused(why) => {
                crate::error!("{}: {} records dropped: Loggly answered {why}", self.id, chunk.count);
                Ok(0)
            }
        }
    }
}

impl Writer for LogglyWriter {
    fn type_name(&self) -> &'static str {
        self.plan.type_name()
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, _vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        match self.plan.flavour {
            Flavour::Single => Box::pin(self.write_each(chunk)),
            Flavour::Bulk { timestamp } => Box::pin(self.write_bulk(chunk, timestamp)),
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(record: &str, t: EventTime, ts: Option<u32>) -> String {
        let m = spate_protocol::json::to_msgpack(record.as_bytes()).unwrap();
        let mut out = Vec::new();
        record_json(&mut out, spate_protocol::RecordRef::new(&m).unwrap(), t, ts, Zone::Fixed(9 * 3600));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamp_is_set_when_missing_nil_or_false_as_ruby_iso8601() {
        let t = EventTime::new(1_700_000_000, 123_456_789);
        // Time.at(t).iso8601(0) and (3) at +09:00: truncated, not rounded.
        assert_eq!(json(r#"{"a":1}"#, t, Some(0)), r#"{"a":1,"timestamp":"2023-11-15T07:13:20+09:00"}"#);
        assert_eq!(json(r#"{"a":1}"#, t, Some(3)), r#"{"a":1,"timestamp":"2023-11-15T07:13:20.123+09:00"}"#);
        // `||=`: nil and false are replaced in place, anything else stays.
        assert_eq!(
            json(r#"{"timestamp":null,"b":2}"#, t, Some(0)),
            r#"{"timestamp":"2023-11-15T07:13:20+09:00","b":2}"#
        );
        assert_eq!(json(r#"{"timestamp":false}"#, t, Some(0)), r#"{"timestamp":"2023-11-15T07:13:20+09:00"}"#);
        assert_eq!(json(r#"{"timestamp":"mine"}"#, t, Some(0)), r#"{"timestamp":"mine"}"#);
        assert_eq!(json(r#"{"timestamp":0}"#, t, Some(0)), r#"{"timestamp":0}"#);
        // output_include_time false: the record as it is.
        assert_eq!(json(r#"{"a":"x"}"#, t, None), r#"{"a":"x"}"#);
    }
}
