//! The methods of nil, numbers, Time, MatchData, Array and Hash (Strings are in
//! `eval.rs`), plus `Time.at`, `Integer()`/`Float()`/`String()` and `is_a?`. Arrays and
//! hashes read from the record are walked in place; indexing one does not copy it.

use std::borrow::Cow;
use std::cmp::Ordering;

use spate_protocol::msgpack::Kind;

use super::method::{MethodDef, M};
use super::string as st;
use super::value::{compare, int_arg, no_method, num, ruby_eq, ruby_eql, str_arg, type_err, MatchData, RTime, Val, R};
use super::RubyError;
use crate::ruby::accessor::ruby_index;
use crate::ruby::time::strftime;

pub(super) fn is_a(v: &Val<'_>, class: &Val<'_>) -> Result<bool, RubyError> {
    let Val::Class(c) = class else { return Err(RubyError::Type("class or module required".into())) };
    Ok(match *c {
        "Object" => true,
        "String" => matches!(v, Val::Str(_)),
        "Integer" => {
            matches!(v, Val::Int(_)) || matches!(v, Val::Raw(r) if matches!(r.kind(), Kind::UInt | Kind::NegInt))
        }
        "Float" => matches!(v, Val::Float(_)),
        "Numeric" => matches!(v, Val::Int(_) | Val::Float(_)),
        "Array" => v.is_array(),
        "Hash" => v.is_map(),
        "NilClass" => matches!(v, Val::Nil),
        "TrueClass" => matches!(v, Val::Bool(true)),
        "FalseClass" => matches!(v, Val::Bool(false)),
        "Symbol" => matches!(v, Val::Sym(_)),
        "Time" => matches!(v, Val::Time(_)),
        "Regexp" => matches!(v, Val::Regex(_)),
        "MatchData" => matches!(v, Val::Match(_)),
        _ => false,
    })
}

pub(super) fn nil_method<'a>(d: &'static MethodDef, args: &[Val<'a>]) -> R<'a> {
    let _ = args;
    Ok(match d.m {
        M::ToI => Val::Int(0),
        M::ToF => Val::Float(0.0),
        M::ToA => Val::Array(Vec::new()),
        M::ToH => Val::Hash(Vec::new()),
        _ => return Err(no_method(d, &Val::Nil)),
    })
}

fn float_to_i(f: f64) -> Result<i64, RubyError> {
    if !f.is_finite() || f.abs() >= 9.2e18 {
        return Err(RubyError::Range(format!("{f} out of Integer range")));
    }
    Ok(f.trunc() as i64)
}

/// Ruby's `Float#round(digits)`: half away from zero.
fn round_to(f: f64, digits: i64) -> f64 {
    if digits <= 0 {
        return f.round();
    }
    if digits <= 14 {
        return crate::ruby::value::ruby_round(f, digits as i32);
    }
    let s = 10f64.powi(digits.min(300) as i32);
    let r = (f * s).round() / s;
    if r.is_finite() {
        r
    } else {
        f
    }
}

pub(super) fn num_method<'a>(d: &'static MethodDef, v: Val<'a>, args: &[Val<'a>]) -> R<'a> {
    Ok(match (d.m, &v) {
        (M::ToI, Val::Int(i)) => Val::Int(*i),
        (M::ToI, Val::Float(f)) => Val::Int(float_to_i(*f)?),
        (M::ToF, Val::Int(i)) => Val::Float(*i as f64),
        (M::ToF, Val::Float(f)) => Val::Float(*f),
        (M::Round, Val::Int(i)) => match args.first() {
            Some(n) if int_arg(n)? < 0 => {
                let p = 10i64.checked_pow((-int_arg(n)?).min(18) as u32).unwrap_or(i64::MAX);
                let q = (*i as f64 / p as f64).round() as i64;
                Val::Int(q.saturating_mul(p))
            }
            _ => Val::Int(*i),
        },
        (M::Round, Val::Float(f)) => match args.first() {
            Some(n) if int_arg(n)? > 0 => Val::Float(round_to(*f, int_arg(n)?)),
            _ => Val::Int(float_to_i(f.round())?),
        },
        (M::Floor, Val::Int(i)) | (M::Ceil, Val::Int(i)) => Val::Int(*i),
        (M::Floor, Val::Float(f)) => Val::Int(float_to_i(f.floor())?),
        (M::Ceil, Val::Float(f)) => Val::Int(float_to_i(f.ceil())?),
        (M::Abs, Val::Int(i)) => Val::Int(i.checked_abs().ok_or_else(|| RubyError::Range("integer overflow".into()))?),
        (M::Abs, Val::Float(f)) => Val::Float(f.abs()),
        (M::ZeroP, Val::Int(i)) => Val::Bool(*i == 0),
        (M::ZeroP, Val::Float(f)) => Val::Bool(*f == 0.0),
        _ => return Err(no_method(d, &v)),
    })
}

