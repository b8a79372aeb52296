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

pub use crate::calendar::{civil_from_days, days_from_civil, days_in_month};

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
