//! fluentd's formatters (`<format>`: `out_file`, `json`, `msgpack`, `single_value`),
//! the `<inject>` fields they are given (`time_key`, `tag_key`, `hostname_key`, and
//! v0.12's `include_time_key`/`include_tag_key`), and fluentd's time formatting
//! (`time_format` strftime, `localtime`/`utc`/`timezone`, `time_type`).
//!
//! A formatter appends one event to a `Vec<u8>`: records are rendered from their msgpack
//! bytes in place (no intermediate value tree).

pub mod stdout;

use std::io::Write;

use spate_protocol::{EventTime, RecordRef};

use crate::config::{ConfigError, Element};

/// Which zone times are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Local,
    Utc,
    /// A fixed offset in seconds (`timezone +09:00`).
    Fixed(i64),
}

/// fluentd's TimeFormatter: a strftime format (or ISO 8601 when none) in a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeFormat {
    pub format: Option<String>,
    pub zone: Zone,
}

/// `time_type` of `<inject>` / formatters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeType {
    Float,
    Unixtime,
    UnixtimeMillis,
    UnixtimeMicros,
    UnixtimeNanos,
    String,
}

/// Civil time fields of a timestamp in a zone.
struct Civil {
    year: i64,
    mon: u32,
    mday: u32,
    hour: u32,
    min: u32,
    sec: u32,
    wday: u32,
    yday: u32,
    off: i64,
}

fn civil(sec: i64, zone: Zone) -> Civil {
    let (t, off, local) = match zone {
        Zone::Utc => (sec, 0, false),
        Zone::Fixed(o) => (sec + o, o, false),
        Zone::Local => (sec, 0, true),
    };
    let tt = t as libc::time_t;
    // SAFETY: the *_r functions write only into the zeroed tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals of the right types.
    unsafe {
        if local {
            libc::localtime_r(&tt, &mut tm);
        } else {
            libc::gmtime_r(&tt, &mut tm);
        }
    }
    Civil {
        year: tm.tm_year as i64 + 1900,
        mon: (tm.tm_mon + 1) as u32,
        mday: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        min: tm.tm_min as u32,
        sec: tm.tm_sec as u32,
        wday: tm.tm_wday as u32,
        yday: (tm.tm_yday + 1) as u32,
        off: if local { tm.tm_gmtoff } else { off },
    }
}

