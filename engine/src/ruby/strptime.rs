//! Ruby's `Time.strptime(text, format)` and a `Time.parse(text)` for the formats logs
//! carry, without running Ruby.
//!
//! `strptime` reads `%Y %C %y %m %d %e %j %H %k %I %l %p %P %M %S %L %N (%3N...) %z %Z
//! %b %h %B %a %A %s %Q %T %F %D %R %r %%`; a space in the format matches any run of
//! white space (also none), other characters match themselves. Text left over, or a
//! directive outside this list, fails (Ruby raises ArgumentError). Without a zone the
//! time is local; without a year it is the current year (as Ruby's `Time.strptime`).
//!
//! `parse` accepts ISO 8601 / RFC 3339 (`2024-01-02T03:04:05.123+09:00`, `T` or a space,
//! `Z`/`UTC`/offsets, date only), `2024/01/02 03:04:05`, RFC 2822 (`Tue, 02 Jan 2024
//! 03:04:05 +0000`), the Apache log form (`02/Jan/2024:03:04:05 +0000`), ctime
//! (`Tue Jan  2 03:04:05 2024`) and syslog (`Jan  2 03:04:05`). Ruby's `Time.parse` is
//! more lenient; other text fails here.

use crate::calendar::{days_from_civil, days_in_month, is_leap};

/// A parsed time: Unix seconds, nanoseconds, and the offset written in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub sec: i64,
    pub nsec: u32,
    pub offset: Option<i64>,
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const DAYS: [&str; 7] = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];

#[derive(Default)]
struct Fields {
    year: Option<i64>,
    century: Option<i64>,
    mon: Option<u32>,
    mday: Option<u32>,
    yday: Option<u32>,
    hour: u32,
    hour12: Option<u32>,
    pm: Option<bool>,
    min: u32,
    sec: u32,
    nsec: u32,
    offset: Option<i64>,
    epoch: Option<(i64, u32)>,
}

struct Cur<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cur<'_> {
    fn digits(&mut self, max: usize) -> Option<i64> {
        let st = self.i;
        while self.i < self.s.len() && self.i - st < max && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if self.i == st {
            return None;
        }
        std::str::from_utf8(&self.s[st..self.i]).ok()?.parse().ok()
    }

    fn signed(&mut self, max: usize) -> Option<i64> {
        let neg = match self.s.get(self.i) {
            Some(b'-') => {
                self.i += 1;
                true
            }
            Some(b'+') => {
                self.i += 1;
                false
            }
            _ => false,
        };
        self.digits(max).map(|v| if neg { -v } else { v })
    }

    /// A month or weekday name (full or its first three letters), case-insensitive.
    fn name(&mut self, names: &[&str]) -> Option<usize> {
        let rest = self.s.get(self.i..)?.to_ascii_lowercase();
        for (k, n) in names.iter().enumerate() {
            if rest.starts_with(n.as_bytes()) {
                self.i += n.len();
                return Some(k);
            }
        }
        for (k, n) in names.iter().enumerate() {
            if rest.starts_with(&n.as_bytes()[..3]) {
                self.i += 3;
                return Some(k);
            }
        }
        None
    }

    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    /// `+09:00`, `+0900`, `+09`, `Z`, `UTC`, `GMT`.
    fn zone(&mut self) -> Option<i64> {
        let rest = &self.s[self.i..];
        for (name, off) in [(&b"UTC"[..], 0), (b"GMT", 0), (b"Z", 0), (b"z", 0)] {
            if rest.starts_with(name) {
                self.i += name.len();
                return Some(off);
            }
        }
        let sign = match rest.first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return None,
        };
        self.i += 1;
        let h = self.digits(2)?;
        if self.s.get(self.i) == Some(&b':') {
            self.i += 1;
        }
        let m = self.digits(2).unwrap_or(0);
        Some(sign * (h * 3600 + m * 60))
    }
}

