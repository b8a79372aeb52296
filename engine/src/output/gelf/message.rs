//! One event as one GELF message (JSON), as each of the two Ruby plugins registered as
//! `@type gelf` builds it in its `format`, followed by gelf-rb's `Notifier#notify!`
//! (`default_options.merge(message)`, `level_mapping 'direct'`, the mandatory-field
//! check). Key order is Ruby Hash order: an assignment to an existing key keeps its
//! place, a deleted key that is set again goes last.
//!
//! - fluent-plugin-gelf-hs (`make_gelfentry` in `gelf_util.rb`): `_tag`; `host` is
//!   `_host` (or `host` with `use_record_host`); `level` from its first character, else
//!   `_level`; a missing or empty `short_message` moved from `_message`, `_msg`, `_log`
//!   or `_record`, else `(no message)`.
//! - fluent-plugin-gelf-best (`gelf_plugin_util.rb`): `_fluentd_tag`; `host` and
//!   `hostname` set both `_host` and the message's `host` (without `use_record_host`
//!   too: the plugin's `gelfentry['_host'] = v` is also the value of `'host' =>`);
//!   `timestamp`/`time` replace the timestamp (strings through `DateTime.parse`, to the
//!   millisecond); `version` is kept; string values over `max_bytes` are cut, with
//!   `...`; `short_message` must not be blank after `strip`, and a blank one is kept
//!   when nothing replaces it.
//!
//! An event the Ruby side would raise on (a non-string key; a field gelf-rb requires
//! left empty; a `level` gelf-rb cannot compare; a `time` that is neither string nor
//! number; gelf-best with `add_msec_time` and an `msec` field, where its format
//! raises a NameError) is refused with its reason; the caller logs and skips it.

use std::collections::HashMap;
use std::io::Write as _;
use std::ops::Range;

use spate_protocol::event::{write_json_str, Event};
use spate_protocol::msgpack::Kind as MpKind;
use spate_protocol::ValueRef;

use crate::ruby::value::{ruby_str_to_f, write_ruby_float, write_to_s};

/// Which plugin's message to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// fluent-plugin-gelf-hs (fluentd-kubernetes-daemonset's graylog images).
    Hs,
    /// fluent-plugin-gelf-best (kube-logging's logging-operator).
    Best,
}

/// What the message builder needs from the configuration.
#[derive(Debug, Clone)]
pub struct Opts {
    pub flavor: Flavor,
    pub tcp: bool,
    pub use_record_host: bool,
    pub add_msec_time: bool,
    /// gelf-best's `max_bytes`.
    pub max_bytes: usize,
    /// gelf-rb's default `host` (`Socket.gethostname`).
    pub hostname: String,
}

/// gelf-rb's levels after `DIRECT_MAPPING` (syslog severities).
pub const UNKNOWN: i64 = 1;
pub const FATAL: i64 = 2;
pub const ERROR: i64 = 3;
pub const WARN: i64 = 4;
pub const INFO: i64 = 6;
pub const DEBUG: i64 = 7;

/// A value of the message being built.
#[derive(Clone, Copy)]
enum Val<'a> {
    /// A record value, written as its JSON.
    Raw(ValueRef<'a>),
    /// A record string cut to `max_bytes` (a range of the scratch text), `...` after it.
    Cut(usize, usize),
    Int(i64),
    Float(f64),
    Str(&'a str),
    /// nil (left out of the message).
    Null,
    /// gelf-rb's `DIRECT_MAPPING[level]` with no entry: `null` in the JSON (the mapping
    /// happens after the plugin's `compact`).
    UnmappedLevel,
}

impl Val<'_> {
    fn is_nil(&self) -> bool {
        matches!(self, Val::Null) || matches!(self, Val::Raw(v) if v.is_nil())
    }

    /// Ruby's truthiness: not nil, not false.
    fn truthy(&self) -> bool {
        !self.is_nil() && !matches!(self, Val::Raw(v) if v.as_bool() == Some(false))
    }

    /// `to_s`, with `strip` when `strip`, is empty.
    fn blank(&self, strip: bool, text: &mut Vec<u8>) -> bool {
        text.clear();
        match self {
            Val::Raw(v) => write_to_s(*v, text),
            Val::Cut(..) => return false, // ends with "..."
            Val::Str(s) => text.extend_from_slice(s.as_bytes()),
            Val::Int(_) | Val::Float(_) | Val::UnmappedLevel => return false,
            Val::Null => {}
        }
        if strip {
            // Ruby's strip: white space and NUL at both ends.
            text.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0))
        } else {
            text.is_empty()
        }
    }

    fn write_json(&self, cut: &[u8], out: &mut Vec<u8>) {
        match self {
            Val::Raw(v) => v.write_json(out),
            Val::Cut(a, b) => {
                let mut s = cut.get(*a..*b).unwrap_or_default().to_vec();
                s.extend_from_slice(b"...");
                write_json_str(&s, out);
            }
            Val::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Val::Float(f) => write_ruby_float(*f, out),
            Val::Str(s) => write_json_str(s.as_bytes(), out),
            Val::Null | Val::UnmappedLevel => out.extend_from_slice(b"null"),
        }
    }
}

