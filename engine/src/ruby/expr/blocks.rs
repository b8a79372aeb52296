//! The Ruby subset's blocks (`map { |k, v| ... }` and the other block methods over arrays
//! and hashes) and the locals a named-capture match (`/(?<a>..)/ =~ s`) sets; evaluated
//! with the [`Env`] whose local slots the block parameters use (the caller evaluates the
//! receiver and passes the block body's evaluation).

use super::env::Env;
use super::node::{BlockCall, BlockM, MatchAssign};
use super::string as st;
use super::value::{compare, Val, R};
use super::RubyError;

/// `/(?<a>..)/ =~ s`: the named groups set their locals (all nil when it does not match).
pub(super) fn match_assign<'a>(m: &MatchAssign, re: Val<'a>, subject: Val<'a>, s: &Env<'_, 'a>) -> R<'a> {
    let Val::Regex(re) = re else { return Ok(Val::Nil) };
    let md = match &subject {
        Val::Str(x) => st::match_at(re, x, 0)?,
        Val::Nil => None,
        other => return Err(RubyError::Type(format!("wrong argument type {} (expected Regexp)", other.class_name()))),
    };
    for (name, slot) in &m.slots {
        let v = md.as_ref().and_then(|d| d.named(name)).flatten().unwrap_or(Val::Nil);
        s.set(*slot, v);
    }
    let at = md.and_then(|d| d.groups.first().copied().flatten()).map(|(p, _)| match &subject {
        Val::Str(x) => st::char_index(x, p),
        _ => 0,
    });
    Ok(if m.negate { Val::Bool(at.is_none()) } else { at.map_or(Val::Nil, |i| Val::Int(i as i64)) })
}

/// A block method over an array (its elements) or a hash (`[key, value]` pairs).
pub(super) fn block<'a>(b: &BlockCall, recv: Val<'a>, s: &Env<'_, 'a>, body: impl Fn() -> R<'a>) -> R<'a> {
    if b.safe && matches!(recv, Val::Nil) {
        return Ok(Val::Nil);
    }
    let is_hash = recv.is_map();
    let items: Vec<Val<'a>> = if is_hash {
        recv.pairs().unwrap_or_default().into_iter().map(|(k, v)| Val::Array(vec![k, v])).collect()
    } else if let Some(e) = recv.elements() {
        e
    } else {
        return Err(RubyError::NoMethod { method: b.name, recv: recv.class() });
    };
    let call = |item: &Val<'a>| -> R<'a> {
        match (b.params.as_slice(), item) {
            ([], _) => {}
            ([p], v) => s.set(*p, v.clone()),
            (ps, v) => {
                let parts = v.elements().unwrap_or_else(|| vec![v.clone()]);
                for (k, p) in ps.iter().enumerate() {
                    s.set(*p, parts.get(k).cloned().unwrap_or(Val::Nil));
                }
            }
        }
        body()
    };
    let pair_of = |v: Val<'a>| -> (Val<'a>, Val<'a>) {
        let mut e = v.elements().unwrap_or_default().into_iter();
        (e.next().unwrap_or(Val::Nil), e.next().unwrap_or(Val::Nil))
    };
    Ok(match b.m {
        BlockM::Map => Val::Array(items.iter().map(call).collect::<Result<_, _>>()?),
        BlockM::FlatMap => {
            let mut out = Vec::new();
            for it in &items {
                let r = call(it)?;
                match r.elements() {
                    Some(e) => out.extend(e),
                    None => out.push(r),
                }
            }
            Val::Array(out)
        }
        BlockM::FilterMap => {
            let mut out = Vec::new();
            for it in &items {
                let r = call(it)?;
                if r.truthy() {
                    out.push(r);
                }
            }
            Val::Array(out)
        }
        BlockM::Select | BlockM::Reject => {
            let keep_if = b.m == BlockM::Select;
            let mut kept = Vec::new();
            for it in items {
                if call(&it)?.truthy() == keep_if {
                    kept.push(it);
                }
            }
            if is_hash {
                Val::Hash(kept.into_iter().map(pair_of).collect())
            } else {
                Val::Array(kept)
            }
        }
        BlockM::Find => {
            for it in items {
                if call(&it)?.truthy() {
                    return Ok(it);
                }
            }
            Val::Nil
        }
        BlockM::Any | BlockM::All | BlockM::NoneP => {
            let mut any = false;
            let mut all = true;
            for it in &items {
                let t = call(it)?.truthy();
                any |= t;
                all &= t;
                if (b.m == BlockM::Any && any) || (b.m == BlockM::All && !all) || (b.m == BlockM::NoneP && any) {
                    break;
                }
            }
            Val::Bool(match b.m {
                BlockM::Any => any,
                BlockM::All => all,
                _ => !any,
            })
        }
        BlockM::Count => {
            let mut n = 0;
            for it in &items {
                n += i64::from(call(it)?.truthy());
            }
            Val::Int(n)
        }
        BlockM::SortBy | BlockM::MinBy | BlockM::MaxBy => {
            let mut keyed = Vec::with_capacity(items.len());
            for it in items {
                keyed.push((call(&it)?, it));
            }
            let mut err = None;
            keyed.sort_by(|(a, _), (c, _)| {
                compare(a, c).unwrap_or_else(|e| {
                    err.get_or_insert(e);
                    std::cmp::Ordering::Equal
                })
            });
            if let Some(e) = err {
                return Err(e);
            }
            match b.m {
                BlockM::SortBy => Val::Array(keyed.into_iter().map(|(_, v)| v).collect()),
                BlockM::MinBy => keyed.into_iter().next().map_or(Val::Nil, |(_, v)| v),
                _ => keyed.into_iter().next_back().map_or(Val::Nil, |(_, v)| v),
            }
        }
        BlockM::Each => {
            for it in &items {
                call(it)?;
            }
            recv
        }
    })
}
