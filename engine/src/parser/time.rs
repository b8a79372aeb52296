//! fluentd's time parsing for `<parse>` (`lib/fluent/time.rb`: `TimeParser`,
//! `NumericTimeParser`, `MixedTimeParser`): `time_type string|unixtime|float|mixed`,
//! `time_format` (Ruby strptime, see `strptime.rs`; `%iso8601`; none = Ruby's
//! `Time.parse` heuristics, see `loose.rs`), `time_format_fallbacks`, and the zone of
//! times that name none (`localtime` (the default), `utc`, `timezone +hh:mm`).
//!
//! Named zones (`timezone Asia/Tokyo`) are a config error for now: spate reads no tz
//! database yet. The last value parsed is cached (as fluentd caches two), which makes
//! the common case of many lines within one second cost a compare.

use spate_protocol::msgpack::{self, Kind};
use spate_protocol::{EventTime, ValueRef};

pub use super::civil::{civil_from_days, days_from_civil, days_in_month, Civil, TimeError};
use super::strptime::Format;
pub use crate::ruby::value::ruby_to_i;

/// The zone of times that name none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The machine's local zone (fluentd's default `localtime true`).
    Local,
    /// A fixed offset east of UTC in seconds (`utc` is 0).
    Fixed(i32),
}

/// The local zone's offset at `t` (seconds since the epoch).
fn local_offset_at(t: i64) -> i64 {
    crate::sys::utc_offset_at(t)
}

impl Zone {
    /// The offset for a civil time read in this zone.
    pub fn offset_for(&self, c: &Civil) -> i64 {
        match *self {
            Zone::Fixed(o) => o as i64,
            Zone::Local => {
                // Guess with the offset at the civil time read as UTC, then correct
                // once (enough away from a DST switch's hour).
                let guess = c.to_epoch();
                let off = local_offset_at(guess);
                local_offset_at(guess - off)
            }
        }
    }

    /// Now as a civil time in this zone (or in `off` when the value named a zone).
    pub fn now_civil(&self, off: Option<i32>) -> Civil {
        let now = EventTime::now().sec as i64;
        let off = match (off, self) {
            (Some(o), _) => o as i64,
            (None, Zone::Fixed(o)) => *o as i64,
            (None, Zone::Local) => local_offset_at(now),
        };
        Civil::from_epoch(now + off)
    }
}

/// fluentd's `timezone` values: `+09:00`, `+0900`, `-07` (a named zone is an error).
pub fn parse_timezone(tz: &str) -> Result<i32, String> {
    let b = tz.as_bytes();
    let ok_shape = b.len() >= 3
        && matches!(b[0], b'+' | b'-')
        && b[1..3].iter().all(u8::is_ascii_digit)
        && match &b[3..] {
            [] => true,
            [m1, m2] | [b':', m1, m2] => m1.is_ascii_digit() && m2.is_ascii_digit(),
            _ => false,
        };
    if ok_shape {
        let (o, _) = super::strptime::zone(b, 0).map_err(|e| e.to_string())?;
        return o.ok_or_else(|| "invalid offset".to_string());
    }
    if tz.contains('/') {
        return Err(format!(
            "named time zones are not supported yet (spate reads no tz database); use a fixed offset such as +09:00 instead of {tz:?}"
        ));
    }
    Err(format!("Unsupported timezone '{tz}': expected +HH:MM, +HHMM or +HH"))
}

/// How string times are read.
#[derive(Debug, Clone)]
enum StrFormat {
    Strptime(Format),
    Iso8601,
    /// No time_format: Ruby's `Time.parse`.
    Loose,
}

/// One parser of fluentd's: a string one with a format, or a numeric one.
#[derive(Debug, Clone)]
enum One {
    Str(StrFormat),
    Unixtime,
    Float,
}

/// The compiled `time_type` / `time_format` / zone settings (Send + Sync, shared).
#[derive(Debug, Clone)]
pub struct TimeConf {
    parsers: Vec<One>,
    /// `time_type mixed`: numeric parsers are tried only on values that look numeric,
    /// and the first parser that succeeds wins.
    mixed: bool,
    zone: Zone,
}

/// The settings a `<parse>` section gives for time parsing.
#[derive(Debug, Clone, Default)]
pub struct TimeSettings<'a> {
    pub time_type: Option<&'a str>,
    pub time_format: Option<&'a str>,
    pub fallbacks: Vec<String>,
    pub localtime: Option<bool>,
    pub utc: Option<bool>,
    pub timezone: Option<&'a str>,
}

