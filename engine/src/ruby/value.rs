//! Ruby's text of record values as fluentd produces it after msgpack decoding: `to_s`
//! (string interpolation, `${record["k"]}`, grep's match subject), `inspect` (Ruby >= 3.4
//! hash style `{"k" => 1}`), `Float#to_s`, `String#scrub`, `String#to_f` and `String#to_i`.

use spate_protocol::msgpack::{self, Kind};
use spate_protocol::{EventTime, ValueRef};

fn write_int(v: ValueRef<'_>, out: &mut Vec<u8>) {
    use std::io::Write;
    if let Some(i) = msgpack::read_int(v.as_bytes()) {
        let _ = write!(out, "{i}");
    }
}

/// Ruby's `Float#round(ndigits)` for `ndigits` 1 to 14 (float.c's `rb_float_round` with
/// `round_half_up`): half away from zero, with Ruby's correction for products that land
/// just below a half (`0.5005.round(3)` is `0.501`, where `(x * 1000).round() / 1000`
/// gives `0.5`). Values too large to have such digits come back unchanged, values too
/// small become 0.
pub fn ruby_round(x: f64, ndigits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() || !(1..=14).contains(&ndigits) {
        return x;
    }
    // frexp's exponent: x = m * 2^binexp with 0.5 <= |m| < 1.
    let binexp = if x.abs() >= f64::MIN_POSITIVE { ((x.abs().log2().floor()) as i32) + 1 } else { -1022 };
    // float_round_overflow / float_round_underflow (C division truncates toward 0).
    if ndigits >= 17 - if binexp > 0 { binexp / 4 } else { binexp / 3 - 1 } {
        return x;
    }
    if x > 0.0 && ndigits < -(if binexp > 0 { binexp / 3 + 1 } else { binexp / 4 }) {
        return 0.0;
    }
    let s = 10f64.powi(ndigits);
    let mut f = (x * s).round();
    if x > 0.0 {
        if (f + 0.5) / s <= x {
            f += 1.0;
        }
    } else if (f - 0.5) / s >= x {
        f -= 1.0;
    }
    f / s
}

/// Ruby's `Float#to_s` (shortest round-trip digits; exponent form below 1e-4 and from
/// 1e16 on: `1.0e+16`, `1.0e-05`).
pub fn write_ruby_float(f: f64, out: &mut Vec<u8>) {
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    if f.is_sign_negative() {
        out.push(b'-');
    }
    if f == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: Vec<u8> = mant.bytes().filter(|b| b.is_ascii_digit()).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let decpt = exp + 1; // value = 0.DIGITS * 10^decpt
    let nd = digits.len() as i32;
    if decpt > 0 && decpt < 16 {
        if nd <= decpt {
            out.extend_from_slice(&digits);
            out.extend(std::iter::repeat_n(b'0', (decpt - nd) as usize));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits[..decpt as usize]);
            out.push(b'.');
            out.extend_from_slice(&digits[decpt as usize..]);
        }
    } else if decpt <= 0 && decpt > -4 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-decpt) as usize));
        out.extend_from_slice(&digits);
    } else {
        out.push(digits[0]);
        out.push(b'.');
        if nd > 1 {
            out.extend_from_slice(&digits[1..]);
        } else {
            out.push(b'0');
        }
        let e = decpt - 1;
        out.extend_from_slice(format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()).as_bytes());
    }
}

fn write_ext(v: ValueRef<'_>, out: &mut Vec<u8>, inspect: bool) {
    use std::io::Write;
    if let Some(t) = EventTime::from_msgpack(v.as_bytes()) {
        if inspect {
            // Fluent::EventTime#inspect: local time with nanoseconds.
            crate::log::format_time(out, t.sec as i64, t.nsec, 9);
        } else {
            let _ = write!(out, "{}", t.sec);
        }
    } else if let Some((ty, payload)) = msgpack::read_ext(v.as_bytes()) {
        let _ = write!(out, "#<struct MessagePack::ExtensionValue type={ty}, payload=");
        inspect_str(payload, false, out);
        out.push(b'>');
    }
}

