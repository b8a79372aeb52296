//! fluentd's record accessors (`lib/fluent/plugin_helper/record_accessor.rb`): `name` (one
//! top-level key, taken as is), `$.a.b[0]` (dot notation) and `$['a']['b']` (bracket
//! notation), parsed with fluentd's exact rules and error messages, and walked over a
//! msgpack record as Ruby's `record.dig(*keys)` walks a Hash (the last duplicate key
//! wins; negative array indexes count from the end; digging with a string into an array
//! or into a scalar is Ruby's TypeError).

use spate_protocol::encode::raw;
use spate_protocol::msgpack::{self, Head, Kind};
use spate_protocol::{RecordRef, ValueRef};

use super::value::ruby_integer;

/// A record accessor that fluentd would reject, with fluentd's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid record accessor {key:?}: {reason}")]
pub struct AccessorError {
    pub key: String,
    pub reason: String,
}

/// One step of a record accessor: a map key, or an integer (an array index, or an integer
/// map key, as Ruby's `dig` treats it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(Vec<u8>),
    Index(i64),
}

/// A parsed record accessor: `name` (one key, taken as is), `$.a.b[0]` or `$['a']['b']`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accessor {
    /// Never empty.
    pub steps: Vec<Step>,
}

/// The result of `record.dig(*keys)`.
#[derive(Debug, Clone, Copy)]
pub enum Dug<'a> {
    Value(ValueRef<'a>),
    /// Missing (or an intermediate value is nil).
    Nil,
    /// Ruby would raise: digging with a string into an array, or into a scalar.
    TypeError,
}

fn accessor_err(key: &str, reason: impl Into<String>) -> AccessorError {
    AccessorError { key: key.to_string(), reason: reason.into() }
}

impl Accessor {
    /// Parses a record accessor exactly as fluentd's `Accessor.parse_parameter` does,
    /// including its error cases.
    pub fn parse(param: &str) -> Result<Accessor, AccessorError> {
        let steps = if let Some(rest) = param.strip_prefix("$.") {
            Self::parse_dot(param, rest)?
        } else if param.starts_with("$[") {
            Self::parse_bracket(param)?
        } else {
            vec![Step::Key(param.as_bytes().to_vec())]
        };
        Ok(Accessor { steps })
    }

    fn parse_dot(param: &str, rest: &str) -> Result<Vec<Step>, AccessorError> {
        let mut parts: Vec<&str> = rest.split('.').collect();
        // Ruby's String#split drops trailing empty fields.
        while parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        let mut steps = Vec::new();
        for key in parts {
            let Some(start) = key.find('[') else {
                if key.chars().any(|c| c.is_ascii_whitespace() || c == '\x0b') {
                    return Err(accessor_err(
                        param,
                        format!("whitespace character is not allowed in dot notation. Use bracket notation: {key}"),
                    ));
                }
                steps.push(Step::Key(key.as_bytes().to_vec()));
                continue;
            };
            if start > 0 {
                let k = &key[..start];
                if k.chars().any(|c| c.is_ascii_whitespace() || c == '\x0b') {
                    return Err(accessor_err(
                        param,
                        format!("whitespace character is not allowed in dot notation. Use bracket notation: {k}"),
                    ));
                }
                steps.push(Step::Key(k.as_bytes().to_vec()));
            }
            let mut k = &key[start + 1..];
            let mut in_bracket = true;
            while !k.is_empty() {
                if in_bracket {
                    let Some(i) = k.find(']') else {
                        return Err(accessor_err(param, "'[' found but ']' not found"));
                    };
                    let idx = if i == 0 { k } else { &k[..i] };
                    if idx == "]" {
                        return Err(accessor_err(param, "missing array index in '[]'"));
                    }
                    let n =
                        ruby_integer(idx).ok_or_else(|| accessor_err(param, format!("invalid array index {idx:?}")))?;
                    steps.push(Step::Index(n));
                    k = &k[i + 1..];
                    in_bracket = false;
                } else {
                    let Some(i) = k.find('[') else {
                        return Err(accessor_err(param, "found more characters after ']'"));
                    };
                    k = &k[i + 1..];
                    in_bracket = true;
                }
            }
        }
        if steps.is_empty() {
            return Err(accessor_err(param, "empty keys in dot notation"));
        }
        Ok(steps)
    }