/// Why an event was left out.
#[derive(Debug)]
pub enum Skip {
    NonStringKey,
    Missing(&'static str),
    Level,
    Time,
    MsecTime,
    Deflate,
    TooBig(usize),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NonStringKey => f.write_str("a record key is not a string (the plugin's format fails on it)"),
            Skip::Missing(k) => write!(f, "{k} is missing (gelf-rb requires version, short_message and host)"),
            Skip::Level => f.write_str("its level is neither a known level nor a number (gelf-rb cannot compare it)"),
            Skip::Time => f.write_str("its time/timestamp is neither a string nor a number (DateTime.parse fails)"),
            Skip::MsecTime => f.write_str(
                "it has msec and add_msec_time is set: fluent-plugin-gelf-best's format fails on that (NameError `time`)",
            ),
            Skip::Deflate => f.write_str("deflating the message failed"),
            Skip::TooBig(n) => write!(f, "the message needs {n} UDP chunks, more than GELF's {}", super::MAX_CHUNKS),
        }
    }
}

/// The message's fields in Ruby Hash order, with scratch reused across events.
#[derive(Default)]
pub struct Builder<'a> {
    fields: Vec<(Range<usize>, Val<'a>)>,
    keys: Vec<u8>,
    key: Vec<u8>,
    text: Vec<u8>,
    /// Cut strings (`Val::Cut` ranges).
    cut: Vec<u8>,
    /// Key -> field position, kept for records with many fields so that a record of
    /// thousands of keys is not quadratic (`indexed`: it matches `fields`).
    index: HashMap<Vec<u8>, usize>,
    indexed: bool,
}

/// Fields up to which lookups scan.
const SCAN: usize = 32;

impl<'a> Builder<'a> {
    fn pos(&mut self, k: &[u8]) -> Option<usize> {
        if self.fields.len() <= SCAN {
            return self.fields.iter().position(|(r, _)| self.keys.get(r.clone()) == Some(k));
        }
        if !self.indexed {
            self.index.clear();
            for (i, (r, _)) in self.fields.iter().enumerate() {
                self.index.entry(self.keys.get(r.clone()).unwrap_or_default().to_vec()).or_insert(i);
            }
            self.indexed = true;
        }
        self.index.get(k).copied()
    }

    /// Forgets the index (after fields moved).
    fn unindex(&mut self) {
        self.indexed = false;
        self.index.clear();
    }

    /// A Ruby Hash assignment: an existing key keeps its place.
    fn set(&mut self, k: &[u8], v: Val<'a>) {
        if let Some(i) = self.pos(k) {
            self.fields[i].1 = v;
            return;
        }
        let at = self.keys.len();
        self.keys.extend_from_slice(k);
        if self.indexed {
            self.index.insert(k.to_vec(), self.fields.len());
        }
        self.fields.push((at..self.keys.len(), v));
    }

    /// `set("_" + k)` unless `k` starts with `_` already.
    fn set_underscored(&mut self, k: &[u8], v: Val<'a>) {
        if k.starts_with(b"_") {
            return self.set(k, v);
        }
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        key.push(b'_');
        key.extend_from_slice(k);
        self.set(&key, v);
        self.key = key;
    }

