//! Ruby's `strptime` as fluentd runs it (`Time.strptime` = `Date._strptime` +
//! `Time.make_time`, and the `strptime` gem fluentd prefers when a format only uses its
//! directives; the gem accepts a subset of the same inputs). A format is compiled once
//! at config time into [`Format`]; [`Format::parse`] reads one value into [`Parts`]
//! without allocating, and [`Parts::resolve`] turns them into seconds since the epoch.
//!
//! Semantics kept from Ruby: a blank in the format matches any run of blanks (also
//! none); `%d %e %H %k %I %l %m %M %S %y` read at most two digits and `%d`/`%e`/`%H`/...
//! accept one leading space (`Feb  1`); `%Y` reads at most four digits when another
//! number follows directly, else all of them; `%N`/`%L` read a fraction of any length
//! (nine digits when a number follows); `%b`/`%B`/`%h`/`%a`/`%A` take full and short
//! names in any case; `%p` takes AM/PM/A.M./P.M.; `%z`/`%Z` take `Z`, `UTC`, `GMT`,
//! `+hh`, `+hhmm`, `+hh:mm`, `+hh:mm:ss`, `GMT+hh` and the common US/European/Asian
//! abbreviations (an unknown name leaves the zone unset, as Ruby does); `%s`/`%Q`
//! (seconds / milliseconds since the epoch); composites `%c %D %F %R %r %T %v %x %X %+`.
//! Trailing text after the format is ignored, as Ruby's `Time.strptime` ignores it.
//! Fields that are missing take the current date's leading parts and the minimum for
//! the rest (`%b %d %H:%M:%S` is this year), as `Time.make_time` does.

use super::civil::{days_from_civil, Civil, TimeError};

/// One step of a compiled format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Text that must appear as is.
    Lit(Box<[u8]>),
    /// Any run of blanks (also none).
    Space,
    /// A directive letter; `num_next` says whether a number directive or a digit
    /// follows directly (it bounds `%Y` and `%N`).
    Dir { c: u8, num_next: bool },
}

/// A compiled strptime format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    items: Vec<Item>,
    /// Whether the format names a zone (`%z`/`%Z`): then the configured zone is unused.
    pub has_zone: bool,
}

/// The fields one value gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts {
    pub year: Option<i64>,
    pub mon: Option<u32>,
    pub mday: Option<u32>,
    pub yday: Option<u32>,
    pub hour: Option<u32>,
    pub min: Option<u32>,
    pub sec: Option<u32>,
    pub nsec: Option<u32>,
    /// `Some(true)` for PM.
    pub pm: Option<bool>,
    /// The zone's offset east of UTC in seconds, when the value named a known zone.
    pub off: Option<i32>,
    /// `%s` / `%Q`: an absolute time in nanoseconds.
    pub epoch_ns: Option<i128>,
}

/// Years beyond this are refused (the day arithmetic stays far from overflowing).
pub const MAX_YEAR: i64 = 1_000_000;

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

const NUM_DIRECTIVES: &[u8] = b"CDdeFGgHIjkLlMmNQRrSsTUuVvWwXxYy";

const MONTHS: [&[u8]; 12] = [
    b"january",
    b"february",
    b"march",
    b"april",
    b"may",
    b"june",
    b"july",
    b"august",
    b"september",
    b"october",
    b"november",
    b"december",
];
const DAYS: [&[u8]; 7] = [b"sunday", b"monday", b"tuesday", b"wednesday", b"thursday", b"friday", b"saturday"];

/// The composites, as Date._strptime expands them.
fn composite(c: u8) -> Option<&'static str> {
    Some(match c {
        b'c' => "%a %b %e %H:%M:%S %Y",
        b'D' | b'x' => "%m/%d/%y",
        b'F' => "%Y-%m-%d",
        b'R' => "%H:%M",
        b'r' => "%I:%M:%S %p",
        b'T' | b'X' => "%H:%M:%S",
        b'v' => "%e-%b-%Y",
        b'+' => "%a %b %e %H:%M:%S %Z %Y",
        _ => return None,
    })
}

const SIMPLE: &[u8] = b"aAbBhCdeHkIlMmjLNpPSsQuwUWVGgyYzZ%nt";

