//! Evaluation: nodes to [`Val`]s against one event's `Scope` (in `env.rs`), Ruby's operators, and
//! the dispatch of method calls by receiver type (strings here, the other types in
//! `types.rs`; equality and ordering in `value.rs`). Recursion follows the AST, whose depth the parser
//! bounds.

use std::borrow::Cow;
use std::cmp::Ordering;

use spate_protocol::ValueRef;

use super::blocks::{block, match_assign};
use super::env::{Env, Scope};
use super::method::{MethodDef, M};
use super::node::{Call, Node, Op};
use super::string::{self as st, pat_arg, Pat};
use super::value::{compare, int_arg, no_method, num, ruby_eq, ruby_eql, str_arg, type_err, RTime, Val, R};
use super::{types, Local, Re, RubyError, MAX_STRING};
use crate::ruby::accessor::ruby_index;

/// `tag_prefix[i]` / `tag_suffix[i]` as fluentd builds them (joined with `.`).
fn tag_join<'a>(parts: &[&[u8]], prefix: bool, i: usize) -> Val<'a> {
    let sel = if prefix { &parts[..=i] } else { &parts[i..] };
    Val::Str(Cow::Owned(sel.join(&b'.')))
}

fn local<'a>(l: Local, s: &Scope<'a>) -> Val<'a> {
    match l {
        Local::Record => ValueRef::new(s.record.as_bytes()).map_or(Val::Nil, Val::Raw),
        Local::Tag => Val::Str(Cow::Borrowed(s.tag)),
        Local::Time => Val::Time(RTime::from_event(s.time)),
        Local::EventTime => Val::Time(RTime { event: true, ..RTime::from_event(s.time) }),
        Local::TagParts => Val::Array(s.tag_parts.iter().map(|p| Val::Str(Cow::Borrowed(*p))).collect()),
        Local::TagPrefix | Local::TagSuffix => {
            let pre = l == Local::TagPrefix;
            Val::Array((0..s.tag_parts.len()).map(|i| tag_join(s.tag_parts, pre, i)).collect())
        }
        // Folded to a string, or read as another local, at compile time: never a node.
        Local::Hostname | Local::Tags | Local::RecordFields => Val::Nil,
    }
}

