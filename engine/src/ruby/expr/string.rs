//! Ruby's String methods for the subset, on byte strings: character semantics for valid
//! UTF-8 (lengths and indexes count characters), bytes otherwise (as Ruby does for a
//! broken string, where regexp methods raise `ArgumentError`). `split`, `gsub`/`sub`
//! replacement strings (`\1`, `\k<name>`, `\0`, `\&`, `` \` ``, `\'`, `\\`), `scan`,
//! `match` and slicing follow Ruby's rules, including the corner cases (trailing empty
//! fields, empty matches, negative indexes).

use std::borrow::Cow;

use super::value::MatchData;
use super::{Re, RubyError, Val, MAX_STRING};

/// The text of a string for regexp work (Ruby raises on invalid UTF-8 here).
pub(super) fn text(s: &[u8]) -> Result<&str, RubyError> {
    std::str::from_utf8(s).map_err(|_| RubyError::Argument("invalid byte sequence in UTF-8".into()))
}

/// Number of characters (bytes for a string that is not UTF-8).
pub(super) fn char_len(s: &[u8]) -> usize {
    match std::str::from_utf8(s) {
        Ok(t) => t.chars().count(),
        Err(_) => s.len(),
    }
}

/// Byte offset of character `ci` (`ci` may equal the length).
fn byte_at(s: &[u8], ci: usize) -> Option<usize> {
    match std::str::from_utf8(s) {
        Ok(t) => {
            if ci == 0 {
                return Some(0);
            }
            let mut n = 0;
            for (b, _) in t.char_indices() {
                if n == ci {
                    return Some(b);
                }
                n += 1;
            }
            (n == ci).then_some(t.len())
        }
        Err(_) => (ci <= s.len()).then_some(ci),
    }
}

/// Character index of byte offset `b`.
pub(super) fn char_index(s: &[u8], b: usize) -> usize {
    match std::str::from_utf8(s.get(..b).unwrap_or(s)) {
        Ok(t) => t.chars().count(),
        Err(_) => b,
    }
}

/// `s[start, len]` in characters (Ruby's rules: start may equal the length, giving "").
pub(super) fn substr<'a>(s: &Cow<'a, [u8]>, start: i64, len: i64) -> Val<'a> {
    let n = char_len(s) as i64;
    let start = if start < 0 { start + n } else { start };
    if start < 0 || start > n || len < 0 {
        return Val::Nil;
    }
    let end = (start + len).min(n);
    let (Some(a), Some(b)) = (byte_at(s, start as usize), byte_at(s, end as usize)) else { return Val::Nil };
    slice_of(s, a, b)
}

fn slice_of<'a>(s: &Cow<'a, [u8]>, a: usize, b: usize) -> Val<'a> {
    match s {
        Cow::Borrowed(x) => Val::Str(Cow::Borrowed(&x[a..b])),
        Cow::Owned(x) => Val::Str(Cow::Owned(x[a..b].to_vec())),
    }
}

/// `s[i]`.
pub(super) fn char_at<'a>(s: &Cow<'a, [u8]>, i: i64) -> Val<'a> {
    let n = char_len(s) as i64;
    let i = if i < 0 { i + n } else { i };
    if i < 0 || i >= n {
        return Val::Nil;
    }
    substr(s, i, 1)
}

/// Resolves a range against a length: Ruby's `[a..b]` start and count, or None.
pub(super) fn range_bounds(n: i64, a: i64, b: Option<i64>, excl: bool) -> Option<(i64, i64)> {
    let start = if a < 0 { a + n } else { a };
    if start < 0 || start > n {
        return None;
    }
    let end = match b {
        None => n,
        Some(b) => {
            let e = if b < 0 { b + n } else { b };
            if excl {
                e
            } else {
                e + 1
            }
        }
    };
    Some((start, (end - start).max(0)))
}

pub(super) fn owned<'a>(v: Vec<u8>) -> Result<Val<'a>, RubyError> {
    if v.len() > MAX_STRING {
        return Err(RubyError::Argument(format!("string longer than {MAX_STRING} bytes")));
    }
    Ok(Val::Str(Cow::Owned(v)))
}

fn map_text(s: &[u8], f: impl Fn(&str) -> String, ascii: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    match std::str::from_utf8(s) {
        Ok(t) => f(t).into_bytes(),
        Err(_) => ascii(s),
    }
}

pub(super) fn downcase(s: &[u8]) -> Vec<u8> {
    map_text(s, str::to_lowercase, |b| b.to_ascii_lowercase())
}