/// `Time.at(a)` / `Time.at(sec, usec)`.
pub(super) fn time_at(a: &Val<'_>, usec: Option<&Val<'_>>) -> Result<RTime, RubyError> {
    let exact = |v: &Val<'_>| -> Result<i128, RubyError> {
        // Nanoseconds, exactly for integers, as Ruby's rational arithmetic for floats.
        match v {
            Val::Int(i) => Ok(*i as i128 * 1_000_000_000),
            Val::Float(f) if f.is_finite() && f.abs() < 1e17 => {
                let fl = f.floor();
                Ok(fl as i128 * 1_000_000_000 + crate::ruby::time::exact_nsec(f - fl) as i128)
            }
            Val::Time(t) => Ok(t.sec as i128 * 1_000_000_000 + t.nsec as i128),
            other => Err(RubyError::Type(format!("can't convert {} into an exact number", other.class_name()))),
        }
    };
    let mut ns = exact(a)?;
    if let Some(u) = usec {
        // The second argument is microseconds.
        ns += exact(u)? / 1_000_000;
    }
    let sec = ns.div_euclid(1_000_000_000);
    let sec = i64::try_from(sec).map_err(|_| RubyError::Range("time out of range".into()))?;
    Ok(RTime { sec, nsec: ns.rem_euclid(1_000_000_000) as u32, utc: false, event: false, offset: None })
}

pub(super) fn time_plus(t: RTime, d: f64) -> Result<RTime, RubyError> {
    let ns = t.sec as i128 * 1_000_000_000 + t.nsec as i128 + (d * 1e9).round() as i128;
    let sec = i64::try_from(ns.div_euclid(1_000_000_000)).map_err(|_| RubyError::Range("time out of range".into()))?;
    Ok(RTime { sec, nsec: ns.rem_euclid(1_000_000_000) as u32, utc: t.utc, event: false, offset: t.offset })
}

