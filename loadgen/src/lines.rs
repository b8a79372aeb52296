//! Payloads for the non-Forward inputs (`run --protocol http|tcp|udp|syslog`): the
//! protocol and `--format` choices, each record template rendered once as a line (JSON,
//! LTSV, Apache combined log, RFC 3164 / RFC 5424 syslog) or a msgpack map, and the
//! pre-rendered batches a sender cycles through (a keep-alive HTTP request with a JSON
//! or msgpack array body, or `batch` newline-terminated lines). Everything is rendered
//! before the first send: the hot loop only slices these buffers.

use spate_protocol::encode::raw;
use spate_protocol::RecordRef;

use crate::records::Template;

/// What the generator speaks to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// fluentd's Forward protocol (in_forward), every `--mode`.
    Forward,
    /// HTTP/1.1 POST of batches to `/<tag>` (in_http), keep-alive.
    Http,
    /// Newline-terminated lines over TCP (in_tcp).
    Tcp,
    /// One line per datagram (in_udp).
    Udp,
    /// RFC 3164 / RFC 5424 lines over TCP, newline framing (in_syslog `<transport tcp>`,
    /// `frame_type traditional`; fluent-bit in_syslog `Mode tcp`).
    Syslog,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "forward" => Ok(Protocol::Forward),
            "http" => Ok(Protocol::Http),
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "syslog" => Ok(Protocol::Syslog),
            o => Err(format!("unknown --protocol {o:?}; expected forward, http, tcp, udp or syslog")),
        }
    }
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Forward => "forward",
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Syslog => "syslog",
        }
    }

    /// The format used when `--format` is not given.
    pub fn default_format(self) -> Format {
        match self {
            // fluentd in_syslog's default message_format.
            Protocol::Syslog => Format::Syslog3164,
            _ => Format::Json,
        }
    }

    /// The formats this protocol can carry.
    pub fn formats(self) -> &'static [Format] {
        use Format::*;
        match self {
            Protocol::Forward => &[],
            Protocol::Http => &[Json, Msgpack],
            // A msgpack map may contain a newline byte: no line framing for it.
            Protocol::Tcp | Protocol::Udp => &[Json, Ltsv, Apache2, Syslog3164, Syslog5424],
            Protocol::Syslog => &[Syslog3164, Syslog5424],
        }
    }
}

/// How each event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Msgpack,
    Ltsv,
    Apache2,
    Syslog3164,
    Syslog5424,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "msgpack" => Ok(Format::Msgpack),
            "ltsv" => Ok(Format::Ltsv),
            "apache2" => Ok(Format::Apache2),
            "syslog3164" => Ok(Format::Syslog3164),
            "syslog5424" => Ok(Format::Syslog5424),
            o => {
                Err(format!("unknown --format {o:?}; expected json, msgpack, ltsv, apache2, syslog3164 or syslog5424"))
            }
        }
    }
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Msgpack => "msgpack",
            Format::Ltsv => "ltsv",
            Format::Apache2 => "apache2",
            Format::Syslog3164 => "syslog3164",
            Format::Syslog5424 => "syslog5424",
        }
    }
}

/// Checks that `protocol` carries `format`; the error lists the choices.
pub fn check(protocol: Protocol, format: Format) -> Result<(), String> {
    let ok = protocol.formats();
    if ok.contains(&format) {
        return Ok(());
    }
    let names: Vec<&str> = ok.iter().map(|f| f.name()).collect();
    Err(format!(
        "--protocol {} does not carry --format {}; choose one of {}",
        protocol.name(),
        format.name(),
        names.join(", ")
    ))
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// UTC civil time of a Unix time in seconds: (year, month 1-12, day, h, m, s).
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400) as u32;
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// The text of field `key` (strings as they are, other values as JSON), or `default`.
fn field(r: &RecordRef<'_>, key: &[u8], default: &[u8], out: &mut Vec<u8>) {
    match r.get(key) {
        Some(v) => v.write_text(out),
        None => out.extend_from_slice(default),
    }
}

/// Replaces bytes that would break a line or field (`bad`) with a space.
fn scrub(out: &mut [u8], from: usize, bad: &[u8]) {
    for b in out.iter_mut().skip(from) {
        if bad.contains(b) {
            *b = b' ';
        }
    }
}