/// Arguments evaluated without a heap allocation for up to two of them.
enum Args<'a> {
    Small([Val<'a>; 2], usize),
    Heap(Vec<Val<'a>>),
}

impl<'a> Args<'a> {
    fn eval(nodes: &'a [Node], s: &Env<'_, 'a>) -> Result<Args<'a>, RubyError> {
        if nodes.len() <= 2 {
            let mut a = [Val::Nil, Val::Nil];
            for (slot, n) in a.iter_mut().zip(nodes) {
                *slot = eval(n, s)?;
            }
            return Ok(Args::Small(a, nodes.len()));
        }
        Ok(Args::Heap(nodes.iter().map(|n| eval(n, s)).collect::<Result<_, _>>()?))
    }

    fn as_slice(&self) -> &[Val<'a>] {
        match self {
            Args::Small(a, n) => &a[..*n],
            Args::Heap(v) => v,
        }
    }
}

pub(super) fn eval<'a>(n: &'a Node, s: &Env<'_, 'a>) -> R<'a> {
    Ok(match n {
        Node::Nil => Val::Nil,
        Node::Bool(b) => Val::Bool(*b),
        Node::Int(i) => Val::Int(*i),
        Node::Float(f) => Val::Float(*f),
        Node::Str(b) => Val::Str(Cow::Borrowed(b)),
        Node::Sym(x) => Val::Sym(Cow::Borrowed(x)),
        Node::Regex(r) => Val::Regex(r),
        Node::Class(c) => Val::Class(c),
        Node::Interp(parts) => {
            let mut out = Vec::new();
            for p in parts {
                eval(p, s)?.write_to_s(&mut out);
                if out.len() > MAX_STRING {
                    return Err(RubyError::Argument(format!("string longer than {MAX_STRING} bytes")));
                }
            }
            Val::Str(Cow::Owned(out))
        }
        Node::Array(items) => Val::Array(items.iter().map(|x| eval(x, s)).collect::<Result<_, _>>()?),
        Node::Hash(pairs) => {
            let mut h: Vec<(Val<'a>, Val<'a>)> = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                let k = eval(k, s)?;
                let v = eval(v, s)?;
                match h.iter_mut().find(|(o, _)| ruby_eql(o, &k)) {
                    Some(slot) => slot.1 = v,
                    None => h.push((k, v)),
                }
            }
            Val::Hash(h)
        }
        Node::Local(l) => local(*l, s),
        Node::Field(k) => match s.record.get(k) {
            Some(v) => Val::from_ref(v),
            None => return Err(RubyError::Name(String::from_utf8_lossy(k).into_owned())),
        },
        Node::Var(i) => s.get(*i),
        Node::Assign(i, v) => {
            let x = eval(v, s)?;
            s.set(*i, x.clone());
            x
        }
        Node::MatchAssign(m) => match_assign(m, eval(&m.re, s)?, eval(&m.subject, s)?, s)?,
        Node::Block(b) => block(b, eval(&b.recv, s)?, s, || eval(&b.body, s))?,
        Node::TimeParse(x) => {
            let v = eval(x, s)?;
            let t = st::text(str_arg(&v)?)?;
            let p = crate::ruby::strptime::parse(t)
                .ok_or_else(|| RubyError::Argument(format!("no time information in {:?}", t)))?;
            Val::Time(RTime { sec: p.sec, nsec: p.nsec, utc: false, event: false, offset: p.offset })
        }
        Node::TimeStrptime(x, f) => {
            let (v, fv) = (eval(x, s)?, eval(f, s)?);
            let (t, fmt) = (st::text(str_arg(&v)?)?, st::text(str_arg(&fv)?)?);
            let p = crate::ruby::strptime::strptime(t, fmt)
                .ok_or_else(|| RubyError::Argument(format!("invalid date or strptime format - `{t}' `{fmt}'")))?;
            Val::Time(RTime { sec: p.sec, nsec: p.nsec, utc: false, event: false, offset: p.offset })
        }
        Node::Call(c) => call(c, s)?,
        Node::Not(x) => Val::Bool(!eval(x, s)?.truthy()),
        Node::And(v) => {
            let mut last = Val::Nil;
            for x in v {
                last = eval(x, s)?;
                if !last.truthy() {
                    break;
                }
            }
            last
        }
        Node::Or(v) => {
            let mut last = Val::Nil;
            for x in v {
                last = eval(x, s)?;
                if last.truthy() {
                    break;
                }
            }
            last
        }
        Node::Chain(first, rest) => {
            let mut acc = eval(first, s)?;
            for (op, x) in rest {
                let y = eval(x, s)?;
                acc = binop(*op, acc, y)?;
            }
            acc
        }
        Node::Neg(x) => match eval(x, s)? {
            Val::Int(i) => Val::Int(i.checked_neg().ok_or_else(overflow)?),
            Val::Float(f) => Val::Float(-f),
            other => return Err(RubyError::NoMethod { method: "-@", recv: other.class() }),
        },
        Node::If(c, a, b) => {
            if eval(c, s)?.truthy() {
                eval(a, s)?
            } else {
                match b {
                    Some(b) => eval(b, s)?,
                    None => Val::Nil,
                }
            }
        }
        Node::Seq(v) => {
            let mut last = Val::Nil;
            for x in v {
                last = eval(x, s)?;
            }
            last
        }
        Node::Rescue(a, b) => match eval(a, s) {
            Ok(v) => v,
            Err(_) => eval(b, s)?,
        },
        Node::Range(a, b, excl) => {
            let a = int_arg(&eval(a, s)?)?;
            let b = match b {
                Some(b) => Some(int_arg(&eval(b, s)?)?),
                None => None,
            };
            Val::Range(a, b, *excl)
        }
        Node::TimeNow => Val::Time(RTime::now()),
        Node::TimeAt(args) => {
            let a = eval(&args[0], s)?;
            let b = match args.get(1) {
                Some(x) => Some(eval(x, s)?),
                None => None,
            };
            Val::Time(types::time_at(&a, b.as_ref())?)
        }
        Node::Cgi(escape, x) => {
            let v = eval(x, s)?;
            let b = str_arg(&v)?;
            st::owned(if *escape { st::cgi_escape(b) } else { st::cgi_unescape(b) })?
        }
        Node::Kernel(k, x) => types::kernel(k, eval(x, s)?)?,
        Node::Json(x) => {
            let mut out = Vec::new();
            eval(x, s)?.write_json(&mut out);
            Val::Str(Cow::Owned(out))
        }
    })
}