impl Format {
    /// Compiles a format; an unknown directive is an error naming it (Ruby would match
    /// it literally, which is never what a config means).
    pub fn compile(fmt: &str) -> Result<Format, String> {
        let mut items = Vec::new();
        Self::compile_into(fmt.as_bytes(), &mut items, 0)?;
        // Mark directives followed directly by a number.
        for i in 0..items.len() {
            let next_num = match items.get(i + 1) {
                Some(Item::Dir { c, .. }) => NUM_DIRECTIVES.contains(c),
                Some(Item::Lit(l)) => l.first().is_some_and(u8::is_ascii_digit),
                _ => false,
            };
            if let Some(Item::Dir { num_next, .. }) = items.get_mut(i) {
                *num_next = next_num;
            }
        }
        let has_zone = items.iter().any(|i| matches!(i, Item::Dir { c: b'z' | b'Z', .. }));
        Ok(Format { items, has_zone })
    }

    fn compile_into(f: &[u8], items: &mut Vec<Item>, depth: u32) -> Result<(), String> {
        let mut lit: Vec<u8> = Vec::new();
        let flush = |lit: &mut Vec<u8>, items: &mut Vec<Item>| {
            if !lit.is_empty() {
                items.push(Item::Lit(std::mem::take(lit).into_boxed_slice()));
            }
        };
        let mut i = 0;
        while i < f.len() {
            let b = f[i];
            if is_blank(b) {
                flush(&mut lit, items);
                if items.last() != Some(&Item::Space) {
                    items.push(Item::Space);
                }
                i += 1;
                continue;
            }
            if b != b'%' {
                lit.push(b);
                i += 1;
                continue;
            }
            // Skip flags and widths (`%-d`, `%3N`): Ruby's strptime ignores them too.
            let mut j = i + 1;
            while j < f.len() && (f[j].is_ascii_digit() || matches!(f[j], b'-' | b'_' | b'0' | b'^' | b'#')) {
                j += 1;
            }
            // `%:z`, `%::z`
            while j < f.len() && f[j] == b':' {
                j += 1;
            }
            let Some(&c) = f.get(j) else { return Err("format ends with a lone %".into()) };
            i = j + 1;
            if c == b'%' {
                lit.push(b'%');
                continue;
            }
            flush(&mut lit, items);
            if let Some(sub) = composite(c) {
                if depth > 2 {
                    return Err("format nests too deeply".into());
                }
                Self::compile_into(sub.as_bytes(), items, depth + 1)?;
            } else if c == b'n' || c == b't' {
                if items.last() != Some(&Item::Space) {
                    items.push(Item::Space);
                }
            } else if SIMPLE.contains(&c) {
                items.push(Item::Dir { c, num_next: false });
            } else {
                return Err(format!("unsupported strptime directive %{}", c as char));
            }
        }
        flush(&mut lit, items);
        Ok(())
    }

    /// Reads `s` (trailing text is ignored).
    pub fn parse(&self, s: &[u8]) -> Result<Parts, TimeError> {
        let mut p = Parts::default();
        let mut at = 0usize;
        for item in &self.items {
            match item {
                Item::Space => {
                    while s.get(at).is_some_and(|&b| is_blank(b)) {
                        at += 1;
                    }
                }
                Item::Lit(l) => {
                    if s.get(at..at + l.len()) != Some(&l[..]) {
                        return Err(TimeError::Mismatch);
                    }
                    at += l.len();
                }
                Item::Dir { c, num_next } => at = directive(*c, *num_next, s, at, &mut p)?,
            }
        }
        Ok(p)
    }
}

/// Reads up to `max` digits at `at`; at least one is required.
#[inline]
fn digits(s: &[u8], at: usize, max: usize) -> Result<(u64, usize), TimeError> {
    let mut v: u64 = 0;
    let mut n = 0;
    while n < max {
        match s.get(at + n) {
            Some(&d) if d.is_ascii_digit() => {
                v = v.saturating_mul(10).saturating_add((d - b'0') as u64);
                n += 1;
            }
            _ => break,
        }
    }
    if n == 0 {
        return Err(TimeError::Mismatch);
    }
    Ok((v, at + n))
}

/// Two digits, or one after a leading space (Ruby's `%e`-style padding), in a range.
#[inline]
fn two(s: &[u8], at: usize, lo: u64, hi: u64) -> Result<(u32, usize), TimeError> {
    let (v, end) = if s.get(at) == Some(&b' ') { digits(s, at + 1, 1)? } else { digits(s, at, 2)? };
    if !(lo..=hi).contains(&v) {
        return Err(TimeError::OutOfRange);
    }
    Ok((v as u32, end))
}