    fn get(&mut self, k: &[u8]) -> Option<Val<'a>> {
        self.pos(k).map(|i| self.fields[i].1)
    }

    fn take(&mut self, k: &[u8]) -> Option<Val<'a>> {
        let i = self.pos(k)?;
        self.unindex();
        Some(self.fields.remove(i).1)
    }

    /// Appends event `ev`'s message to `out`.
    pub fn message(&mut self, o: &'a Opts, tag: &'a str, ev: &Event<'a>, out: &mut Vec<u8>) -> Result<(), Skip> {
        self.fields.clear();
        self.keys.clear();
        self.cut.clear();
        self.unindex();
        // The plugins' `format`: for an EventTime `time.to_i + (nsec / 1e9).round(3)`, a
        // Float; an integer time stays an Integer.
        let timestamp = if matches!(ev.time_raw.first(), Some(0xd7 | 0xc7)) {
            Val::Float(ev.time.sec as f64 + crate::ruby::value::ruby_round(f64::from(ev.time.nsec) / 1e9, 3))
        } else {
            Val::Int(i64::from(ev.time.sec))
        };
        match o.flavor {
            Flavor::Hs => self.gelf_hs(o, tag, ev, timestamp)?,
            Flavor::Best => self.gelf_best(o, tag, ev, timestamp)?,
        }
        self.fields.retain(|(_, v)| !v.is_nil());
        self.unindex();
        self.notify(o, out)
    }

    fn gelf_hs(&mut self, o: &Opts, tag: &'a str, ev: &Event<'a>, timestamp: Val<'a>) -> Result<(), Skip> {
        self.set(b"_tag", Val::Str(tag));
        self.set(b"timestamp", timestamp);
        for (k, v) in ev.record.fields() {
            let k = k.as_str().ok_or(Skip::NonStringKey)?;
            match k {
                b"host" if o.use_record_host => self.set(b"host", Val::Raw(v)),
                b"host" => self.set(b"_host", Val::Raw(v)),
                b"level" => match level_hs(v, &mut self.text) {
                    Some(l) => self.set(b"level", Val::Int(l)),
                    None => self.set(b"_level", Val::Raw(v)),
                },
                b"msec" if o.add_msec_time => {
                    let t = msec_time(timestamp, v, &mut self.text);
                    self.set(b"timestamp", t);
                }
                b"msec" => self.set(b"_msec", Val::Raw(v)),
                b"short_message" | b"full_message" | b"facility" | b"line" | b"file" => self.set(k, Val::Raw(v)),
                _ => self.set_underscored(k, Val::Raw(v)),
            }
        }
        let sm = self.get(b"short_message");
        if sm.is_none_or(|v| v.blank(false, &mut self.text)) {
            let mut found = None;
            for alt in [&b"_message"[..], b"_msg", b"_log", b"_record"] {
                if self.get(alt).is_some_and(|v| !v.blank(false, &mut self.text)) {
                    found = self.take(alt);
                    break;
                }
            }
            self.set(b"short_message", found.unwrap_or(Val::Str("(no message)")));
        }
        Ok(())
    }

    fn gelf_best(&mut self, o: &Opts, tag: &'a str, ev: &Event<'a>, timestamp: Val<'a>) -> Result<(), Skip> {
        self.set(b"_fluentd_tag", Val::Str(tag));
        self.set(b"timestamp", timestamp);
        for (k, v) in ev.record.fields() {
            let k = k.as_str().ok_or(Skip::NonStringKey)?;
            // `v.bytesize > max_bytes`: "#{v.byteslice(0, max_bytes - 3)}...".
            let val = match v.as_str() {
                Some(s) if matches!(v.kind(), MpKind::Str | MpKind::Bin) && s.len() > o.max_bytes => {
                    let a = self.cut.len();
                    let keep = cut_at_char(s, o.max_bytes.saturating_sub(3));
                    self.cut.extend_from_slice(&s[..keep]);
                    Val::Cut(a, self.cut.len())
                }
                _ => Val::Raw(v),
            };
            match k {
                b"host" | b"hostname" => {
                    if !o.use_record_host {
                        self.set(b"_host", val);
                    }
                    self.set(b"host", val);
                }
                b"timestamp" | b"time" => {
                    let t = parse_timestamp(v, val, &self.cut)?;
                    self.set(b"timestamp", t);
                }
                b"level" => {
                    let l = level_best(v, &mut self.text)?;
                    self.set(b"level", l);
                }
                // gelf-best's `process_record_entry` names a `time` it does not have:
                // its format raises a NameError for such a record.
                b"msec" if o.add_msec_time => return Err(Skip::MsecTime),
                b"msec" => self.set(b"_msec", val),
                b"short_message" | b"version" | b"full_message" | b"facility" | b"file" | b"line" => self.set(k, val),
                _ => self.set_underscored(k, val),
            }
        }
        // ensure_short_message
        let sm = self.get(b"short_message");
        if sm.is_some_and(|v| v.truthy() && !v.blank(true, &mut self.text)) {
            return Ok(());
        }
        for alt in [&b"_message"[..], b"_msg", b"_log", b"_record"] {
            if self.get(alt).is_some_and(|v| v.truthy() && !v.blank(true, &mut self.text)) {
                let v = self.take(alt).unwrap_or(Val::Null);
                self.set(b"short_message", v);
                return Ok(());
            }
        }
        if !sm.is_some_and(|v| v.truthy()) {
            self.set(b"short_message", Val::Str("(no message)"));
        }
        Ok(())
    }

    /// gelf-rb's `notify!`: its defaults first (`facility`, `protocol`, `version`,
    /// `host`, `level`), overridden in place by the message's, then the rest.
    fn notify(&mut self, o: &'a Opts, out: &mut Vec<u8>) -> Result<(), Skip> {
        let mut facility = Val::Str("fluentd");
        let mut version = Val::Str("1.0");
        let mut host = Val::Str(&o.hostname);
        let mut level = Val::Int(UNKNOWN);
        let keys = &self.keys;
        self.fields.retain(|(r, v)| {
            let slot = match keys.get(r.clone()).unwrap_or_default() {
                b"facility" => &mut facility,
                b"version" => &mut version,
                b"host" => &mut host,
                b"level" => &mut level,
                _ => return true,
            };
            *slot = *v;
            false
        });
        self.unindex();
        for (name, v) in [("version", version), ("host", host)] {
            if v.blank(false, &mut self.text) {
                return Err(Skip::Missing(name));
            }
        }
        if self.get(b"short_message").is_none_or(|v| v.blank(false, &mut self.text)) {
            return Err(Skip::Missing("short_message"));
        }
        out.extend_from_slice(b"{\"facility\":");
        facility.write_json(&self.cut, out);
        let _ = write!(out, ",\"protocol\":{},\"version\":", u8::from(o.tcp));
        version.write_json(&self.cut, out);
        out.extend_from_slice(b",\"host\":");
        host.write_json(&self.cut, out);
        out.extend_from_slice(b",\"level\":");
        level.write_json(&self.cut, out);
        for (r, v) in &self.fields {
            out.push(b',');
            write_json_str(self.keys.get(r.clone()).unwrap_or_default(), out);
            out.push(b':');
            v.write_json(&self.cut, out);
        }
        out.push(b'}');
        Ok(())
    }
}

