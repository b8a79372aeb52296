//! Time values without a `time_format`: Ruby's `Time.iso8601` (`%iso8601`) exactly, and
//! the common shapes Ruby's heuristic `Time.parse` (`Date._parse`) reads, which fluentd
//! uses when `time_format` is not set:
//!
//! - ISO 8601 / RFC 3339 and SQL style: `2013-02-28T12:00:00.5+09:00`, `2013-02-28 12:00:00 +0900`
//! - `2013/02/28 12:00:00`, US `02/28/2013 12:00:00`
//! - RFC 2822 / HTTP: `Thu, 28 Feb 2013 12:00:00 +0900`, `28 Feb 2013 12:00:00 GMT`
//! - Apache: `28/Feb/2013:12:00:00 +0900`
//! - asctime / syslog: `Thu Feb 28 12:00:00 2013`, `Feb 28 12:00:00` (this year)
//! - a time alone (`12:00:00`, `3:00 pm`): today
//!
//! Month and day names in any case; zones as `%z` takes them (`strptime::zone`). What
//! none of these shapes match is an error, where Ruby may still guess something.

use std::sync::OnceLock;

use regex::bytes::Regex;

use super::civil::TimeError;
use super::strptime::{zone, Parts};

/// Ruby's `Time.iso8601`: `YYYY-MM-DD[THH:MM:SS[.frac][Z|+hh[:]mm]]`, blanks around.
pub fn iso8601(s: &[u8]) -> Result<Parts, TimeError> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?i-u)\A\s*(-?\d+)-(\d\d)-(\d\d)(?:T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d(?::?\d\d)?)?)?\s*\z")
            .unwrap_or_else(|e| unreachable!("static regex: {e}"))
    });
    let c = re.captures(s).ok_or(TimeError::Mismatch)?;
    let mut p = Parts {
        year: Some(num(c.get(1))?),
        mon: Some(small(c.get(2))?),
        mday: Some(small(c.get(3))?),
        ..Parts::default()
    };
    if c.get(4).is_some() {
        p.hour = Some(small(c.get(4))?);
        p.min = Some(small(c.get(5))?);
        p.sec = Some(small(c.get(6))?);
        p.nsec = c.get(7).map(|m| frac(&m.as_bytes()[1..]));
        if let Some(z) = c.get(8) {
            p.off = zone(z.as_bytes(), 0)?.0;
        }
    }
    check(&p)?;
    Ok(p)
}

fn check(p: &Parts) -> Result<(), TimeError> {
    let bad = p.mon.is_some_and(|m| !(1..=12).contains(&m))
        || p.mday.is_some_and(|d| !(1..=31).contains(&d))
        || p.hour.is_some_and(|h| h > 24)
        || p.min.is_some_and(|m| m > 59)
        || p.sec.is_some_and(|s| s > 60);
    if bad {
        Err(TimeError::OutOfRange)
    } else {
        Ok(())
    }
}

fn num(m: Option<regex::bytes::Match<'_>>) -> Result<i64, TimeError> {
    let m = m.ok_or(TimeError::Mismatch)?;
    let s = std::str::from_utf8(m.as_bytes()).map_err(|_| TimeError::Mismatch)?;
    let v: i64 = s.parse().map_err(|_| TimeError::OutOfRange)?;
    if v.abs() > super::strptime::MAX_YEAR {
        return Err(TimeError::OutOfRange);
    }
    Ok(v)
}

fn small(m: Option<regex::bytes::Match<'_>>) -> Result<u32, TimeError> {
    u32::try_from(num(m)?).map_err(|_| TimeError::OutOfRange)
}

/// Fraction digits to nanoseconds (digits past the ninth are dropped).
fn frac(d: &[u8]) -> u32 {
    let mut ns: u32 = 0;
    for i in 0..9 {
        ns = ns * 10 + d.get(i).filter(|b| b.is_ascii_digit()).map_or(0, |b| (b - b'0') as u32);
    }
    ns
}

