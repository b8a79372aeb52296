//! Ruby (Onigmo) regexps on the `regex` crate: a Ruby regexp body is translated (ASCII
//! `\d \w \s \h`, `\Z`, octal/hex/control escapes, `(?'name')`, `(?#...)`, Ruby's
//! `m` flag = dot-all, `{,m}`, literal braces, Ruby's exact `^`) and compiled to
//! `regex::bytes` (linear time, matched in place), or to `fancy-regex` when it needs
//! backtracking (look-around, backreferences, atomic groups). Used by filter_grep,
//! `/regex/` tag patterns, and whatever else takes a fluentd `:regexp` parameter.

use super::value::scrub;

/// A Ruby regexp compiled for matching record bytes. Most patterns compile to
/// `regex::bytes` (linear time, matched in place); patterns that need backtracking
/// (look-around, backreferences, atomic groups) use `fancy-regex` on text, as the router
/// does for `/regex/` tag patterns.
#[derive(Debug, Clone)]
pub enum RubyRegex {
    Fast {
        re: regex::bytes::Regex,
        /// For patterns with `^`: the same pattern with Ruby's exact `^`, which (unlike
        /// the `regex` crate's) does not match at the very end after a final newline.
        /// Only consulted when the one match found starts there.
        strict: Option<Box<fancy_regex::Regex>>,
        /// A pattern that is a plain ASCII literal (no metacharacter, no `?`, case
        /// sensitive), found with a SIMD substring search instead of the regex engine.
        /// Exact on raw bytes: scrubbing invalid bytes to `?` cannot create or remove a
        /// match of such a needle.
        literal: Option<Box<memchr::memmem::Finder<'static>>>,
    },
    Fancy(Box<fancy_regex::Regex>),
}

/// Matches text with a fancy regex, scrubbing invalid UTF-8 first.
fn fancy_match(re: &fancy_regex::Regex, s: &[u8], scratch: &mut Vec<u8>) -> bool {
    let text = match std::str::from_utf8(s) {
        Ok(t) => t,
        Err(_) => {
            scrub(s, scratch);
            match std::str::from_utf8(scratch) {
                Ok(t) => t,
                Err(_) => return false,
            }
        }
    };
    // Exceeding the backtrack limit counts as no match.
    re.is_match(text).unwrap_or(false)
}

#[inline]
fn fast_match(re: &regex::bytes::Regex, strict: Option<&fancy_regex::Regex>, s: &[u8]) -> bool {
    if !re.is_match(s) {
        return false;
    }
    match strict {
        Some(strict) if s.last() == Some(&b'\n') && re.find(s).is_some_and(|m| m.start() == s.len()) => {
            // Text is valid UTF-8 here or already scrubbed.
            std::str::from_utf8(s).is_ok_and(|t| strict.is_match(t).unwrap_or(false))
        }
        _ => true,
    }
}

impl RubyRegex {
    /// A fluentd `:regexp` config value: `/body/flags` (`i` ignore case, `m` dot matches
    /// newline; other flag letters ignored) or a bare body. Mirrors `Config.regexp_value`.
    pub fn from_config(p: &str) -> Result<RubyRegex, String> {
        let Some(rest) = p.strip_prefix('/') else { return RubyRegex::new(p, false, false) };
        let right = rest.rfind('/').map_or(0, |i| i + 1); // index in `p`
        if right + 3 < p.len() {
            return Err(format!("invalid regexp: missing right slash: {p}"));
        }
        let flags = &p[right + 1..];
        let body = if right == 0 { "" } else { &p[1..right] };
        RubyRegex::new(body, flags.contains('i'), flags.contains('m'))
    }

