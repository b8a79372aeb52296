//! `out_syslog_rfc5424` (cloudfoundry's fluent-plugin-syslog_rfc5424, which
//! logging-operator configures): a buffered output sending each event as an RFC 5424
//! syslog message over TLS (the default), TCP or UDP, formatted by its
//! `syslog_rfc5424` formatter:
//! `<14>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD LOG`, the time in UTC with
//! microseconds, each field from a record path (`hostname_field` ... `log_field`, dotted
//! for nested maps; `-` when absent, nil or false), truncated to RFC 5424's lengths, and
//! over a stream framed with RFC 6587 octet counting (`rfc6587_message_size`, default)
//! or a newline.
//!
//! TLS takes the plugin's current parameters as fluentd's socket helper reads them
//! (`socket_create_tls`): `insecure`, `trusted_ca_path` plus the system's CAs
//! (`enable_system_cert_store`), `verify_fqdn`, `fqdn` (the name checked and sent as
//! SNI), `allow_self_signed_cert`, a client certificate and `version`.
//!
//! A chunk leaves the buffer only when all its messages were written to the connection
//! (syslog has no acknowledgement); a failed write drops the connection and retries the
//! chunk, as the plugin does. The host is resolved at connect time.
//!
//! Where spate differs (README): the octet count counts bytes (RFC 6587; the plugin
//! counts characters, which misframes non-ASCII messages), a field that is not a
//! string is written as Ruby's `to_s` would print it, and `<format>` takes only
//! `syslog_rfc5424`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpStream, UdpSocket};
use spate_protocol::{EntriesFormat, EventTime, Events, RecordRef, ValueRef};

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};
use crate::tls::{ClientTls, HttpTlsParams, Stream, SystemRoots};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "syslog_rfc5424",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "fluent-plugin-syslog_rfc5424: `host`, `port` (required), `transport` (`tls` default, `tcp`, `udp`), `insecure` (no certificate check), `trusted_ca_path` (and the system's CAs unless `enable_system_cert_store false`), `verify_fqdn` (default: not `insecure`), `fqdn` (the name checked, else `host`), `allow_self_signed_cert`, `client_cert_path`/`private_key_path`/`private_key_passphrase`, `version` (TLSv1_2); `<format @type syslog_rfc5424>` (the default): `rfc6587_message_size` (true: octet counting, else a newline), `hostname_field` (hostname), `app_name_field` (app_name), `proc_id_field` (proc_id), `message_id_field` (message_id), `structured_data_field` (structured_data), `log_field` (log), dotted paths for nested fields. A chunk is committed once all its messages were written",
};

/// How messages travel.
#[derive(Debug, Clone)]
enum Transport {
    Tcp,
    /// The config, and the name the server's certificate is checked against (`fqdn`, else
    /// `host`).
    Tls(ClientTls, String),
    Udp,
}

/// The formatter's settings (formatter_syslog_rfc5424.rb).
#[derive(Debug, Clone)]
struct Fields {
    octet_counting: bool,
    hostname: Vec<String>,
    app_name: Vec<String>,
    proc_id: Vec<String>,
    message_id: Vec<String>,
    structured_data: Vec<String>,
    log: Vec<String>,
}

#[derive(Debug)]
struct SyslogPlan {
    host: String,
    port: u16,
    transport: Transport,
    fields: Fields,
}