fn overflow() -> RubyError {
    RubyError::Range("integer overflow (Ruby would make a Bignum)".into())
}

fn call<'a>(c: &'a Call, s: &Env<'_, 'a>) -> R<'a> {
    // `tag_parts[N]` and friends without building the array.
    if let (Node::Local(l @ (Local::TagParts | Local::TagPrefix | Local::TagSuffix)), M::Aref, [Node::Int(i)]) =
        (&c.recv, c.m.m, c.args.as_slice())
    {
        let parts = s.tag_parts;
        return Ok(match ruby_index(parts.len(), *i) {
            None => Val::Nil,
            Some(k) if *l == Local::TagParts => Val::Str(Cow::Borrowed(parts[k])),
            Some(k) => tag_join(parts, *l == Local::TagPrefix, k),
        });
    }
    let recv = eval(&c.recv, s)?;
    if c.safe && matches!(recv, Val::Nil) {
        return Ok(Val::Nil);
    }
    let args = Args::eval(&c.args, s)?;
    method(c.m, recv, args.as_slice())
}

/// Calls `d` on `recv`.
pub(super) fn method<'a>(d: &'static MethodDef, recv: Val<'a>, args: &[Val<'a>]) -> R<'a> {
    match d.m {
        M::ToS => {
            return Ok(match recv {
                Val::Str(x) => Val::Str(x),
                other => {
                    let mut o = Vec::new();
                    other.write_to_s(&mut o);
                    Val::Str(Cow::Owned(o))
                }
            })
        }
        M::Inspect => {
            let mut o = Vec::new();
            recv.write_inspect(&mut o);
            return Ok(Val::Str(Cow::Owned(o)));
        }
        M::ToJson => {
            let mut o = Vec::new();
            recv.write_json(&mut o);
            return Ok(Val::Str(Cow::Owned(o)));
        }
        M::NilP => return Ok(Val::Bool(matches!(recv, Val::Nil))),
        M::Itself => return Ok(recv),
        M::IsA => return Ok(Val::Bool(types::is_a(&recv, &args[0])?)),
        _ => {}
    }
    match recv {
        Val::Str(x) => string_method(d, x, args),
        Val::Nil => types::nil_method(d, args),
        Val::Int(_) | Val::Float(_) => types::num_method(d, recv, args),
        Val::Time(t) => types::time_method(d, t, args),
        Val::Match(m) => types::match_method(d, *m, args),
        Val::Regex(r) => match (d.m, args) {
            (M::Match | M::MatchP, [Val::Str(x)]) => {
                let m = st::match_at(r, x, 0)?;
                Ok(match (d.m, m) {
                    (M::MatchP, m) => Val::Bool(m.is_some()),
                    (_, Some(m)) => Val::Match(Box::new(m)),
                    (_, None) => Val::Nil,
                })
            }
            (M::Match | M::MatchP, [Val::Nil]) => Ok(if d.m == M::MatchP { Val::Bool(false) } else { Val::Nil }),
            _ => Err(no_method(d, &Val::Regex(r))),
        },
        Val::Sym(x) => match d.m {
            M::ToSym => Ok(Val::Sym(x)),
            M::Length => Ok(Val::Int(x.chars().count() as i64)),
            M::EmptyP => Ok(Val::Bool(x.is_empty())),
            _ => Err(no_method(d, &Val::Sym(x))),
        },
        v if v.is_array() => types::array_method(d, v, args),
        v if v.is_map() => types::hash_method(d, v, args),
        other => Err(no_method(d, &other)),
    }
}