/// Renders template `i` in `format`; `now` is the wall time (seconds, micros) stamped
/// into the formats that carry a time.
pub fn render(tpl: &Template, i: usize, format: Format, now: (i64, u32), out: &mut Vec<u8>) {
    let rec = tpl.to_record();
    let Some(r) = RecordRef::new(&rec) else { return };
    let (y, mo, d, h, mi, s) = civil(now.0);
    let mon = MONTHS[(mo as usize + 11) % 12];
    match format {
        Format::Msgpack => out.extend_from_slice(&rec),
        Format::Json => r.write_json(out),
        Format::Ltsv => {
            for (n, (k, v)) in r.fields().enumerate() {
                if n > 0 {
                    out.push(b'\t');
                }
                let at = out.len();
                k.write_text(out);
                scrub(out, at, b"\t\n\r:");
                out.push(b':');
                let at = out.len();
                v.write_text(out);
                scrub(out, at, b"\t\n\r");
            }
        }
        Format::Apache2 => {
            // Combined log format, as parser_apache2 reads it; the path is made of the
            // message's words so lines vary like the other formats.
            out.extend_from_slice(
                format!(
                    "10.0.{}.{} - - [{d:02}/{mon}/{y}:{h:02}:{mi:02}:{s:02} +0000] \"GET /",
                    i / 256 % 256,
                    i % 256
                )
                .as_bytes(),
            );
            let at = out.len();
            field(&r, b"message", b"index.html", out);
            for b in out.iter_mut().skip(at) {
                if !b.is_ascii_graphic() || *b == b'"' || *b == b'\\' {
                    *b = b'/';
                }
            }
            let size = out.len() - at;
            out.extend_from_slice(b" HTTP/1.1\" ");
            field(&r, b"status", b"200", out);
            out.extend_from_slice(format!(" {size} \"-\" \"spate-loadgen\"").as_bytes());
        }
        Format::Syslog3164 | Format::Syslog5424 => {
            // PRI 14: facility user, severity info.
            if format == Format::Syslog3164 {
                out.extend_from_slice(format!("<14>{mon} {d:>2} {h:02}:{mi:02}:{s:02} ").as_bytes());
            } else {
                out.extend_from_slice(
                    format!("<14>1 {y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}+00:00 ", now.1).as_bytes(),
                );
            }
            let at = out.len();
            field(&r, b"host", b"localhost", out);
            for b in out.iter_mut().skip(at) {
                if !b.is_ascii_graphic() {
                    *b = b'-';
                }
            }
            let pid = 1000 + i % 64;
            if format == Format::Syslog3164 {
                out.extend_from_slice(format!(" app[{pid}]: ").as_bytes());
            } else {
                out.extend_from_slice(format!(" app {pid} - - ").as_bytes());
            }
            let at = out.len();
            field(&r, b"message", b"-", out);
            scrub(out, at, b"\n\r");
        }
    }
}

/// `batch` events starting at template `first`, rendered for the wire.
#[derive(Debug, Clone)]
pub struct Batch {
    /// What one send writes: a whole HTTP request, or the lines.
    pub bytes: Vec<u8>,
    /// End offset in `bytes` of each line (line protocols; UDP sends each as a datagram).
    pub ends: Vec<usize>,
    pub events: u32,
}

/// What a sender builds its batches from.
#[derive(Debug, Clone)]
pub struct Params {
    pub protocol: Protocol,
    pub format: Format,
    pub tag: String,
    /// `Host` header for HTTP.
    pub host: String,
}

impl Batch {
    /// Renders `events` events starting at template `first` (`lines`: every template
    /// already rendered by [`render`]).
    pub fn new(p: &Params, lines: &[Vec<u8>], first: usize, events: u32) -> Batch {
        let n = lines.len().max(1);
        let pick = |k: usize| lines.get((first + k) % n).map_or(&[][..], |l| &l[..]);
        if p.protocol == Protocol::Http {
            let mut body = Vec::new();
            if p.format == Format::Msgpack {
                raw::array_header(&mut body, events);
                for k in 0..events as usize {
                    body.extend_from_slice(pick(k));
                }
            } else {
                body.push(b'[');
                for k in 0..events as usize {
                    if k > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(pick(k));
                }
                body.push(b']');
            }
            let ctype = if p.format == Format::Msgpack { "application/msgpack" } else { "application/json" };
            let mut bytes = format!(
                "POST /{} HTTP/1.1\r\nHost: {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                p.tag,
                p.host,
                body.len()
            )
            .into_bytes();
            bytes.extend_from_slice(&body);
            return Batch { bytes, ends: Vec::new(), events };
        }
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(events as usize);
        for k in 0..events as usize {
            bytes.extend_from_slice(pick(k));
            bytes.push(b'\n');
            ends.push(bytes.len());
        }
        Batch { bytes, ends, events }
    }
}

/// The batches one sender cycles through (up to 16 variants starting at different
/// templates, as [`crate::records::FrameSet`]), and the short batch that ends an
/// `--events` run, built once when needed.
#[derive(Debug, Clone)]
pub struct BatchSet {
    params: Params,
    lines: Vec<Vec<u8>>,
    variants: Vec<Batch>,
    next: usize,
    short: Option<Batch>,
    first: usize,
    batch: u32,
}

