//! Ruby's text of record values as the formatters need it (`to_s`, `inspect`, the
//! `record_accessor` paths of csv's `fields`). A copy of what filter_grep uses, kept
//! here because formatters sit below the plugins; both move to the shared `ruby`
//! module when it lands (see the rubyyaml branch).

use spate_protocol::msgpack::{self, Head, Kind};
use spate_protocol::{EventTime, RecordRef, ValueRef};

fn write_int(v: ValueRef<'_>, out: &mut Vec<u8>) {
    use std::io::Write;
    if let Some(i) = msgpack::read_int(v.as_bytes()) {
        let _ = write!(out, "{i}");
    }
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

/// One step of a record accessor: a map key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(Vec<u8>),
    Index(i64),
}

/// fluentd's record accessor (`name`, `$.a.b[0]`, `$['a']['b']`), as csv's `fields`
/// reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accessor {
    /// Never empty.
    pub steps: Vec<Step>,
}

impl Accessor {
    /// Parses a field name; `Err` says what is wrong with it.
    pub fn parse(p: &str) -> Result<Accessor, String> {
        let mut steps = Vec::new();
        if let Some(rest) = p.strip_prefix("$.") {
            for part in rest.split('.').filter(|x| !x.is_empty()) {
                let (key, mut idx) = match part.find('[') {
                    Some(i) => (&part[..i], &part[i..]),
                    None => (part, ""),
                };
                if key.contains(char::is_whitespace) {
                    return Err(format!(
                        "whitespace character is not allowed in dot notation. Use bracket notation: {key}"
                    ));
                }
                if !key.is_empty() {
                    steps.push(Step::Key(key.as_bytes().to_vec()));
                }
                while let Some(r) = idx.strip_prefix('[') {
                    let end = r.find(']').ok_or("'[' found but ']' not found")?;
                    let n =
                        r[..end].trim().parse::<i64>().map_err(|_| format!("invalid array index {:?}", &r[..end]))?;
                    steps.push(Step::Index(n));
                    idx = &r[end + 1..];
                }
                if !idx.is_empty() {
                    return Err("found more characters after ']'".into());
                }
            }
        } else if let Some(mut rest) = p.strip_prefix('$') {
            while let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or("'[' found but ']' not found")?;
                let inner = &r[..end];
                let quoted = inner.len() >= 2
                    && ((inner.starts_with('\'') && inner.ends_with('\''))
                        || (inner.starts_with('"') && inner.ends_with('"')));
                if quoted {
                    steps.push(Step::Key(inner.as_bytes()[1..inner.len() - 1].to_vec()));
                } else {
                    steps.push(Step::Index(
                        inner.trim().parse::<i64>().map_err(|_| format!("invalid array index {inner:?}"))?,
                    ));
                }
                rest = &r[end + 1..];
            }
            if !rest.is_empty() {
                return Err("found more characters after ']'".into());
            }
        } else {
            steps.push(Step::Key(p.as_bytes().to_vec()));
        }
        if steps.is_empty() {
            return Err("empty keys".into());
        }
        Ok(Accessor { steps })
    }

    /// `record.dig(*steps)`: `None` for nil, a missing key, or what Ruby would raise on.
    pub fn dig<'a>(&self, rec: RecordRef<'a>) -> Option<ValueRef<'a>> {
        let mut it = self.steps.iter();
        let mut cur = match it.next()? {
            Step::Key(k) => rec.get(k)?,
            Step::Index(_) => return None,
        };
        for s in it {
            cur = match s {
                Step::Key(k) => cur.as_map()?.get(k)?,
                Step::Index(i) => {
                    let n = match msgpack::head(cur.as_bytes()) {
                        Ok(Some(Head::Array { n, .. })) => n as i64,
                        _ => return None,
                    };
                    let i = if *i < 0 { n + i } else { *i };
                    if !(0..n).contains(&i) {
                        return None;
                    }
                    cur.as_array()?.nth(i as usize)?
                }
            };
        }
        (!cur.is_nil()).then_some(cur)
    }
}