fn plan(e: &Element, _ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let host = e.str("host").ok_or_else(|| e.error("'host' parameter is required"))?.to_string();
    let port = match e.int("port")? {
        Some(p @ 1..=65535) => p as u16,
        Some(p) => return Err(e.error(format!("port {p}: expected 1 to 65535"))),
        None => return Err(e.error("'port' parameter is required")),
    };
    let insecure = e.bool("insecure")?.unwrap_or(false);
    let transport = match e.str("transport").unwrap_or("tls") {
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        "tls" => {
            // The plugin's socket_options, read by fluentd's socket helper
            // (socket_create_tls).
            let ca: Vec<String> = e.str("trusted_ca_path").map(|p| vec![p.to_string()]).unwrap_or_default();
            let system = if e.bool("enable_system_cert_store")?.unwrap_or(true) {
                SystemRoots::Also
            } else {
                SystemRoots::Never
            };
            let p = HttpTlsParams {
                ca_files: ca,
                client_cert: e.str("client_cert_path"),
                client_key: e.str("private_key_path"),
                client_key_pass: e.str("private_key_passphrase"),
                verify: !insecure,
                // verify_fqdn defaults to `!insecure`; insecure verifies nothing.
                verify_hostname: !insecure && e.bool("verify_fqdn")?.unwrap_or(true),
                version: e.str("version").unwrap_or("TLSv1_2"),
                names: ("trusted_ca_path", "client_cert_path", "private_key_path"),
                allow_self_signed: e.bool("allow_self_signed_cert")?.unwrap_or(false),
                system_roots: system,
                ..Default::default()
            };
            let name = e.str("fqdn").unwrap_or(&host).to_string();
            if let Err(x) = rustls::pki_types::ServerName::try_from(name.clone()) {
                return Err(e.error(format!("fqdn {name:?}: not a host name or IP address: {x}")));
            }
            Transport::Tls(crate::tls::http_client_tls(e, &p)?, name)
        }
        o => return Err(e.error(format!("transport {o:?}: expected tls, tcp or udp"))),
    };
    // Without <format>, the formatter's defaults: an empty section reads as one.
    let empty = Element::new("format".into(), String::new(), Vec::new(), Vec::new(), e.pos.clone());
    let f = e.single("format")?.unwrap_or(&empty);
    let fields = match f.plugin_type().unwrap_or("syslog_rfc5424") {
        "syslog_rfc5424" => {
            let r = Fields::from(f)?;
            f.warn_unused();
            r
        }
        o => {
            return Err(
                f.error(format!("<format @type {o}>: out_syslog_rfc5424 formats with syslog_rfc5424 only in spate"))
            )
        }
    };
    if setup.primary_buffer().is_none() {
        setup.buffer(e, &BufferDefaults::default())?;
    }
    Ok(Box::new(SyslogPlan { host, port, transport, fields }))
}

impl Fields {
    /// The formatter's parameters from `f` (the `<format>`).
    fn from(f: &Element) -> Result<Fields, ConfigError> {
        let path = |k: &str, d: &str| -> Vec<String> { f.string_or(k, d).split('.').map(str::to_string).collect() };
        Ok(Fields {
            octet_counting: f.bool("rfc6587_message_size")?.unwrap_or(true),
            hostname: path("hostname_field", "hostname"),
            app_name: path("app_name_field", "app_name"),
            proc_id: path("proc_id_field", "proc_id"),
            message_id: path("message_id_field", "message_id"),
            structured_data: path("structured_data_field", "structured_data"),
            log: path("log_field", "log"),
        })
    }

    /// One message (RFC5424::Formatter.format), framed, appended to `out`.
    fn format(&self, rec: RecordRef<'_>, t: EventTime, out: &mut Vec<u8>, msg: &mut Vec<u8>) {
        msg.clear();
        msg.extend_from_slice(b"<14>1 ");
        rfc3339_micros(t, msg);
        for (path, max) in [(&self.hostname, 255), (&self.app_name, 48), (&self.proc_id, 128), (&self.message_id, 32)] {
            msg.push(b' ');
            field(rec, path, Some(max), msg);
        }
        msg.push(b' ');
        field(rec, &self.structured_data, None, msg);
        msg.push(b' ');
        field(rec, &self.log, None, msg);
        if self.octet_counting {
            out.extend_from_slice(msg.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(msg);
        } else {
            out.extend_from_slice(msg);
            out.push(b'\n');
        }
    }
}

/// `record.dig(*path)`.
fn dig<'a>(rec: RecordRef<'a>, path: &[String]) -> Option<ValueRef<'a>> {
    let (first, rest) = path.split_first()?;
    let mut v = rec.get(first.as_bytes())?;
    for seg in rest {
        v = v.as_map()?.get(seg.as_bytes())?;
    }
    Some(v)
}