    /// Compiles a Ruby regexp body (`Regexp.compile(body, flags)`).
    pub fn new(body: &str, ignore_case: bool, multiline: bool) -> Result<RubyRegex, String> {
        let mut src = String::new();
        if ignore_case {
            src.push_str("(?i)");
        }
        if multiline {
            src.push_str("(?s)");
        }
        let prefix = src.clone();
        let has_caret = translate(body, &mut src, false)?;
        let strict_src = if has_caret {
            let mut s = prefix;
            translate(body, &mut s, true)?;
            Some(format!("(?m){s}"))
        } else {
            None
        };
        // Ruby's ^ and $ always match at line boundaries.
        match regex::bytes::RegexBuilder::new(&src).multi_line(true).build() {
            Ok(re) => {
                let strict = strict_src.and_then(|s| fancy_regex::Regex::new(&s).ok()).map(Box::new);
                let literal = (!ignore_case && !body.is_empty() && body.is_ascii() && regex::escape(body) == body)
                    .then(|| Box::new(memchr::memmem::Finder::new(body.as_bytes()).into_owned()));
                Ok(RubyRegex::Fast { re, strict, literal })
            }
            Err(fast_err) => match fancy_regex::Regex::new(&strict_src.unwrap_or_else(|| format!("(?m){src}"))) {
                Ok(r) => Ok(RubyRegex::Fancy(Box::new(r))),
                Err(fancy_err) => {
                    let first = fast_err.to_string();
                    let last = first.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
                    let last = last.strip_prefix("error: ").unwrap_or(last);
                    if last.contains("look-around") || last.contains("backreferences") {
                        Err(fancy_err.to_string())
                    } else {
                        Err(last.to_string())
                    }
                }
            },
        }
    }

    /// Ruby's `regexp.match(string)` with fluentd's retry on invalid UTF-8 (the string is
    /// scrubbed with `?` and matched again). `scratch` is clobbered.
    #[inline]
    pub fn is_match(&self, s: &[u8], scratch: &mut Vec<u8>) -> bool {
        match self {
            RubyRegex::Fast { re, strict, literal } => {
                if let Some(f) = literal {
                    return f.find(s).is_some();
                }
                let strict = strict.as_deref();
                // The common outcomes need no UTF-8 check: a match not at a final "\n".
                let raw = re.is_match(s);
                if raw && (strict.is_none() || s.last() != Some(&b'\n')) {
                    return true;
                }
                if std::str::from_utf8(s).is_ok() {
                    // Valid UTF-8 is what Ruby matches too: no match is the answer.
                    return raw && fast_match(re, strict, s);
                }
                scrub(s, scratch);
                fast_match(re, strict, scratch)
            }
            RubyRegex::Fancy(re) => fancy_match(re, s, scratch),
        }
    }
}

/// The byte spans of a match's groups (0: the whole match; None: a group that did not
/// participate).
pub type Spans = Vec<Option<(usize, usize)>>;

impl RubyRegex {
    /// Ruby's `regexp.match(text, pos)`: the groups of the first match starting at or
    /// after byte `pos` of `text`. Exceeding fancy-regex's backtrack limit counts as no
    /// match.
    pub fn captures_at(&self, text: &str, pos: usize) -> Option<Spans> {
        let spans = |n: usize, get: &dyn Fn(usize) -> Option<(usize, usize)>| (0..n).map(get).collect::<Spans>();
        let fancy = |re: &fancy_regex::Regex| {
            let c = re.captures_from_pos(text, pos).ok()??;
            Some(spans(c.len(), &|i| c.get(i).map(|m| (m.start(), m.end()))))
        };
        match self {
            RubyRegex::Fast { strict: Some(strict), .. } => fancy(strict),
            RubyRegex::Fast { re, strict: None, .. } => {
                let c = re.captures_at(text.as_bytes(), pos)?;
                Some(spans(c.len(), &|i| c.get(i).map(|m| (m.start(), m.end()))))
            }
            RubyRegex::Fancy(re) => fancy(re),
        }
    }

    /// Reusable capture storage for [`RubyRegex::captures_read`] (None when matching
    /// needs fancy-regex, which allocates its own).
    pub fn capture_locations(&self) -> Option<regex::bytes::CaptureLocations> {
        match self {
            RubyRegex::Fast { re, strict: None, .. } => Some(re.capture_locations()),
            _ => None,
        }
    }

    /// [`RubyRegex::captures_at`] at position 0 into `spans`, without allocating for
    /// patterns the `regex` crate runs (given `locs` from
    /// [`RubyRegex::capture_locations`]). Returns whether it matched.
    pub fn captures_read(
        &self,
        text: &str,
        locs: &mut Option<regex::bytes::CaptureLocations>,
        spans: &mut Spans,
    ) -> bool {
        spans.clear();
        if let (RubyRegex::Fast { re, strict: None, .. }, Some(l)) = (self, locs.as_mut()) {
            if re.captures_read(l, text.as_bytes()).is_none() {
                return false;
            }
            spans.extend((0..l.len()).map(|i| l.get(i)));
            return true;
        }
        match self.captures_at(text, 0) {
            Some(v) => {
                spans.extend(v);
                true
            }
            None => false,
        }
    }