const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn offset(out: &mut Vec<u8>, off: i64, colon: bool) {
    let (sign, a) = if off < 0 { ('-', -off) } else { ('+', off) };
    let _ = if colon {
        write!(out, "{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
    } else {
        write!(out, "{sign}{:02}{:02}", a / 3600, a % 3600 / 60)
    };
}

/// Ruby's `Time#strftime` for the common directives; an unknown one is copied as is.
pub fn strftime(out: &mut Vec<u8>, fmt: &str, sec: i64, nsec: u32, zone: Zone) {
    let c = civil(sec, zone);
    let b = fmt.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        // Width for %N (%3N) and the ':' of %:z.
        let mut width = None;
        while i < b.len() && b[i].is_ascii_digit() {
            width = Some(width.unwrap_or(0) * 10 + (b[i] - b'0') as usize);
            i += 1;
        }
        let colon = i < b.len() && b[i] == b':';
        if colon {
            i += 1;
        }
        let Some(&d) = b.get(i) else {
            out.extend_from_slice(&b[start..]);
            break;
        };
        i += 1;
        let _ = match d {
            b'Y' => write!(out, "{}", c.year),
            b'C' => write!(out, "{:02}", c.year / 100),
            b'y' => write!(out, "{:02}", c.year % 100),
            b'm' => write!(out, "{:02}", c.mon),
            b'd' => write!(out, "{:02}", c.mday),
            b'e' => write!(out, "{:2}", c.mday),
            b'j' => write!(out, "{:03}", c.yday),
            b'H' => write!(out, "{:02}", c.hour),
            b'k' => write!(out, "{:2}", c.hour),
            b'I' => write!(out, "{:02}", (c.hour + 11) % 12 + 1),
            b'l' => write!(out, "{:2}", (c.hour + 11) % 12 + 1),
            b'M' => write!(out, "{:02}", c.min),
            b'S' => write!(out, "{:02}", c.sec),
            b'L' => write!(out, "{:03}", nsec / 1_000_000),
            b'N' => {
                let w = width.unwrap_or(9).clamp(1, 9);
                let s = format!("{nsec:09}");
                out.extend_from_slice(&s.as_bytes()[..w]);
                Ok(())
            }
            b'z' => {
                offset(out, c.off, colon);
                Ok(())
            }
            b'Z' => match zone {
                Zone::Utc => write!(out, "UTC"),
                _ => {
                    offset(out, c.off, false);
                    Ok(())
                }
            },
            b's' => write!(out, "{sec}"),
            b'p' => write!(out, "{}", if c.hour < 12 { "AM" } else { "PM" }),
            b'P' => write!(out, "{}", if c.hour < 12 { "am" } else { "pm" }),
            b'A' => write!(out, "{}", DAYS[c.wday as usize % 7]),
            b'a' => write!(out, "{}", &DAYS[c.wday as usize % 7][..3]),
            b'B' => write!(out, "{}", MONTHS[(c.mon as usize + 11) % 12]),
            b'b' | b'h' => write!(out, "{}", &MONTHS[(c.mon as usize + 11) % 12][..3]),
            b'u' => write!(out, "{}", if c.wday == 0 { 7 } else { c.wday }),
            b'w' => write!(out, "{}", c.wday),
            b'F' => write!(out, "{}-{:02}-{:02}", c.year, c.mon, c.mday),
            b'T' => write!(out, "{:02}:{:02}:{:02}", c.hour, c.min, c.sec),
            b'R' => write!(out, "{:02}:{:02}", c.hour, c.min),
            b'D' => write!(out, "{:02}/{:02}/{:02}", c.mon, c.mday, c.year % 100),
            b'%' => write!(out, "%"),
            _ => {
                out.extend_from_slice(&b[start..i]);
                Ok(())
            }
        };
    }
}

impl TimeFormat {
    /// Writes a time as fluentd's TimeFormatter does (ISO 8601 without a format:
    /// `2026-11-25T03:00:00+00:00` in local time, `...Z` in UTC).
    pub fn write(&self, out: &mut Vec<u8>, t: EventTime) {
        let (sec, nsec) = (t.sec as i64, t.nsec);
        match (&self.format, self.zone) {
            (Some(f), z) => strftime(out, f, sec, nsec, z),
            (None, Zone::Utc) => strftime(out, "%Y-%m-%dT%H:%M:%SZ", sec, nsec, Zone::Utc),
            (None, z) => strftime(out, "%Y-%m-%dT%H:%M:%S%:z", sec, nsec, z),
        }
    }
}

/// The formatter plugin.
#[derive(Debug, Clone, PartialEq)]
pub enum Formatter {
    /// `time<delim>tag<delim>json`
    OutFile {
        delimiter: String,
        output_time: bool,
        output_tag: bool,
        time: TimeFormat,
    },
    Json,
    Msgpack,
    SingleValue {
        message_key: String,
    },
}

/// `<inject>`: fields added to each record before formatting.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inject {
    pub time_key: Option<String>,
    pub time_type: Option<TimeType>,
    pub time: Option<TimeFormat>,
    pub tag_key: Option<String>,
    pub hostname_key: Option<String>,
    pub hostname: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FormatConf {
    pub formatter: Formatter,
    pub newline: bool,
    pub inject: Inject,
}

pub const FORMAT_TYPES: &[&str] = &["json", "msgpack", "out_file", "single_value"];

fn err(e: &Element, m: String) -> ConfigError {
    ConfigError::at(&e.pos, m)
}

fn zone_of(e: &Element) -> Result<Zone, ConfigError> {
    let localtime = e.bool("localtime")?;
    let utc = e.bool("utc")?;
    if let Some(tz) = e.str("timezone") {
        return parse_fixed_zone(tz).map(Zone::Fixed).ok_or_else(|| {
            err(e, format!("timezone {tz:?}: expected +HHMM, -HH:MM or UTC (named zones are not supported)"))
        });
    }
    Ok(match (localtime, utc) {
        (Some(true), Some(true)) | (Some(false), Some(false)) => {
            return Err(err(e, "both of utc and localtime are specified, use only one of them".into()))
        }
        (_, Some(true)) | (Some(false), _) => Zone::Utc,
        _ => Zone::Local,
    })
}