pub(super) fn upcase(s: &[u8]) -> Vec<u8> {
    map_text(s, str::to_uppercase, |b| b.to_ascii_uppercase())
}

pub(super) fn capitalize(s: &[u8]) -> Vec<u8> {
    crate::ruby::value::capitalize(s)
}

pub(super) fn swapcase(s: &[u8]) -> Vec<u8> {
    map_text(
        s,
        |t| {
            t.chars()
                .flat_map(|c| {
                    if c.is_uppercase() {
                        c.to_lowercase().collect::<Vec<_>>()
                    } else {
                        c.to_uppercase().collect::<Vec<_>>()
                    }
                })
                .collect()
        },
        |b| {
            b.iter()
                .map(|c| if c.is_ascii_uppercase() { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() })
                .collect()
        },
    )
}

/// Ruby's `strip` whitespace: NUL, `\t \n \v \f \r` and space.
fn is_strip_ws(b: u8) -> bool {
    matches!(b, 0 | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

pub(super) fn strip(s: &[u8], left: bool, right: bool) -> (usize, usize) {
    let mut a = 0;
    let mut b = s.len();
    if left {
        while a < b && is_strip_ws(s[a]) {
            a += 1;
        }
    }
    if right {
        while b > a && is_strip_ws(s[b - 1]) {
            b -= 1;
        }
    }
    (a, b)
}

pub(super) fn slice_bytes<'a>(s: &Cow<'a, [u8]>, a: usize, b: usize) -> Val<'a> {
    slice_of(s, a, b)
}

/// `chomp` without an argument: one trailing `\r\n`, `\n` or `\r`.
pub(super) fn chomp(s: &[u8]) -> usize {
    if s.ends_with(b"\r\n") {
        s.len() - 2
    } else if s.ends_with(b"\n") || s.ends_with(b"\r") {
        s.len() - 1
    } else {
        s.len()
    }
}

/// Byte length of the last character.
pub(super) fn last_char_len(s: &[u8]) -> usize {
    if s.ends_with(b"\r\n") {
        return 2;
    }
    match std::str::from_utf8(s) {
        Ok(t) => t.chars().next_back().map_or(0, char::len_utf8),
        Err(_) => usize::from(!s.is_empty()),
    }
}

/// The first match of `re` in `s` at or after byte `pos`.
pub(super) fn match_at<'a>(re: &Re, s: &Cow<'a, [u8]>, pos: usize) -> Result<Option<MatchData<'a>>, RubyError> {
    let t = text(s)?;
    if pos > t.len() {
        return Ok(None);
    }
    Ok(re.re.captures_at(t, pos).map(|groups| MatchData { subject: s.clone(), groups, names: re.re.group_names() }))
}

/// A pattern argument: a regexp, or a string matched literally.
pub(super) enum Pat<'p> {
    Re(&'p Re),
    Lit(&'p [u8]),
}

fn find_lit(h: &[u8], n: &[u8], from: usize) -> Option<usize> {
    if n.is_empty() {
        return (from <= h.len()).then_some(from);
    }
    h.get(from..)?.windows(n.len()).position(|w| w == n).map(|p| p + from)
}

/// Advances one character from byte `i` (one byte past the end of invalid UTF-8).
fn next_char(s: &[u8], i: usize) -> usize {
    let Some(&b) = s.get(i) else { return i + 1 };
    let w = match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    };
    (i + w).min(s.len()).max(i + 1)
}