    /// Named groups and their indexes.
    pub fn group_names(&self) -> Vec<(String, usize)> {
        let named = |it: &mut dyn Iterator<Item = Option<String>>| {
            it.enumerate().filter_map(|(i, n)| n.map(|n| (n, i))).collect::<Vec<_>>()
        };
        match self {
            RubyRegex::Fast { re, .. } => named(&mut re.capture_names().map(|n| n.map(str::to_string))),
            RubyRegex::Fancy(re) => named(&mut re.capture_names().map(|n| n.map(str::to_string))),
        }
    }
}

/// Copies `c[from..]` up to and including the first `close`; returns the index after it.
fn copy_until(c: &[char], from: usize, close: char, out: &mut String) -> Option<usize> {
    let end = c[from..].iter().position(|&x| x == close)? + from;
    out.extend(&c[from..=end]);
    Some(end + 1)
}

/// One escape sequence at `c[i] == '\\'`; returns the index after it.
fn translate_escape(c: &[char], i: usize, in_class: bool, out: &mut String) -> Result<usize, String> {
    let Some(&e) = c.get(i + 1) else { return Err("too short escape sequence".into()) };
    let mut next = i + 2;
    let hexval = |d: &[char]| u32::from_str_radix(&d.iter().collect::<String>(), 16).ok();
    match e {
        // Ruby's \d \w \s \h are ASCII-only.
        'd' => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
        'D' => out.push_str("[^0-9]"),
        'w' => out.push_str(if in_class { "0-9A-Za-z_" } else { "[0-9A-Za-z_]" }),
        'W' => out.push_str("[^0-9A-Za-z_]"),
        's' => out.push_str(if in_class { r"\t\n\x0B\x0C\r " } else { r"[\t\n\x0B\x0C\r ]" }),
        'S' => out.push_str(r"[^\t\n\x0B\x0C\r ]"),
        'h' => out.push_str(if in_class { "0-9a-fA-F" } else { "[0-9a-fA-F]" }),
        'H' => out.push_str("[^0-9a-fA-F]"),
        'Z' if !in_class => out.push_str(r"(?:\n?\z)"),
        'R' if !in_class => out.push_str(r"(?:\r\n|[\n\x0B\x0C\r\x{85}\x{2028}\x{2029}])"),
        'b' if in_class => out.push_str(r"\x08"),
        'e' => out.push_str(r"\x1B"),
        'a' => out.push_str(r"\x07"),
        '0' => {
            let digits: Vec<char> = c[next..].iter().take(2).take_while(|d| ('0'..='7').contains(d)).copied().collect();
            next += digits.len();
            let v = u32::from_str_radix(&format!("0{}", digits.iter().collect::<String>()), 8).unwrap_or(0);
            out.push_str(&format!(r"\x{{{v:X}}}"));
        }
        'x' => {
            let digits: Vec<char> = c[next..].iter().take(2).take_while(|d| d.is_ascii_hexdigit()).copied().collect();
            if digits.is_empty() {
                return Err("invalid hex escape".into());
            }
            next += digits.len();
            out.push_str(&format!(r"\x{{{:X}}}", hexval(&digits).unwrap_or(0)));
        }
        'u' if c.get(next) == Some(&'{') => {
            // \u{H..} with one or more space-separated code points.
            let end = c[next..].iter().position(|&x| x == '}').ok_or("invalid Unicode escape")? + next;
            let inner: String = c[next + 1..end].iter().collect();
            let mut any = false;
            for cp in inner.split_ascii_whitespace() {
                let v = u32::from_str_radix(cp, 16).map_err(|_| "invalid Unicode escape")?;
                out.push_str(&format!(r"\x{{{v:X}}}"));
                any = true;
            }
            if !any {
                return Err("invalid Unicode escape".into());
            }
            next = end + 1;
        }
        'u' => {
            let digits: Vec<char> = c[next..].iter().take(4).take_while(|d| d.is_ascii_hexdigit()).copied().collect();
            if digits.len() != 4 {
                return Err("invalid Unicode escape".into());
            }
            next += 4;
            out.push_str(&format!(r"\x{{{:X}}}", hexval(&digits).unwrap_or(0)));
        }
        'c' => {
            let Some(&x) = c.get(next) else { return Err("too short control escape".into()) };
            next += 1;
            out.push_str(&format!(r"\x{{{:X}}}", (x as u32) & 0x1f));
        }
        'p' | 'P' if c.get(next) == Some(&'{') => {
            let negate = c.get(next + 1) == Some(&'^');
            let flip = if negate {
                if e == 'p' {
                    'P'
                } else {
                    'p'
                }
            } else {
                e
            };
            out.push('\\');
            out.push(flip);
            out.push('{');
            let from = if negate { next + 2 } else { next + 1 };
            next = copy_until(c, from, '}', out).ok_or("invalid character property name")?;
        }
        'k' if matches!(c.get(next), Some('<' | '\'')) => {
            let close = if c[next] == '<' { '>' } else { '\'' };
            let end = c[next + 1..].iter().position(|&x| x == close).ok_or("invalid backref")? + next + 1;
            out.push_str(r"\k<");
            out.extend(&c[next + 1..end]);
            out.push('>');
            next = end + 1;
        }
        'g' => return Err(r"subexpression calls (\g<name>) are not supported".into()),
        e if e.is_ascii_alphanumeric() => {
            out.push('\\');
            out.push(e);
        }
        e if e.is_ascii() => out.push_str(&regex::escape(&e.to_string())),
        e => out.push(e),
    }
    Ok(next)
}