/// `+0900`, `-07:00`, `UTC`, `Z`.
pub fn parse_fixed_zone(z: &str) -> Option<i64> {
    let z = z.trim();
    if z.eq_ignore_ascii_case("utc") || z == "Z" || z.eq_ignore_ascii_case("gmt") {
        return Some(0);
    }
    let (sign, rest) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(sign * (digits[..2].parse::<i64>().ok()? * 3600 + digits[2..].parse::<i64>().ok()? * 60))
}

fn time_type(e: &Element) -> Result<Option<TimeType>, ConfigError> {
    Ok(match e.str("time_type") {
        None => None,
        Some("float") => Some(TimeType::Float),
        Some("unixtime") => Some(TimeType::Unixtime),
        Some("unixtime_millis") => Some(TimeType::UnixtimeMillis),
        Some("unixtime_micros") => Some(TimeType::UnixtimeMicros),
        Some("unixtime_nanos") => Some(TimeType::UnixtimeNanos),
        Some("string") => Some(TimeType::String),
        Some(o) => {
            return Err(err(
                e,
                format!(
                "time_type {o:?}: expected float, unixtime, unixtime_millis, unixtime_micros, unixtime_nanos or string"
            ),
            ))
        }
    })
}

/// Parses `<format>` (or its v0.12 flat parameters on `owner`: `format`, `delimiter`,
/// `output_tag`, `output_time`, ...) and `<inject>` (or `include_time_key`, `time_key`,
/// `include_tag_key`, `tag_key`, `localtime`, `utc`, `timezone`, `time_format` on
/// `owner`). `default` is the plugin's default formatter type.
pub fn format_conf(owner: &Element, default: &str, hostname: &str) -> Result<FormatConf, ConfigError> {
    let mut fmt_elems = owner.elements_named("format");
    let f = fmt_elems.next();
    if let Some(x) = fmt_elems.next() {
        return Err(err(x, "only one <format> section is allowed".into()));
    }
    // With no <format>, v0.12 flat parameters live on the owner.
    let src = f.unwrap_or(owner);
    let ty = match f {
        Some(f) => f.plugin_type().unwrap_or(default).to_string(),
        None => owner.str("format").unwrap_or(default).to_string(),
    };
    let newline = match src.str("newline") {
        None | Some("lf") => true,
        Some("crlf") => return Err(err(src, "newline crlf is not supported; supported: lf".into())),
        Some(o) => return Err(err(src, format!("newline {o:?}: expected lf or crlf"))),
    };
    let add_newline = src.bool("add_newline")?.unwrap_or(true);
    let formatter = match ty.as_str() {
        "out_file" => {
            let delimiter = match src.str("delimiter") {
                None => "\t".to_string(),
                Some(d) if d.eq_ignore_ascii_case("SPACE") => " ".into(),
                Some(d) if d.eq_ignore_ascii_case("COMMA") => ",".into(),
                // fluentd maps anything else to a tab.
                Some(_) => "\t".into(),
            };
            let time = TimeFormat { format: src.str("time_format").map(str::to_string), zone: zone_of(src)? };
            let _ = time_type(src)?;
            Formatter::OutFile {
                delimiter,
                output_time: src.bool("output_time")?.unwrap_or(true),
                output_tag: src.bool("output_tag")?.unwrap_or(true),
                time,
            }
        }
        "json" => {
            let _ = src.str("json_parser");
            Formatter::Json
        }
        "msgpack" => Formatter::Msgpack,
        "single_value" => {
            Formatter::SingleValue { message_key: src.str("message_key").unwrap_or("message").to_string() }
        }
        other => {
            return Err(err(src, format!("unknown format type '{other}'; supported: {}", FORMAT_TYPES.join(", "))));
        }
    };
    let newline = match formatter {
        Formatter::OutFile { .. } => newline,
        Formatter::Msgpack => false,
        _ => newline && add_newline,
    };
    if let Some(f) = f {
        f.warn_unused();
    }
    let inject = inject_conf(owner, hostname)?;
    Ok(FormatConf { formatter, newline, inject })
}