/// Ruby's `String#inspect`: `utf8` for msgpack str (UTF-8 strings; invalid bytes as
/// `\xNN`), not for bin (ASCII-8BIT: every non-ASCII byte as `\xNN`).
pub fn inspect_str(s: &[u8], utf8: bool, out: &mut Vec<u8>) {
    use std::io::Write;
    out.push(b'"');
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b >= 0x80 {
            if utf8 {
                let end = (i + 4).min(s.len());
                let n = match std::str::from_utf8(&s[i..end]) {
                    Ok(t) => t.chars().next().map_or(1, char::len_utf8),
                    Err(e) if e.valid_up_to() > 0 => std::str::from_utf8(&s[i..i + e.valid_up_to()])
                        .ok()
                        .and_then(|t| t.chars().next())
                        .map_or(1, char::len_utf8),
                    Err(_) => 0,
                };
                if n > 0 {
                    out.extend_from_slice(&s[i..i + n]);
                    i += n;
                    continue;
                }
            }
            let _ = write!(out, "\\x{b:02X}");
            i += 1;
            continue;
        }
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0b => out.extend_from_slice(b"\\v"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x1b => out.extend_from_slice(b"\\e"),
            b'#' if matches!(s.get(i + 1), Some(b'{' | b'$' | b'@')) => out.extend_from_slice(b"\\#"),
            0x00..=0x1f | 0x7f => {
                let _ = if utf8 { write!(out, "\\u{:04X}", b) } else { write!(out, "\\x{b:02X}") };
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out.push(b'"');
}

/// Ruby's `inspect` of a record value (Ruby >= 3.4 hash style: `{"k" => 1}`).
pub fn write_inspect(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v.kind() {
        Kind::Str => inspect_str(v.as_str().unwrap_or_default(), true, out),
        Kind::Bin => inspect_str(v.as_str().unwrap_or_default(), false, out),
        Kind::Nil => out.extend_from_slice(b"nil"),
        Kind::Array => {
            out.push(b'[');
            for (i, e) in v.as_array().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_inspect(e, out);
            }
            out.push(b']');
        }
        Kind::Map => {
            out.push(b'{');
            for (i, (k, e)) in v.as_map().map(|m| m.fields()).into_iter().flatten().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_inspect(k, out);
                out.extend_from_slice(b" => ");
                write_inspect(e, out);
            }
            out.push(b'}');
        }
        Kind::Ext => write_ext(v, out, true),
        _ => write_to_s(v, out),
    }
}

/// Ruby's `to_s` of a record value as fluentd sees it after msgpack decoding: strings as
/// they are, nil as "", numbers and booleans as Ruby prints them, arrays and maps as
/// `inspect`, an EventTime as its seconds.
pub fn write_to_s(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v.kind() {
        Kind::Str | Kind::Bin => out.extend_from_slice(v.as_str().unwrap_or_default()),
        Kind::Nil => {}
        Kind::Bool => out.extend_from_slice(if v.as_bool() == Some(true) { b"true" } else { b"false" }),
        Kind::UInt | Kind::NegInt => write_int(v, out),
        Kind::F32 | Kind::F64 => write_ruby_float(v.as_f64().unwrap_or(f64::NAN), out),
        Kind::Ext => write_ext(v, out, false),
        Kind::Array | Kind::Map => write_inspect(v, out),
    }
}

/// Ruby's `String#scrub('?')`: each invalid UTF-8 sequence becomes one `?`.
pub fn scrub(s: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut rest = s;
    loop {
        match std::str::from_utf8(rest) {
            Ok(_) => {
                out.extend_from_slice(rest);
                return;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.extend_from_slice(good);
                out.push(b'?');
                rest = &bad[e.error_len().unwrap_or(bad.len())..];
            }
        }
    }
}

/// Ruby's `String#to_f`: the longest numeric prefix after whitespace, `_` between digits.
pub fn ruby_str_to_f(s: &[u8]) -> f64 {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let mut buf = String::new();
    if i < s.len() && matches!(s[i], b'+' | b'-') {
        buf.push(s[i] as char);
        i += 1;
    }
    fn digits(s: &[u8], mut i: usize, buf: &mut String) -> (usize, bool) {
        let mut any = false;
        while i < s.len() {
            if s[i].is_ascii_digit() {
                buf.push(s[i] as char);
                any = true;
                i += 1;
            } else if s[i] == b'_' && any && s.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
            } else {
                break;
            }
        }
        (i, any)
    }
    let (j, int) = digits(s, i, &mut buf);
    i = j;
    let mut frac = false;
    if s.get(i) == Some(&b'.') && s.get(i + 1).is_some_and(u8::is_ascii_digit) {
        if !int {
            buf.push('0');
        }
        buf.push('.');
        let (j, f) = digits(s, i + 1, &mut buf);
        i = j;
        frac = f;
    }
    if !int && !frac {
        return 0.0;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        let mut exp = String::from("e");
        if matches!(s.get(j), Some(b'+' | b'-')) {
            exp.push(s[j] as char);
            j += 1;
        }
        let (_, any) = digits(s, j, &mut exp);
        if any {
            buf.push_str(&exp);
        }
    }
    buf.parse().unwrap_or(0.0)
}