/// After a `[` (or nested `[`): a leading `^`, then a `]` right away is a literal.
fn translate_class_start(c: &[char], mut i: usize, out: &mut String) -> usize {
    if c.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    if c.get(i) == Some(&']') {
        out.push_str(r"\]");
        i += 1;
    }
    i
}

/// `(?...)` constructs at `c[i] == '('`.
fn translate_group(c: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    if c.get(i + 1) != Some(&'?') {
        out.push('(');
        return Ok(i + 1);
    }
    let j = i + 2;
    match c.get(j) {
        Some('#') => {
            // (?#comment)
            let end = c[j..].iter().position(|&x| x == ')').ok_or("end pattern in group")? + j;
            Ok(end + 1)
        }
        Some(q @ ('<' | '\'')) if !(*q == '<' && matches!(c.get(j + 1), Some('=' | '!'))) => {
            let close = if *q == '<' { '>' } else { '\'' };
            let end = c[j + 1..].iter().position(|&x| x == close).ok_or("invalid group name")? + j + 1;
            out.push_str("(?P<");
            out.extend(&c[j + 1..end]);
            out.push('>');
            Ok(end + 1)
        }
        Some(f) if "imxadu-".contains(*f) => {
            let (mut on, mut off, mut neg) = (String::new(), String::new(), false);
            let mut k = j;
            loop {
                let Some(&x) = c.get(k) else { return Err("end pattern in group".into()) };
                let flag = match x {
                    'i' => Some('i'),
                    'x' => Some('x'),
                    // Ruby's m is "dot matches newline".
                    'm' => Some('s'),
                    'a' | 'd' | 'u' => None,
                    '-' => {
                        neg = true;
                        None
                    }
                    ':' | ')' => break,
                    _ => return Err(format!("undefined group option {x:?}")),
                };
                if let Some(fl) = flag {
                    if neg {
                        off.push(fl)
                    } else {
                        on.push(fl)
                    }
                }
                k += 1;
            }
            let term = c[k];
            if on.is_empty() && off.is_empty() {
                if term == ':' {
                    out.push_str("(?:");
                }
            } else {
                out.push_str("(?");
                out.push_str(&on);
                if !off.is_empty() {
                    out.push('-');
                    out.push_str(&off);
                }
                out.push(term);
            }
            Ok(k + 1)
        }
        _ => {
            // Look-around, atomic groups, ...: left to fancy-regex.
            out.push_str("(?");
            Ok(j)
        }
    }
}

/// `{n}`, `{n,}`, `{n,m}`, `{,m}` at `c[i] == '{'`; anything else is a literal brace in
/// Ruby.
fn translate_interval(c: &[char], i: usize, out: &mut String) -> Option<usize> {
    let end = c[i + 1..].iter().position(|&x| x == '}')? + i + 1;
    let inner: String = c[i + 1..end].iter().collect();
    let (a, b) = match inner.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (inner.as_str(), None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|d| d.is_ascii_digit());
    let ok = match b {
        None => digits(a),
        Some(b) => (digits(a) && (b.is_empty() || digits(b))) || (a.is_empty() && digits(b)),
    };
    if !ok || i == 0 {
        return None;
    }
    out.push('{');
    out.push_str(if a.is_empty() { "0" } else { a });
    if let Some(b) = b {
        out.push(',');
        out.push_str(b);
    }
    out.push('}');
    Some(end + 1)
}

