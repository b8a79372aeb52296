//! Ruby's `Time` as fluentd configs see it: `Time.at(float)` (exact nanoseconds of the
//! float's rational value) and `Time#strftime` in a zone (local, UTC or a fixed offset),
//! which fluentd's time formatters, out_file paths and `${...}` expressions all use.

use std::io::Write;

/// `floor(frac * 1e9)` computed exactly for `0 <= frac < 1`, as Ruby's `Time.at(float)`
/// does with the float's exact rational value.
pub fn exact_nsec(frac: f64) -> u32 {
    if frac <= 0.0 {
        return 0;
    }
    let bits = frac.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let mant = bits & ((1u64 << 52) - 1);
    let (m, e) = if exp == 0 { (mant, -1074) } else { (mant | (1u64 << 52), exp - 1075) };
    let shift = -e;
    if shift <= 0 {
        return 0;
    }
    if shift >= 128 {
        return 0;
    }
    (((m as u128) * 1_000_000_000u128) >> shift).min(999_999_999) as u32
}

/// Which zone times are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Local,
    Utc,
    /// A fixed offset in seconds (`timezone +09:00`).
    Fixed(i64),
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