fn time_field(t: &RTime, f: &str) -> i64 {
    let mut o = Vec::new();
    strftime(&mut o, f, t.sec, t.nsec, t.zone());
    std::str::from_utf8(&o).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

pub(super) fn time_method<'a>(d: &'static MethodDef, t: RTime, args: &[Val<'a>]) -> R<'a> {
    Ok(match d.m {
        M::ToI => Val::Int(t.sec),
        M::ToF => Val::Float(t.to_f()),
        M::Usec => Val::Int((t.nsec / 1000) as i64),
        M::Nsec => Val::Int(t.nsec as i64),
        M::Utc => Val::Time(RTime { utc: true, event: false, offset: None, ..t }),
        M::Localtime => Val::Time(RTime { utc: false, event: false, offset: None, ..t }),
        M::Strftime => {
            let f = st::text(str_arg(&args[0])?)?;
            let mut o = Vec::new();
            strftime(&mut o, f, t.sec, t.nsec, t.zone());
            Val::Str(Cow::Owned(o))
        }
        M::Iso8601 => {
            let digits = match args.first() {
                Some(n) => int_arg(n)?.clamp(0, 9),
                None => 0,
            };
            let mut o = Vec::new();
            strftime(&mut o, "%Y-%m-%dT%H:%M:%S", t.sec, t.nsec, t.zone());
            if digits > 0 {
                strftime(&mut o, &format!(".%{digits}N"), t.sec, t.nsec, t.zone());
            }
            if t.utc {
                o.push(b'Z');
            } else {
                strftime(&mut o, "%:z", t.sec, t.nsec, t.zone());
            }
            Val::Str(Cow::Owned(o))
        }
        M::Year => Val::Int(time_field(&t, "%Y")),
        M::Month => Val::Int(time_field(&t, "%m")),
        M::Day => Val::Int(time_field(&t, "%d")),
        M::Hour => Val::Int(time_field(&t, "%H")),
        M::Min => Val::Int(time_field(&t, "%M")),
        M::Sec => Val::Int(time_field(&t, "%S")),
        M::Wday => Val::Int(time_field(&t, "%w")),
        M::Yday => Val::Int(time_field(&t, "%j")),
        M::Round => Val::Time(RTime { nsec: 0, sec: t.sec + i64::from(t.nsec >= 500_000_000), ..t }),
        _ => return Err(no_method(d, &Val::Time(t))),
    })
}

pub(super) fn match_method<'a>(d: &'static MethodDef, m: MatchData<'a>, args: &[Val<'a>]) -> R<'a> {
    Ok(match d.m {
        M::Aref => match &args[0] {
            Val::Str(name) => m.named(st::text(name)?).ok_or_else(|| undefined_group(name))?.unwrap_or(Val::Nil),
            Val::Sym(name) => m.named(name).ok_or_else(|| undefined_group(name.as_bytes()))?.unwrap_or(Val::Nil),
            other => {
                let i = int_arg(other)?;
                ruby_index(m.groups.len(), i).and_then(|k| m.group(k)).unwrap_or(Val::Nil)
            }
        },
        M::Captures => Val::Array((1..m.groups.len()).map(|g| m.group(g).unwrap_or(Val::Nil)).collect()),
        M::ToA => Val::Array((0..m.groups.len()).map(|g| m.group(g).unwrap_or(Val::Nil)).collect()),
        M::Length => Val::Int(m.groups.len() as i64),
        M::PreMatch | M::PostMatch => {
            let Some(Some((a, b))) = m.groups.first().copied() else { return Ok(Val::Nil) };
            let part = if d.m == M::PreMatch { &m.subject[..a] } else { &m.subject[b..] };
            Val::Str(Cow::Owned(part.to_vec()))
        }
        M::NamedCaptures => Val::Hash(
            m.names
                .iter()
                .map(|(n, _)| (Val::Str(Cow::Owned(n.clone().into_bytes())), m.named(n).flatten().unwrap_or(Val::Nil)))
                .collect(),
        ),
        _ => return Err(no_method(d, &Val::Match(Box::new(m)))),
    })
}

fn undefined_group(name: &[u8]) -> RubyError {
    RubyError::Index(format!("undefined group name reference: {}", String::from_utf8_lossy(name)))
}

/// The element at `i` of an array value (Ruby's negative indexes), without copying a
/// record array.
fn array_at<'a>(v: &Val<'a>, i: i64) -> Option<Val<'a>> {
    match v {
        Val::Array(a) => ruby_index(a.len(), i).map(|k| a[k].clone()),
        Val::Raw(r) => {
            let n = crate::ruby::accessor::array_len(*r)?;
            let k = ruby_index(n, i)?;
            r.as_array()?.nth(k).map(Val::from_ref)
        }
        _ => None,
    }
}

