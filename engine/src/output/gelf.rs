//! `out_gelf` (fluent-plugin-gelf-hs, `@type gelf`): every event as one GELF message
//! to Graylog, over UDP (the default: zlib-deflated, split into GELF chunks above 1420
//! bytes, as gelf-rb's `'WAN'` size) or TCP (uncompressed JSON, each message ended by a
//! NUL byte).
//!
//! The message is what the plugin's `make_gelfentry` and gelf-rb's `Notifier#notify!`
//! (with `level_mapping 'direct'`) build, key order included:
//! - gelf-rb's defaults first: `facility` ("fluentd"), `protocol` (0 UDP, 1 TCP: gelf-rb
//!   leaves its option in the message), `version` "1.0", `host` (this machine's name),
//!   `level` (syslog severity; 1 when the record names none);
//! - then `_tag`, `timestamp` (seconds, to the millisecond, as a float for EventTime
//!   times; an integer for integer times), and every record field: `host` is `_host`
//!   (or the message's `host` with `use_record_host`), `level` is mapped from its first
//!   character (`0`-`7`, `alert`, `crit`, `error`, `emerg` (an `e` and not `er`),
//!   `warn`, `notice`, `info`, `debug`; anything else stays `_level`), `msec` is `_msec` (dropped with
//!   `add_msec_time`, which in the released plugin leaves the timestamp as it was),
//!   `short_message`, `full_message`, `facility`, `line`, `file` and keys starting with
//!   `_` keep their names (a record's `_tag` replaces the tag), and any other key `k`
//!   becomes `_k`;
//! - a missing or empty `short_message` is taken from `_message`, `_msg`, `_log` or
//!   `_record` (moved), else `(no message)`; nil values are left out.
//!
//! Differences, on purpose: an event gelf-rb refuses (over 128 UDP chunks, or an empty
//! `host` with `use_record_host`) makes the plugin fail the whole chunk forever; spate
//! drops that event with a warning and writes the rest. `tls true` is a config error
//! (not implemented). A record with a non-string key is dropped with an error line, as
//! the plugin's `format` does.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpStream, UdpSocket};
use spate_protocol::event::write_json_str;
use spate_protocol::{EntriesFormat, Events, ValueRef};

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};

pub const PLUGIN: Registration = Registration {
    name: "gelf",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "fluent-plugin-gelf-hs: `host` (required), `port` (12201), `protocol` udp (default: deflated, chunked above 1420 bytes) or tcp (NUL-delimited JSON), `use_record_host`, `add_msec_time`. Default buffer: memory; no chunk keys (a v0.12 plugin). Not supported (config error): `tls true`",
};

/// gelf-rb's `'WAN'` chunk size.
const CHUNK: usize = 1420;
/// The GELF spec's limit on chunks per message.
const MAX_CHUNKS: usize = 128;
/// How long a TCP connect or write may take before the chunk is retried.
const TCP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct GelfPlan {
    host: String,
    port: u16,
    tcp: bool,
    use_record_host: bool,
    add_msec_time: bool,
    /// gelf-rb's default `host` (`Socket.gethostname`).
    hostname: String,
}

fn plan(e: &Element, _ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let host = e
        .str("host")
        .ok_or_else(|| e.error("'host' parameter (hostname or address of Graylog2 server) is required"))?
        .to_string();
    let port = match e.int("port")? {
        None => 12201,
        Some(p) => u16::try_from(p).map_err(|_| e.error_at("port", format!("port {p}: out of range")))?,
    };
    let tcp = match e.str("protocol").unwrap_or("udp") {
        "udp" => false,
        "tcp" => true,
        _ => return Err(e.error_at("protocol", "'protocol' parameter should be either 'udp' (default) or 'tcp'")),
    };
    if e.bool("tls")?.unwrap_or(false) {
        return Err(
            e.error_at("tls", "tls true is not supported by spate's out_gelf; use protocol tcp without TLS or udp")
        );
    }
    // Read only with `tls true` (the plugin hands it to gelf-rb's TLS transport alone).
    let _ = e.hash("tls_options")?;
    if let Some(b) = e.single("buffer")? {
        if !b.arg.trim().is_empty() {
            return Err(b.error(format!(
                "this plugin 'Fluent::GELFOutput' cannot handle arguments for <buffer ...> section (got {:?})",
                b.arg
            )));
        }
    }
    if setup.primary_buffer().is_none() {
        setup.buffer(e, &BufferDefaults { keys: &[], tag_required: false, file_path: None, timekey: None })?;
    }
    Ok(Box::new(GelfPlan {
        host,
        port,
        tcp,
        use_record_host: e.bool("use_record_host")?.unwrap_or(false),
        add_msec_time: e.bool("add_msec_time")?.unwrap_or(false),
        hostname: crate::config::hostname(),
    }))
}

