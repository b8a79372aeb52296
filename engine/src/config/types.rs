//! Typed parameter values, following fluentd's `lib/fluent/config/types.rb`: sizes,
//! times, booleans, integers, floats, arrays and hashes. Each function takes the raw
//! value and returns the converted value or a message saying what was expected (the
//! caller adds the parameter name and file:line:col).
//!
//! Deliberate differences (see README "Deliberate differences from fluentd"): fluentd's
//! unanchored regexes read `1.5k` as 5 KiB, `0.1s` as 1 second and `100ms` as 100
//! minutes; in spate fractions and `ms` mean what they say. Where fluentd's non-strict
//! mode would silently turn garbage into 0 (`abc`, `12x`), spate reports an error saying
//! what was expected (as fluentd's `strict_config_value` does).

use std::time::Duration;

/// `true`/`yes` and `false`/`no` (case-sensitive, as in fluentd); an empty value (a key
/// written without a value) is true. A value starting with `#` is also true: fluentd
/// reads `param #comment` as the value `#comment` and types.rb treats that as "no value".
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "yes" | "" => Ok(true),
        "false" | "no" => Ok(false),
        s if s.starts_with('#') => Ok(true),
        _ => Err("expected true, false, yes or no (lowercase)".into()),
    }
}

/// Decimal digits with single `_` separators between digits (Ruby's integer syntax).
fn digits_ok(d: &str) -> bool {
    !d.is_empty()
        && !d.starts_with('_')
        && !d.ends_with('_')
        && !d.contains("__")
        && d.bytes().all(|b| b.is_ascii_digit() || b == b'_')
}

/// A decimal integer with an optional sign and `_` separators (`1_000`).
pub fn parse_int(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if !digits_ok(body) {
        return Err("expected an integer".into());
    }
    t.replace('_', "").parse::<i64>().map_err(|_| "integer out of range".into())
}

/// A finite decimal number (`1`, `0.5`, `-1.5`, `1e3`, `.5`).
pub fn parse_float(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    // Rust also accepts "inf" and "NaN"; fluentd's Float() does not.
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') || body.contains("__") {
        return Err("expected a number".into());
    }
    match t.replace('_', "").parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(f),
        _ => Err("expected a number".into()),
    }
}

/// Splits `12kb` into ("12", "kb"); the number part may hold digits, `_` and `.`. No
/// blank may separate them: fluentd reads `5 m` as 5 (seconds or bytes).
fn split_unit(t: &str) -> (&str, &str) {
    let end = t.find(|c: char| !(c.is_ascii_digit() || c == '_' || c == '.')).unwrap_or(t.len());
    (&t[..end], &t[end..])
}

/// Bytes: a number with an optional `k`, `m`, `g` or `t` suffix (powers of 1024,
/// case-insensitive, optionally followed by `b`/`ib` as fluentd's regex allows: `10kb`).
/// A fraction is allowed with a suffix (`1.5m`) and rounded down to whole bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const HINT: &str = "expected a size such as 1024, 512k, 8m, 1g (powers of 1024)";
    let t = s.trim();
    let (num, unit) = split_unit(t);
    let unit_l = unit.to_ascii_lowercase();
    let shift = match unit_l.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(HINT.into()),
    };
    if num.contains('.') {
        if shift == 0 {
            return Err(format!("{HINT}; a number of bytes must be whole"));
        }
        let f = parse_float(num).map_err(|_| HINT.to_string())?;
        let bytes = f * (1u64 << shift) as f64;
        // u64::MAX as f64 rounds up to 2^64, so `<` keeps the cast in range.
        return if bytes < u64::MAX as f64 { Ok(bytes as u64) } else { Err("size out of range".into()) };
    }
    if !digits_ok(num) {
        return Err(HINT.into());
    }
    let n: u64 = num.replace('_', "").parse().map_err(|_| "size out of range".to_string())?;
    n.checked_mul(1u64 << shift).ok_or_else(|| "size out of range".into())
}