fn array_len(v: &Val<'_>) -> usize {
    match v {
        Val::Array(a) => a.len(),
        Val::Raw(r) => crate::ruby::accessor::array_len(*r).unwrap_or(0),
        _ => 0,
    }
}

fn sorted<'a>(mut v: Vec<Val<'a>>) -> Result<Vec<Val<'a>>, RubyError> {
    let mut err = None;
    v.sort_by(|a, b| {
        compare(a, b).unwrap_or_else(|e| {
            err.get_or_insert(e);
            Ordering::Equal
        })
    });
    match err {
        Some(e) => Err(e),
        None => Ok(v),
    }
}

fn join_into(v: &Val<'_>, sep: &[u8], out: &mut Vec<u8>, depth: usize) -> Result<(), RubyError> {
    if depth > super::MAX_DEPTH {
        return Err(RubyError::Argument("recursive array join".into()));
    }
    for (i, e) in v.elements().unwrap_or_default().iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(sep);
        }
        if e.is_array() {
            join_into(e, sep, out, depth + 1)?;
        } else {
            e.write_to_s(out);
        }
        if out.len() > super::MAX_STRING {
            return Err(RubyError::Argument("string too long".into()));
        }
    }
    Ok(())
}

fn flatten_into<'a>(v: Vec<Val<'a>>, out: &mut Vec<Val<'a>>, depth: usize) {
    for e in v {
        match e.elements() {
            Some(inner) if depth < super::MAX_DEPTH => flatten_into(inner, out, depth + 1),
            _ => out.push(e),
        }
    }
}

pub(super) fn array_method<'a>(d: &'static MethodDef, v: Val<'a>, args: &[Val<'a>]) -> R<'a> {
    let n = array_len(&v) as i64;
    let elems = || v.elements().unwrap_or_default();
    Ok(match d.m {
        M::Aref => match args {
            [Val::Range(a, b, excl)] => match st::range_bounds(n, *a, *b, *excl) {
                Some((s, l)) => Val::Array(elems().into_iter().skip(s as usize).take(l as usize).collect()),
                None => Val::Nil,
            },
            [i] => array_at(&v, int_arg(i)?).unwrap_or(Val::Nil),
            [a, b] => {
                let (s, l) = (int_arg(a)?, int_arg(b)?);
                let s = if s < 0 { s + n } else { s };
                if s < 0 || s > n || l < 0 {
                    Val::Nil
                } else {
                    Val::Array(elems().into_iter().skip(s as usize).take(l as usize).collect())
                }
            }
            _ => Val::Nil,
        },
        M::First | M::Last => match args.first() {
            None => array_at(&v, if d.m == M::First { 0 } else { -1 }).unwrap_or(Val::Nil),
            Some(k) => {
                let k = int_arg(k)?;
                if k < 0 {
                    return Err(RubyError::Argument("negative array size".into()));
                }
                let e = elems();
                let k = (k as usize).min(e.len());
                Val::Array(if d.m == M::First { e[..k].to_vec() } else { e[e.len() - k..].to_vec() })
            }
        },
        M::Length => Val::Int(n),
        M::Count => match args.first() {
            None => Val::Int(n),
            Some(x) => Val::Int(elems().iter().filter(|e| ruby_eq(e, x)).count() as i64),
        },
        M::EmptyP => Val::Bool(n == 0),
        M::Include => Val::Bool(elems().iter().any(|e| ruby_eq(e, &args[0]))),
        M::Index => elems().iter().position(|e| ruby_eq(e, &args[0])).map_or(Val::Nil, |i| Val::Int(i as i64)),
        M::Join => {
            let sep: &[u8] = match args.first() {
                None | Some(Val::Nil) => b"",
                Some(s) => str_arg(s)?,
            };
            let mut out = Vec::new();
            join_into(&v, sep, &mut out, 0)?;
            Val::Str(Cow::Owned(out))
        }
        M::Compact => Val::Array(elems().into_iter().filter(|e| !matches!(e, Val::Nil)).collect()),
        M::Uniq => {
            let mut out: Vec<Val<'a>> = Vec::new();
            for e in elems() {
                if !out.iter().any(|o| ruby_eql(o, &e)) {
                    out.push(e);
                }
            }
            Val::Array(out)
        }
        M::Reverse => Val::Array(elems().into_iter().rev().collect()),
        M::Sort => Val::Array(sorted(elems())?),
        M::Min | M::Max => {
            let s = sorted(elems())?;
            (if d.m == M::Min { s.first() } else { s.last() }).cloned().unwrap_or(Val::Nil)
        }
        M::Sum => {
            let mut acc = Val::Int(0);
            for e in elems() {
                if !matches!(e, Val::Int(_) | Val::Float(_)) {
                    return Err(RubyError::Type(format!("{} can't be coerced into Integer", e.class_name())));
                }
                acc = match (acc, e) {
                    (Val::Int(x), Val::Int(y)) => Val::Int(
                        x.checked_add(y)
                            .ok_or_else(|| RubyError::Range("integer overflow (Ruby would make a Bignum)".into()))?,
                    ),
                    (x, y) => Val::Float(num(&x).unwrap_or(0.0) + num(&y).unwrap_or(0.0)),
                };
            }
            acc
        }
        M::Flatten => {
            let mut out = Vec::new();
            flatten_into(elems(), &mut out, 0);
            Val::Array(out)
        }
        M::Dig => dig(v, args)?,
        M::ToA => v,
        M::ToH => {
            let mut h: Vec<(Val<'a>, Val<'a>)> = Vec::new();
            for e in elems() {
                match e.elements().as_deref() {
                    Some([k, x]) => h.push((k.clone(), x.clone())),
                    _ => return Err(RubyError::Type("wrong element type (expected array of [key, value])".into())),
                }
            }
            Val::Hash(h)
        }
        _ => return Err(no_method(d, &v)),
    })
}