/// A field's text (`-` when absent, nil or false, as Ruby's `||`), at most `max`
/// characters.
fn field(rec: RecordRef<'_>, path: &[String], max: Option<usize>, out: &mut Vec<u8>) {
    let v = match dig(rec, path) {
        Some(v) if !v.is_nil() && v.as_bool() != Some(false) => v,
        _ => {
            out.push(b'-');
            return;
        }
    };
    let start = out.len();
    match v.as_str() {
        Some(s) => out.extend_from_slice(s),
        None => crate::ruby::value::write_to_s(v, out),
    }
    if let Some(max) = max {
        // Ruby's `s[0..max-1]`: characters, not bytes.
        let text = String::from_utf8_lossy(&out[start..]).into_owned();
        if text.chars().count() > max {
            let cut: String = text.chars().take(max).collect();
            out.truncate(start);
            out.extend_from_slice(cut.as_bytes());
        }
    }
}

/// `Time.at(t).utc.to_datetime.rfc3339(6)`: `2013-02-28T03:00:00.000000+00:00`.
fn rfc3339_micros(t: EventTime, out: &mut Vec<u8>) {
    let secs = t.sec as i64;
    let (y, m, d) = crate::calendar::civil_from_days(secs.div_euclid(86400));
    let s = secs.rem_euclid(86400);
    let text =
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+00:00", s / 3600, s / 60 % 60, s % 60, t.nsec / 1000);
    out.extend_from_slice(text.as_bytes());
}

impl WriterPlan for SyslogPlan {
    fn type_name(&self) -> &'static str {
        "syslog_rfc5424"
    }
    fn describe(&self) -> String {
        let t = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Tls(..) => "tls",
            Transport::Udp => "udp",
        };
        format!("{t}://{}:{}", self.host, self.port)
    }
    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(SyslogWriter {
            id: id.to_string(),
            host: self.host.clone(),
            port: self.port,
            transport: self.transport.clone(),
            fields: self.fields.clone(),
            conn: RefCell::new(None),
        }))
    }
}

/// An open connection.
enum Conn {
    /// Boxed: a TLS stream is large, a UDP socket small.
    Stream(Box<Stream>),
    Udp(UdpSocket, SocketAddr),
}

struct SyslogWriter {
    id: String,
    host: String,
    port: u16,
    transport: Transport,
    fields: Fields,
    conn: RefCell<Option<Conn>>,
}

/// Connecting, the TLS handshake and each chunk's writes each have this long.
const TIMEOUT: Duration = Duration::from_secs(10);

impl SyslogWriter {
    async fn connect(&self) -> Result<Conn, WriteError> {
        let retry = |what: &str, e: &dyn std::fmt::Display| {
            WriteError::Retry(format!("{}: {what} {}:{}: {e}", self.id, self.host, self.port))
        };
        let addr = crate::http::resolve(&self.host, self.port)
            .await
            .map_err(|e| retry("cannot resolve", &e))?
            .into_iter()
            .next()
            .ok_or_else(|| retry("cannot resolve", &"no address"))?;
        match &self.transport {
            Transport::Udp => {
                let any: SocketAddr = if addr.is_ipv6() { ([0u16; 8], 0).into() } else { ([0u8; 4], 0).into() };
                let s = UdpSocket::bind(any).map_err(|e| retry("cannot open a UDP socket for", &e))?;
                Ok(Conn::Udp(s, addr))
            }
            t => {
                let tcp =
                    TcpStream::connect_timeout(addr, TIMEOUT).await.map_err(|e| retry("cannot connect to", &e))?;
                let s = match t {
                    Transport::Tls(tls, name) => {
                        Stream::connect(tcp, tls, name, TIMEOUT).await.map_err(|e| retry("TLS handshake with", &e))?
                    }
                    _ => Stream::Plain(tcp),
                };
                Ok(Conn::Stream(Box::new(s)))
            }
        }
    }
}

