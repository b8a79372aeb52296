//! fluentd's time formatting for formatters and `<inject>`: Ruby's `Time#strftime`
//! directives ([`strftime`]), the zone a time is written in ([`Zone`]: `localtime`,
//! `utc`, `timezone`), fluentd's TimeFormatter ([`TimeFormat`]: ISO 8601 without a
//! format) and `<inject>`'s `time_type` ([`TimeType`]).

use std::io::Write;

use spate_protocol::EventTime;

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

fn err(e: &Element, m: String) -> ConfigError {
    ConfigError::at(&e.pos, m)
}

/// `localtime` / `utc` / `timezone` of a section (fluentd's TimeMixin parameters).
/// `localtime` / `utc` / `timezone` of a section (fluentd's TimeMixin parameters).
pub(crate) fn zone_of(e: &Element) -> Result<Zone, ConfigError> {
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

pub(crate) fn time_type(e: &Element) -> Result<Option<TimeType>, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const T: u32 = 1_461_587_696;

    #[test]
    fn strftime_directives() {
        let mut o = Vec::new();
        strftime(&mut o, "%a %b %e %j %I%p %3N %6N %s %% %Q", T as i64, 123_456_789, Zone::Utc);
        assert_eq!(String::from_utf8(o).unwrap(), "Mon Apr 25 116 12PM 123 123456 1461587696 % %Q");
    }

    #[test]
    fn iso8601_in_zones() {
        let off = TimeFormat { format: None, zone: Zone::Fixed(-7 * 3600) };
        let mut o = Vec::new();
        off.write(&mut o, EventTime::new(T, 0));
        assert_eq!(o, b"2016-04-25T05:34:56-07:00");
        let jst = TimeFormat { format: Some("%Y%m%d %H:%M:%S.%L %z".into()), zone: Zone::Fixed(9 * 3600) };
        let mut o = Vec::new();
        jst.write(&mut o, EventTime::new(T, 123_456_789));
        assert_eq!(o, b"20160425 21:34:56.123 +0900");
        assert_eq!(parse_fixed_zone("+09:00"), Some(9 * 3600));
        assert_eq!(parse_fixed_zone("-0730"), Some(-(7 * 3600 + 1800)));
        assert_eq!(parse_fixed_zone("Asia/Tokyo"), None);
    }
}