/// A duration: a number of seconds (`30`, `0.5`), or a number with a lowercase unit
/// `ms`, `s`, `m`, `h` or `d` (`0.1s`, `1.5h`; fluentd also reads the long forms
/// `10sec`, `5min`, `1hour`, `2days`, so spate accepts them too).
pub fn parse_time(s: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a time such as 30 (seconds), 0.5, 10s, 5m, 1h, 2d or 100ms";
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("{HINT}; it must not be negative"));
    }
    let (num, unit) = split_unit(t);
    let secs_per: f64 = match unit {
        "" => 1.0,
        "ms" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        u if matches!(u.to_ascii_lowercase().as_str(), "s" | "m" | "h" | "d" | "ms") => {
            return Err(format!(
                "{HINT}; units are lowercase (fluentd ignores {u:?} and would read {t:?} as {num} seconds)"
            ))
        }
        // `1e3`: a plain number of seconds in exponent form.
        _ => {
            let f = parse_float(t).map_err(|_| HINT.to_string())?;
            return Duration::try_from_secs_f64(f).map_err(|_| "time out of range".into());
        }
    };
    if !num.contains('.') {
        // Whole numbers stay exact.
        if !digits_ok(num) {
            return Err(HINT.into());
        }
        let n: u64 = num.replace('_', "").parse().map_err(|_| "time out of range".to_string())?;
        if unit == "ms" {
            return Ok(Duration::from_millis(n));
        }
        return n.checked_mul(secs_per as u64).map(Duration::from_secs).ok_or_else(|| "time out of range".into());
    }
    let f = parse_float(num).map_err(|_| HINT.to_string())?;
    Duration::try_from_secs_f64(f * secs_per).map_err(|_| "time out of range".into())
}