fn run(text: &[u8], fmt: &[u8], f: &mut Fields, depth: usize) -> Option<usize> {
    if depth > 4 {
        return None;
    }
    let mut c = Cur { s: text, i: 0 };
    let mut j = 0;
    while j < fmt.len() {
        let ch = fmt[j];
        if ch.is_ascii_whitespace() {
            c.skip_ws();
            j += 1;
            continue;
        }
        if ch != b'%' || j + 1 == fmt.len() {
            if c.s.get(c.i) != Some(&ch) {
                return None;
            }
            c.i += 1;
            j += 1;
            continue;
        }
        j += 1;
        // A width for %N (%3N, %6N, %9N).
        let mut width = None;
        while j < fmt.len() && fmt[j].is_ascii_digit() {
            width = Some(width.unwrap_or(0) * 10 + (fmt[j] - b'0') as usize);
            j += 1;
        }
        let d = *fmt.get(j)?;
        j += 1;
        let composite: Option<&[u8]> = match d {
            b'T' => Some(b"%H:%M:%S"),
            b'F' => Some(b"%Y-%m-%d"),
            b'D' => Some(b"%m/%d/%y"),
            b'R' => Some(b"%H:%M"),
            b'r' => Some(b"%I:%M:%S %p"),
            _ => None,
        };
        if let Some(sub) = composite {
            let used = run(&c.s[c.i..], sub, f, depth + 1)?;
            c.i += used;
            continue;
        }
        match d {
            b'Y' => f.year = Some(c.signed(5)?),
            b'C' => f.century = Some(c.signed(2)?),
            b'y' => {
                let v = c.digits(2)?;
                f.year = Some(if v < 69 { 2000 + v } else { 1900 + v });
            }
            b'm' => f.mon = Some(c.digits(2)? as u32),
            b'd' | b'e' => {
                c.skip_ws();
                f.mday = Some(c.digits(2)? as u32);
            }
            b'j' => f.yday = Some(c.digits(3)? as u32),
            b'H' | b'k' => {
                c.skip_ws();
                f.hour = c.digits(2)? as u32;
            }
            b'I' | b'l' => {
                c.skip_ws();
                f.hour12 = Some(c.digits(2)? as u32);
            }
            b'p' | b'P' => {
                let rest = c.s.get(c.i..c.i + 2)?.to_ascii_lowercase();
                f.pm = Some(match rest.as_slice() {
                    b"am" => false,
                    b"pm" => true,
                    _ => return None,
                });
                c.i += 2;
            }
            b'M' => f.min = c.digits(2)? as u32,
            b'S' => f.sec = c.digits(2)? as u32,
            b'L' | b'N' => {
                let max = match (d, width) {
                    (b'L', _) => 3,
                    (_, Some(w)) => w,
                    _ => 9,
                };
                let st = c.i;
                while c.i < c.s.len() && c.i - st < max.max(1) && c.s[c.i].is_ascii_digit() {
                    c.i += 1;
                }
                if c.i == st {
                    return None;
                }
                let digits = &c.s[st..c.i];
                // Ruby reads the digits as a fraction of a second.
                let mut v: u64 = 0;
                for k in 0..9 {
                    v = v * 10 + digits.get(k).map_or(0, |b| (b - b'0') as u64);
                }
                f.nsec = v as u32;
                // %N takes every digit that follows (only the first 9 count).
                if d == b'N' && width.is_none() {
                    while c.i < c.s.len() && c.s[c.i].is_ascii_digit() {
                        c.i += 1;
                    }
                }
            }
            b'z' | b'Z' => f.offset = Some(c.zone()?),
            b'b' | b'h' | b'B' => f.mon = Some(c.name(&MONTHS)? as u32 + 1),
            b'a' | b'A' => {
                c.name(&DAYS)?;
            }
            b's' => f.epoch = Some((c.signed(20)?, 0)),
            b'Q' => {
                let ms = c.signed(20)?;
                f.epoch = Some((ms.div_euclid(1000), (ms.rem_euclid(1000) * 1_000_000) as u32));
            }
            b'%' => {
                if c.s.get(c.i) != Some(&b'%') {
                    return None;
                }
                c.i += 1;
            }
            _ => return None,
        }
    }
    Some(c.i)
}

fn current_year() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    crate::sys::localtime(now).map_or(1970, |tm| tm.tm_year as i64 + 1900)
}

fn finish(f: Fields) -> Option<Parsed> {
    if let Some((sec, nsec)) = f.epoch {
        return Some(Parsed { sec, nsec, offset: f.offset });
    }
    let year = match (f.year, f.century) {
        (Some(y), Some(c)) if (0..100).contains(&y) => c * 100 + y,
        (Some(y), _) => y,
        (None, Some(c)) => c * 100,
        (None, None) => current_year(),
    };
    let (mon, mday) = match (f.mon, f.mday, f.yday) {
        (None, None, Some(yd)) => {
            if yd == 0 || yd > if is_leap(year) { 366 } else { 365 } {
                return None;
            }
            let mut left = yd;
            let mut m = 1;
            while left > days_in_month(year, m) {
                left -= days_in_month(year, m);
                m += 1;
            }
            (m, left)
        }
        (m, d, _) => (m.unwrap_or(1), d.unwrap_or(1)),
    };
    let hour = match (f.hour12, f.pm) {
        (Some(h), pm) if (1..=12).contains(&h) => (h % 12) + if pm == Some(true) { 12 } else { 0 },
        (Some(_), _) => return None,
        (None, Some(true)) if f.hour < 12 => f.hour + 12,
        (None, _) => f.hour,
    };
    if !(1..=12).contains(&mon) || mday == 0 || mday > days_in_month(year, mon) || hour > 24 || f.min > 59 || f.sec > 60
    {
        return None;
    }
    let civil = days_from_civil(year, mon, mday) * 86400 + hour as i64 * 3600 + f.min as i64 * 60 + f.sec as i64;
    let sec = match f.offset {
        Some(off) => civil - off,
        None => {
            // Local time: the offset in force at that moment.
            let guess = civil - crate::sys::utc_offset_at(civil);
            civil - crate::sys::utc_offset_at(guess)
        }
    };
    Some(Parsed { sec, nsec: f.nsec, offset: f.offset })
}