impl Writer for SyslogWriter {
    fn type_name(&self) -> &'static str {
        "syslog_rfc5424"
    }
    fn write<'a>(&'a self, chunk: &'a Chunk, _vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(async move {
            let held = self.conn.borrow_mut().take();
            let mut conn = match held {
                Some(c) => c,
                None => self.connect().await?,
            };
            let (mut out, mut msg) = (Vec::with_capacity(chunk.data.len()), Vec::new());
            let fail = |e: std::io::Error| {
                WriteError::Retry(format!("{}: writing to {}:{} failed: {e}", self.id, self.host, self.port))
            };
            match &mut conn {
                Conn::Stream(s) => {
                    for ev in Events::new(&chunk.data, EntriesFormat::Packed) {
                        self.fields.format(ev.record, ev.time, &mut out, &mut msg);
                    }
                    // On failure the connection is dropped (the plugin closes it).
                    glommio::timer::timeout(TIMEOUT, async {
                        s.write_all(&out).await?;
                        s.flush().await?;
                        Ok(())
                    })
                    .await
                    .map_err(|e| fail(std::io::Error::other(e.to_string())))?;
                }
                Conn::Udp(sock, addr) => {
                    for ev in Events::new(&chunk.data, EntriesFormat::Packed) {
                        out.clear();
                        self.fields.format(ev.record, ev.time, &mut out, &mut msg);
                        sock.send_to(&out, *addr).await.map_err(|e| fail(std::io::Error::other(e.to_string())))?;
                    }
                }
            }
            *self.conn.borrow_mut() = Some(conn);
            Ok(chunk.data.len())
        })
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        let p = |s: &str| s.split('.').map(str::to_string).collect();
        Fields {
            octet_counting: true,
            hostname: p("hostname"),
            app_name: p("k8s.app"),
            proc_id: p("proc_id"),
            message_id: p("message_id"),
            structured_data: p("structured_data"),
            log: p("log"),
        }
    }

    #[test]
    fn formats_as_the_plugins_formatter() {
        let rec = spate_protocol::json::to_msgpack(
            br#"{"hostname":"web-1","k8s":{"app":"shop"},"proc_id":42,"log":"caf\u00e9 ok","message_id":null}"#,
        )
        .unwrap();
        let (mut out, mut msg) = (Vec::new(), Vec::new());
        fields().format(RecordRef::new(&rec).unwrap(), EventTime::new(1362020400, 123_456_789), &mut out, &mut msg);
        let want = "<14>1 2013-02-28T03:00:00.123456+00:00 web-1 shop 42 - - café ok";
        assert_eq!(String::from_utf8(out).unwrap(), format!("{} {want}", want.len()), "octet count in bytes");
        // Long fields are cut to RFC 5424's lengths, in characters.
        let long = format!(r#"{{"hostname":"{}","log":"x"}}"#, "é".repeat(300));
        let rec = spate_protocol::json::to_msgpack(long.as_bytes()).unwrap();
        let (mut out, mut msg) = (Vec::new(), Vec::new());
        let mut f = fields();
        f.octet_counting = false;
        f.format(RecordRef::new(&rec).unwrap(), EventTime::new(0, 0), &mut out, &mut msg);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, format!("<14>1 1970-01-01T00:00:00.000000+00:00 {} - - - - x\n", "é".repeat(255)));
    }

    #[test]
    fn tls_parameters_are_checked_at_load() {
        let conf =
            |body: &str| format!("<match **>\n  @type syslog_rfc5424\n  host 127.0.0.1\n  port 6514\n{body}</match>\n");
        let e = crate::test_support::plan_err(&conf("  enable_system_cert_store false\n"));
        assert!(e.contains("no CA to verify servers with: set trusted_ca_path (the system's CAs are off)"), "{e}");
        let e = crate::test_support::plan_err(&conf("  fqdn \"bad name\"\n"));
        assert!(e.contains("fqdn \"bad name\": not a host name"), "{e}");
        let e = crate::test_support::plan_err(&conf("  version TLSv9\n"));
        assert!(e.contains("TLSv9"), "{e}");
        let e = crate::test_support::plan_err(&conf("  client_cert_path /nonexistent.pem\n"));
        assert!(e.contains("client_cert_path and private_key_path go together"), "{e}");
        // Without TLS, fluentd's socket helper never reads them.
        assert!(crate::test_support::plan_of(&conf("  transport tcp\n  enable_system_cert_store false\n")).is_ok());
    }
}