fn str_format(f: &str) -> Result<StrFormat, String> {
    if f == "%iso8601" {
        return Ok(StrFormat::Iso8601);
    }
    Format::compile(f).map(StrFormat::Strptime).map_err(|e| format!("time_format {f:?}: {e}"))
}

impl TimeConf {
    /// Builds the parser as `time_parser_create` does, with its config errors.
    pub fn new(s: &TimeSettings<'_>) -> Result<TimeConf, String> {
        if let (Some(l), Some(u)) = (s.localtime, s.utc) {
            if l == u {
                return Err("both of utc and localtime are specified, use only one of them".into());
            }
        }
        let localtime = match (s.localtime, s.utc) {
            (Some(l), _) => l,
            (None, Some(u)) => !u,
            _ => true,
        };
        let fixed = s.timezone.map(parse_timezone).transpose()?;
        let zone = match fixed {
            Some(o) => Zone::Fixed(o),
            None if localtime => Zone::Local,
            None => Zone::Fixed(0),
        };
        let ty = s.time_type.unwrap_or("string");
        let (parsers, mixed) = match ty {
            "string" => {
                let f = match s.time_format {
                    Some(f) => str_format(f)?,
                    None if fixed.is_some() || !localtime => {
                        return Err("specifying timezone requires time format".into());
                    }
                    None => StrFormat::Loose,
                };
                (vec![One::Str(f)], false)
            }
            "unixtime" => (vec![One::Unixtime], false),
            "float" => (vec![One::Float], false),
            "mixed" => {
                if s.time_format.is_none() && s.fallbacks.is_empty() {
                    return Err("time_type is :mixed but time_format and time_format_fallbacks is empty.".into());
                }
                let mut v = Vec::new();
                for f in s.time_format.into_iter().chain(s.fallbacks.iter().map(String::as_str)) {
                    v.push(match f {
                        "unixtime" => One::Unixtime,
                        "float" => One::Float,
                        f => One::Str(str_format(f)?),
                    });
                }
                (v, true)
            }
            other => return Err(format!("time_type: valid options are string,unixtime,float,mixed but got {other}")),
        };
        Ok(TimeConf { parsers, mixed, zone })
    }

    /// A string parser with a fixed format in a zone (the apache2/syslog parsers'
    /// built-in formats, and the `time` value type's options).
    pub fn with_format(format: &str, zone: Zone) -> Result<TimeConf, String> {
        Ok(TimeConf { parsers: vec![One::Str(str_format(format)?)], mixed: false, zone })
    }

    pub fn zone(&self) -> Zone {
        self.zone
    }
}

/// A per-shard time parser: the conf plus a one-entry cache.
#[derive(Debug)]
pub struct TimeParser {
    conf: TimeConf,
    cache_key: Vec<u8>,
    cache_val: Option<EventTime>,
    scratch: Vec<u8>,
}

fn event_time(sec: i64, nsec: u32) -> Result<EventTime, TimeError> {
    u32::try_from(sec).map(|s| EventTime::new(s, nsec.min(999_999_999))).map_err(|_| TimeError::Unrepresentable)
}