/// Ruby's `Integer(str)`: surrounding whitespace, a sign, `0x`/`0b`/`0o`/`0` prefixes and
/// `_` between digits.
pub fn ruby_integer(s: &str) -> Option<i64> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = t.to_ascii_lowercase();
    let (radix, digits) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r.to_string())
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r.to_string())
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r.to_string())
    } else if let Some(r) = lower.strip_prefix("0d") {
        (10, r.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower)
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let v = i64::from_str_radix(&digits.replace('_', ""), radix).ok()?;
    Some(if neg { -v } else { v })
}

/// Ruby's `String#capitalize`: the first character upper case, the rest lower case
/// (Unicode case mapping for UTF-8; ASCII only for a broken string).
pub fn capitalize(s: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(s) {
        Ok(t) => {
            let mut c = t.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c.as_str().to_lowercase().chars()).collect::<String>().into_bytes(),
                None => Vec::new(),
            }
        }
        Err(_) => {
            let mut v = s.to_ascii_lowercase();
            if let Some(f) = v.first_mut() {
                f.make_ascii_uppercase();
            }
            v
        }
    }
}

/// Ruby's `String#to_i`: optional blanks and sign, then digits with single `_`s; 0 if none.
/// Saturates at the i128 range (the callers narrow it; Ruby's Integer has no bound).
pub fn ruby_to_i(s: &[u8]) -> i128 {
    let mut i = 0;
    while s.get(i).is_some_and(|b| b.is_ascii_whitespace() || *b == 0x0b) {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut v: i128 = 0;
    let mut prev_digit = false;
    while let Some(&b) = s.get(i) {
        if b.is_ascii_digit() {
            v = v.saturating_mul(10).saturating_add((b - b'0') as i128);
            prev_digit = true;
        } else if b == b'_' && prev_digit && s.get(i + 1).is_some_and(u8::is_ascii_digit) {
            prev_digit = false;
        } else {
            break;
        }
        i += 1;
    }
    if neg {
        -v
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruby_round_corrects_half_products() {
        assert_eq!(ruby_round(0.5005, 3), 0.501);
        assert_eq!(ruby_round(0.1235, 3), 0.124);
        assert_eq!(ruby_round(0.1234, 3), 0.123);
        assert_eq!(ruby_round(-0.5005, 3), -0.501);
        assert_eq!(ruby_round(2.675, 2), 2.68);
        assert_eq!(ruby_round(1e-9, 3), 0.0);
        assert_eq!(ruby_round(1.5e300, 3), 1.5e300);
    }

    #[test]
    fn ruby_float_and_inspect_text() {
        let f = |x: f64| {
            let mut o = Vec::new();
            write_ruby_float(x, &mut o);
            String::from_utf8(o).unwrap()
        };
        for (x, s) in [
            (1e15, "1.0e+15"),
            (1e16, "1.0e+16"),
            (9007199254740992.0, "9.007199254740992e+15"),
            (999999999999999.0, "999999999999999.0"),
            (123456789012345.0, "123456789012345.0"),
            (1e-4, "0.0001"),
            (1e-5, "1.0e-05"),
            (123_456_789.123_456_79, "123456789.12345679"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (2.5e-10, "2.5e-10"),
            (1e100, "1.0e+100"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(f(x), s);
        }
        let mut o = Vec::new();
        inspect_str(b"a\x01\x7f\"#{x}\x1b\\\xff", true, &mut o);
        assert_eq!(String::from_utf8_lossy(&o), r#""a\u0001\u007F\"\#{x}\e\\\xFF""#);
        let mut o = Vec::new();
        inspect_str("é".as_bytes(), false, &mut o);
        assert_eq!(String::from_utf8_lossy(&o), r#""\xC3\xA9""#);
    }

    #[test]
    fn ruby_string_to_f() {
        for (s, f) in [
            ("1_000.5", 1000.5),
            (" 12abc", 12.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e5x", 100000.0),
            ("-1.5e-3", -0.0015),
            ("_1", 0.0),
            ("1__0", 1.0),
            ("0x10", 0.0),
            ("1e", 1.0),
            ("\n3", 3.0),
            ("+.5e1", 5.0),
            ("1.e3", 1.0),
            ("Infinity", 0.0),
            ("12_3_4", 1234.0),
        ] {
            assert_eq!(ruby_str_to_f(s.as_bytes()), f, "{s:?}");
        }
        assert!(ruby_str_to_f(b"1e400").is_infinite());
    }
}
