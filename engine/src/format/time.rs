//! fluentd's time formatting for formatters and `<inject>`: Ruby's `Time#strftime`
//! directives ([`strftime`], from `crate::ruby::time`), the zone a time is written in ([`Zone`]: `localtime`,
//! `utc`, `timezone`), fluentd's TimeFormatter ([`TimeFormat`]: ISO 8601 without a
//! format) and `<inject>`'s `time_type` ([`TimeType`]).

use spate_protocol::EventTime;

use crate::config::{ConfigError, Element};
pub use crate::ruby::time::{strftime, Zone};

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