/// `Time.strptime(text, format)`; None where Ruby raises ArgumentError.
pub fn strptime(text: &str, fmt: &str) -> Option<Parsed> {
    let mut f = Fields::default();
    let used = run(text.as_bytes(), fmt.as_bytes(), &mut f, 0)?;
    if used != text.len() {
        return None;
    }
    finish(f)
}

/// `Time.parse(text)` for the formats listed in the module doc.
pub fn parse(text: &str) -> Option<Parsed> {
    let t = text.trim();
    const FORMATS: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S.%N%z",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M:%S.%N",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M%z",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S.%N %z",
        "%Y-%m-%d %H:%M:%S.%N%z",
        "%Y-%m-%d %H:%M:%S %z",
        "%Y-%m-%d %H:%M:%S%z",
        "%Y-%m-%d %H:%M:%S.%N",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d",
        "%Y/%m/%d %H:%M:%S.%N",
        "%Y/%m/%d %H:%M:%S %z",
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d",
        "%a, %d %b %Y %H:%M:%S %z",
        "%d %b %Y %H:%M:%S %z",
        "%d/%b/%Y:%H:%M:%S %z",
        "%a %b %e %H:%M:%S %Y",
        "%a %b %e %H:%M:%S %z %Y",
        "%b %e %H:%M:%S",
        "%b %e %Y %H:%M:%S",
    ];
    FORMATS.iter().find_map(|f| strptime(t, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str, f: &str) -> Option<(i64, u32)> {
        strptime(s, f).map(|p| (p.sec, p.nsec))
    }

    #[test]
    fn strptime_directives() {
        // 2024-01-02T03:04:05Z = 1704164645.
        assert_eq!(utc("2024-01-02T03:04:05.123456789+00:00", "%Y-%m-%dT%H:%M:%S.%N%z"), Some((1704164645, 123456789)));
        assert_eq!(utc("2024-01-02T12:04:05.5+09:00", "%Y-%m-%dT%H:%M:%S.%N%z"), Some((1704164645, 500_000_000)));
        assert_eq!(utc("02/Jan/2024:03:04:05.120 +0000", "%d/%b/%Y:%H:%M:%S.%N %z"), Some((1704164645, 120_000_000)));
        assert_eq!(utc("1704164645", "%s"), Some((1704164645, 0)));
        assert_eq!(utc("1704164645123", "%Q"), Some((1704164645, 123_000_000)));
        assert_eq!(utc("2024-01-02 03:04:05 UTC", "%F %T %Z"), Some((1704164645, 0)));
        assert_eq!(
            utc("Tuesday, 2 January 2024 03:04:05 AM +0000", "%A, %e %B %Y %I:%M:%S %p %z"),
            Some((1704164645, 0))
        );
        assert_eq!(utc("2024-002 03:04:05 +0000", "%Y-%j %T %z"), Some((1704164645, 0)));
        assert_eq!(utc("24-01-02 15:04:05 +0000", "%y-%m-%d %H:%M:%S %z"), Some((1704164645 + 12 * 3600, 0)));
        // Leftover text, bad fields and unknown directives fail.
        assert_eq!(utc("2024-01-02 x", "%Y-%m-%d"), None);
        assert_eq!(utc("2024-02-30", "%Y-%m-%d"), None);
        assert_eq!(utc("2024", "%G"), None);
        assert_eq!(utc("", "%Y"), None);
    }

    #[test]
    fn parse_common_forms() {
        for s in [
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05+00:00",
            "2024-01-02 03:04:05 +0000",
            "2024-01-02T12:04:05+09:00",
            "Tue, 02 Jan 2024 03:04:05 +0000",
            "02/Jan/2024:03:04:05 +0000",
        ] {
            assert_eq!(parse(s).map(|p| p.sec), Some(1704164645), "{s}");
        }
        assert_eq!(parse("2024-01-02T03:04:05.25Z").map(|p| p.nsec), Some(250_000_000));
        assert!(parse("2024-01-02").is_some());
        assert!(parse("not a time").is_none());
    }
}