/// A name from `names` (full, or its first three letters), case-insensitive.
fn name(s: &[u8], at: usize, names: &[&[u8]]) -> Result<(usize, usize), TimeError> {
    let rest = s.get(at..).unwrap_or_default();
    for (i, n) in names.iter().enumerate() {
        if rest.len() >= n.len() && rest[..n.len()].eq_ignore_ascii_case(n) {
            return Ok((i, at + n.len()));
        }
    }
    for (i, n) in names.iter().enumerate() {
        if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(&n[..3]) {
            return Ok((i, at + 3));
        }
    }
    Err(TimeError::Mismatch)
}

fn directive(c: u8, num_next: bool, s: &[u8], at: usize, p: &mut Parts) -> Result<usize, TimeError> {
    Ok(match c {
        b'Y' => {
            let (neg, start) = match s.get(at) {
                Some(b'-') => (true, at + 1),
                Some(b'+') => (false, at + 1),
                _ => (false, at),
            };
            let (v, end) = digits(s, start, if num_next { 4 } else { 18 })?;
            if v > MAX_YEAR as u64 {
                return Err(TimeError::OutOfRange);
            }
            p.year = Some(if neg { -(v as i64) } else { v as i64 });
            end
        }
        b'C' => {
            let (v, end) = digits(s, at, 2)?;
            let y = p.year.unwrap_or(0).rem_euclid(100);
            p.year = Some(v as i64 * 100 + y);
            end
        }
        b'y' => {
            let (v, end) = digits(s, at, 2)?;
            p.year = Some(v as i64 + if v < 69 { 2000 } else { 1900 });
            end
        }
        b'm' => {
            let (v, end) = two(s, at, 1, 12)?;
            p.mon = Some(v);
            end
        }
        b'b' | b'B' | b'h' => {
            let (i, end) = name(s, at, &MONTHS)?;
            p.mon = Some(i as u32 + 1);
            end
        }
        b'a' | b'A' => name(s, at, &DAYS)?.1,
        b'd' | b'e' => {
            let (v, end) = two(s, at, 1, 31)?;
            p.mday = Some(v);
            end
        }
        b'j' => {
            let (v, end) = digits(s, at, 3)?;
            if !(1..=366).contains(&v) {
                return Err(TimeError::OutOfRange);
            }
            p.yday = Some(v as u32);
            end
        }
        b'H' | b'k' => {
            let (v, end) = two(s, at, 0, 24)?;
            p.hour = Some(v);
            end
        }
        b'I' | b'l' => {
            let (v, end) = two(s, at, 1, 12)?;
            p.hour = Some(v);
            end
        }
        b'M' => {
            let (v, end) = two(s, at, 0, 59)?;
            p.min = Some(v);
            end
        }
        b'S' => {
            let (v, end) = two(s, at, 0, 60)?;
            p.sec = Some(v);
            end
        }
        b'N' | b'L' => {
            let start = at;
            let max = if num_next {
                if c == b'L' {
                    3
                } else {
                    9
                }
            } else {
                usize::MAX
            };
            let mut n = 0;
            let mut ns: u64 = 0;
            while n < max && s.get(start + n).is_some_and(u8::is_ascii_digit) {
                if n < 9 {
                    ns = ns * 10 + (s[start + n] - b'0') as u64;
                }
                n += 1;
            }
            if n == 0 {
                return Err(TimeError::Mismatch);
            }
            for _ in n..9 {
                ns *= 10;
            }
            p.nsec = Some(ns as u32);
            start + n
        }
        b'p' | b'P' => {
            let rest = s.get(at..).unwrap_or_default();
            let up = |i: usize| rest.get(i).map(u8::to_ascii_uppercase);
            let pm = match up(0) {
                Some(b'A') => false,
                Some(b'P') => true,
                _ => return Err(TimeError::Mismatch),
            };
            let len = if up(1) == Some(b'M') {
                2
            } else if up(1) == Some(b'.') && up(2) == Some(b'M') && up(3) == Some(b'.') {
                4
            } else {
                return Err(TimeError::Mismatch);
            };
            p.pm = Some(pm);
            at + len
        }
        b's' | b'Q' => {
            let (neg, start) = match s.get(at) {
                Some(b'-') => (true, at + 1),
                Some(b'+') => (false, at + 1),
                _ => (false, at),
            };
            let (v, end) = digits(s, start, 18)?;
            if v > (MAX_YEAR as u64) * 366 * 86400 * 1000 {
                return Err(TimeError::OutOfRange);
            }
            let ns = if c == b's' { v as i128 * 1_000_000_000 } else { v as i128 * 1_000_000 };
            p.epoch_ns = Some(if neg { -ns } else { ns });
            end
        }
        b'u' | b'w' => digits(s, at, 1)?.1,
        b'U' | b'W' | b'V' | b'g' => digits(s, at, 2)?.1,
        b'G' => {
            let start = if matches!(s.get(at), Some(b'-' | b'+')) { at + 1 } else { at };
            digits(s, start, if num_next { 4 } else { 18 })?.1
        }
        b'z' | b'Z' => {
            let (off, end) = zone(s, at)?;
            p.off = off;
            end
        }
        _ => return Err(TimeError::Mismatch),
    })
}

