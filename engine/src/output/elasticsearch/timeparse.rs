//! Reading times out of records, as fluent-plugin-elasticsearch does for `@timestamp`
//! and `time_key`: `time_key_format` is a strptime format (the Strptime gem: a time
//! without a zone is local time); without it Ruby's `DateTime.parse` is used, which
//! spate approximates with ISO 8601 and the common textual layouts (RFC 2822, ctime,
//! Apache). Numbers are epoch seconds. The result keeps the UTC offset it was written
//! in, as a Ruby `DateTime` does, because `@timestamp` is printed with it and
//! `utc_index false` names the index by its local date.

use std::io::Write;

use spate_protocol::ValueRef;

use crate::calendar::{civil_from_days, days_from_civil};
use crate::format::{strftime, Zone};

/// A point in time and the zone it is expressed in (Ruby's DateTime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub sec: i64,
    pub nsec: u32,
    pub zone: Zone,
}

impl DateTime {
    /// `DateTime#iso8601(precision)`: `2001-02-03T04:05:06.123+00:00`.
    pub fn write_iso8601(&self, out: &mut Vec<u8>, precision: u32) {
        strftime(out, "%Y-%m-%dT%H:%M:%S", self.sec, self.nsec, self.zone);
        if precision > 0 {
            let _ = write!(out, ".{:09}", self.nsec);
            let keep = out.len() - 9 + (precision.min(9) as usize);
            out.truncate(keep);
            out.extend(std::iter::repeat_n(b'0', precision.saturating_sub(9) as usize));
        }
        strftime(out, "%:z", self.sec, self.nsec, self.zone);
    }

    /// The same instant in UTC (`new_offset(0)`).
    pub fn utc(self) -> DateTime {
        DateTime { zone: Zone::Fixed(0), ..self }
    }
}

/// A strptime format, checked when configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeParser {
    pub format: String,
}

/// Why a `time_key_format` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time_key_format {format:?}: directive %{directive} is not supported (supported: %Y %C %y %m %d %e %j %H %k %I %l %M %S %L %N %3N %6N %9N %z %:z %Z %p %P %a %A %b %B %h %s %T %F %D %R %n %t %%)")]
pub struct FormatError {
    pub format: String,
    pub directive: char,
}

impl TimeParser {
    pub fn new(format: &str) -> Result<TimeParser, FormatError> {
        let b = format.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b':') {
                    i += 1;
                }
                let Some(&d) = b.get(i) else { break };
                if !b"YCymdejHkIlMSLNzZpPaAbBhsTFDRnt%".contains(&d) {
                    return Err(FormatError { format: format.to_string(), directive: d as char });
                }
            }
            i += 1;
        }
        Ok(TimeParser { format: format.to_string() })
    }

    /// Parses `s`; a time without a zone is local time (the Strptime gem's Time).
    pub fn parse(&self, s: &[u8]) -> Option<DateTime> {
        strptime(s, &self.format, Zone::Local)
    }
}

/// fluent-plugin-elasticsearch's `parse_time`: a string with `time_key_format` or
/// DateTime.parse; a number as epoch seconds in local time (it formats numbers with
/// `Time.at(n).strftime(...)` and parses them back).
pub fn parse_value(v: ValueRef<'_>, parser: Option<&TimeParser>, scratch: &mut Vec<u8>) -> Option<DateTime> {
    if let Some(s) = v.as_str() {
        return match parser {
            Some(p) => p.parse(s),
            None => datetime_parse(s),
        };
    }
    let (sec, nsec) = if let Some(i) = v.as_i64() {
        (i, 0)
    } else {
        let f = v.as_f64()?;
        if !f.is_finite() || f.abs() > 1e15 {
            return None;
        }
        let s = f.floor();
        (s as i64, (((f - s) * 1e9) as u32).min(999_999_999))
    };
    match parser {
        // Round trip through the format, as Ruby does (keeps only what it prints).
        Some(p) => {
            scratch.clear();
            strftime(scratch, &p.format, sec, nsec, Zone::Local);
            p.parse(scratch)
        }
        None => Some(DateTime { sec, nsec, zone: Zone::Local }),
    }
}