impl WriterPlan for GelfPlan {
    fn type_name(&self) -> &'static str {
        "gelf"
    }

    fn describe(&self) -> String {
        format!("GELF {} {}:{}", if self.tcp { "tcp" } else { "udp" }, self.host, self.port)
    }

    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(GelfWriter { id: id.to_string(), plan: self.clone(), tcp: RefCell::new(None) }))
    }
}

pub struct GelfWriter {
    id: String,
    plan: GelfPlan,
    /// The TCP connection, kept between chunks (gelf-rb keeps its socket).
    tcp: RefCell<Option<TcpStream>>,
}

/// A value of the message being built.
#[derive(Clone, Copy)]
enum Val<'a> {
    /// A record value, written as its JSON.
    Raw(ValueRef<'a>),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Val<'_> {
    fn is_nil(&self) -> bool {
        matches!(self, Val::Raw(v) if v.is_nil())
    }

    /// Ruby's `to_s.empty?`: only an empty string and nil are empty.
    fn is_blank(&self) -> bool {
        match self {
            Val::Raw(v) => v.is_nil() || v.as_str().is_some_and(<[u8]>::is_empty),
            Val::Str(s) => s.is_empty(),
            _ => false,
        }
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Val::Raw(v) => v.write_json(out),
            Val::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Val::Float(f) => crate::ruby::value::write_ruby_float(*f, out),
            Val::Str(s) => write_json_str(s.as_bytes(), out),
        }
    }
}

/// gelf-rb's levels (Ruby Logger numbering) as the plugin picks them, mapped with
/// `DIRECT_MAPPING` to syslog severities.
const UNKNOWN: i64 = 1;
const FATAL: i64 = 2;
const ERROR: i64 = 3;
const WARN: i64 = 4;
const INFO: i64 = 6;
const DEBUG: i64 = 7;

/// The severity for a record's `level` value, from the first character of its `to_s`
/// downcased (the plugin's `case v.to_s.downcase[0]`); None: it stays `_level`.
fn level_of(v: ValueRef<'_>, text: &mut Vec<u8>) -> Option<i64> {
    text.clear();
    crate::ruby::value::write_to_s(v, text);
    let first = match text.first()? {
        // U+0130 (capital I with dot above) downcases to "i̇".
        0xc4 if text.get(1) == Some(&0xb0) => b'i',
        b => b.to_ascii_lowercase(),
    };
    Some(match first {
        b'0' | b'1' | b'a' => UNKNOWN,
        b'2' | b'c' => FATAL,
        b'3' => ERROR,
        b'4' | b'w' => WARN,
        b'5' | b'n' | b'6' | b'i' => INFO,
        b'7' | b'd' => DEBUG,
        // `v.to_s.length >= 2 and v.to_s.downcase[1] != "r"`: "emerg" but not "error".
        b'e' if text.get(1).is_some_and(|b| !b.eq_ignore_ascii_case(&b'r')) => UNKNOWN,
        b'e' => ERROR,
        _ => return None,
    })
}

/// Why an event was left out of the chunk's messages.
#[derive(Debug)]
enum Skip {
    Deflate,
    NonStringKey,
    EmptyHost,
    TooBig(usize),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Deflate => f.write_str("deflating the message failed"),
            Skip::NonStringKey => f.write_str("a record key is not a string (the plugin's '_' + key fails)"),
            Skip::EmptyHost => f.write_str("host is missing (use_record_host and an empty record host)"),
            Skip::TooBig(n) => write!(f, "the message needs {n} UDP chunks, more than GELF's {MAX_CHUNKS}"),
        }
    }
}

/// Scratch reused across the events of a chunk.
#[derive(Default)]
struct Scratch {
    /// Key bytes of the message's fields (ranges into `keys`).
    keys: Vec<u8>,
    text: Vec<u8>,
    key: Vec<u8>,
}