/// The longest prefix of `s` of at most `n` bytes that does not split a UTF-8
/// character (Ruby's `byteslice` would, and `to_json` then raises on the chunk).
fn cut_at_char(s: &[u8], n: usize) -> usize {
    let mut n = n.min(s.len());
    while n > 0 && n < s.len() && (s[n] & 0xc0) == 0x80 {
        n -= 1;
    }
    n
}

/// `"#{time}.#{v}".to_f`: the `msec` field appended to the timestamp's text.
fn msec_time<'a>(timestamp: Val<'a>, v: ValueRef<'a>, text: &mut Vec<u8>) -> Val<'a> {
    text.clear();
    match timestamp {
        Val::Float(f) => write_ruby_float(f, text),
        Val::Int(i) => {
            let _ = write!(text, "{i}");
        }
        _ => {}
    }
    text.push(b'.');
    write_to_s(v, text);
    Val::Float(ruby_str_to_f(text))
}

/// Of `v.to_s`: the first two characters of its `downcase` (Unicode case mapping, as
/// Ruby's), and whether it has two characters or more (`v.to_s.length >= 2`).
fn first_two(v: ValueRef<'_>, text: &mut Vec<u8>) -> (Option<char>, Option<char>, bool) {
    text.clear();
    write_to_s(v, text);
    let s = String::from_utf8_lossy(text);
    let mut orig = s.chars();
    let (a, b) = (orig.next(), orig.next());
    let mut lower = a.into_iter().chain(b).flat_map(char::to_lowercase);
    (lower.next(), lower.next(), b.is_some())
}