fn cow_str<'a>(x: Cow<'a, [u8]>) -> Result<Cow<'a, str>, RubyError> {
    match x {
        Cow::Borrowed(b) => std::str::from_utf8(b).map(Cow::Borrowed),
        Cow::Owned(v) => String::from_utf8(v).map(Cow::Owned).map_err(|e| e.utf8_error()),
    }
    .map_err(|_| RubyError::Argument("invalid byte sequence in UTF-8".into()))
}

/// A string from `pat`: a regexp compiled at run time (`"x".match("a.c")`).
fn runtime_re(p: &[u8]) -> Result<Re, RubyError> {
    let src = st::text(p)?.to_string();
    let re = crate::ruby::regex::RubyRegex::new(&src, false, false).map_err(RubyError::Argument)?;
    Ok(Re { re, src, flags: String::new() })
}

fn string_method<'a>(d: &'static MethodDef, x: Cow<'a, [u8]>, args: &[Val<'a>]) -> R<'a> {
    let ascii_lower = x.iter().all(|b| b.is_ascii() && !b.is_ascii_uppercase());
    let ascii_upper = x.iter().all(|b| b.is_ascii() && !b.is_ascii_lowercase());
    Ok(match d.m {
        M::ToI => Val::Int(st::str_to_i(&x).ok_or_else(overflow)?),
        M::ToF => Val::Float(crate::ruby::value::ruby_str_to_f(&x)),
        M::ToSym => Val::Sym(cow_str(x)?),
        M::Length => Val::Int(st::char_len(&x) as i64),
        M::EmptyP => Val::Bool(x.is_empty()),
        M::Downcase if ascii_lower => Val::Str(x),
        M::Upcase if ascii_upper => Val::Str(x),
        M::Downcase => st::owned(st::downcase(&x))?,
        M::Upcase => st::owned(st::upcase(&x))?,
        M::Capitalize => st::owned(st::capitalize(&x))?,
        M::Swapcase => st::owned(st::swapcase(&x))?,
        M::Strip | M::Lstrip | M::Rstrip => {
            let (a, b) = st::strip(&x, d.m != M::Rstrip, d.m != M::Lstrip);
            st::slice_bytes(&x, a, b)
        }
        M::Chomp => match args.first() {
            None => {
                let n = st::chomp(&x);
                st::slice_bytes(&x, 0, n)
            }
            Some(a) => {
                let suf = str_arg(a)?;
                let mut n = x.len();
                if suf.is_empty() {
                    while x[..n].ends_with(b"\n") {
                        n -= if x[..n].ends_with(b"\r\n") { 2 } else { 1 };
                    }
                } else if x.ends_with(suf) {
                    n -= suf.len();
                }
                st::slice_bytes(&x, 0, n)
            }
        },
        M::Chop => {
            let n = x.len() - st::last_char_len(&x);
            st::slice_bytes(&x, 0, n)
        }
        M::Gsub | M::Sub => {
            let repl = match &args[1] {
                Val::Str(r) => r,
                Val::Hash(_) | Val::Raw(_) => {
                    return Err(RubyError::Type("gsub/sub with a Hash replacement is not supported".into()))
                }
                other => return Err(type_err(other, "String")),
            };
            st::gsub(&x, pat_arg(&args[0])?, repl, d.m == M::Gsub)?
        }
        M::Split => {
            let pat = match args.first() {
                None | Some(Val::Nil) => None,
                Some(p) => Some(pat_arg(p)?),
            };
            let lim = match args.get(1) {
                Some(l) => int_arg(l)?,
                None => 0,
            };
            Val::Array(st::split(&x, pat, lim)?)
        }
        M::StartWith => {
            let mut hit = false;
            for a in args {
                hit |= match a {
                    Val::Regex(r) => {
                        st::match_at(r, &x, 0)?.is_some_and(|m| matches!(m.groups.first(), Some(Some((0, _)))))
                    }
                    other => x.starts_with(str_arg(other)?),
                };
            }
            Val::Bool(hit)
        }
        M::EndWith => {
            let mut hit = false;
            for a in args {
                hit |= x.ends_with(str_arg(a)?);
            }
            Val::Bool(hit)
        }
        M::Include => {
            let n = str_arg(&args[0])?;
            Val::Bool(n.is_empty() || x.windows(n.len()).any(|w| w == n))
        }
        M::Match | M::MatchP => {
            let m = match &args[0] {
                Val::Regex(r) => st::match_at(r, &x, 0)?,
                Val::Str(p) => st::match_at(&runtime_re(p)?, &x, 0)?,
                other => {
                    return Err(RubyError::Type(format!(
                        "wrong argument type {} (expected Regexp)",
                        other.class_name()
                    )))
                }
            };
            match (d.m, m) {
                (M::MatchP, m) => Val::Bool(m.is_some()),
                (_, Some(m)) => Val::Match(Box::new(m)),
                (_, None) => Val::Nil,
            }
        }
        M::Scan => Val::Array(st::scan(&x, pat_arg(&args[0])?)?),
        M::Index => {
            let at = match pat_arg(&args[0])? {
                Pat::Lit(n) => {
                    if n.is_empty() {
                        Some(0)
                    } else {
                        x.windows(n.len()).position(|w| w == n)
                    }
                }
                Pat::Re(r) => st::match_at(r, &x, 0)?.and_then(|m| m.groups.first().copied().flatten()).map(|g| g.0),
            };
            at.map_or(Val::Nil, |b| Val::Int(st::char_index(&x, b) as i64))
        }
        M::Scrub => {
            if std::str::from_utf8(&x).is_ok() {
                Val::Str(x)
            } else {
                let repl: &[u8] = match args.first() {
                    Some(a) => str_arg(a)?,
                    None => "\u{fffd}".as_bytes(),
                };
                let mut out = Vec::with_capacity(x.len());
                let mut rest: &[u8] = &x;
                loop {
                    match std::str::from_utf8(rest) {
                        Ok(_) => {
                            out.extend_from_slice(rest);
                            break;
                        }
                        Err(e) => {
                            let (good, bad) = rest.split_at(e.valid_up_to());
                            out.extend_from_slice(good);
                            out.extend_from_slice(repl);
                            rest = &bad[e.error_len().unwrap_or(bad.len())..];
                        }
                    }
                }
                st::owned(out)?
            }
        }
        M::Reverse => match std::str::from_utf8(&x) {
            Ok(t) => st::owned(t.chars().rev().collect::<String>().into_bytes())?,
            Err(_) => st::owned(x.iter().rev().copied().collect())?,
        },
        M::Tr => st::owned(st::tr(&x, str_arg(&args[0])?, str_arg(&args[1])?)?)?,
        M::Delete => st::owned(st::tr(&x, str_arg(&args[0])?, b"")?)?,
        M::Squeeze => {
            let set: Option<Vec<char>> = match args.first() {
                Some(a) => Some(st::text(str_arg(a)?)?.chars().collect()),
                None => None,
            };
            let t = st::text(&x)?;
            let mut out = String::with_capacity(t.len());
            let mut prev: Option<char> = None;
            for c in t.chars() {
                if prev == Some(c) && set.as_ref().is_none_or(|s| s.contains(&c)) {
                    continue;
                }
                out.push(c);
                prev = Some(c);
            }
            st::owned(out.into_bytes())?
        }
        M::Aref => string_aref(x, args)?,
        _ => return Err(no_method(d, &Val::Str(x))),
    })
}