/// Expands a `gsub`/`sub` replacement string for one match.
fn expand_repl(repl: &[u8], m: &MatchData<'_>, out: &mut Vec<u8>) {
    let subj = &m.subject;
    let group = |i: usize, out: &mut Vec<u8>| {
        if let Some(Some((a, b))) = m.groups.get(i) {
            out.extend_from_slice(&subj[*a..*b]);
        }
    };
    let mut i = 0;
    while i < repl.len() {
        let c = repl[i];
        if c != b'\\' || i + 1 == repl.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let e = repl[i + 1];
        i += 2;
        match e {
            b'0'..=b'9' => group((e - b'0') as usize, out),
            b'&' => group(0, out),
            b'`' => {
                if let Some(Some((a, _))) = m.groups.first() {
                    out.extend_from_slice(&subj[..*a]);
                }
            }
            b'\'' => {
                if let Some(Some((_, b))) = m.groups.first() {
                    out.extend_from_slice(&subj[*b..]);
                }
            }
            b'\\' => out.push(b'\\'),
            b'k' if repl.get(i) == Some(&b'<') => {
                let Some(end) = repl[i..].iter().position(|&x| x == b'>') else {
                    out.extend_from_slice(b"\\k");
                    continue;
                };
                let name = String::from_utf8_lossy(&repl[i + 1..i + end]).into_owned();
                if let Some(Some(Val::Str(v))) = m.named(&name) {
                    out.extend_from_slice(&v);
                }
                i += end + 1;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
}

/// `gsub` (all) / `sub` (first), as Ruby's `str_gsub`: after an empty match one
/// character is copied so the search moves on.
pub(super) fn gsub<'a>(s: &Cow<'a, [u8]>, pat: Pat<'_>, repl: &[u8], all: bool) -> Result<Val<'a>, RubyError> {
    let len = s.len();
    let mut out = Vec::new();
    let mut offset = 0;
    let mut any = false;
    loop {
        let m = match pat {
            Pat::Re(re) => match match_at(re, s, offset)? {
                Some(m) => m,
                None => break,
            },
            Pat::Lit(l) => match find_lit(s, l, offset) {
                Some(p) => MatchData { subject: s.clone(), groups: vec![Some((p, p + l.len()))], names: Vec::new() },
                None => break,
            },
        };
        let Some((a, b)) = m.groups.first().copied().flatten() else { break };
        if !any {
            out.reserve(len);
            any = true;
        }
        out.extend_from_slice(&s[offset..a]);
        // A string pattern's replacement expands backslash sequences too, as in Ruby.
        expand_repl(repl, &m, &mut out);
        if out.len() > MAX_STRING {
            return Err(RubyError::Argument(format!("string longer than {MAX_STRING} bytes")));
        }
        offset = b;
        if !all {
            break;
        }
        if a == b {
            if len <= b {
                break;
            }
            let n = next_char(s, b).min(len);
            out.extend_from_slice(&s[b..n]);
            offset = n;
        }
        if offset > len {
            break;
        }
    }
    if !any {
        return Ok(Val::Str(s.clone()));
    }
    if len > offset {
        out.extend_from_slice(&s[offset..]);
    }
    owned(out)
}

/// `split(pattern = nil, limit = 0)`: Ruby's `rb_str_split_m`, step for step (awk mode
/// for nil or `" "`, a string, `""` for characters, or a regexp whose groups are part of
/// the result).
pub(super) fn split<'a>(s: &Cow<'a, [u8]>, pat: Option<Pat<'_>>, lim: i64) -> Result<Vec<Val<'a>>, RubyError> {
    let mut out: Vec<Val<'a>> = Vec::new();
    let len = s.len();
    // Ruby: a limit <= 0 means no limit; 1 returns the string itself.
    let limited = lim > 0;
    if lim == 1 {
        return Ok(if len == 0 { out } else { vec![Val::Str(s.clone())] });
    }
    let piece = |a: usize, b: usize| slice_of(s, a, b.min(len));
    let mut count = 1i64;
    let mut beg = 0usize;
    match pat {
        None | Some(Pat::Lit(b" ")) => {
            let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
            let (mut skip, mut end) = (true, 0usize);
            let mut p = 0;
            while p < len {
                let c = s[p];
                p += 1;
                if skip {
                    if ws(c) {
                        beg = p;
                    } else {
                        end = p;
                        skip = false;
                        if limited && lim <= count {
                            break;
                        }
                    }
                } else if ws(c) {
                    out.push(piece(beg, end));
                    skip = true;
                    beg = p;
                    if limited {
                        count += 1;
                    }
                } else {
                    end = p;
                }
            }
        }
        Some(Pat::Lit(b"")) => {
            let mut p = 0;
            while p < len {
                let n = next_char(s, p).min(len);
                out.push(piece(p, n));
                p = n;
                count += 1;
                if limited && lim <= count {
                    break;
                }
            }
            beg = p;
        }
        Some(Pat::Lit(l)) => {
            let mut p = 0;
            while p < len {
                let Some(end) = find_lit(s, l, p) else { break };
                out.push(piece(p, end));
                p = end + l.len();
                count += 1;
                if limited && lim <= count {
                    break;
                }
            }
            beg = p;
        }
        Some(Pat::Re(re)) => {
            let mut start = 0usize;
            let mut last_null = false;
            while start <= len {
                let Some(m) = match_at(re, s, start)? else { break };
                let Some((b0, e0)) = m.groups.first().copied().flatten() else { break };
                if start == b0 && b0 == e0 {
                    if len == 0 {
                        out.push(Val::str(Vec::new()));
                        break;
                    } else if last_null {
                        out.push(piece(beg, next_char(s, beg)));
                        beg = start;
                    } else {
                        start = if start == len { start + 1 } else { next_char(s, start) };
                        last_null = true;
                        continue;
                    }
                } else {
                    out.push(piece(beg, b0));
                    beg = e0;
                    start = e0;
                }
                last_null = false;
                for g in 1..m.groups.len() {
                    if let Some(v) = m.group(g) {
                        out.push(v);
                    }
                }
                count += 1;
                if limited && lim <= count {
                    break;
                }
                if out.len() > MAX_STRING {
                    return Err(RubyError::Argument("split produced too many fields".into()));
                }
            }
        }
    }
    if len > 0 && (limited || len > beg || lim < 0) {
        out.push(piece(beg.min(len), len));
    }
    if lim == 0 {
        while matches!(out.last(), Some(Val::Str(x)) if x.is_empty()) {
            out.pop();
        }
    }
    Ok(out)
}

/// `scan(re)`: every match (or, with groups, the groups of every match).
pub(super) fn scan<'a>(s: &Cow<'a, [u8]>, pat: Pat<'_>) -> Result<Vec<Val<'a>>, RubyError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos <= s.len() {
        let m = match pat {
            Pat::Re(re) => match match_at(re, s, pos)? {
                Some(m) => m,
                None => break,
            },
            Pat::Lit(l) => match find_lit(s, l, pos) {
                Some(p) => MatchData { subject: s.clone(), groups: vec![Some((p, p + l.len()))], names: Vec::new() },
                None => break,
            },
        };
        let Some((a, b)) = m.groups.first().copied().flatten() else { break };
        if m.groups.len() > 1 {
            out.push(Val::Array((1..m.groups.len()).map(|g| m.group(g).unwrap_or(Val::Nil)).collect()));
        } else {
            out.push(m.group(0).unwrap_or(Val::Nil));
        }
        pos = if a == b { next_char(s, b) } else { b };
        if out.len() > MAX_STRING {
            break;
        }
    }
    Ok(out)
}

/// `tr(from, to)` with ranges (`a-z`) and `^` negation, on characters.
pub(super) fn tr(s: &[u8], from: &[u8], to: &[u8]) -> Result<Vec<u8>, RubyError> {
    let (s, from, to) = (text(s)?, text(from)?, text(to)?);
    let expand = |x: &str| -> Vec<char> {
        let c: Vec<char> = x.chars().collect();
        let mut v = Vec::new();
        let mut i = 0;
        while i < c.len() {
            if i + 2 < c.len() && c[i + 1] == '-' && c[i] <= c[i + 2] {
                v.extend(c[i]..=c[i + 2]);
                i += 3;
            } else {
                v.push(c[i]);
                i += 1;
            }
        }
        v
    };
    let (neg, from) = match from.strip_prefix('^') {
        Some(r) if !r.is_empty() => (true, r),
        _ => (false, from),
    };
    let f = expand(from);
    let t = expand(to);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let hit = f.iter().position(|&x| x == c);
        match (neg, hit) {
            (false, Some(i)) => {
                if let Some(&r) = t.get(i).or(t.last()) {
                    out.push(r)
                }
            }
            (true, None) => {
                if let Some(&r) = t.last() {
                    out.push(r)
                }
            }
            _ => out.push(c),
        }
    }
    Ok(out.into_bytes())
}

/// `CGI.escape`: `application/x-www-form-urlencoded` (space as `+`).
pub(super) fn cgi_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
        }
    }
    out
}

/// `CGI.unescape`: `+` to space, `%XX` decoded (malformed escapes stay as they are).
pub(super) fn cgi_unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() && s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit() => {
                let h = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(h(s[i + 1]) << 4 | h(s[i + 2]));
                i += 3;
                continue;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Ruby's `String#to_i`: leading whitespace, a sign, digits with single `_` between
/// them; 0 when there are none. `None` when it does not fit an i64 (a Bignum in Ruby).
pub(super) fn str_to_i(s: &[u8]) -> Option<i64> {
    i64::try_from(crate::ruby::value::ruby_to_i(s)).ok()
}

pub(super) fn pat_arg<'v>(v: &'v Val<'_>) -> Result<Pat<'v>, RubyError> {
    match v {
        Val::Regex(r) => Ok(Pat::Re(r)),
        Val::Str(s) => Ok(Pat::Lit(s)),
        other => Err(RubyError::Type(format!("wrong argument type {} (expected Regexp)", other.class_name()))),
    }
}