/// Rewrites a Ruby regexp body into `regex` crate syntax: ASCII `\d \w \s \h`, `\Z`,
/// `\e`, `\R`, octal/hex/control escapes, `(?'name')`, `(?#...)`, Ruby's inline `m`
/// flag (= `s`), `{,m}`, literal braces, and escaped punctuation such as `\/`. With
/// `strict_caret`, `^` becomes Ruby's exact line start (look-behind: fancy-regex only).
/// Returns whether the pattern has a `^` outside character classes.
fn translate(body: &str, out: &mut String, strict_caret: bool) -> Result<bool, String> {
    let c: Vec<char> = body.chars().collect();
    let mut i = 0;
    let mut class = 0usize;
    let mut caret = false;
    while i < c.len() {
        let ch = c[i];
        if class > 0 {
            match ch {
                '\\' => i = translate_escape(&c, i, true, out)?,
                '[' if c.get(i + 1) == Some(&':') => match copy_until(&c, i, ']', out) {
                    Some(n) => i = n,
                    None => return Err("premature end of char-class".into()),
                },
                '[' => {
                    out.push('[');
                    class += 1;
                    i = translate_class_start(&c, i + 1, out);
                }
                ']' => {
                    out.push(']');
                    class -= 1;
                    i += 1;
                }
                _ => {
                    out.push(ch);
                    i += 1;
                }
            }
            continue;
        }
        match ch {
            '\\' => i = translate_escape(&c, i, false, out)?,
            '[' => {
                out.push('[');
                class = 1;
                i = translate_class_start(&c, i + 1, out);
            }
            '(' => i = translate_group(&c, i, out)?,
            '{' => match translate_interval(&c, i, out) {
                Some(n) => i = n,
                None => {
                    out.push_str(r"\{");
                    i += 1;
                }
            },
            '}' => {
                out.push_str(r"\}");
                i += 1;
            }
            '^' => {
                caret = true;
                out.push_str(if strict_caret { r"(?:\A|(?<=\n)(?!\z))" } else { "^" });
                i += 1;
            }
            _ => {
                out.push(ch);
                i += 1;
            }
        }
    }
    if class > 0 {
        return Err("premature end of char-class".into());
    }
    Ok(caret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is(p: &str, s: &[u8]) -> bool {
        RubyRegex::from_config(p).unwrap().is_match(s, &mut Vec::new())
    }

    // filter_grep's tests cover the translation through the filter; these pin the type's
    // own contract.
    #[test]
    fn config_values_and_flags() {
        assert!(is("/^a.b$/m", b"a\nb"));
        assert!(!is("/^a.b$/", b"a\nb"));
        assert!(is("/ABC/i", b"xabcx"));
        assert!(is("a/b", b"a/b"), "a bare value keeps its slashes");
        assert!(RubyRegex::from_config("/abc/ixyz").unwrap_err().contains("missing right slash"));
        // fluentd retries invalid UTF-8 scrubbed with '?'.
        assert!(is("^a\\?b$", b"a\xffb"));
        // Ruby's ^ does not match after a final newline; the regex crate's does.
        assert!(!is("^$", b"x\n"));
        assert!(is("^$", b"x\n\n"));
        assert!(is("(?<=x)y", b"xy"), "look-behind goes to fancy-regex");
        assert!(matches!(RubyRegex::new("(?<=x)y", false, false).unwrap(), RubyRegex::Fancy(_)));
        assert!(matches!(RubyRegex::new("\\d+", false, false).unwrap(), RubyRegex::Fast { .. }));
    }

    #[test]
    fn plain_literals_take_the_substring_search_with_the_same_answers() {
        let lit = |p: &str| matches!(RubyRegex::from_config(p).unwrap(), RubyRegex::Fast { literal: Some(_), .. });
        assert!(lit("cool") && lit("GET /api"));
        assert!(!lit("/cool/i") && !lit("co.l") && !lit("a?b") && !lit("caf\u{e9}"));
        assert!(is("cool", b"so cool!") && !is("cool", b"so coal"));
        // Invalid bytes around the needle: scrubbing them to '?' cannot change the answer.
        assert!(is("cool", b"\xff cool \xfe") && !is("cool", b"\xffcoo\xfel"));
        assert!(!is("error", b""));
    }
}