impl GelfWriter {
    /// Appends event `ev`'s GELF JSON to `out`.
    fn message<'a>(
        &self,
        tag: &'a str,
        ev: &spate_protocol::event::Event<'a>,
        fields: &mut Vec<(std::ops::Range<usize>, Val<'a>)>,
        s: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Result<(), Skip> {
        fields.clear();
        s.keys.clear();
        // A Ruby Hash assignment: an existing key keeps its place.
        fn set<'a>(fields: &mut Vec<(std::ops::Range<usize>, Val<'a>)>, keys: &mut Vec<u8>, k: &[u8], v: Val<'a>) {
            if let Some(f) = fields.iter_mut().find(|(r, _)| keys.get(r.clone()) == Some(k)) {
                f.1 = v;
                return;
            }
            let at = keys.len();
            keys.extend_from_slice(k);
            fields.push((at..keys.len(), v));
        }
        fn take<'a>(fields: &mut Vec<(std::ops::Range<usize>, Val<'a>)>, keys: &[u8], k: &[u8]) -> Option<Val<'a>> {
            let i = fields.iter().position(|(r, _)| keys.get(r.clone()) == Some(k))?;
            Some(fields.remove(i).1)
        }
        fn get<'a, 'b>(fields: &'b [(std::ops::Range<usize>, Val<'a>)], keys: &[u8], k: &[u8]) -> Option<&'b Val<'a>> {
            fields.iter().find(|(r, _)| keys.get(r.clone()) == Some(k)).map(|(_, v)| v)
        }

        set(fields, &mut s.keys, b"_tag", Val::Str(tag));
        // EventTime: `sec + (nsec / 1e9).round(3)`, a Float; an integer time stays one.
        let is_event_time = matches!(ev.time_raw.first(), Some(0xd7 | 0xc7));
        let timestamp = if is_event_time {
            Val::Float(ev.time.sec as f64 + (f64::from(ev.time.nsec) / 1e9 * 1000.0).round() / 1000.0)
        } else {
            Val::Int(i64::from(ev.time.sec))
        };
        set(fields, &mut s.keys, b"timestamp", timestamp);
        for (k, v) in ev.record.fields() {
            let k = k.as_str().ok_or(Skip::NonStringKey)?;
            match k {
                b"host" if self.plan.use_record_host => set(fields, &mut s.keys, b"host", Val::Raw(v)),
                b"level" => match level_of(v, &mut s.text) {
                    // In place, as the plugin's `gelfentry['level'] =`.
                    Some(l) => set(fields, &mut s.keys, b"level", Val::Int(l)),
                    None => set(fields, &mut s.keys, b"_level", Val::Raw(v)),
                },
                b"msec" if self.plan.add_msec_time => {
                    // `"#{time}.#{v}".to_f` with `time` already the float timestamp:
                    // the value it parses is the timestamp again.
                }
                b"short_message" | b"full_message" | b"facility" | b"line" | b"file" => {
                    set(fields, &mut s.keys, k, Val::Raw(v))
                }
                _ if k.starts_with(b"_") => set(fields, &mut s.keys, k, Val::Raw(v)),
                _ => {
                    s.key.clear();
                    s.key.push(b'_');
                    s.key.extend_from_slice(k);
                    set(fields, &mut s.keys, &s.key, Val::Raw(v));
                }
            }
        }
        if get(fields, &s.keys, b"short_message").is_none_or(Val::is_blank) {
            let mut found = None;
            for alt in [&b"_message"[..], b"_msg", b"_log", b"_record"] {
                if get(fields, &s.keys, alt).is_some_and(|v| !v.is_blank()) {
                    found = take(fields, &s.keys, alt);
                    break;
                }
            }
            set(fields, &mut s.keys, b"short_message", found.unwrap_or(Val::Str("(no message)")));
        }
        fields.retain(|(_, v)| !v.is_nil());

        // gelf-rb: `default_options.merge(message)`; the defaults' keys come first.
        let mut facility = Val::Str("fluentd");
        let mut host = Val::Str(&self.plan.hostname);
        let mut lvl = Val::Int(UNKNOWN);
        fields.retain(|(r, v)| match s.keys.get(r.clone()).unwrap_or_default() {
            b"facility" => {
                facility = *v;
                false
            }
            b"host" => {
                host = *v;
                false
            }
            b"level" => {
                lvl = *v;
                false
            }
            _ => true,
        });
        if host.is_blank() {
            return Err(Skip::EmptyHost);
        }
        out.extend_from_slice(b"{\"facility\":");
        facility.write_json(out);
        let _ = write!(out, ",\"protocol\":{},\"version\":\"1.0\",\"host\":", u8::from(self.plan.tcp));
        host.write_json(out);
        out.extend_from_slice(b",\"level\":");
        lvl.write_json(out);
        for (r, v) in fields.iter() {
            out.push(b',');
            write_json_str(s.keys.get(r.clone()).unwrap_or_default(), out);
            out.push(b':');
            v.write_json(out);
        }
        out.push(b'}');
        Ok(())
    }

    async fn write_chunk(&self, chunk: &Chunk) -> Result<usize, WriteError> {
        let tag = String::from_utf8_lossy(&chunk.tag);
        let (mut fields, mut s) = (Vec::new(), Scratch::default());
        let (mut out, mut json) = (Vec::new(), Vec::new());
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        let mut skipped = 0usize;
        for ev in Events::new(&chunk.data, EntriesFormat::Packed) {
            json.clear();
            // Events yields valid entries only: the record is a map.
            let r = self.message(&tag, &ev, &mut fields, &mut s, &mut json).and_then(|()| {
                if self.plan.tcp {
                    out.extend_from_slice(&json);
                    out.push(0);
                    Ok(())
                } else {
                    udp_datagrams(&json, &mut datagrams)
                }
            });
            if let Err(why) = r {
                skipped += 1;
                if skipped <= 3 {
                    crate::warn!("{}: an event of tag {tag:?} is not sent to Graylog: {why}", self.id);
                }
            }
        }
        if skipped > 3 {
            crate::warn!("{}: {skipped} events of this chunk were not sent (first reasons above)", self.id);
        }
        let addr = self.resolve().await?;
        if self.plan.tcp {
            self.send_tcp(addr, &out).await?;
            Ok(out.len())
        } else {
            let sock = bind_for(addr).map_err(|e| WriteError::Retry(format!("UDP socket: {e}")))?;
            let mut n = 0;
            for d in &datagrams {
                n += sock.send_to(d, addr).await.map_err(|e| WriteError::Retry(format!("send to {addr}: {e}")))?;
            }
            Ok(n)
        }
    }

    async fn resolve(&self) -> Result<SocketAddr, WriteError> {
        let (host, port) = (self.plan.host.clone(), self.plan.port);
        let h = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if let Ok(ip) = h.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let r = glommio::executor()
            .spawn_blocking(move || {
                use std::net::ToSocketAddrs;
                (h.as_str(), port).to_socket_addrs().map(|mut a| a.next())
            })
            .await;
        match r {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(WriteError::Retry(format!("cannot resolve {host}: no address"))),
            Err(e) => Err(WriteError::Retry(format!("cannot resolve {host}: {e}"))),
        }
    }

    /// Writes `bytes` on the kept connection (opening one if needed); on failure the
    /// connection is dropped and the chunk retried (gelf-rb reconnects on its next send).
    async fn send_tcp(&self, addr: SocketAddr, bytes: &[u8]) -> Result<(), WriteError> {
        let stream = self.tcp.borrow_mut().take();
        let mut stream = match stream {
            Some(s) => s,
            None => TcpStream::connect_timeout(addr, TCP_TIMEOUT)
                .await
                .map_err(|e| WriteError::Retry(format!("connect to {addr}: {e}")))?,
        };
        let w = glommio::timer::timeout(TCP_TIMEOUT, async {
            stream.write_all(bytes).await?;
            stream.flush().await?;
            Ok(())
        })
        .await;
        match w {
            Ok(()) => {
                *self.tcp.borrow_mut() = Some(stream);
                Ok(())
            }
            Err(e) => Err(WriteError::Retry(format!("write to {addr}: {e}"))),
        }
    }
}

