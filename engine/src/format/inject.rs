//! `<inject>` (fluentd's plugin_helper/inject.rb): the hostname, tag and time fields an
//! output adds to each record before formatting, and v0.12's flat `include_time_key` /
//! `include_tag_key` parameters that map to it.
//!
//! Injected values are computed per event without allocating: strings borrow the tag
//! or the configured hostname, and a formatted time is rendered into a scratch buffer
//! the caller owns.

use std::io::Write;

use spate_protocol::{EventTime, RecordRef, ValueRef};

use super::time::{time_type, zone_of, TimeFormat, TimeType, Zone};
use crate::config::{ConfigError, Element};

/// `<inject>`: fields added to each record before formatting.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inject {
    pub time_key: Option<String>,
    pub time_type: Option<TimeType>,
    pub time: Option<TimeFormat>,
    pub tag_key: Option<String>,
    pub hostname_key: Option<String>,
    pub hostname: String,
    /// The time before the tag (fluent-plugin-kafka's kafka_buffered sets `time`, then
    /// `tag`); fluentd's inject puts the tag first.
    pub time_first: bool,
}

/// One injected value.
#[derive(Debug, Clone, Copy)]
pub enum InjectValue<'a> {
    Str(&'a [u8]),
    Int(i64),
    Float(f64),
}

/// The injected `(key, value)` pairs of one event, in fluentd's order (hostname, tag,
/// time); at most three, kept inline.
#[derive(Debug, Clone, Copy, Default)]
pub struct Injected<'a> {
    items: [Option<(&'a str, InjectValue<'a>)>; 3],
}

impl<'a> Injected<'a> {
    pub fn is_empty(&self) -> bool {
        self.items.iter().all(Option::is_none)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a str, InjectValue<'a>)> + '_ {
        self.items.iter().flatten().copied()
    }

    /// The injected value for `key` (a later item wins, as a later Hash assignment does).
    pub fn get(&self, key: &[u8]) -> Option<InjectValue<'a>> {
        self.items.iter().flatten().rev().find(|(k, _)| k.as_bytes() == key).map(|(_, v)| *v)
    }

    /// The position of `key` among the items (for "already written" bookkeeping).
    pub fn position(&self, key: &[u8]) -> Option<usize> {
        self.items.iter().position(|i| i.is_some_and(|(k, _)| k.as_bytes() == key))
    }

    pub(crate) fn items(&self) -> &[Option<(&'a str, InjectValue<'a>)>; 3] {
        &self.items
    }
}

pub(crate) fn inject_conf(owner: &Element, hostname: &str) -> Result<Inject, ConfigError> {
    let mut it = owner.elements_named("inject");
    if let Some(i) = it.next() {
        if let Some(x) = it.next() {
            return Err(ConfigError::at(&x.pos, "only one <inject> section is allowed"));
        }
        let c = Inject {
            time_key: i.str("time_key").map(str::to_string),
            time_type: time_type(i)?,
            time: Some(TimeFormat { format: i.str("time_format").map(str::to_string), zone: zone_of(i)? }),
            tag_key: i.str("tag_key").map(str::to_string),
            hostname_key: i.str("hostname_key").map(str::to_string),
            hostname: i.str("hostname").unwrap_or(hostname).to_string(),
            time_first: false,
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
    if owner.bool("time_as_epoch")?.unwrap_or(false) {
        c.time_key.get_or_insert_with(|| "time".to_string());
        c.time_type = Some(TimeType::Unixtime);
    }
    if owner.bool("include_tag_key")?.unwrap_or(false) {
        c.tag_key = Some(owner.str("tag_key").unwrap_or("tag").to_string());
    }
    Ok(c)
}

impl Inject {
    pub fn is_empty(&self) -> bool {
        self.time_key.is_none() && self.tag_key.is_none() && self.hostname_key.is_none()
    }

    /// The injected fields of one event. A string time is rendered into `scratch`
    /// (cleared first), which the result borrows.
    pub fn fields<'a>(&'a self, tag: &'a [u8], t: EventTime, scratch: &'a mut Vec<u8>) -> Injected<'a> {
        let mut r = Injected::default();
        if let Some(k) = &self.hostname_key {
            r.items[0] = Some((k, InjectValue::Str(self.hostname.as_bytes())));
        }
        let (tag_at, time_at) = if self.time_first { (2, 1) } else { (1, 2) };
        if let Some(k) = &self.tag_key {
            r.items[tag_at] = Some((k, InjectValue::Str(tag)));
        }
        if let Some(k) = &self.time_key {
            let val = match self.time_type.unwrap_or(TimeType::Float) {
                TimeType::Float => InjectValue::Float(t.sec as f64 + t.nsec as f64 / 1e9),
                TimeType::Unixtime => InjectValue::Int(t.sec as i64),
                TimeType::UnixtimeMillis => InjectValue::Int(t.sec as i64 * 1000 + (t.nsec / 1_000_000) as i64),
                TimeType::UnixtimeMicros => InjectValue::Int(t.sec as i64 * 1_000_000 + (t.nsec / 1000) as i64),
                TimeType::UnixtimeNanos => InjectValue::Int(t.sec as i64 * 1_000_000_000 + t.nsec as i64),
                TimeType::String => {
                    scratch.clear();
                    match &self.time {
                        Some(f) => f.write(scratch, t),
                        None => TimeFormat { format: None, zone: Zone::Local }.write(scratch, t),
                    }
                    InjectValue::Str(scratch)
                }
            };
            r.items[time_at] = Some((k, val));
        }
        r
    }
}