    fn parse_bracket(param: &str) -> Result<Vec<Step>, AccessorError> {
        let mut p = &param[1..];
        let mut in_bracket = false;
        let mut steps = Vec::new();
        while !p.is_empty() {
            if in_bracket {
                let q = p.as_bytes()[0];
                if q == b'\'' || q == b'"' {
                    let Some(i) = p.find("']").or_else(|| p.find("\"]")) else {
                        return Err(accessor_err(param, "incomplete bracket"));
                    };
                    if p.as_bytes()[i] != q {
                        return Err(accessor_err(param, "mismatched quotes"));
                    }
                    // Ruby's p[1..i-1]; with i == 0 that is p[1..-1] (the rest).
                    let key = if i == 0 { &p[1..] } else { &p[1..i] };
                    steps.push(Step::Key(key.as_bytes().to_vec()));
                    p = p.get(i + 2..).unwrap_or("");
                } else {
                    let Some(i) = p.find(']') else {
                        return Err(accessor_err(param, "'[' found but ']' not found"));
                    };
                    let idx = if i == 0 { p } else { &p[..i] };
                    if idx == "]" {
                        return Err(accessor_err(param, "missing array index in '[]'"));
                    }
                    let n =
                        ruby_integer(idx).ok_or_else(|| accessor_err(param, format!("invalid array index {idx:?}")))?;
                    steps.push(Step::Index(n));
                    p = &p[i + 1..];
                }
                in_bracket = false;
            } else {
                let Some(i) = p.find('[') else {
                    return Err(accessor_err(param, "found more characters after ']'"));
                };
                p = &p[i + 1..];
                in_bracket = true;
            }
        }
        if steps.is_empty() {
            return Err(accessor_err(param, "empty keys in bracket notation"));
        }
        Ok(steps)
    }

    /// The key when this accessor is a single top-level string key.
    pub fn simple_key(&self) -> Option<&[u8]> {
        match self.steps.as_slice() {
            [Step::Key(k)] => Some(k),
            _ => None,
        }
    }

    /// `record[key]` / `record.dig(*keys)`.
    #[inline]
    pub fn dig<'a>(&self, rec: RecordRef<'a>) -> Dug<'a> {
        let Some(first) = self.steps.first() else { return Dug::Nil };
        self.dig_from(map_get(rec, first))
    }

    /// Continues [`Accessor::dig`] from the value the first step found.
    #[inline]
    pub fn dig_from<'a>(&self, first: Option<ValueRef<'a>>) -> Dug<'a> {
        let Some(mut cur) = first else { return Dug::Nil };
        for s in self.steps.iter().skip(1) {
            cur = match cur.kind() {
                Kind::Nil => return Dug::Nil,
                Kind::Map => match cur.as_map().and_then(|m| map_get(m, s)) {
                    Some(v) => v,
                    None => return Dug::Nil,
                },
                Kind::Array => match s {
                    Step::Index(i) => match array_get(cur, *i) {
                        Some(v) => v,
                        None => return Dug::Nil,
                    },
                    Step::Key(_) => return Dug::TypeError,
                },
                _ => return Dug::TypeError,
            };
        }
        Dug::Value(cur)
    }
}

/// Whether a map key equals an accessor step (string keys by bytes, integer keys by value).
#[inline]
pub fn key_is(k: ValueRef<'_>, step: &Step) -> bool {
    match step {
        Step::Key(s) => k.as_str() == Some(s.as_slice()),
        Step::Index(i) => {
            matches!(k.kind(), Kind::UInt | Kind::NegInt) && msgpack::read_int(k.as_bytes()) == Some(*i as i128)
        }
    }
}

/// `hash[step]` on a decoded map: with duplicate keys the last one wins.
#[inline]
fn map_get<'a>(m: RecordRef<'a>, step: &Step) -> Option<ValueRef<'a>> {
    match step {
        Step::Key(k) => m.get(k),
        Step::Index(_) => {
            let mut found = None;
            for (k, v) in m.fields() {
                if key_is(k, step) {
                    found = Some(v);
                }
            }
            found
        }
    }
}