impl BatchSet {
    pub fn new(params: Params, tpls: &[Template], first: usize, batch: u32, now: (i64, u32)) -> BatchSet {
        let batch = batch.max(1);
        let lines: Vec<Vec<u8>> = tpls
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut l = Vec::new();
                render(t, i, params.format, now, &mut l);
                l
            })
            .collect();
        let n = lines.len().max(1);
        let (mut a, mut b) = (n, batch as usize);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        let count = (n / a.max(1)).clamp(1, 16);
        let variants = (0..count).map(|v| Batch::new(&params, &lines, first + v * batch as usize, batch)).collect();
        BatchSet { params, lines, variants, next: 0, short: None, first, batch }
    }

    pub fn batch(&self) -> u32 {
        self.batch
    }

    /// The next batch with `events` events (`batch`, or fewer for the last one).
    pub fn take(&mut self, events: u32) -> &Batch {
        if events >= self.batch || events == 0 {
            let i = self.next % self.variants.len();
            self.next = self.next.wrapping_add(1);
            return &self.variants[i];
        }
        if self.short.as_ref().is_none_or(|s| s.events != events) {
            let first = self.first + self.next * self.batch as usize;
            self.short = Some(Batch::new(&self.params, &self.lines, first, events));
        }
        match &self.short {
            Some(s) => s,
            None => &self.variants[0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{templates, RecordSource};

    fn one(format: Format) -> String {
        let t = templates(&RecordSource::R1).unwrap();
        let mut out = Vec::new();
        // 2026-11-29 22:32:34.123456 UTC
        render(&t[3], 3, format, (1_795_991_554, 123_456), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_render_as_their_parsers_expect() {
        let j: serde_json::Value = serde_json::from_str(&one(Format::Json)).unwrap();
        assert_eq!(j["host"], "web-01");
        assert_eq!(j["status"], 200);
        let l = one(Format::Ltsv);
        assert!(l.starts_with("host:web-01\tlevel:info\tstatus:200\tmessage:"), "{l}");
        assert_eq!(l.split('\t').count(), 4);
        let a = one(Format::Apache2);
        assert!(a.starts_with("10.0.0.3 - - [29/Nov/2026:22:32:34 +0000] \"GET /"), "{a}");
        assert!(a.ends_with(" HTTP/1.1\" 200 80 \"-\" \"spate-loadgen\""), "{a}");
        let s = one(Format::Syslog3164);
        assert!(s.starts_with("<14>Nov 29 22:32:34 web-01 app[1003]: "), "{s}");
        let s = one(Format::Syslog5424);
        assert!(s.starts_with("<14>1 2026-11-29T22:32:34.123456+00:00 web-01 app 1003 - - "), "{s}");
        for f in [Format::Json, Format::Ltsv, Format::Apache2, Format::Syslog3164, Format::Syslog5424] {
            assert!(!one(f).contains('\n'), "{f:?}");
        }
        let mut m = Vec::new();
        render(&templates(&RecordSource::R1).unwrap()[0], 0, Format::Msgpack, (0, 0), &mut m);
        assert_eq!(m.len(), 123);
    }

    #[test]
    fn single_digit_days_are_space_padded_in_rfc3164() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        let t = templates(&RecordSource::R1).unwrap();
        let mut out = Vec::new();
        render(&t[0], 0, Format::Syslog3164, (1_772_928_000, 0), &mut out);
        assert!(out.starts_with(b"<14>Mar  8 00:00:00 "), "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn http_batches_are_whole_requests() {
        let t = templates(&RecordSource::R1).unwrap();
        let p = Params { protocol: Protocol::Http, format: Format::Json, tag: "a.b".into(), host: "h:1".into() };
        let mut set = BatchSet::new(p, &t, 0, 10, (0, 0));
        let b = set.take(3).bytes.clone();
        let text = String::from_utf8(b).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /a.b HTTP/1.1\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: Vec<serde_json::Value> = serde_json::from_str(body).unwrap();
        assert_eq!(v.len(), 3);
        let p = Params { protocol: Protocol::Tcp, format: Format::Ltsv, tag: String::new(), host: String::new() };
        let mut set = BatchSet::new(p, &t, 0, 10, (0, 0));
        let b = set.take(10);
        assert_eq!(b.ends.len(), 10);
        assert_eq!(b.bytes.iter().filter(|&&c| c == b'\n').count(), 10);
        assert_eq!(*b.ends.last().unwrap(), b.bytes.len());
    }

    #[test]
    fn protocols_check_their_formats() {
        assert!(check(Protocol::Http, Format::Msgpack).is_ok());
        let e = check(Protocol::Syslog, Format::Json).unwrap_err();
        assert!(e.contains("syslog3164, syslog5424"), "{e}");
        assert!(check(Protocol::Tcp, Format::Msgpack).is_err());
    }
}