/// Zone abbreviations Ruby's `Date` knows that are still in common use (hours east).
const ZONES: &[(&[u8], i32)] = &[
    (b"utc", 0),
    (b"gmt", 0),
    (b"ut", 0),
    (b"z", 0),
    (b"est", -5 * 3600),
    (b"edt", -4 * 3600),
    (b"cst", -6 * 3600),
    (b"cdt", -5 * 3600),
    (b"mst", -7 * 3600),
    (b"mdt", -6 * 3600),
    (b"pst", -8 * 3600),
    (b"pdt", -7 * 3600),
    (b"akst", -9 * 3600),
    (b"akdt", -8 * 3600),
    (b"hst", -10 * 3600),
    (b"wet", 0),
    (b"west", 3600),
    (b"bst", 3600),
    (b"cet", 3600),
    (b"cest", 2 * 3600),
    (b"met", 3600),
    (b"mest", 2 * 3600),
    (b"eet", 2 * 3600),
    (b"eest", 3 * 3600),
    (b"msk", 3 * 3600),
    (b"ist", 19800),
    (b"jst", 9 * 3600),
    (b"kst", 9 * 3600),
    (b"hkt", 8 * 3600),
    (b"sgt", 8 * 3600),
    (b"awst", 8 * 3600),
    (b"acst", 34200),
    (b"aest", 10 * 3600),
    (b"aedt", 11 * 3600),
    (b"nzst", 12 * 3600),
    (b"nzdt", 13 * 3600),
];

/// `+hh[[:]mm[[:]ss]]` at `at` (the sign included); returns seconds east and the end.
fn numeric_offset(s: &[u8], at: usize) -> Result<(i32, usize), TimeError> {
    let neg = match s.get(at) {
        Some(b'-') => true,
        Some(b'+') => false,
        _ => return Err(TimeError::Mismatch),
    };
    let (h, mut end) = digits(s, at + 1, 2)?;
    let mut total = h as i32 * 3600;
    // Minutes, then seconds, each with an optional colon.
    for mult in [60, 1] {
        let colon = s.get(end) == Some(&b':');
        let from = if colon { end + 1 } else { end };
        match digits(s, from, 2) {
            Ok((v, e)) if e - from == 2 => {
                total += v as i32 * mult;
                end = e;
            }
            _ => break,
        }
    }
    if h > 23 {
        return Err(TimeError::OutOfRange);
    }
    Ok((if neg { -total } else { total }, end))
}

/// A zone at `at`: `Z`, a numeric offset, `GMT+hh`, or an alphabetic name (an unknown
/// name is consumed and gives no offset).
pub(crate) fn zone(s: &[u8], at: usize) -> Result<(Option<i32>, usize), TimeError> {
    match s.get(at) {
        Some(b'+' | b'-') => numeric_offset(s, at).map(|(o, e)| (Some(o), e)),
        Some(b) if b.is_ascii_alphabetic() => {
            let mut end = at;
            while s.get(end).is_some_and(u8::is_ascii_alphabetic) {
                end += 1;
            }
            let word = &s[at..end];
            let known = ZONES.iter().find(|(n, _)| word.eq_ignore_ascii_case(n)).map(|(_, o)| *o);
            // `GMT+9`, `UTC-05:00`
            if known == Some(0) && matches!(s.get(end), Some(b'+' | b'-')) {
                if let Ok((o, e)) = numeric_offset(s, end) {
                    return Ok((Some(o), e));
                }
            }
            Ok((known, end))
        }
        _ => Err(TimeError::Mismatch),
    }
}