/// Ruby's `Float(s)` acceptance (strict: the whole string is a number, blanks around
/// allowed, single `_` between digits, `0x` hex).
fn ruby_float_strict(s: &[u8]) -> bool {
    let t = s.trim_ascii();
    let body = match t.first() {
        Some(b'+' | b'-') => &t[1..],
        _ => t,
    };
    if body.len() > 2 && body[..2].eq_ignore_ascii_case(b"0x") {
        return body[2..].iter().all(u8::is_ascii_hexdigit);
    }
    // digits [. digits] [e [sign] digits], `_` only between two digits.
    let mut i = 0;
    let run = |i: &mut usize| {
        let start = *i;
        while let Some(&b) = body.get(*i) {
            let between = b == b'_' && *i > start && body.get(*i + 1).is_some_and(u8::is_ascii_digit);
            if !(b.is_ascii_digit() || between) {
                break;
            }
            *i += 1;
        }
        *i > start
    };
    if !run(&mut i) {
        return false;
    }
    if body.get(i) == Some(&b'.') {
        i += 1;
        if !run(&mut i) {
            return false;
        }
    }
    if matches!(body.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(body.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !run(&mut i) {
            return false;
        }
    }
    i == body.len()
}

/// fluentd's NumericTimeParser#parse_float on text: seconds before the first `.`, up
/// to nine fraction digits after it (more are cut, fewer padded).
fn parse_float_text(s: &[u8]) -> Result<EventTime, TimeError> {
    let mut parts = s.splitn(3, |&b| b == b'.');
    let sec = ruby_to_i(parts.next().unwrap_or_default());
    let frac = parts.next().unwrap_or(b"0");
    let frac = &frac[..frac.len().min(9)];
    let mut ns = ruby_to_i(frac);
    for _ in frac.len()..9 {
        ns = ns.saturating_mul(10);
    }
    let sec = i64::try_from(sec).map_err(|_| TimeError::Unrepresentable)?;
    let ns = u32::try_from(ns).map_err(|_| TimeError::OutOfRange)?;
    event_time(sec, ns)
}

impl TimeParser {
    pub fn new(conf: TimeConf) -> TimeParser {
        TimeParser { conf, cache_key: Vec::new(), cache_val: None, scratch: Vec::new() }
    }

    fn parse_str_one(&self, one: &One, s: &[u8]) -> Result<EventTime, TimeError> {
        let zone = self.conf.zone;
        match one {
            One::Unixtime => event_time(i64::try_from(ruby_to_i(s)).map_err(|_| TimeError::Unrepresentable)?, 0),
            One::Float => parse_float_text(s),
            One::Str(StrFormat::Strptime(f)) => {
                let (sec, ns) = f.parse(s)?.resolve(|off| zone.now_civil(off), |c| zone.offset_for(c))?;
                event_time(sec, ns)
            }
            One::Str(StrFormat::Iso8601) => {
                let (sec, ns) =
                    super::loose::iso8601(s)?.resolve(|off| zone.now_civil(off), |c| Zone::Local.offset_for(c))?;
                event_time(sec, ns)
            }
            One::Str(StrFormat::Loose) => {
                let (sec, ns) = super::loose::parse(s)?.resolve(|off| zone.now_civil(off), |c| zone.offset_for(c))?;
                event_time(sec, ns)
            }
        }
    }

    fn parse_str_uncached(&self, s: &[u8]) -> Result<EventTime, TimeError> {
        if !self.conf.mixed {
            return match self.conf.parsers.first() {
                Some(one) => self.parse_str_one(one, s),
                None => Err(TimeError::Mismatch),
            };
        }
        for one in &self.conf.parsers {
            if matches!(one, One::Unixtime | One::Float) && !ruby_float_strict(s) {
                continue;
            }
            if let Ok(t) = self.parse_str_one(one, s) {
                return Ok(t);
            }
        }
        Err(TimeError::NoFallbackMatched)
    }

    /// Parses a string time value.
    pub fn parse_str(&mut self, s: &[u8]) -> Result<EventTime, TimeError> {
        if let Some(t) = self.cache_val {
            if self.cache_key == s {
                return Ok(t);
            }
        }
        let t = self.parse_str_uncached(s)?;
        self.cache_key.clear();
        self.cache_key.extend_from_slice(s);
        self.cache_val = Some(t);
        Ok(t)
    }

    /// Parses a time value of a JSON/msgpack record: strings as text; numbers for the
    /// numeric types (a string parser takes only strings, as fluentd's).
    pub fn parse_value(&mut self, v: ValueRef<'_>) -> Result<EventTime, TimeError> {
        if let Some(s) = v.as_str() {
            return self.parse_str(s);
        }
        let numeric = matches!(v.kind(), Kind::UInt | Kind::NegInt | Kind::F32 | Kind::F64);
        if !numeric {
            return Err(if self.conf.parsers.iter().all(|p| matches!(p, One::Str(_))) {
                TimeError::NotString
            } else {
                TimeError::NotStringOrNumber
            });
        }
        for one in &self.conf.parsers {
            match one {
                One::Unixtime => {
                    let sec = match v.kind() {
                        Kind::F32 | Kind::F64 => msgpack::read_float(v.as_bytes()).unwrap_or(0.0).trunc() as i64,
                        _ => msgpack::read_int(v.as_bytes()).and_then(|i| i64::try_from(i).ok()).unwrap_or(-1),
                    };
                    return event_time(sec, 0);
                }
                One::Float => {
                    // value.to_s.split('.'): Ruby's Float#to_s, or the integer's digits.
                    self.scratch.clear();
                    crate::ruby::value::write_to_s(v, &mut self.scratch);
                    return parse_float_text(&self.scratch);
                }
                One::Str(_) if self.conf.mixed => continue,
                One::Str(_) => return Err(TimeError::NotString),
            }
        }
        Err(TimeError::NoFallbackMatched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(ty: Option<&str>, fmt: Option<&str>, fallbacks: &[&str], tz: Option<&str>) -> Result<TimeConf, String> {
        TimeConf::new(&TimeSettings {
            time_type: ty,
            time_format: fmt,
            fallbacks: fallbacks.iter().map(|s| s.to_string()).collect(),
            localtime: None,
            utc: if tz.is_none() { Some(true) } else { None },
            timezone: tz,
        })
    }

    #[test]
    fn civil_round_trip() {
        for d in [-800_000, -1, 0, 1, 59, 60, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(days_from_civil(2013, 2, 28), 15764);
    }

    #[test]
    fn formats_zones_and_numbers() {
        let mut p = TimeParser::new(conf(None, Some("%d/%b/%Y:%H:%M:%S %z"), &[], None).unwrap());
        assert_eq!(p.parse_str(b"28/Feb/2013:12:00:00 +0900"), Ok(EventTime::new(1362020400, 0)));
        // Cached.
        assert_eq!(p.parse_str(b"28/Feb/2013:12:00:00 +0900"), Ok(EventTime::new(1362020400, 0)));
        assert_eq!(p.parse_str(b"nope"), Err(TimeError::Mismatch));
        // A fixed timezone applies to values without a zone.
        let mut p = TimeParser::new(conf(None, Some("%Y-%m-%d %H:%M:%S.%N"), &[], Some("-07:00")).unwrap());
        assert_eq!(p.parse_str(b"2016-09-02 18:42:31.123456789"), Ok(EventTime::new(1472866951, 123456789)));
        let mut p = TimeParser::new(conf(Some("unixtime"), None, &[], None).unwrap());
        assert_eq!(p.parse_str(b"1362020400"), Ok(EventTime::new(1362020400, 0)));
        assert_eq!(p.parse_str(b"1362020400.5"), Ok(EventTime::new(1362020400, 0)));
        let mut p = TimeParser::new(conf(Some("float"), None, &[], None).unwrap());
        assert_eq!(p.parse_str(b"1362020400.123456789"), Ok(EventTime::new(1362020400, 123456789)));
        assert_eq!(p.parse_str(b"1362020400.5"), Ok(EventTime::new(1362020400, 500_000_000)));
        assert_eq!(p.parse_str(b"1362020400.1234567891234"), Ok(EventTime::new(1362020400, 123456789)));
        let mut p = TimeParser::new(conf(Some("string"), Some("%iso8601"), &[], None).unwrap());
        assert_eq!(p.parse_str(b"2017-01-01T12:00:00+09:00"), Ok(EventTime::new(1483239600, 0)));
        assert_eq!(p.parse_str(b"2017-01-01T12:00:00.123+09:00"), Ok(EventTime::new(1483239600, 123_000_000)));
    }

    #[test]
    fn mixed_tries_each_in_order() {
        let mut p = TimeParser::new(conf(Some("mixed"), Some("%iso8601"), &["unixtime"], None).unwrap());
        assert_eq!(p.parse_str(b"2017-01-01T12:00:00+09:00"), Ok(EventTime::new(1483239600, 0)));
        assert_eq!(p.parse_str(b"1483239600"), Ok(EventTime::new(1483239600, 0)));
        assert_eq!(p.parse_str(b"garbage"), Err(TimeError::NoFallbackMatched));
        let mut p = TimeParser::new(conf(Some("mixed"), None, &["%iso8601", "unixtime"], None).unwrap());
        assert_eq!(p.parse_str(b"1483239600"), Ok(EventTime::new(1483239600, 0)));
        assert!(conf(Some("mixed"), None, &[], None).unwrap_err().contains("mixed"));
    }

    #[test]
    fn config_errors() {
        assert_eq!(conf(None, None, &[], Some("+09:00")).unwrap_err(), "specifying timezone requires time format");
        assert!(parse_timezone("Asia/Tokyo").unwrap_err().contains("named time zones"));
        assert!(parse_timezone("JST").unwrap_err().contains("Unsupported timezone"));
        assert_eq!(parse_timezone("+0900"), Ok(32400));
        assert_eq!(parse_timezone("-07"), Ok(-25200));
        assert_eq!(parse_timezone("+09:30"), Ok(34200));
        assert!(conf(Some("epoch"), None, &[], None).is_err());
        assert!(conf(None, Some("%Q %O"), &[], None).is_err());
    }

    #[test]
    fn ruby_to_i_rules() {
        assert_eq!(ruby_to_i(b"  -12_3abc"), -123);
        assert_eq!(ruby_to_i(b"abc"), 0);
        assert_eq!(ruby_to_i(b"1__2"), 1);
        assert_eq!(ruby_to_i(b"+7"), 7);
        assert!(ruby_float_strict(b" 1.5 "));
        assert!(ruby_float_strict(b"1e3"));
        assert!(!ruby_float_strict(b"2017-01-01"));
        assert!(!ruby_float_strict(b""));
        assert!(!ruby_float_strict(b"inf"));
    }
}