/// A JSON value as the string a parameter holds: strings as themselves, anything else as
/// compact JSON text.
fn json_to_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Ruby's `str.strip.split(/\s*,\s*/)`: trailing empty fields are dropped.
fn ruby_comma_split(s: &str) -> Vec<String> {
    let t = s.trim();
    let mut v: Vec<String> =
        if t.is_empty() { Vec::new() } else { t.split(',').map(|x| x.trim().to_string()).collect() };
    while v.last().is_some_and(String::is_empty) {
        v.pop();
    }
    v
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

/// A JSON array (`["a", 1]`), or the comma form `a, b, c`.
pub fn parse_array(s: &str) -> Result<Vec<String>, String> {
    if s.starts_with('[') {
        let v: serde_json::Value = serde_json::from_str(s).map_err(|e| format!("invalid JSON array: {e}"))?;
        return match v {
            serde_json::Value::Array(a) => Ok(a.iter().map(json_to_string).collect()),
            _ => Err(format!("array required but got {:?}", short(s))),
        };
    }
    Ok(ruby_comma_split(s))
}

/// A JSON object (`{"k": "v"}`), or the comma form `k1:v1, k2:v2` (each pair split at its
/// first `:`; nothing around the `:` is trimmed, as in fluentd). A key given twice keeps
/// its first position and its last value (a Ruby Hash).
pub fn parse_hash(s: &str) -> Result<Vec<(String, String)>, String> {
    let pairs: Vec<(String, String)> = if s.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(s).map_err(|e| format!("invalid JSON object: {e}"))?;
        match v {
            serde_json::Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), json_to_string(v))).collect(),
            _ => return Err(format!("hash required but got {:?}", short(s))),
        }
    } else {
        let mut out = Vec::new();
        for item in ruby_comma_split(s) {
            let Some((k, v)) = item.split_once(':') else {
                return Err(format!("expected key:value pairs separated by commas, got {:?}", short(&item)));
            };
            out.push((k.to_string(), v.to_string()));
        }
        out
    };
    let mut dedup: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        match dedup.iter_mut().find(|(dk, _)| *dk == k) {
            Some(slot) => slot.1 = v,
            None => dedup.push((k, v)),
        }
    }
    Ok(dedup)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn sizes_as_in_test_types_rb() {
        for (want, s) in [
            (2048, "2k"),
            (2048, "2K"),
            (3145728, "3m"),
            (3145728, "3M"),
            (4294967296, "4g"),
            (4294967296, "4G"),
            (5497558138880, "5t"),
            (5497558138880, "5T"),
            (6, "6"),
        ] {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        assert_eq!(parse_size("10kb"), Ok(10240));
        assert_eq!(parse_size("10KiB"), Ok(10240));
        assert_eq!(parse_size(" 8m "), Ok(8 << 20));
        assert_eq!(parse_size("1_000"), Ok(1000));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["hoge", "", "-5", "k", "1x", "1 2k", "0x10", "10 k"] {
            assert!(parse_size(bad).unwrap_err().starts_with("expected a size"), "{bad}");
        }
        // Fractions mean what they say (fluentd would read 1.5k as 5k).
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("0.5m"), Ok(512 << 10));
        assert_eq!(parse_size("1.1k"), Ok(1126));
        assert!(parse_size("1.5").unwrap_err().contains("whole"));
        assert!(parse_size("1.2.3k").is_err());
        assert_eq!(parse_size("99999999999999999t"), Err("size out of range".into()));
        assert_eq!(parse_size("99999999999t"), Err("size out of range".into()));
    }

    #[test]
    fn times_as_in_test_types_rb() {
        let secs = Duration::from_secs;
        for (want, s) in [(10, "10s"), (10, "10sec"), (120, "2m"), (10800, "3h"), (345600, "4d"), (60, "1m")] {
            assert_eq!(parse_time(s), Ok(secs(want)), "{s}");
        }
        assert_eq!(parse_time("0"), Ok(secs(0)));
        assert_eq!(parse_time("1"), Ok(secs(1)));
        assert_eq!(parse_time("1.01"), Ok(Duration::from_secs_f64(1.01)));
        assert_eq!(parse_time("0.4"), Ok(Duration::from_millis(400)));
        assert_eq!(parse_time("5min"), Ok(secs(300)));
        assert_eq!(parse_time("1hour"), Ok(secs(3600)));
        assert_eq!(parse_time("2days"), Ok(secs(172800)));
        assert_eq!(parse_time("30seconds"), Ok(secs(30)));
        for bad in ["hoge", "", "-1", "10x", "inf", "NaN", "5 m", "5 minutes"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        // Fractions and ms mean what they say (fluentd: 0.5s = 5s, 100ms = 100 minutes).
        assert_eq!(parse_time("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_time("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_time("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_time("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_time("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_time("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_time("ms").is_err());
        assert!(parse_time("1.2.3s").is_err());
        assert!(parse_time("1e300d").is_err());
        assert_eq!(parse_time("1e3"), Ok(Duration::from_secs(1000)));
        assert!(parse_time("1e300").is_err());
        let e = parse_time("5M").unwrap_err();
        assert!(e.contains("lowercase") && e.contains("5 seconds"), "{e}");
        assert!(parse_time("1e300").is_err());
    }

    #[test]
    fn bools_as_in_test_types_rb() {
        for (want, s) in [(true, "true"), (true, "yes"), (true, ""), (false, "false"), (false, "no")] {
            assert_eq!(parse_bool(s), Ok(want), "{s}");
        }
        // "param #comment" reaches types.rb as "#comment".
        assert_eq!(parse_bool("#comment"), Ok(true));
        for bad in ["True", "Yes", "No", "1", "hoge", "unexpected_string"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_int("999"), Ok(999));
        assert_eq!(parse_int("-10"), Ok(-10));
        assert_eq!(parse_int("+7"), Ok(7));
        assert_eq!(parse_int("1_000"), Ok(1000));
        assert_eq!(parse_int(" 5 "), Ok(5));
        assert_eq!(parse_int("010"), Ok(10));
        for bad in ["", "abc", "12abc", "0x10", "1__0", "_1", "1.5", "99999999999999999999"] {
            assert!(parse_int(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_float("55.55"), Ok(55.55));
        assert_eq!(parse_float("-1.5"), Ok(-1.5));
        assert_eq!(parse_float("1e3"), Ok(1000.0));
        assert_eq!(parse_float(".5"), Ok(0.5));
        assert_eq!(parse_float("2"), Ok(2.0));
        for bad in ["", "inf", "NaN", "-Infinity", "x1", "1e999"] {
            assert!(parse_float(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arrays_as_in_test_types_rb() {
        assert_eq!(parse_array(r#"["1","2",1]"#), Ok(strs(&["1", "2", "1"])));
        assert_eq!(parse_array("1,2,1"), Ok(strs(&["1", "2", "1"])));
        assert_eq!(parse_array(r#"["a","b","c"]"#), Ok(strs(&["a", "b", "c"])));
        assert_eq!(parse_array("a, b, c"), Ok(strs(&["a", "b", "c"])));
        assert_eq!(parse_array("a , b , c"), Ok(strs(&["a", "b", "c"])));
        assert_eq!(parse_array(r#"["a a","b,b"," c "]"#), Ok(strs(&["a a", "b,b", " c "])));
        assert_eq!(parse_array("a a,b,c"), Ok(strs(&["a a", "b", "c"])));
        assert_eq!(parse_array(r#"[{"k":1},null]"#), Ok(strs(&[r#"{"k":1}"#, "null"])));
        // Ruby's split drops trailing empty fields only.
        assert_eq!(parse_array("a,b,"), Ok(strs(&["a", "b"])));
        assert_eq!(parse_array(",a"), Ok(strs(&["", "a"])));
        assert_eq!(parse_array(""), Ok(vec![]));
        assert!(parse_array("[1,").unwrap_err().starts_with("invalid JSON array"));
    }

    #[test]
    fn hashes_as_in_test_types_rb() {
        assert_eq!(parse_hash(r#"{"x":"v","k":1}"#), Ok(pairs(&[("x", "v"), ("k", "1")])));
        assert_eq!(parse_hash("x:v,k:1"), Ok(pairs(&[("x", "v"), ("k", "1")])));
        assert_eq!(parse_hash("x:v, k:1"), Ok(pairs(&[("x", "v"), ("k", "1")])));
        assert_eq!(parse_hash(" x:v, k:1 "), Ok(pairs(&[("x", "v"), ("k", "1")])));
        assert_eq!(parse_hash("x:v , k:1 "), Ok(pairs(&[("x", "v"), ("k", "1")])));
        assert_eq!(parse_hash("x:v:v, k:1"), Ok(pairs(&[("x", "v:v"), ("k", "1")])));
        assert_eq!(parse_hash("3:Märch"), Ok(pairs(&[("3", "Märch")])));
        // No trimming around ':' (fluentd keeps the blank).
        assert_eq!(parse_hash("k1: v1"), Ok(pairs(&[("k1", " v1")])));
        // A Ruby Hash: the later value wins, the first position stays.
        assert_eq!(parse_hash("a:1,b:2,a:3"), Ok(pairs(&[("a", "3"), ("b", "2")])));
        assert_eq!(parse_hash(r#"{"a":1,"b":2,"a":3}"#), Ok(pairs(&[("a", "3"), ("b", "2")])));
        assert_eq!(parse_hash(""), Ok(vec![]));
        assert!(parse_hash("nocolon").unwrap_err().contains("key:value"));
        assert!(parse_hash("a:1,,b:2").is_err());
        assert!(parse_hash("{\"a\":").unwrap_err().starts_with("invalid JSON object"));
    }
}