fn string_aref<'a>(x: Cow<'a, [u8]>, args: &[Val<'a>]) -> R<'a> {
    Ok(match args {
        [Val::Range(a, b, excl)] => {
            let n = st::char_len(&x) as i64;
            match st::range_bounds(n, *a, *b, *excl) {
                Some((start, len)) => st::substr(&x, start, len),
                None => Val::Nil,
            }
        }
        [Val::Str(sub)] => {
            if sub.is_empty() || x.windows(sub.len()).any(|w| w == &sub[..]) {
                Val::Str(sub.clone())
            } else {
                Val::Nil
            }
        }
        [Val::Regex(r)] => st::match_at(r, &x, 0)?.and_then(|m| m.group(0)).unwrap_or(Val::Nil),
        [Val::Regex(r), g] => match st::match_at(r, &x, 0)? {
            None => Val::Nil,
            Some(m) => match g {
                Val::Str(name) => m.named(st::text(name)?).flatten().unwrap_or(Val::Nil),
                Val::Sym(name) => m.named(name).flatten().unwrap_or(Val::Nil),
                other => {
                    let i = int_arg(other)?;
                    ruby_index(m.groups.len(), i).and_then(|k| m.group(k)).unwrap_or(Val::Nil)
                }
            },
        },
        [i] => st::char_at(&x, int_arg(i)?),
        [a, b] => st::substr(&x, int_arg(a)?, int_arg(b)?),
        _ => Val::Nil,
    })
}

fn nil_op(op: &'static str, v: &Val<'_>) -> RubyError {
    RubyError::NoMethod { method: op, recv: v.class() }
}

fn float_mod(x: f64, y: f64) -> f64 {
    let r = x % y;
    if r != 0.0 && (r < 0.0) != (y < 0.0) {
        r + y
    } else {
        r
    }
}

pub(super) fn binop<'a>(op: Op, a: Val<'a>, b: Val<'a>) -> R<'a> {
    use Val::{Float as F, Int as I};
    Ok(match op {
        Op::Eq => Val::Bool(ruby_eq(&a, &b)),
        Op::Ne => Val::Bool(!ruby_eq(&a, &b)),
        Op::Lt => Val::Bool(compare(&a, &b)? == Ordering::Less),
        Op::Gt => Val::Bool(compare(&a, &b)? == Ordering::Greater),
        Op::Le => Val::Bool(compare(&a, &b)? != Ordering::Greater),
        Op::Ge => Val::Bool(compare(&a, &b)? != Ordering::Less),
        Op::Match | Op::NoMatch => {
            let m = match (&a, &b) {
                (Val::Str(x), Val::Regex(r)) | (Val::Regex(r), Val::Str(x)) => st::match_at(r, x, 0)?
                    .and_then(|m| m.groups.first().copied().flatten())
                    .map(|(p, _)| st::char_index(x, p)),
                (Val::Nil, Val::Regex(_)) | (Val::Regex(_), Val::Nil) => None,
                (Val::Str(_), other) => {
                    return Err(RubyError::Type(format!(
                        "wrong argument type {} (expected Regexp)",
                        other.class_name()
                    )))
                }
                _ => None,
            };
            if op == Op::NoMatch {
                Val::Bool(m.is_none())
            } else {
                m.map_or(Val::Nil, |i| Val::Int(i as i64))
            }
        }
        Op::Add => match (a, b) {
            (I(x), I(y)) => I(x.checked_add(y).ok_or_else(overflow)?),
            (x @ (I(_) | F(_)), y @ (I(_) | F(_))) => F(num(&x).unwrap_or(0.0) + num(&y).unwrap_or(0.0)),
            (Val::Str(x), Val::Str(y)) => {
                let mut v = Vec::with_capacity(x.len() + y.len());
                v.extend_from_slice(&x);
                v.extend_from_slice(&y);
                st::owned(v)?
            }
            (Val::Str(_), y) => return Err(type_err(&y, "String")),
            (Val::Time(t), y @ (I(_) | F(_))) => Val::Time(types::time_plus(t, num(&y).unwrap_or(0.0))?),
            (x, y) if x.is_array() && y.is_array() => {
                let mut v = x.elements().unwrap_or_default();
                v.extend(y.elements().unwrap_or_default());
                Val::Array(v)
            }
            (x, y) if x.is_array() => return Err(type_err(&y, "Array")),
            (x @ (I(_) | F(_)), y) => {
                return Err(RubyError::Type(format!("{} can't be coerced into {}", y.class_name(), x.class_name())))
            }
            (x, _) => return Err(nil_op("+", &x)),
        },
        Op::Sub => match (a, b) {
            (I(x), I(y)) => I(x.checked_sub(y).ok_or_else(overflow)?),
            (x @ (I(_) | F(_)), y @ (I(_) | F(_))) => F(num(&x).unwrap_or(0.0) - num(&y).unwrap_or(0.0)),
            (Val::Time(t), Val::Time(u)) => F((t.sec - u.sec) as f64 + (t.nsec as f64 - u.nsec as f64) / 1e9),
            (Val::Time(t), y @ (I(_) | F(_))) => Val::Time(types::time_plus(t, -num(&y).unwrap_or(0.0))?),
            (x, y) if x.is_array() && y.is_array() => {
                let ys = y.elements().unwrap_or_default();
                Val::Array(
                    x.elements()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|e| !ys.iter().any(|z| ruby_eql(e, z)))
                        .collect(),
                )
            }
            (x @ (I(_) | F(_)), y) => {
                return Err(RubyError::Type(format!("{} can't be coerced into {}", y.class_name(), x.class_name())))
            }
            (x, _) => return Err(nil_op("-", &x)),
        },
        Op::Mul => match (a, b) {
            (I(x), I(y)) => I(x.checked_mul(y).ok_or_else(overflow)?),
            (x @ (I(_) | F(_)), y @ (I(_) | F(_))) => F(num(&x).unwrap_or(0.0) * num(&y).unwrap_or(0.0)),
            (Val::Str(x), I(n)) => {
                if n < 0 {
                    return Err(RubyError::Argument("negative argument".into()));
                }
                let total = x.len().saturating_mul(n as usize);
                if total > MAX_STRING {
                    return Err(RubyError::Argument(format!("string longer than {MAX_STRING} bytes")));
                }
                Val::Str(Cow::Owned(x.repeat(n as usize)))
            }
            (Val::Str(_), y) => return Err(type_err(&y, "Integer")),
            (x, _) => return Err(nil_op("*", &x)),
        },
        Op::Div => match (a, b) {
            (I(_), I(0)) => return Err(RubyError::ZeroDivision),
            (I(x), I(y)) => {
                // Ruby's integer division floors.
                let q = x.checked_div(y).ok_or_else(overflow)?;
                I(if (x % y != 0) && ((x < 0) != (y < 0)) { q - 1 } else { q })
            }
            (x @ (I(_) | F(_)), y @ (I(_) | F(_))) => F(num(&x).unwrap_or(0.0) / num(&y).unwrap_or(0.0)),
            (x, _) => return Err(nil_op("/", &x)),
        },
        Op::Mod => match (a, b) {
            (I(_), I(0)) => return Err(RubyError::ZeroDivision),
            (I(x), I(y)) => {
                I(x.checked_rem_euclid(y).map(|r| if y < 0 && r != 0 { r + y } else { r }).ok_or_else(overflow)?)
            }
            (x @ (I(_) | F(_)), y @ (I(_) | F(_))) => F(float_mod(num(&x).unwrap_or(0.0), num(&y).unwrap_or(0.0))),
            (Val::Str(_), _) => return Err(RubyError::Type("String#% (format) is not supported".into())),
            (x, _) => return Err(nil_op("%", &x)),
        },
        Op::Pow => match (a, b) {
            (I(x), I(y)) if y >= 0 => I(u32::try_from(y).ok().and_then(|y| x.checked_pow(y)).ok_or_else(overflow)?),
            (x @ (I(_) | F(_)), y @ (I(_) | F(_))) if !matches!(y, I(n) if n < 0) || matches!(x, F(_)) => {
                F(num(&x).unwrap_or(0.0).powf(num(&y).unwrap_or(0.0)))
            }
            (x, _) => return Err(RubyError::Type(format!("{} ** is not supported here", x.class_name()))),
        },
    })
}