/// An unbound UDP socket of `addr`'s family.
fn bind_for(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().map_err(std::io::Error::other)?;
    UdpSocket::bind(any).map_err(|e| std::io::Error::other(e.to_string()))
}

/// gelf-rb's UDP datagrams of one message: the zlib-deflated JSON, as one datagram or
/// as GELF chunks (`0x1e 0x0f`, an 8-byte message id, sequence number and count).
fn udp_datagrams(json: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), Skip> {
    let mut z =
        flate2::write::ZlibEncoder::new(Vec::with_capacity(json.len() / 2 + 16), flate2::Compression::default());
    let data = match z.write_all(json).and_then(|()| z.finish()) {
        Ok(d) => d,
        Err(_) => return Err(Skip::Deflate),
    };
    if data.len() <= CHUNK {
        out.push(data);
        return Ok(());
    }
    let count = data.len().div_ceil(CHUNK);
    if count > MAX_CHUNKS {
        return Err(Skip::TooBig(count));
    }
    let id = crate::sys::random16();
    for (i, slice) in data.chunks(CHUNK).enumerate() {
        let mut d = Vec::with_capacity(12 + slice.len());
        d.extend_from_slice(&[0x1e, 0x0f]);
        d.extend_from_slice(&id[..8]);
        d.push(i as u8);
        d.push(count as u8);
        d.extend_from_slice(slice);
        out.push(d);
    }
    Ok(())
}

impl Writer for GelfWriter {
    fn type_name(&self) -> &'static str {
        "gelf"
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

