//! Calendar arithmetic without a zone (proleptic Gregorian days, civil date-times) and
//! [`TimeError`]: the bottom of the time-parsing files (`strptime.rs`, `loose.rs` and
//! `time.rs` all use it).

/// Why a time value was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("the value does not match the time format")]
    Mismatch,
    #[error("a date or time field is out of range")]
    OutOfRange,
    #[error("no time information in the value")]
    NoTime,
    #[error("the time must be a string")]
    NotString,
    #[error("the time must be a string or a number")]
    NotStringOrNumber,
    #[error("the time is before 1970 or after 2106 (not representable as an event time)")]
    Unrepresentable,
    #[error("no format of time_format/time_format_fallbacks matches the value")]
    NoFallbackMatched,
}

/// A civil date and time (no zone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub mon: u32,
    pub mday: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Civil {
    /// Seconds since the epoch, reading the fields as UTC.
    pub fn to_epoch(&self) -> i64 {
        days_from_civil(self.year, self.mon, self.mday) * 86400
            + self.hour as i64 * 3600
            + self.min as i64 * 60
            + self.sec as i64
    }

    pub fn from_epoch(t: i64) -> Civil {
        let days = t.div_euclid(86400);
        let rem = t.rem_euclid(86400);
        let (year, mon, mday) = civil_from_days(days);
        Civil { year, mon, mday, hour: (rem / 3600) as u32, min: (rem % 3600 / 60) as u32, sec: (rem % 60) as u32 }
    }
}