/// Formats `DateTime.parse` is approximated by, tried in order after ISO 8601.
const TEXT_FORMATS: &[&str] = &[
    "%a, %d %b %Y %H:%M:%S %z",
    "%d %b %Y %H:%M:%S %z",
    "%a %b %d %H:%M:%S %Z %Y",
    "%a %b %d %H:%M:%S %Y",
    "%d/%b/%Y:%H:%M:%S %z",
    "%Y/%m/%d %H:%M:%S %z",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
];

/// Ruby's `DateTime.parse` for the layouts logs use; no zone means UTC.
pub fn datetime_parse(s: &[u8]) -> Option<DateTime> {
    let t = trim(s);
    iso8601(t).or_else(|| TEXT_FORMATS.iter().find_map(|f| strptime(t, f, Zone::Fixed(0))))
}

fn trim(s: &[u8]) -> &[u8] {
    let a = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    let z = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(a, |i| i + 1);
    &s[a..z]
}

/// `YYYY-MM-DD`, then optionally `[T ]HH:MM[:SS[.frac]]`, then an optional zone.
fn iso8601(s: &[u8]) -> Option<DateTime> {
    let mut c = Cursor { s, i: 0 };
    let year = c.num(4, 4)? as i64;
    c.lit(b'-')?;
    let mon = c.num(2, 2)? as u32;
    c.lit(b'-')?;
    let mday = c.num(2, 2)? as u32;
    let (mut hour, mut min, mut sec, mut nsec) = (0, 0, 0, 0);
    if matches!(c.peek(), Some(b'T' | b't' | b' ')) && c.s.get(c.i + 1).is_some_and(u8::is_ascii_digit) {
        c.i += 1;
        hour = c.num(2, 2)? as u32;
        c.lit(b':')?;
        min = c.num(2, 2)? as u32;
        if c.peek() == Some(b':') {
            c.i += 1;
            sec = c.num(2, 2)? as u32;
            if matches!(c.peek(), Some(b'.' | b',')) {
                c.i += 1;
                nsec = c.frac()?;
            }
        }
    }
    while c.peek() == Some(b' ') {
        c.i += 1;
    }
    let off = if c.i < s.len() { Some(c.zone()?) } else { None };
    if c.i != s.len() {
        return None;
    }
    let zone = Zone::Fixed(off.unwrap_or(0));
    let sec = civil_to_epoch(year, mon, mday, hour, min, sec, zone)?;
    Some(DateTime { sec, nsec, zone })
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn lit(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }
    /// `min..=max` digits.
    fn num(&mut self, min: usize, max: usize) -> Option<u64> {
        let start = self.i;
        let mut v = 0u64;
        while self.i - start < max {
            match self.peek() {
                Some(d @ b'0'..=b'9') => {
                    v = v * 10 + (d - b'0') as u64;
                    self.i += 1;
                }
                _ => break,
            }
        }
        (self.i - start >= min).then_some(v)
    }
    /// Fraction digits as nanoseconds (extra digits are dropped).
    fn frac(&mut self) -> Option<u32> {
        let start = self.i;
        let mut v = 0u32;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            if self.i - start < 9 {
                v = v * 10 + (d - b'0') as u32;
            }
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 {
            return None;
        }
        Some(v * 10u32.pow(9usize.saturating_sub(n) as u32))
    }
    /// `Z`, `UTC`, `GMT`, `+HH`, `+HHMM`, `+HH:MM`; seconds east of UTC.
    fn zone(&mut self) -> Option<i64> {
        let rest = &self.s[self.i..];
        for (name, len) in [(&b"UTC"[..], 3), (b"GMT", 3), (b"Z", 1), (b"z", 1)] {
            if rest.len() >= len && rest[..len].eq_ignore_ascii_case(name) {
                self.i += len;
                return Some(0);
            }
        }
        let sign = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.i += 1;
        let h = self.num(2, 2)? as i64;
        if self.peek() == Some(b':') {
            self.i += 1;
        }
        let m = self.num(0, 2).unwrap_or(0) as i64;
        (h <= 23 && m <= 59).then_some(sign * (h * 3600 + m * 60))
    }
    fn word(&mut self, words: &[&str]) -> Option<usize> {
        let rest = &self.s[self.i..];
        // Full names first, then the 3-letter abbreviation.
        for (i, w) in words.iter().enumerate() {
            if rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w.as_bytes()) {
                self.i += w.len();
                return Some(i);
            }
        }
        for (i, w) in words.iter().enumerate() {
            if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(&w.as_bytes()[..3]) {
                self.i += 3;
                return Some(i);
            }
        }
        None
    }
}

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
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// Epoch seconds of a civil time in `zone` (local time through `mktime`).
fn civil_to_epoch(y: i64, mon: u32, d: u32, h: u32, mi: u32, s: u32, zone: Zone) -> Option<i64> {
    if !(1..=12).contains(&mon) || !(1..=31).contains(&d) || h > 24 || mi > 59 || s > 60 {
        return None;
    }
    match zone {
        Zone::Utc => Some(days_from_civil(y, mon, d) * 86400 + (h * 3600 + mi * 60 + s) as i64),
        Zone::Fixed(off) => Some(days_from_civil(y, mon, d) * 86400 + (h * 3600 + mi * 60 + s) as i64 - off),
        Zone::Local => {
            // SAFETY: mktime reads and normalizes the tm we own.
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            tm.tm_year = (y - 1900) as libc::c_int;
            tm.tm_mon = mon as libc::c_int - 1;
            tm.tm_mday = d as libc::c_int;
            tm.tm_hour = h as libc::c_int;
            tm.tm_min = mi as libc::c_int;
            tm.tm_sec = s as libc::c_int;
            tm.tm_isdst = -1;
            // SAFETY: `tm` is a live, initialized local; mktime only reads and normalizes it.
            let t = unsafe { libc::mktime(&mut tm) };
            (t != -1 || (y == 1969 && mon == 12 && d == 31)).then_some(t as i64)
        }
    }
}