impl Parts {
    /// Seconds since the epoch and nanoseconds. `default_off` gives the offset of the
    /// configured zone for a civil time (used when the value named none); `now` is the
    /// current civil time in that zone, for the fields the value left out.
    pub fn resolve(
        &self,
        now: impl FnOnce(Option<i32>) -> Civil,
        default_off: impl FnOnce(&Civil) -> i64,
    ) -> Result<(i64, u32), TimeError> {
        if let Some(ns) = self.epoch_ns {
            let sec = ns.div_euclid(1_000_000_000) as i64;
            let extra = ns.rem_euclid(1_000_000_000) as u32;
            return Ok((sec, if extra == 0 { self.nsec.unwrap_or(0) } else { extra }));
        }
        let any_date = self.year.is_some() || self.mon.is_some() || self.mday.is_some() || self.yday.is_some();
        let any_time = self.hour.is_some() || self.min.is_some() || self.sec.is_some() || self.nsec.is_some();
        if !any_date && !any_time {
            return Err(TimeError::NoTime);
        }
        let mut hour = self.hour;
        if let (Some(h), Some(pm)) = (hour, self.pm) {
            hour = Some(h % 12 + if pm { 12 } else { 0 });
        }
        // Time.make_time: fields before the first given one come from now.
        let mut c = Civil { year: 1970, mon: 1, mday: 1, hour: 0, min: 0, sec: 0 };
        if self.year.is_none() {
            let n = now(self.off);
            c.year = n.year;
            'fill: {
                if self.mon.is_some() || self.yday.is_some() {
                    break 'fill;
                }
                c.mon = n.mon;
                if self.mday.is_some() {
                    break 'fill;
                }
                c.mday = n.mday;
                if hour.is_some() {
                    break 'fill;
                }
                c.hour = n.hour;
                if self.min.is_some() {
                    break 'fill;
                }
                c.min = n.min;
                if self.sec.is_some() {
                    break 'fill;
                }
                c.sec = n.sec;
            }
        } else {
            c.year = self.year.unwrap_or(1970);
        }
        if let Some(m) = self.mon {
            c.mon = m;
        }
        if let Some(d) = self.mday {
            c.mday = d;
        }
        if let (Some(yd), None) = (self.yday, self.mon) {
            let jan1 = days_from_civil(c.year, 1, 1);
            let (y, m, d) = super::civil::civil_from_days(jan1 + yd as i64 - 1);
            c.year = y;
            c.mon = m;
            c.mday = d;
        }
        if let Some(h) = hour {
            c.hour = h;
        }
        if let Some(m) = self.min {
            c.min = m;
        }
        if let Some(s) = self.sec {
            c.sec = s;
        }
        // Ruby rejects Feb 30 and friends (Time.local raises "argument out of range").
        if c.mday > super::civil::days_in_month(c.year, c.mon) {
            return Err(TimeError::OutOfRange);
        }
        let off = match self.off {
            Some(o) => o as i64,
            None => default_off(&c),
        };
        Ok((c.to_epoch() - off, self.nsec.unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(fmt: &str, s: &str) -> Result<(i64, u32), TimeError> {
        let f = Format::compile(fmt).unwrap();
        let now = Civil { year: 2026, mon: 11, mday: 25, hour: 10, min: 20, sec: 30 };
        f.parse(s.as_bytes())?.resolve(|_| now, |_| 0)
    }

    #[test]
    fn apache_and_iso_formats() {
        // 28/Feb/2013:12:00:00 +0900 = 1362020400
        assert_eq!(utc("%d/%b/%Y:%H:%M:%S %z", "28/Feb/2013:12:00:00 +0900"), Ok((1362020400, 0)));
        assert_eq!(utc("%d/%b/%Y:%H:%M:%S:%N %z", "28/Feb/2013:12:00:00:123456789 +0900"), Ok((1362020400, 123456789)));
        assert_eq!(utc("%Y-%m-%dT%H:%M:%S%z", "2013-02-28T12:00:00+09:00"), Ok((1362020400, 0)));
        assert_eq!(utc("%Y-%m-%dT%H:%M:%S.%L%z", "2013-02-28T03:00:00.5Z"), Ok((1362020400, 500_000_000)));
        assert_eq!(utc("%Y-%m-%d %H:%M:%S.%N", "2016-09-02 18:42:31.012345678"), Ok((1472841751, 12345678)));
        assert_eq!(utc("%m/%d/%Y %H-%M-%S %N", "09/02/2016 18-42-31 012345678"), Ok((1472841751, 12345678)));
        assert_eq!(utc("%F %T", "2013-02-28 03:00:00"), Ok((1362020400, 0)));
        assert_eq!(utc("%s", "1362020400"), Ok((1362020400, 0)));
        assert_eq!(utc("%s.%N", "1362020400.25"), Ok((1362020400, 250_000_000)));
        assert_eq!(utc("%Q", "1362020400123"), Ok((1362020400, 123_000_000)));
        // Named zones and GMT+hh.
        assert_eq!(utc("%Y-%m-%d %H:%M:%S %Z", "2013-02-28 12:00:00 JST"), Ok((1362020400, 0)));
        assert_eq!(utc("%Y-%m-%d %H:%M:%S %z", "2013-02-28 12:00:00 GMT+09:00"), Ok((1362020400, 0)));
        // Trailing text is ignored (Ruby's Time.strptime ignores leftovers).
        assert_eq!(utc("%Y-%m-%d", "2013-02-28 and more"), Ok((1362009600, 0)));
    }

    #[test]
    fn missing_fields_come_from_now() {
        // syslog: no year; the year is the current one.
        let (t, _) = utc("%b %d %H:%M:%S", "Feb 28 12:00:00").unwrap();
        assert_eq!(t, days_from_civil(2026, 2, 28) * 86400 + 12 * 3600);
        // Two blanks before a one-digit day.
        let (t, _) = utc("%b %d %H:%M:%S", "Feb  1 12:00:00").unwrap();
        assert_eq!(t, days_from_civil(2026, 2, 1) * 86400 + 12 * 3600);
        // Only a time: today.
        let (t, _) = utc("%H:%M", "01:02").unwrap();
        assert_eq!(t, days_from_civil(2026, 11, 25) * 86400 + 3600 + 120);
        // Year given: the rest defaults to the minimum.
        assert_eq!(utc("%Y", "2013"), Ok((days_from_civil(2013, 1, 1) * 86400, 0)));
    }

    #[test]
    fn twelve_hour_clock_and_names() {
        assert_eq!(utc("%a %b %e %I:%M:%S %p %Y", "Thu Feb 28 12:00:00 AM 2013").unwrap().0, 1362009600);
        assert_eq!(utc("%B %d %Y %l:%M %P", "february 28 2013 3:00 p.m.").unwrap().0, 1362020400 + 12 * 3600);
        assert_eq!(utc("%y%m%d", "130228").unwrap().0, 1362009600);
        assert_eq!(utc("%Y%j", "2013059").unwrap().0, days_from_civil(2013, 2, 28) * 86400);
    }

    #[test]
    fn mismatches_are_errors() {
        assert_eq!(utc("%d/%b/%Y", "28-Feb-2013"), Err(TimeError::Mismatch));
        assert_eq!(utc("%d/%b/%Y", "32/Feb/2013"), Err(TimeError::OutOfRange));
        assert_eq!(utc("%d/%b/%Y", "30/Feb/2013"), Err(TimeError::OutOfRange));
        assert_eq!(utc("%Y-%m-%d", ""), Err(TimeError::Mismatch));
        assert_eq!(utc("%b", "Foo"), Err(TimeError::Mismatch));
        assert_eq!(utc("%z", "+99"), Err(TimeError::OutOfRange));
        assert!(Format::compile("%Y %O").is_err());
        assert!(Format::compile("%").is_err());
        assert!(Format::compile("%Y %%").is_ok());
        // Nothing that panics on arbitrary bytes.
        for s in [&b"\xff\xfe"[..], b"9999999999999999999999999", b"+", b"-9999999999999999999"] {
            for f in ["%Y", "%s", "%z", "%N", "%b %d", "%c"] {
                let _ = Format::compile(f).unwrap().parse(s).map(|p| p.resolve(|_| Civil::default(), |_| 0));
            }
        }
    }
}