/// fluent-plugin-gelf-hs: `case v.to_s.downcase[0]`; None: it stays `_level`.
fn level_hs(v: ValueRef<'_>, text: &mut Vec<u8>) -> Option<i64> {
    let (first, second, two) = first_two(v, text);
    Some(match first? {
        '0' | '1' | 'a' => UNKNOWN,
        '2' | 'c' => FATAL,
        '3' => ERROR,
        '4' | 'w' => WARN,
        '5' | 'n' | '6' | 'i' => INFO,
        '7' | 'd' => DEBUG,
        // `v.to_s.length >= 2 and v.to_s.downcase[1] != "r"`: "emerg" but not "error".
        'e' if two && second != Some('r') => UNKNOWN,
        'e' => ERROR,
        _ => return None,
    })
}

/// fluent-plugin-gelf-best: `LEVEL_MAP[first] || (length >= 2 && second != "r" ?
/// UNKNOWN : v)`. The raw `v` reaches gelf-rb, which compares it with an Integer: nil
/// is dropped later (the default level stays), an Integer is mapped (`null` when
/// `DIRECT_MAPPING` has no entry), anything else raises there.
fn level_best<'a>(v: ValueRef<'a>, text: &mut Vec<u8>) -> Result<Val<'a>, Skip> {
    let (first, second, two) = first_two(v, text);
    let mapped = match first {
        Some('0' | '1' | 'a') => Some(UNKNOWN),
        Some('2' | 'c') => Some(FATAL),
        Some('3' | 'e') => Some(ERROR),
        Some('4' | 'w') => Some(WARN),
        Some('5' | 'n' | '6' | 'i') => Some(INFO),
        Some('7' | 'd') => Some(DEBUG),
        _ => None,
    };
    if let Some(l) = mapped {
        return Ok(Val::Int(l));
    }
    if two && second != Some('r') {
        return Ok(Val::Int(UNKNOWN));
    }
    if v.is_nil() {
        return Ok(Val::Null);
    }
    match v.as_i64() {
        // DIRECT_MAPPING's keys are 0-5 and 10-16; only 8 and 9 get here.
        Some(_) if matches!(v.kind(), MpKind::UInt | MpKind::NegInt) => Ok(Val::UnmappedLevel),
        _ => Err(Skip::Level),
    }
}