/// `hash[key]`: string keys of a record map found in place.
pub(super) fn hash_get<'a>(h: &Val<'a>, key: &Val<'_>) -> Option<Val<'a>> {
    match (h, key) {
        (Val::Raw(r), Val::Str(k)) => r.as_map()?.get(k).map(Val::from_ref),
        (Val::Raw(r), k) => {
            let mut found = None;
            for (mk, mv) in r.as_map()?.fields() {
                if ruby_eql(&Val::from_ref(mk), k) {
                    found = Some(Val::from_ref(mv));
                }
            }
            found
        }
        (Val::Hash(p), k) => p.iter().find(|(mk, _)| ruby_eql(mk, k)).map(|(_, v)| v.clone()),
        _ => None,
    }
}

/// `dig(*keys)`: through hashes by key and arrays by integer index; nil stops it; Ruby
/// raises for anything else.
fn dig<'a>(mut cur: Val<'a>, keys: &[Val<'a>]) -> R<'a> {
    for k in keys {
        cur = if cur.is_map() {
            hash_get(&cur, k).unwrap_or(Val::Nil)
        } else if cur.is_array() {
            array_at(&cur, int_arg(k)?).unwrap_or(Val::Nil)
        } else if matches!(cur, Val::Nil) {
            return Ok(Val::Nil);
        } else {
            return Err(RubyError::Type(format!("{} does not have #dig method", cur.class_name())));
        };
        if matches!(cur, Val::Nil) {
            return Ok(Val::Nil);
        }
    }
    Ok(cur)
}

pub(super) fn hash_method<'a>(d: &'static MethodDef, v: Val<'a>, args: &[Val<'a>]) -> R<'a> {
    let count = || match &v {
        Val::Hash(h) => h.len(),
        Val::Raw(r) => r.as_map().map_or(0, |m| m.len()),
        _ => 0,
    };
    Ok(match d.m {
        M::Aref => hash_get(&v, &args[0]).unwrap_or(Val::Nil),
        M::Dig => dig(v, args)?,
        M::Fetch => match (hash_get(&v, &args[0]), args.get(1)) {
            (Some(x), _) => x,
            (None, Some(dflt)) => dflt.clone(),
            (None, None) => {
                let mut k = Vec::new();
                args[0].write_inspect(&mut k);
                return Err(RubyError::Key(String::from_utf8_lossy(&k).into_owned()));
            }
        },
        M::KeyP | M::Include => Val::Bool(hash_get(&v, &args[0]).is_some()),
        M::Keys => Val::Array(v.pairs().unwrap_or_default().into_iter().map(|(k, _)| k).collect()),
        M::Values => Val::Array(v.pairs().unwrap_or_default().into_iter().map(|(_, x)| x).collect()),
        M::Length | M::Count if args.is_empty() => Val::Int(count() as i64),
        M::EmptyP => Val::Bool(count() == 0),
        M::Merge => {
            if !args[0].is_map() {
                return Err(type_err(&args[0], "Hash"));
            }
            let mut h = v.pairs().unwrap_or_default();
            for (k, x) in args[0].pairs().unwrap_or_default() {
                match h.iter_mut().find(|(o, _)| ruby_eql(o, &k)) {
                    Some(slot) => slot.1 = x,
                    None => h.push((k, x)),
                }
            }
            Val::Hash(h)
        }
        M::ToH => v,
        M::ToA => Val::Array(v.pairs().unwrap_or_default().into_iter().map(|(k, x)| Val::Array(vec![k, x])).collect()),
        M::First if args.is_empty() => {
            v.pairs().unwrap_or_default().into_iter().next().map_or(Val::Nil, |(k, x)| Val::Array(vec![k, x]))
        }
        _ => return Err(no_method(d, &v)),
    })
}