fn inject_conf(owner: &Element, hostname: &str) -> Result<Inject, ConfigError> {
    let mut it = owner.elements_named("inject");
    if let Some(i) = it.next() {
        if let Some(x) = it.next() {
            return Err(err(x, "only one <inject> section is allowed".into()));
        }
        let c = Inject {
            time_key: i.str("time_key").map(str::to_string),
            time_type: time_type(i)?,
            time: Some(TimeFormat { format: i.str("time_format").map(str::to_string), zone: zone_of(i)? }),
            tag_key: i.str("tag_key").map(str::to_string),
            hostname_key: i.str("hostname_key").map(str::to_string),
            hostname: i.str("hostname").unwrap_or(hostname).to_string(),
        };
        i.warn_unused();
        return Ok(c);
    }
    // v0.12 flat parameters (fluentd's compat_parameters_inject).
    let mut c = Inject { hostname: hostname.to_string(), ..Default::default() };
    if owner.bool("include_time_key")?.unwrap_or(false) {
        c.time_key = Some(owner.str("time_key").unwrap_or("time").to_string());
        c.time_type = Some(TimeType::String);
        c.time = Some(TimeFormat { format: owner.str("time_format").map(str::to_string), zone: zone_of(owner)? });
    }
    if owner.bool("include_tag_key")?.unwrap_or(false) {
        c.tag_key = Some(owner.str("tag_key").unwrap_or("tag").to_string());
    }
    Ok(c)
}

impl Inject {
    fn is_empty(&self) -> bool {
        self.time_key.is_none() && self.tag_key.is_none() && self.hostname_key.is_none()
    }

    /// The injected `(key, JSON value)` pairs, in fluentd's order (hostname, tag, time).
    fn fields(&self, tag: &[u8], t: EventTime) -> Vec<(String, InjectValue)> {
        let mut v = Vec::new();
        if let Some(k) = &self.hostname_key {
            v.push((k.clone(), InjectValue::Str(self.hostname.clone().into_bytes())));
        }
        if let Some(k) = &self.tag_key {
            v.push((k.clone(), InjectValue::Str(tag.to_vec())));
        }
        if let Some(k) = &self.time_key {
            let val = match self.time_type.unwrap_or(TimeType::Float) {
                TimeType::Float => InjectValue::Float(t.sec as f64 + t.nsec as f64 / 1e9),
                TimeType::Unixtime => InjectValue::Int(t.sec as i64),
                TimeType::UnixtimeMillis => InjectValue::Int(t.sec as i64 * 1000 + (t.nsec / 1_000_000) as i64),
                TimeType::UnixtimeMicros => InjectValue::Int(t.sec as i64 * 1_000_000 + (t.nsec / 1000) as i64),
                TimeType::UnixtimeNanos => InjectValue::Int(t.sec as i64 * 1_000_000_000 + t.nsec as i64),
                TimeType::String => {
                    let mut s = Vec::new();
                    self.time.clone().unwrap_or(TimeFormat { format: None, zone: Zone::Local }).write(&mut s, t);
                    InjectValue::Str(s)
                }
            };
            v.push((k.clone(), val));
        }
        v
    }
}

enum InjectValue {
    Str(Vec<u8>),
    Int(i64),
    Float(f64),
}

impl InjectValue {
    fn json(&self, out: &mut Vec<u8>) {
        match self {
            InjectValue::Str(s) => spate_protocol::event::write_json_str(s, out),
            InjectValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            InjectValue::Float(f) => {
                let mut m = Vec::new();
                spate_protocol::encode::raw::f64(&mut m, *f);
                if let Some(v) = spate_protocol::ValueRef::new(&m) {
                    v.write_json(out);
                }
            }
        }
    }

    fn msgpack(&self, out: &mut Vec<u8>) {
        match self {
            InjectValue::Str(s) => spate_protocol::encode::raw::str(out, s),
            InjectValue::Int(i) => spate_protocol::encode::raw::int(out, *i),
            InjectValue::Float(f) => spate_protocol::encode::raw::f64(out, *f),
        }
    }
}