fn month(name: &[u8]) -> Option<u32> {
    const M: [&[u8]; 12] =
        [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"];
    let p = name.get(..3)?;
    M.iter().position(|m| p.eq_ignore_ascii_case(m)).map(|i| i as u32 + 1)
}

/// Ruby's two-digit year rule in `Date._parse` (with `comp`): 69-99 -> 19xx, else 20xx.
fn year(m: regex::bytes::Match<'_>) -> Result<i64, TimeError> {
    let y = num(Some(m))?;
    Ok(if m.as_bytes().len() <= 2 { y + if y < 69 { 2000 } else { 1900 } } else { y })
}

struct Res {
    apache: Regex,
    time: Regex,
    iso: Regex,
    eu: Regex,
    us: Regex,
    sla: Regex,
    year: Regex,
}

fn res() -> &'static Res {
    static R: OnceLock<Res> = OnceLock::new();
    R.get_or_init(|| {
        let mk = |p: &str| Regex::new(p).unwrap_or_else(|e| unreachable!("static regex: {e}"));
        const MON: &str = "(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*";
        Res {
            apache: mk(&format!(r"(?i-u)(\d{{1,2}})/{MON}/(\d{{4}}):(\d{{2}}):(\d{{2}}):(\d{{2}})(?:[.,](\d+))?(?:\s*([+-]\d{{2}}:?\d{{2}}|z\b|gmt\b|utc\b))?")),
            // hh:mm[:ss[.frac]] [am|pm] [zone]; the zone is checked by strptime::zone.
            time: mk(r"(?i-u)(?:\A|[^\d:])(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(?:\s*([ap])\.?m\.?\b)?(?:\s*((?:gmt|utc)?[+-]\d{1,2}(?::?\d{2}){0,2}|[a-z]+))?"),
            iso: mk(r"(?-u)(?:\A|[^\d])([-+]?\d{2,})-(\d{1,2})-(\d{1,2})(?:\D|\z)"),
            eu: mk(&format!(r"(?i-u)(?:\A|[^\d])(\d{{1,2}})(?:st|nd|rd|th)?[^-\d\s']*\s*{MON}[^-\d\s']*(?:\s*,?\s*(-?\d+))?")),
            us: mk(&format!(r"(?i-u)\b{MON}[^-\d\s']*\s*(\d{{1,2}})(?:st|nd|rd|th)?\b[^-\d\s']*(?:,?\s*(-?\d+))?")),
            sla: mk(r"(?-u)(?:\A|[^\d])(\d+)/\s*(\d+)(?:/\s*(-?\d+))?"),
            year: mk(r"(?-u)(?:\A|\s)(\d{4})(?:\s|\z)"),
        }
    })
}