/// Ruby's `strptime` for the directives [`TimeParser::new`] accepts. `default_zone`
/// applies when the format carries no zone.
pub fn strptime(s: &[u8], fmt: &str, default_zone: Zone) -> Option<DateTime> {
    let mut c = Cursor { s, i: 0 };
    let (mut year, mut mon, mut mday, mut yday) = (1970i64, 1u32, 1u32, None::<u32>);
    let (mut hour, mut min, mut sec, mut nsec) = (0u32, 0u32, 0u32, 0u32);
    let (mut pm, mut hour12, mut off, mut epoch) = (None::<bool>, false, None::<i64>, None::<i64>);
    let mut century = None::<i64>;
    let f = fmt.as_bytes();
    let mut i = 0;
    while i < f.len() {
        let ch = f[i];
        if ch != b'%' {
            if ch.is_ascii_whitespace() {
                while c.peek().is_some_and(|b| b.is_ascii_whitespace()) {
                    c.i += 1;
                }
            } else {
                c.lit(ch)?;
            }
            i += 1;
            continue;
        }
        i += 1;
        let mut width = None;
        while i < f.len() && f[i].is_ascii_digit() {
            width = Some(width.unwrap_or(0) * 10 + (f[i] - b'0') as usize);
            i += 1;
        }
        if i < f.len() && f[i] == b':' {
            i += 1;
        }
        let d = *f.get(i)?;
        i += 1;
        match d {
            b'Y' => {
                let neg = c.peek() == Some(b'-');
                if neg {
                    c.i += 1;
                }
                let y = c.num(1, 5)? as i64;
                year = if neg { -y } else { y };
            }
            b'C' => century = Some(c.num(1, 2)? as i64),
            b'y' => {
                let y = c.num(1, 2)? as i64;
                year = if y < 69 { 2000 + y } else { 1900 + y };
            }
            b'm' => mon = c.num(1, 2)? as u32,
            b'd' | b'e' => {
                while c.peek() == Some(b' ') {
                    c.i += 1;
                }
                mday = c.num(1, 2)? as u32;
            }
            b'j' => yday = Some(c.num(1, 3)? as u32),
            b'H' | b'k' => {
                while c.peek() == Some(b' ') {
                    c.i += 1;
                }
                hour = c.num(1, 2)? as u32;
            }
            b'I' | b'l' => {
                while c.peek() == Some(b' ') {
                    c.i += 1;
                }
                hour = c.num(1, 2)? as u32;
                hour12 = true;
            }
            b'M' => min = c.num(1, 2)? as u32,
            b'S' => sec = c.num(1, 2)? as u32,
            b'L' | b'N' => {
                let start = c.i;
                let max = width.unwrap_or(if d == b'L' { 3 } else { 9 }).max(1);
                let mut v = 0u64;
                while c.i - start < max {
                    match c.peek() {
                        Some(x @ b'0'..=b'9') => {
                            v = v * 10 + (x - b'0') as u64;
                            c.i += 1;
                        }
                        _ => break,
                    }
                }
                let n = c.i - start;
                if n == 0 {
                    return None;
                }
                nsec = if n <= 9 { (v * 10u64.pow(9 - n as u32)) as u32 } else { (v / 10u64.pow(n as u32 - 9)) as u32 };
            }
            b'z' | b'Z' => off = Some(c.zone()?),
            b'p' | b'P' => {
                let r = &c.s[c.i..];
                if r.len() >= 2 && r[..2].eq_ignore_ascii_case(b"am") {
                    pm = Some(false);
                } else if r.len() >= 2 && r[..2].eq_ignore_ascii_case(b"pm") {
                    pm = Some(true);
                } else {
                    return None;
                }
                c.i += 2;
            }
            b'a' | b'A' => {
                c.word(&DAYS)?;
            }
            b'b' | b'B' | b'h' => mon = c.word(&MONTHS)? as u32 + 1,
            b's' => {
                let neg = c.peek() == Some(b'-');
                if neg {
                    c.i += 1;
                }
                let v = c.num(1, 18)? as i64;
                epoch = Some(if neg { -v } else { v });
            }
            b'T' => {
                hour = c.num(1, 2)? as u32;
                c.lit(b':')?;
                min = c.num(1, 2)? as u32;
                c.lit(b':')?;
                sec = c.num(1, 2)? as u32;
            }
            b'R' => {
                hour = c.num(1, 2)? as u32;
                c.lit(b':')?;
                min = c.num(1, 2)? as u32;
            }
            b'F' => {
                year = c.num(1, 5)? as i64;
                c.lit(b'-')?;
                mon = c.num(1, 2)? as u32;
                c.lit(b'-')?;
                mday = c.num(1, 2)? as u32;
            }
            b'D' => {
                mon = c.num(1, 2)? as u32;
                c.lit(b'/')?;
                mday = c.num(1, 2)? as u32;
                c.lit(b'/')?;
                let y = c.num(1, 2)? as i64;
                year = if y < 69 { 2000 + y } else { 1900 + y };
            }
            b'n' | b't' => {
                while c.peek().is_some_and(|b| b.is_ascii_whitespace()) {
                    c.i += 1;
                }
            }
            b'%' => c.lit(b'%')?,
            _ => return None,
        }
    }
    if c.i != s.len() {
        return None;
    }
    if let Some(e) = epoch {
        return Some(DateTime { sec: e, nsec, zone: off.map_or(default_zone, Zone::Fixed) });
    }
    if let Some(cc) = century {
        year = cc * 100 + year.rem_euclid(100);
    }
    if hour12 {
        hour %= 12;
    }
    if pm == Some(true) && hour < 12 {
        hour += 12;
    }
    if let Some(yd) = yday {
        let base = days_from_civil(year, 1, 1) + yd as i64 - 1;
        let (y, m, d) = civil_from_days(base);
        year = y;
        mon = m;
        mday = d;
    }
    let zone = off.map_or(default_zone, Zone::Fixed);
    let sec = civil_to_epoch(year, mon, mday, hour, min, sec, zone)?;
    Some(DateTime { sec, nsec, zone })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(d: DateTime, p: u32) -> String {
        let mut o = Vec::new();
        d.write_iso8601(&mut o, p);
        String::from_utf8(o).unwrap()
    }

    // Cases from fluent-plugin-elasticsearch's test_out_elasticsearch.rb
    // (test_uses_custom_time_key*, test_uses_custom_time_key_format*).
    #[test]
    fn datetime_parse_like_ruby() {
        // DateTime.new(2001,2,3).iso8601 round-trips, in any precision.
        let d = datetime_parse(b"2001-02-03T00:00:00+00:00").unwrap();
        assert_eq!(iso(d, 0), "2001-02-03T00:00:00+00:00");
        assert_eq!(iso(d, 9), "2001-02-03T00:00:00.000000000+00:00");
        let d = datetime_parse(b"2001-02-03 13:14:01.673+02:00").unwrap();
        assert_eq!(iso(d, 9), "2001-02-03T13:14:01.673000000+02:00");
        assert_eq!(iso(d.utc(), 3), "2001-02-03T11:14:01.673+00:00");
        assert_eq!(d.sec, 981198841);
        // No zone: UTC. Date only: midnight.
        assert_eq!(iso(datetime_parse(b"2016-04-25 12:34:56").unwrap(), 0), "2016-04-25T12:34:56+00:00");
        assert_eq!(iso(datetime_parse(b"2016-04-25").unwrap(), 0), "2016-04-25T00:00:00+00:00");
        assert_eq!(iso(datetime_parse(b"2016-04-25T12:34:56Z").unwrap(), 0), "2016-04-25T12:34:56+00:00");
        assert_eq!(iso(datetime_parse(b"Thu Nov 29 14:33:20 GMT 2001").unwrap(), 0), "2001-11-29T14:33:20+00:00");
        assert_eq!(iso(datetime_parse(b"10/Oct/2000:13:55:36 -0700").unwrap(), 0), "2000-10-10T13:55:36-07:00");
        assert!(datetime_parse(b"yesterday-ish").is_none());
        assert!(datetime_parse(b"2001-13-03").is_none());
    }

    #[test]
    fn strptime_formats() {
        let p = TimeParser::new("%Y-%m-%d %H:%M:%S.%N%z").unwrap();
        let d = p.parse(b"2001-02-03 13:14:01.673+02:00").unwrap();
        assert_eq!(iso(d, 9), "2001-02-03T13:14:01.673000000+02:00");
        let p = TimeParser::new("%Y-%m-%dT%H:%M:%S.%N%z").unwrap();
        assert!(p.parse(b"2001/02/03 13:14:01,673+02:00").is_none());
        let p = TimeParser::new("%a %b %d %H:%M:%S %Z %Y").unwrap();
        let d = p.parse(b"Thu Nov 29 14:33:20 GMT 2001").unwrap();
        assert_eq!(iso(d, 0), "2001-11-29T14:33:20+00:00");
        let p = TimeParser::new("%d/%b/%Y:%I:%M:%S %p %z").unwrap();
        assert_eq!(iso(p.parse(b"10/October/2000:01:55:36 PM -0700").unwrap(), 0), "2000-10-10T13:55:36-07:00");
        assert_eq!(iso(strptime(b"1461587696", "%s", Zone::Fixed(0)).unwrap(), 0), "2016-04-25T12:34:56+00:00");
        assert_eq!(iso(strptime(b"2016 116", "%Y %j", Zone::Fixed(0)).unwrap(), 0), "2016-04-25T00:00:00+00:00");
        let e = TimeParser::new("%Y %Q").unwrap_err();
        assert_eq!(e.directive, 'Q');
    }

    #[test]
    fn numbers_are_epoch_seconds() {
        let mut s = Vec::new();
        let mut m = vec![0xcb];
        m.extend_from_slice(&981198841.5f64.to_be_bytes());
        let d = parse_value(ValueRef::new(&m).unwrap(), None, &mut s).unwrap();
        assert_eq!((d.sec, d.nsec, d.zone), (981198841, 500_000_000, Zone::Local));
        let p = TimeParser::new("%Y-%m-%d %H:%M:%S%z").unwrap();
        let d = parse_value(ValueRef::new(&m).unwrap(), Some(&p), &mut s).unwrap();
        assert_eq!((d.sec, d.nsec), (981198841, 0));
    }
}