impl FormatConf {
    /// Appends one formatted event. Records that are not maps are skipped (fluentd's
    /// outputs only ever see maps).
    pub fn format(&self, out: &mut Vec<u8>, tag: &[u8], t: EventTime, record: &[u8]) {
        let Some(rec) = RecordRef::new(record) else { return };
        let extra = if self.inject.is_empty() { Vec::new() } else { self.inject.fields(tag, t) };
        match &self.formatter {
            Formatter::OutFile { delimiter, output_time, output_tag, time } => {
                if *output_time {
                    time.write(out, t);
                    out.extend_from_slice(delimiter.as_bytes());
                }
                if *output_tag {
                    out.extend_from_slice(tag);
                    out.extend_from_slice(delimiter.as_bytes());
                }
                json_with(out, rec, &extra);
            }
            Formatter::Json => json_with(out, rec, &extra),
            Formatter::Msgpack => {
                if extra.is_empty() {
                    out.extend_from_slice(record);
                } else {
                    let keep: Vec<_> = rec
                        .fields()
                        .filter(|(k, _)| !extra.iter().any(|(e, _)| k.as_str() == Some(e.as_bytes())))
                        .collect();
                    spate_protocol::encode::raw::map_header(out, (keep.len() + extra.len()) as u32);
                    for (k, v) in keep {
                        out.extend_from_slice(k.as_bytes());
                        out.extend_from_slice(v.as_bytes());
                    }
                    for (k, v) in &extra {
                        spate_protocol::encode::raw::str(out, k.as_bytes());
                        v.msgpack(out);
                    }
                }
            }
            Formatter::SingleValue { message_key } => {
                let injected = extra.iter().find(|(k, _)| k == message_key);
                match (injected, rec.get(message_key.as_bytes())) {
                    (Some((_, InjectValue::Str(s))), _) => out.extend_from_slice(s),
                    (Some((_, v)), _) => {
                        let mut j = Vec::new();
                        v.json(&mut j);
                        out.extend_from_slice(&j);
                    }
                    (None, Some(v)) => match v.as_str() {
                        Some(s) => out.extend_from_slice(s),
                        None if v.is_nil() => {}
                        None => v.write_text(out),
                    },
                    (None, None) => {}
                }
            }
        }
        if self.newline {
            out.push(b'\n');
        }
    }
}