/// The common shapes of Ruby's `Time.parse` (see the module doc).
pub fn parse(s: &[u8]) -> Result<Parts, TimeError> {
    let r = res();
    let mut p = Parts::default();
    // Apache's `28/Feb/2013:12:00:00 +0900` (a colon between date and time).
    if let Some(c) = r.apache.captures(s) {
        p.mday = Some(small(c.get(1))?);
        p.mon = c.get(2).and_then(|m| month(m.as_bytes()));
        p.year = Some(num(c.get(3))?);
        p.hour = Some(small(c.get(4))?);
        p.min = Some(small(c.get(5))?);
        p.sec = Some(small(c.get(6))?);
        p.nsec = c.get(7).map(|m| frac(m.as_bytes()));
        if let Some(z) = c.get(8) {
            p.off = zone(z.as_bytes(), 0)?.0;
        }
        check(&p)?;
        return Ok(p);
    }
    // The time part first; the rest is searched for a date with the time blanked out,
    // as Date._parse does.
    let mut rest_buf = [0u8; 128];
    let mut rest: &[u8] = s;
    if let Some(c) = r.time.captures(s) {
        p.hour = Some(small(c.get(1))?);
        p.min = Some(small(c.get(2))?);
        if c.get(3).is_some() {
            p.sec = Some(small(c.get(3))?);
        }
        p.nsec = c.get(4).map(|m| frac(m.as_bytes()));
        p.pm = c.get(5).map(|m| m.as_bytes().eq_ignore_ascii_case(b"p"));
        let mut end = c.get(0).map_or(0, |m| m.end());
        if let Some(z) = c.get(6) {
            match zone(z.as_bytes(), 0) {
                Ok((Some(o), _)) => p.off = Some(o),
                // Not a zone (a month name, a year...): leave it for the date.
                _ => end = z.start(),
            }
        }
        let start = c.get(1).map_or(0, |m| m.start());
        if s.len() <= rest_buf.len() {
            rest_buf[..s.len()].copy_from_slice(s);
            rest_buf[start..end].fill(b' ');
            rest = &rest_buf[..s.len()];
        }
    }
    if let Some(c) = r.iso.captures(rest) {
        p.year = Some(num(c.get(1))?);
        p.mon = Some(small(c.get(2))?);
        p.mday = Some(small(c.get(3))?);
    } else if let Some(c) = r.eu.captures(rest) {
        p.mday = Some(small(c.get(1))?);
        p.mon = c.get(2).and_then(|m| month(m.as_bytes()));
        if let Some(y) = c.get(3) {
            p.year = Some(year(y)?);
        }
    } else if let Some(c) = r.us.captures(rest) {
        p.mon = c.get(1).and_then(|m| month(m.as_bytes()));
        p.mday = Some(small(c.get(2))?);
        if let Some(y) = c.get(3) {
            p.year = Some(year(y)?);
        } else if let Some(y) = r.year.captures(rest).and_then(|c| c.get(1)) {
            p.year = Some(num(Some(y))?);
        }
    } else if let Some(c) = r.sla.captures(rest) {
        let (a, b) = (c.get(1).ok_or(TimeError::Mismatch)?, c.get(2).ok_or(TimeError::Mismatch)?);
        match c.get(3) {
            Some(y) if a.as_bytes().len() <= 2 => {
                // mm/dd/yyyy
                p.mon = Some(small(Some(a))?);
                p.mday = Some(small(Some(b))?);
                p.year = Some(year(y)?);
            }
            Some(d) => {
                p.year = Some(year(a)?);
                p.mon = Some(small(Some(b))?);
                p.mday = Some(small(Some(d))?);
            }
            None => {
                p.mon = Some(small(Some(a))?);
                p.mday = Some(small(Some(b))?);
            }
        }
    }
    if p.year.is_none() && p.mon.is_none() && p.hour.is_none() {
        return Err(TimeError::NoTime);
    }
    check(&p)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::super::civil::{days_from_civil, Civil};
    use super::*;

    fn utc(s: &str) -> Result<(i64, u32), TimeError> {
        let now = Civil { year: 2026, mon: 11, mday: 25, hour: 10, min: 20, sec: 30 };
        parse(s.as_bytes())?.resolve(|_| now, |_| 0)
    }

    const T: i64 = 1362020400; // 2013-02-28 03:00:00 UTC

    #[test]
    fn shapes_ruby_time_parse_reads() {
        assert_eq!(utc("2013-02-28 12:00:00 +0900"), Ok((T, 0)));
        assert_eq!(utc("2013-02-28T12:00:00+09:00"), Ok((T, 0)));
        assert_eq!(utc("2013-02-28T03:00:00.25Z"), Ok((T, 250_000_000)));
        assert_eq!(utc("2013-02-28 03:00:00"), Ok((T, 0)));
        assert_eq!(utc("2016-09-02 18:42:31.012345678"), Ok((1472841751, 12345678)));
        assert_eq!(utc("2013/02/28 03:00:00"), Ok((T, 0)));
        assert_eq!(utc("02/28/2013 03:00:00"), Ok((T, 0)));
        assert_eq!(utc("Thu, 28 Feb 2013 12:00:00 +0900"), Ok((T, 0)));
        assert_eq!(utc("28 Feb 2013 03:00:00 GMT"), Ok((T, 0)));
        assert_eq!(utc("28/Feb/2013:12:00:00 +0900"), Ok((T, 0)));
        assert_eq!(utc("Thu Feb 28 03:00:00 2013"), Ok((T, 0)));
        assert_eq!(utc("Thu Feb 28 12:00:00 JST 2013"), Ok((T, 0)));
        assert_eq!(utc("February 28, 2013 3:00 am"), Ok((T, 0)));
        assert_eq!(utc("2013-02-28"), Ok((T - 3 * 3600, 0)));
        // No year: this year (the test's now is 2026-11-25).
        assert_eq!(utc("Feb 28 03:00:00"), Ok((days_from_civil(2026, 2, 28) * 86400 + 3 * 3600, 0)));
        assert_eq!(utc("12:00"), Ok((days_from_civil(2026, 11, 25) * 86400 + 12 * 3600, 0)));
        assert_eq!(utc("garbage"), Err(TimeError::NoTime));
        assert_eq!(utc(""), Err(TimeError::NoTime));
        assert_eq!(utc("2013-13-01"), Err(TimeError::OutOfRange));
    }

    #[test]
    fn iso8601_is_strict() {
        let p = iso8601(b"2017-01-01T12:00:00.123+09:00").unwrap();
        assert_eq!(p.resolve(|_| Civil::default(), |_| 0), Ok((1483239600, 123_000_000)));
        assert!(iso8601(b"2017-01-01 12:00:00").is_err());
        assert!(iso8601(b"2017-01-01T12:00").is_err());
        assert!(iso8601(b"2017-01-01").is_ok());
        assert!(iso8601(b"2017-01-01T12:00:00+09:00 x").is_err());
    }
}