    fn msg(plan: GelfPlan, time_raw: &[u8], json: &str) -> Result<String, String> {
        let w = GelfWriter { id: "t".into(), plan, tcp: RefCell::new(None) };
        let rec = spate_protocol::json::to_msgpack(json.as_bytes()).unwrap();
        let mut entry = vec![0x92];
        entry.extend_from_slice(time_raw);
        entry.extend_from_slice(&rec);
        let ev = Events::new(&entry, EntriesFormat::Packed).next().unwrap();
        let (mut f, mut s, mut out) = (Vec::new(), Scratch::default(), Vec::new());
        w.message("app.web", &ev, &mut f, &mut s, &mut out).map_err(|e| e.to_string())?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn plan() -> GelfPlan {
        GelfPlan {
            host: "127.0.0.1".into(),
            port: 12201,
            tcp: false,
            use_record_host: false,
            add_msec_time: false,
            hostname: "box".into(),
        }
    }

    /// EventTime 1700000000.123456789.
    const ET: &[u8] = &[0xd7, 0x00, 0x65, 0x53, 0xf1, 0x00, 0x07, 0x5b, 0xcd, 0x15];

    #[test]
    fn fields_levels_and_order_as_the_plugin_builds_them() {
        let m = msg(plan(), ET, r#"{"host":"web-1","level":"WARN","message":"hi","n":1,"facility":"app","x":null}"#);
        assert_eq!(
            m.unwrap(),
            r#"{"facility":"app","protocol":0,"version":"1.0","host":"box","level":4,"_tag":"app.web","timestamp":1700000000.123,"_host":"web-1","_n":1,"short_message":"hi"}"#
        );
        let tcp = GelfPlan { tcp: true, use_record_host: true, ..plan() };
        let m = msg(
            tcp,
            &[0xce, 0x65, 0x53, 0xf1, 0x00],
            r#"{"host":"web-1","level":"emerg","short_message":"","log":"l"}"#,
        );
        assert_eq!(
            m.unwrap(),
            r#"{"facility":"fluentd","protocol":1,"version":"1.0","host":"web-1","level":1,"_tag":"app.web","timestamp":1700000000,"short_message":"l"}"#
        );
    }

    #[test]
    fn level_mapping() {
        let mut t = Vec::new();
        for (v, want) in [
            (r#""0""#, Some(UNKNOWN)),
            (r#""alert""#, Some(UNKNOWN)),
            (r#""Critical""#, Some(FATAL)),
            ("3", Some(ERROR)),
            (r#""error""#, Some(ERROR)),
            (r#""EMERGENCY""#, Some(UNKNOWN)),
            (r#""e""#, Some(ERROR)),
            (r#""ex""#, Some(UNKNOWN)),
            (r#""ER""#, Some(ERROR)),
            (r#""warning""#, Some(WARN)),
            (r#""notice""#, Some(INFO)),
            (r#""info""#, Some(INFO)),
            ("7", Some(DEBUG)),
            (r#""trace""#, None),
            ("true", None),
            (r#""""#, None),
        ] {
            let m = spate_protocol::json::to_msgpack(v.as_bytes()).unwrap();
            assert_eq!(level_of(ValueRef::new(&m).unwrap(), &mut t), want, "{v}");
        }
        let m = msg(plan(), ET, r#"{"_tag":"mine","_x":1,"y":2}"#).unwrap();
        assert!(m.contains(r#""_tag":"mine","timestamp":1700000000.123,"_x":1,"_y":2,"#), "{m}");
        let m = msg(plan(), ET, r#"{"level":"trace"}"#).unwrap();
        assert!(m.contains(r#""level":1,"#) && m.contains(r#""_level":"trace""#), "{m}");
        assert!(m.ends_with(r#""short_message":"(no message)"}"#), "{m}");
    }

    #[test]
    fn refused_events() {
        let p = GelfPlan { use_record_host: true, ..plan() };
        assert!(msg(p, ET, r#"{"host":"","m":"x"}"#).unwrap_err().contains("host is missing"));
        let mut d = Vec::new();
        // Incompressible text over 128 chunks.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let big: String = (0..400_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x % 90) as u8)
            })
            .collect();
        assert!(matches!(udp_datagrams(big.as_bytes(), &mut d), Err(Skip::TooBig(_))));
        let mid: String = big.chars().take(5000).collect();
        udp_datagrams(mid.as_bytes(), &mut d).unwrap();
        assert!(d.len() > 1 && d.iter().all(|c| c.len() <= CHUNK + 12 && c[..2] == [0x1e, 0x0f]));
        assert!(d.iter().enumerate().all(|(i, c)| c[10] as usize == i && c[11] as usize == d.len()));
    }
}