/// The record as JSON with `extra` fields set (replacing same-named ones, as a Ruby
/// Hash assignment does, in place).
fn json_with(out: &mut Vec<u8>, rec: RecordRef<'_>, extra: &[(String, InjectValue)]) {
    if extra.is_empty() {
        rec.write_json(out);
        return;
    }
    out.push(b'{');
    let mut first = true;
    let mut done = vec![false; extra.len()];
    for (k, v) in rec.fields() {
        if !first {
            out.push(b',');
        }
        first = false;
        k.write_json(out);
        out.push(b':');
        match extra.iter().position(|(e, _)| k.as_str() == Some(e.as_bytes())) {
            Some(i) => {
                extra[i].1.json(out);
                done[i] = true;
            }
            None => v.write_json(out),
        }
    }
    for (i, (k, v)) in extra.iter().enumerate() {
        if done[i] {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        spate_protocol::event::write_json_str(k.as_bytes(), out);
        out.push(b':');
        v.json(out);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_protocol::encode::raw;

    fn rec() -> Vec<u8> {
        let mut r = Vec::new();
        raw::map_header(&mut r, 2);
        raw::str(&mut r, b"message");
        raw::str(&mut r, b"awesome");
        raw::str(&mut r, b"n");
        raw::uint(&mut r, 1);
        r
    }

    fn fmt(c: &FormatConf, t: EventTime) -> String {
        let mut o = Vec::new();
        c.format(&mut o, b"test.tag", t, &rec());
        String::from_utf8(o).unwrap()
    }

    fn conf(f: Formatter) -> FormatConf {
        FormatConf { formatter: f, newline: true, inject: Inject::default() }
    }

    // 2016-04-25 12:34:56 UTC (fluentd's test_formatter_out_file uses event_time("2016-04-25 12:34:56 UTC")).
    const T: u32 = 1_461_587_696;

    #[test]
    fn out_file_default_and_options() {
        let utc = TimeFormat { format: None, zone: Zone::Utc };
        let c =
            conf(Formatter::OutFile { delimiter: "\t".into(), output_time: true, output_tag: true, time: utc.clone() });
        assert_eq!(
            fmt(&c, EventTime::new(T, 0)),
            "2016-04-25T12:34:56Z\ttest.tag\t{\"message\":\"awesome\",\"n\":1}\n"
        );
        let c = conf(Formatter::OutFile { delimiter: ",".into(), output_time: false, output_tag: true, time: utc });
        assert_eq!(fmt(&c, EventTime::new(T, 0)), "test.tag,{\"message\":\"awesome\",\"n\":1}\n");
        let jst = TimeFormat { format: Some("%Y%m%d %H:%M:%S.%L %z".into()), zone: Zone::Fixed(9 * 3600) };
        let c = conf(Formatter::OutFile { delimiter: " ".into(), output_time: true, output_tag: false, time: jst });
        assert_eq!(
            fmt(&c, EventTime::new(T, 123_456_789)),
            "20160425 21:34:56.123 +0900 {\"message\":\"awesome\",\"n\":1}\n"
        );
        let off = TimeFormat { format: None, zone: Zone::Fixed(-7 * 3600) };
        let mut o = Vec::new();
        off.write(&mut o, EventTime::new(T, 0));
        assert_eq!(o, b"2016-04-25T05:34:56-07:00");
    }

    #[test]
    fn json_msgpack_single_value() {
        assert_eq!(fmt(&conf(Formatter::Json), EventTime::new(T, 0)), "{\"message\":\"awesome\",\"n\":1}\n");
        let mut c = conf(Formatter::Msgpack);
        c.newline = false;
        let mut o = Vec::new();
        c.format(&mut o, b"t", EventTime::new(T, 0), &rec());
        assert_eq!(o, rec());
        let c = conf(Formatter::SingleValue { message_key: "message".into() });
        assert_eq!(fmt(&c, EventTime::new(T, 0)), "awesome\n");
        let c = conf(Formatter::SingleValue { message_key: "n".into() });
        assert_eq!(fmt(&c, EventTime::new(T, 0)), "1\n");
        let mut c = conf(Formatter::SingleValue { message_key: "missing".into() });
        c.newline = false;
        assert_eq!(fmt(&c, EventTime::new(T, 0)), "");
    }

    #[test]
    fn inject_time_and_tag() {
        let mut c = conf(Formatter::Json);
        c.inject = Inject {
            time_key: Some("time".into()),
            time_type: Some(TimeType::String),
            time: Some(TimeFormat { format: Some("%Y-%m-%d %H:%M:%S".into()), zone: Zone::Utc }),
            tag_key: Some("tag".into()),
            ..Default::default()
        };
        assert_eq!(
            fmt(&c, EventTime::new(T, 0)),
            "{\"message\":\"awesome\",\"n\":1,\"tag\":\"test.tag\",\"time\":\"2016-04-25 12:34:56\"}\n"
        );
        c.inject.time_type = Some(TimeType::Unixtime);
        c.inject.tag_key = Some("message".into()); // replaces the existing key in place
        assert_eq!(fmt(&c, EventTime::new(T, 0)), "{\"message\":\"test.tag\",\"n\":1,\"time\":1461587696}\n");
        c.inject.time_type = Some(TimeType::Float);
        c.inject.tag_key = None;
        assert_eq!(
            fmt(&c, EventTime::new(T, 500_000_000)),
            "{\"message\":\"awesome\",\"n\":1,\"time\":1461587696.5}\n"
        );
    }

    #[test]
    fn strftime_directives() {
        let mut o = Vec::new();
        strftime(&mut o, "%a %b %e %j %I%p %3N %6N %s %% %Q", T as i64, 123_456_789, Zone::Utc);
        assert_eq!(String::from_utf8(o).unwrap(), "Mon Apr 25 116 12PM 123 123456 1461587696 % %Q");
    }
}