impl InjectValue<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match *self {
            InjectValue::Str(s) => spate_protocol::event::write_json_str(s, out),
            InjectValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            InjectValue::Float(f) => {
                let mut m = [0u8; 9];
                m[0] = 0xcb;
                m[1..].copy_from_slice(&f.to_be_bytes());
                if let Some(v) = ValueRef::new(&m) {
                    v.write_json(out);
                }
            }
        }
    }

    pub fn write_msgpack(&self, out: &mut Vec<u8>) {
        match *self {
            InjectValue::Str(s) => spate_protocol::encode::raw::str(out, s),
            InjectValue::Int(i) => spate_protocol::encode::raw::int(out, i),
            InjectValue::Float(f) => spate_protocol::encode::raw::f64(out, f),
        }
    }

    /// Ruby's `to_s`.
    pub fn write_to_s(&self, out: &mut Vec<u8>) {
        match *self {
            InjectValue::Str(s) => out.extend_from_slice(s),
            InjectValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            InjectValue::Float(f) => crate::ruby::value::write_ruby_float(f, out),
        }
    }

    /// Ruby's `inspect`.
    pub fn write_inspect(&self, out: &mut Vec<u8>) {
        match *self {
            InjectValue::Str(s) => crate::ruby::value::inspect_str(s, true, out),
            _ => self.write_to_s(out),
        }
    }
}

/// A record value or an injected one.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Ref(ValueRef<'a>),
    Inj(InjectValue<'a>),
}

impl Val<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Val::Ref(v) => v.write_json(out),
            Val::Inj(v) => v.write_json(out),
        }
    }
    pub fn write_to_s(&self, out: &mut Vec<u8>) {
        match self {
            Val::Ref(v) => crate::ruby::value::write_to_s(*v, out),
            Val::Inj(v) => v.write_to_s(out),
        }
    }
    pub fn write_inspect(&self, out: &mut Vec<u8>) {
        match self {
            Val::Ref(v) => crate::ruby::value::write_inspect(*v, out),
            Val::Inj(v) => v.write_inspect(out),
        }
    }
    pub fn is_nil(&self) -> bool {
        matches!(self, Val::Ref(v) if v.is_nil())
    }
    pub fn as_ref(&self) -> Option<ValueRef<'_>> {
        match self {
            Val::Ref(v) => Some(*v),
            Val::Inj(_) => None,
        }
    }
}

/// A record as the formatter sees it after injection: the record's fields in order with
/// injected keys replacing same-named ones in place (a Ruby Hash assignment), then the
/// injected keys the record did not have.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub rec: RecordRef<'a>,
    pub extra: Injected<'a>,
}

impl<'a> View<'a> {
    /// `record[key]`.
    pub fn get(&self, key: &[u8]) -> Option<Val<'a>> {
        if let Some(v) = self.extra.get(key) {
            return Some(Val::Inj(v));
        }
        self.rec.get(key).map(Val::Ref)
    }

    /// Calls `f(key text, value)` for each field, in Ruby Hash order. With duplicate keys
    /// in the msgpack map (a Ruby Hash keeps the first position and the last value) the
    /// fields are passed as they are.
    #[inline]
    pub fn each(&self, mut f: impl FnMut(KeyOf<'a>, Val<'a>)) {
        if self.extra.is_empty() {
            for (k, v) in self.rec.fields() {
                f(KeyOf::Ref(k), Val::Ref(v));
            }
            return;
        }
        let mut done = [false; 3];
        for (k, v) in self.rec.fields() {
            let hit = k.as_str().and_then(|s| self.extra.position(s));
            match hit {
                Some(i) => {
                    done[i] = true;
                    if let Some((_, iv)) = self.extra.items()[i] {
                        f(KeyOf::Ref(k), Val::Inj(iv));
                    }
                }
                None => f(KeyOf::Ref(k), Val::Ref(v)),
            }
        }
        for (i, item) in self.extra.items().iter().enumerate() {
            if let (Some((k, v)), false) = (item, done[i]) {
                f(KeyOf::Str(k.as_bytes()), Val::Inj(*v));
            }
        }
    }
}

/// A field's key: the record's own (any msgpack value) or an injected string.
#[derive(Debug, Clone, Copy)]
pub enum KeyOf<'a> {
    Ref(ValueRef<'a>),
    Str(&'a [u8]),
}

impl KeyOf<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            KeyOf::Ref(k) => match k.as_str() {
                Some(s) => spate_protocol::event::write_json_str(s, out),
                None => {
                    // JSON keys are strings: a non-string key as its JSON text.
                    let mut t = Vec::new();
                    k.write_json(&mut t);
                    spate_protocol::event::write_json_str(&t, out);
                }
            },
            KeyOf::Str(s) => spate_protocol::event::write_json_str(s, out),
        }
    }
    pub fn write_to_s(&self, out: &mut Vec<u8>) {
        match self {
            KeyOf::Ref(k) => crate::ruby::value::write_to_s(*k, out),
            KeyOf::Str(s) => out.extend_from_slice(s),
        }
    }
    pub fn write_inspect(&self, out: &mut Vec<u8>) {
        match self {
            KeyOf::Ref(k) => crate::ruby::value::write_inspect(*k, out),
            KeyOf::Str(s) => crate::ruby::value::inspect_str(s, true, out),
        }
    }
    pub fn as_ref(&self) -> Option<ValueRef<'_>> {
        match self {
            KeyOf::Ref(k) => Some(*k),
            KeyOf::Str(_) => None,
        }
    }
}