/// `Integer(x)`, `Float(x)`, `String(x)`: strict conversions.
pub(super) fn kernel<'a>(k: &str, v: Val<'a>) -> R<'a> {
    let invalid = |what: &str, v: &Val<'_>| {
        let mut s = Vec::new();
        v.write_inspect(&mut s);
        RubyError::Argument(format!("invalid value for {what}(): {}", String::from_utf8_lossy(&s)))
    };
    Ok(match (k, &v) {
        ("String", _) => {
            let mut o = Vec::new();
            v.write_to_s(&mut o);
            Val::Str(Cow::Owned(o))
        }
        (_, Val::Nil) => return Err(RubyError::Type(format!("can't convert nil into {k}"))),
        ("Integer", Val::Int(i)) => Val::Int(*i),
        ("Integer", Val::Float(f)) => Val::Int(float_to_i(*f)?),
        ("Integer", Val::Str(s)) => {
            let t = std::str::from_utf8(s).map_err(|_| invalid("Integer", &v))?;
            Val::Int(crate::ruby::value::ruby_integer(t).ok_or_else(|| invalid("Integer", &v))?)
        }
        ("Float", Val::Int(i)) => Val::Float(*i as f64),
        ("Float", Val::Float(f)) => Val::Float(*f),
        ("Float", Val::Str(s)) => {
            let t = std::str::from_utf8(s).map_err(|_| invalid("Float", &v))?.trim();
            let ok = !t.is_empty()
                && !t.starts_with('_')
                && !t.ends_with('_')
                && !t.contains("__")
                && t.bytes().all(|b| b.is_ascii_digit() || b"+-._eE".contains(&b))
                && t.bytes().any(|b| b.is_ascii_digit());
            let f: f64 = if ok {
                t.replace('_', "").parse().map_err(|_| invalid("Float", &v))?
            } else {
                return Err(invalid("Float", &v));
            };
            Val::Float(f)
        }
        (_, other) => return Err(RubyError::Type(format!("can't convert {} into {k}", other.class_name()))),
    })
}