/// Number of elements of an array value.
pub fn array_len(v: ValueRef<'_>) -> Option<usize> {
    match msgpack::head(v.as_bytes()) {
        Ok(Some(Head::Array { n, .. })) => Some(n as usize),
        _ => None,
    }
}

/// Ruby's array index (negative counts from the end) to a position.
pub fn ruby_index(len: usize, i: i64) -> Option<usize> {
    let idx = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&idx).then_some(idx as usize)
}

fn array_get(v: ValueRef<'_>, i: i64) -> Option<ValueRef<'_>> {
    let pos = ruby_index(array_len(v)?, i)?;
    v.as_array()?.nth(pos)
}

/// Deletes the element at `steps` (dig keys, then the key to delete) inside the container
/// `v`, appending the new encoding of `v` to `out`. Returns false when nothing is deleted
/// (then `out` holds garbage). Mirrors fluentd's `Accessor#delete_nest`: a missing path or
/// a path through a scalar deletes nothing.
pub fn delete_nest(v: ValueRef<'_>, steps: &[Step], out: &mut Vec<u8>) -> bool {
    let Some((first, rest)) = steps.split_first() else { return false };
    match msgpack::head(v.as_bytes()) {
        Ok(Some(Head::Map { n, .. })) => {
            let Some(m) = v.as_map() else { return false };
            if rest.is_empty() {
                let hits = m.fields().filter(|(k, _)| key_is(*k, first)).count() as u32;
                if hits == 0 {
                    return false;
                }
                raw::map_header(out, n - hits);
                for (k, x) in m.fields().filter(|(k, _)| !key_is(*k, first)) {
                    out.extend_from_slice(k.as_bytes());
                    out.extend_from_slice(x.as_bytes());
                }
                return true;
            }
            // `dig` follows the last duplicate.
            let Some(target) = m.fields().enumerate().filter(|(_, (k, _))| key_is(*k, first)).map(|(i, _)| i).last()
            else {
                return false;
            };
            raw::map_header(out, n);
            for (i, (k, x)) in m.fields().enumerate() {
                out.extend_from_slice(k.as_bytes());
                if i == target {
                    if !delete_nest(x, rest, out) {
                        return false;
                    }
                } else {
                    out.extend_from_slice(x.as_bytes());
                }
            }
            true
        }
        Ok(Some(Head::Array { n, .. })) => {
            let Step::Index(i) = first else { return false };
            let Some(pos) = array_len(v).and_then(|len| ruby_index(len, *i)) else { return false };
            let Some(items) = v.as_array() else { return false };
            raw::array_header(out, if rest.is_empty() { n - 1 } else { n });
            for (j, x) in items.enumerate() {
                if j != pos {
                    out.extend_from_slice(x.as_bytes());
                } else if !rest.is_empty() && !delete_nest(x, rest, out) {
                    return false;
                }
            }
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessor_parsing() {
        let p = |s: &str| Accessor::parse(s).map(|a| a.steps);
        let k = |s: &str| Step::Key(s.as_bytes().to_vec());
        assert_eq!(p("plain").unwrap(), vec![k("plain")]);
        assert_eq!(p("$plain").unwrap(), vec![k("$plain")]);
        assert_eq!(p("$.a.b").unwrap(), vec![k("a"), k("b")]);
        assert_eq!(p("$.a[0][-1]").unwrap(), vec![k("a"), Step::Index(0), Step::Index(-1)]);
        assert_eq!(p("$.a.").unwrap(), vec![k("a")]);
        assert_eq!(p("$['a b'][\"c\"][2]").unwrap(), vec![k("a b"), k("c"), Step::Index(2)]);
        assert!(p("$.").is_err());
        assert!(p("$.a b").unwrap_err().to_string().contains("whitespace"));
        assert!(p("$.a[x]").is_err());
        assert!(p("$.a[0]b").is_err());
        assert!(p("$['a\"]").unwrap_err().to_string().contains("mismatched quotes"));
        assert!(p("$['a'").is_err());
        assert!(p("$[]").is_err());
        assert_eq!(p("$.").unwrap_err().to_string(), r#"invalid record accessor "$.": empty keys in dot notation"#);
    }
}