/// gelf-best's `parse_timestamp`: numbers as they are; a string through
/// `DateTime.parse` (UTC unless it names a zone) to the millisecond, or as it is when
/// that fails; anything else makes `DateTime.parse` raise a TypeError.
/// The value parsed is the one already cut to `max_bytes`, as in the plugin.
fn parse_timestamp<'a>(v: ValueRef<'a>, val: Val<'a>, cut: &[u8]) -> Result<Val<'a>, Skip> {
    match v.kind() {
        MpKind::UInt | MpKind::NegInt | MpKind::F32 | MpKind::F64 => Ok(val),
        MpKind::Str | MpKind::Bin => {
            let text = match val {
                Val::Cut(a, b) => [cut.get(a..b).unwrap_or_default(), b"..."].concat(),
                _ => v.as_str().unwrap_or_default().to_vec(),
            };
            let s = String::from_utf8_lossy(&text);
            match crate::ruby::strptime::parse(&s) {
                Some(p) => {
                    let sec = match p.offset {
                        Some(_) => p.sec,
                        // Parsed as local time; DateTime takes it as UTC.
                        None => p.sec + crate::sys::utc_offset_at(p.sec),
                    };
                    let ms = sec as f64 * 1000.0 + f64::from(p.nsec / 1_000_000);
                    Ok(Val::Float((ms / 1000.0 * 1000.0).round() / 1000.0))
                }
                None => Ok(val),
            }
        }
        _ => Err(Skip::Time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_protocol::{EntriesFormat, Events};

    fn opts(flavor: Flavor) -> Opts {
        Opts {
            flavor,
            tcp: false,
            use_record_host: false,
            add_msec_time: false,
            max_bytes: 32000,
            hostname: "box".into(),
        }
    }

    fn msg(o: &Opts, time_raw: &[u8], json: &str) -> Result<String, String> {
        let rec = spate_protocol::json::to_msgpack(json.as_bytes()).unwrap();
        let mut entry = vec![0x92];
        entry.extend_from_slice(time_raw);
        entry.extend_from_slice(&rec);
        let ev = Events::new(&entry, EntriesFormat::Packed).next().unwrap();
        let mut out = Vec::new();
        Builder::default().message(o, "app.web", &ev, &mut out).map_err(|e| e.to_string())?;
        Ok(String::from_utf8(out).unwrap())
    }

    /// EventTime 1700000000.123456789.
    const ET: &[u8] = &[0xd7, 0x00, 0x65, 0x53, 0xf1, 0x00, 0x07, 0x5b, 0xcd, 0x15];
    /// uint32 1700000000.
    const INT: &[u8] = &[0xce, 0x65, 0x53, 0xf1, 0x00];

    #[test]
    fn gelf_hs_fields_levels_and_order() {
        let o = opts(Flavor::Hs);
        let m = msg(&o, ET, r#"{"host":"web-1","level":"WARN","message":"hi","n":1,"facility":"app","x":null}"#);
        assert_eq!(
            m.unwrap(),
            r#"{"facility":"app","protocol":0,"version":"1.0","host":"box","level":4,"_tag":"app.web","timestamp":1700000000.123,"_host":"web-1","_n":1,"short_message":"hi"}"#
        );
        let tcp = Opts { tcp: true, use_record_host: true, add_msec_time: true, ..opts(Flavor::Hs) };
        let m = msg(&tcp, INT, r#"{"host":"web-1","level":"emerg","short_message":"","log":"l","msec":"042"}"#);
        assert_eq!(
            m.unwrap(),
            r#"{"facility":"fluentd","protocol":1,"version":"1.0","host":"web-1","level":1,"_tag":"app.web","timestamp":1700000000.042,"short_message":"l"}"#
        );
        let m = msg(&o, ET, r#"{"_tag":"mine","_x":1,"y":2}"#).unwrap();
        assert!(m.contains(r#""_tag":"mine","timestamp":1700000000.123,"_x":1,"_y":2,"#), "{m}");
        let m = msg(&o, ET, r#"{"level":"trace"}"#).unwrap();
        assert!(m.contains(r#""level":1,"#) && m.contains(r#""_level":"trace""#), "{m}");
        assert!(m.ends_with(r#""short_message":"(no message)"}"#), "{m}");
        let rh = Opts { use_record_host: true, ..opts(Flavor::Hs) };
        assert!(msg(&rh, ET, r#"{"host":"","m":"x"}"#).unwrap_err().contains("host is missing"));
    }

    #[test]
    fn many_keys_keep_hash_semantics() {
        // Past the scan limit lookups go through the index: duplicates, `_` collisions
        // and the short_message fallback must behave as with few keys.
        let mut j = String::from("{");
        for i in 0..200 {
            j.push_str(&format!(r#""k{i}":{i},"#));
        }
        j.push_str(r#""_k5":"x","k5":"again","msg":"m","level":"warn"}"#);
        let m = msg(&opts(Flavor::Hs), ET, &j).unwrap();
        assert!(m.contains(r#""_k4":4,"_k5":"again","_k6":6,"#), "{m}");
        assert!(m.ends_with(r#""_k199":199,"short_message":"m"}"#), "{m}");
        assert!(m.contains(r#""level":4,"_tag""#), "{m}");
        assert_eq!(m.matches(r#""_k5":"#).count(), 1, "{m}");
    }

    #[test]
    fn gelf_best_fields_levels_and_order() {
        let o = Opts { max_bytes: 8, ..opts(Flavor::Best) };
        let m = msg(&o, ET, r#"{"host":"web-1","level":"trace","message":"   ","msg":"0123456789","version":"1.1"}"#);
        // host sets _host and host; "trace": unknown first letter, second "r": the raw
        // value, which gelf-rb cannot compare: refused.
        assert!(m.unwrap_err().contains("level"));
        let m = msg(&o, ET, r#"{"hostname":"web-1","level":"x1","message":"   ","msg":"0123456789","version":"1.1"}"#);
        assert_eq!(
            m.unwrap(),
            r#"{"facility":"fluentd","protocol":0,"version":"1.1","host":"web-1","level":1,"_fluentd_tag":"app.web","timestamp":1700000000.123,"_host":"web-1","_message":"   ","short_message":"01234..."}"#
        );
        let m = msg(&opts(Flavor::Best), INT, r#"{"time":"2023-11-14T22:13:21.5","short_message":" ","level":8}"#);
        assert_eq!(
            m.unwrap(),
            r#"{"facility":"fluentd","protocol":0,"version":"1.0","host":"box","level":null,"_fluentd_tag":"app.web","timestamp":1700000001.5,"short_message":" "}"#
        );
        assert!(msg(&o, ET, r#"{"timestamp":true}"#).unwrap_err().contains("DateTime.parse"));
        // Cut first (max_bytes 8), then DateTime.parse fails: the cut text stays.
        let m = msg(&o, ET, r#"{"timestamp":"not a time","e":"é"}"#).unwrap();
        assert!(m.contains(r#""timestamp":"not a...","_e":"é","short_message":"(no message)"}"#), "{m}");
        // A cut never splits a character.
        let m = msg(&Opts { max_bytes: 5, ..opts(Flavor::Best) }, ET, r#"{"m":"aéééé"}"#).unwrap();
        assert!(m.contains(r#""_m":"a...""#), "{m}");
    }

    #[test]
    fn level_mappings() {
        let mut t = Vec::new();
        for (v, hs, best) in [
            (r#""0""#, Some(UNKNOWN), Some(UNKNOWN)),
            (r#""alert""#, Some(UNKNOWN), Some(UNKNOWN)),
            (r#""Critical""#, Some(FATAL), Some(FATAL)),
            ("3", Some(ERROR), Some(ERROR)),
            (r#""error""#, Some(ERROR), Some(ERROR)),
            (r#""EMERGENCY""#, Some(UNKNOWN), Some(ERROR)),
            (r#""e""#, Some(ERROR), Some(ERROR)),
            (r#""warning""#, Some(WARN), Some(WARN)),
            (r#""notice""#, Some(INFO), Some(INFO)),
            (r#""İnfo""#, Some(INFO), Some(INFO)),
            ("7", Some(DEBUG), Some(DEBUG)),
            (r#""verbose""#, None, Some(UNKNOWN)),
            ("false", None, Some(UNKNOWN)),
            ("80", None, Some(UNKNOWN)),
        ] {
            let m = spate_protocol::json::to_msgpack(v.as_bytes()).unwrap();
            let v2 = ValueRef::new(&m).unwrap();
            assert_eq!(level_hs(v2, &mut t), hs, "{v}");
            let b = level_best(v2, &mut t).ok().and_then(|l| match l {
                Val::Int(i) => Some(i),
                _ => None,
            });
            assert_eq!(b, best, "{v}");
        }
        for v in [r#""trace""#, "true", r#""x""#, r#""""#] {
            let m = spate_protocol::json::to_msgpack(v.as_bytes()).unwrap();
            assert!(level_best(ValueRef::new(&m).unwrap(), &mut t).is_err(), "{v}");
        }
    }
}
