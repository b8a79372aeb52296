//! fluentd's tag match patterns (`lib/fluent/match.rb`), compiled to anchored regexes the
//! way fluentd compiles them: `*` one tag part, `**` zero or more parts (`a.**` matches
//! `a`), `{a,b}` alternation (nestable), `\` escapes, `/regex/` for a whole pattern, and
//! several whitespace-separated patterns in one `<match a b>` (any may match).
//!
//! A `/regex/` pattern is a Ruby regexp compiled as fluentd compiles it,
//! `Regexp.new("\\A" + body + "\\Z")`, through [`crate::ruby::regex`] (Ruby's `\d`, `\h`,
//! `(?<name>)`, `^`/`$` at line boundaries, look-around...). The body is not grouped, as
//! in fluentd: `/a|b/` is `\Aa|b\Z`, so it matches tags starting with `a` or ending with
//! `b`.
//!
//! fluentd emits a look-ahead for `a.**` (`a(?![^.]).*`); the `regex` crate has none, so
//! the equivalent forms are used: `a(?:\z|\..*)`, and for `a.**.b`, `a\.(?:.*\.)?b`.

use regex::bytes::Regex;

use crate::ruby::regex::RubyRegex;

#[derive(Debug, Clone)]
enum One {
    /// `**`: everything.
    All,
    /// A literal tag: compared as bytes.
    Literal(Vec<u8>),
    Regex(Regex),
    /// A `/regex/` pattern (a Ruby regexp).
    Ruby(Box<RubyRegex>),
}

/// A compiled `<match>`/`<filter>` argument.
#[derive(Debug, Clone)]
pub struct MatchPattern {
    spec: String,
    alts: Vec<One>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("invalid match pattern {pattern:?}: a regex pattern must end with '/'")]
    UnterminatedRegex { pattern: String },
    #[error("invalid match pattern {pattern:?}: {reason}")]
    BadRegex { pattern: String, reason: String },
}

/// Translates one glob into regex source (unanchored), following fluentd's algorithm.
fn glob_to_regex(pat: &str) -> String {
    let chars: Vec<char> = pat.chars().collect();
    let mut stack: Vec<Vec<String>> = Vec::new();
    let mut regex: Vec<String> = vec![String::new()];
    let mut escape = false;
    let mut dot = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let last = regex.len() - 1;
        if escape {
            regex[last].push_str(&regex::escape(&c.to_string()));
            escape = false;
            i += 1;
            continue;
        } else if c == '*' && chars.get(i + 1) == Some(&'*') {
            let dotted = chars.get(i + 2) == Some(&'.');
            if dot {
                // fluentd: "(?![^.])" then ".*" or "(?:.*\.|\A)".
                dot = false;
                if dotted {
                    regex[last].push_str(r"\.(?:.*\.)?");
                } else {
                    regex[last].push_str(r"(?:\z|\..*)");
                }
            } else if dotted {
                regex[last].push_str(r"(?:.*\.|\A)");
            } else {
                regex[last].push_str(".*");
            }
            i += if dotted { 3 } else { 2 };
            continue;
        } else if dot {
            regex[last].push_str(r"\.");
            dot = false;
        }
        let last = regex.len() - 1;
        match c {
            '\\' => escape = true,
            '.' => dot = true,
            '*' => regex[last].push_str(r"[^.]*"),
            '{' => {
                stack.push(Vec::new());
                regex.push(String::new());
            }
            '}' if !stack.is_empty() => {
                let r = regex.pop().unwrap_or_default();
                let mut alts = stack.pop().unwrap_or_default();
                alts.push(r);
                let l = regex.len() - 1;
                regex[l].push_str(&format!("(?:{})", alts.join("|")));
            }
            ',' if !stack.is_empty() => {
                let r = regex.pop().unwrap_or_default();
                if let Some(top) = stack.last_mut() {
                    top.push(r);
                }
                regex.push(String::new());
            }
            c if c.is_ascii_alphanumeric() || c == '_' => regex[last].push(c),
            c => regex[last].push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    if dot {
        // A trailing '.' is literal (fluentd drops it; such a pattern cannot match).
        let l = regex.len() - 1;
        regex[l].push_str(r"\.");
    }
    // Unclosed braces: fluentd closes them (as an alternation) at the end.
    while let Some(mut alts) = stack.pop() {
        alts.push(regex.pop().unwrap_or_default());
        let l = regex.len() - 1;
        regex[l].push_str(&format!("(?:{})", alts.join("|")));
    }
    regex.pop().unwrap_or_default()
}

fn compile_one(p: &str) -> Result<One, PatternError> {
    if p == "**" {
        return Ok(One::All);
    }
    if let Some(rest) = p.strip_prefix('/') {
        let Some(body) = rest.strip_suffix('/') else {
            return Err(PatternError::UnterminatedRegex { pattern: p.to_string() });
        };
        return RubyRegex::new(&format!(r"\A{body}\Z"), false, false)
            .map(|r| One::Ruby(Box::new(r)))
            .map_err(|reason| PatternError::BadRegex { pattern: p.to_string(), reason });
    }
    if p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | ':' | '/'))
        && !p.ends_with('.')
    {
        return Ok(One::Literal(p.as_bytes().to_vec()));
    }
    let src = format!(r"\A{}\z", glob_to_regex(p));
    Regex::new(&src)
        .map(One::Regex)
        .map_err(|e| PatternError::BadRegex { pattern: p.to_string(), reason: e.to_string() })
}

impl MatchPattern {
    /// Parses a `<match>`/`<filter>` argument; an empty one means `**` (as in fluentd).
    pub fn parse(spec: &str) -> Result<MatchPattern, PatternError> {
        let spec = spec.trim();
        let parts: Vec<&str> = spec.split_whitespace().collect();
        let alts = if parts.is_empty() {
            vec![One::All]
        } else {
            parts.iter().map(|p| compile_one(p)).collect::<Result<_, _>>()?
        };
        Ok(MatchPattern { spec: if spec.is_empty() { "**".into() } else { spec.to_string() }, alts })
    }

    #[inline]
    pub fn matches(&self, tag: &[u8]) -> bool {
        self.alts.iter().any(|a| match a {
            One::All => true,
            One::Literal(l) => l == tag,
            One::Regex(r) => r.is_match(tag),
            // The scratch is only written (allocated) for a tag that is not UTF-8.
            One::Ruby(r) => r.is_match(tag, &mut Vec::new()),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        MatchPattern::parse(p).unwrap().matches(t.as_bytes())
    }

    /// Every case of fluentd's test/test_match.rb (glob, or, regex).
    #[test]
    fn fluentd_test_match_cases() {
        let cases: &[(bool, &str, &str)] = &[
            (true, r"a", "a"),
            (true, r"a.b", "a.b"),
            (false, r"a", "b"),
            (false, r"a.b", "aab"),
            (true, r"a*", "a"),
            (true, r"a*", "ab"),
            (true, r"a*", "abc"),
            (true, r"*a", "a"),
            (true, r"*a", "ba"),
            (true, r"*a", "cba"),
            (true, r"*a*", "a"),
            (true, r"*a*", "ba"),
            (true, r"*a*", "ac"),
            (true, r"*a*", "bac"),
            (false, r"a*", "a.b"),
            (false, r"a*", "ab.c"),
            (false, r"a*", "ba"),
            (false, r"*a", "ab"),
            (true, r"a.*", "a.b"),
            (true, r"a.*", "a.c"),
            (false, r"a.*", "ab"),
            (true, r"a.*.c", "a.b.c"),
            (true, r"a.*.c", "a.c.c"),
            (false, r"a.*.c", "a.c"),
            (true, r"a.**", "a"),
            (false, r"a.**", "ab"),
            (false, r"a.**", "abc"),
            (true, r"a.**", "a.b"),
            (false, r"a.**", "ab.c"),
            (false, r"a.**", "ab.d.e"),
            (true, r"a**", "a"),
            (true, r"a**", "ab"),
            (true, r"a**", "abc"),
            (true, r"a**", "a.b"),
            (true, r"a**", "ab.c"),
            (true, r"a**", "ab.d.e"),
            (true, r"**.a", "a"),
            (false, r"**.a", "ba"),
            (false, r"**.a", "c.ba"),
            (true, r"**.a", "b.a"),
            (true, r"**.a", "cb.a"),
            (true, r"**.a", "d.e.a"),
            (true, r"**a", "a"),
            (true, r"**a", "ba"),
            (true, r"**a", "c.ba"),
            (true, r"**a", "b.a"),
            (true, r"**a", "cb.a"),
            (true, r"**a", "d.e.a"),
            (true, r"a.{b,c}", "a.b"),
            (true, r"a.{b,c}", "a.c"),
            (false, r"a.{b,c}", "a.d"),
            (true, r"a.{b,c}.**", "a.b"),
            (true, r"a.{b,c}.**", "a.c"),
            (false, r"a.{b,c}.**", "a.d"),
            (false, r"a.{b,c}.**", "a.cd"),
            (true, r"a.{b.**,c}", "a.b"),
            (true, r"a.{b.**,c}", "a.b.c"),
            (true, r"a.{b.**,c}", "a.c"),
            (false, r"a.{b.**,c}", "a.c.d"),
            (true, r"a.b a.c", "a.b"),
            (true, r"a.b a.c", "a.c"),
            (false, r"a.b a.c", "a.d"),
            (true, r"a.b.** a.c.**", "a.b"),
            (true, r"a.b.** a.c.**", "a.c"),
            (false, r"a.b.** a.c.**", "a.d"),
            (false, r"a.b.** a.c.**", "a.cd"),
            (true, r"a.b.** a.c", "a.b"),
            (true, r"a.b.** a.c", "a.b.c"),
            (true, r"a.b.** a.c", "a.c"),
            (false, r"a.b.** a.c", "a.c.d"),
            (true, r"/a/", "a"),
            (false, r"/a/", "abc"),
            (true, r"/a.*/", "abc"),
            (false, r"/b.*/", "abc"),
            (true, r"/a\..*/", "a.b.c"),
            (false, r"/(?!a\.).*/", "a.b.c"),
            (false, r"/a\..*/", "b.b.c"),
            (true, r"/(?!a\.).*/", "b.b.c"),
        ];
        for (want, pat, tag) in cases {
            assert_eq!(m(pat, tag), *want, "pattern {pat:?} on tag {tag:?}");
        }
    }

    #[test]
    fn more_cases() {
        assert!(m("a.**.b", "a.x.y.b"));
        assert!(!m("a.**.b", "a.bx"));
        assert!(m("{a.{b,c},d}", "a.c"));
        assert!(!m("{a.{b,c},d}", "a.d"));
        assert!(m(r"a\*", "a*"));
        assert!(!m(r"a\*", "ab"));
        assert!(m("a-b.c", "a-b.c"));
        assert!(m("", "anything.at.all"));
        assert!(m("**", ""));
        assert!(matches!(MatchPattern::parse("/abc"), Err(PatternError::UnterminatedRegex { .. })));
        assert!(matches!(MatchPattern::parse("/a(/"), Err(PatternError::BadRegex { .. })));
    }

    #[test]
    fn regex_patterns_are_ruby_regexps() {
        // Ruby's ASCII \d and \h, named groups with quotes, look-ahead.
        assert!(m(r"/app\.\d+/", "app.42"));
        assert!(!m(r"/app\.\d+/", "app.\u{0661}"));
        assert!(m(r"/id\.\h{4}/", "id.beef"));
        assert!(m(r"/(?'svc'web|api)\..*/", "api.access"));
        assert!(m(r"/k8s\.(?!kube-system\.).*/", "k8s.default.pod"));
        assert!(!m(r"/k8s\.(?!kube-system\.).*/", "k8s.kube-system.pod"));
        // fluentd does not group the body: `\Aa|b\Z`.
        assert!(m("/a|b/", "a.x"));
        assert!(m("/a|b/", "x.b"));
        assert!(!m("/a|b/", "x.a.y"));
        assert!(m("/(a|b)/", "a"));
        assert!(!m("/(a|b)/", "a.x"));
        // \Z allows one final newline, as in Ruby.
        assert!(m("/abc/", "abc\n"));
        assert!(!m("/abc/", "abc\n\n"));
    }

    #[test]
    fn never_panics_on_odd_patterns() {
        for p in [
            "{",
            "}",
            "{{",
            "}}",
            "{,}",
            "a{b",
            "a}b",
            ",",
            ".",
            "..",
            "*.*.",
            "\\",
            "a\\",
            "***",
            "{**}",
            "{a,{b,{c",
            "[",
            "(",
            "+",
            "?",
            "$",
            "^",
            "é.*",
            "/(?<=a)b/",
            "/a{99999}{99999}/",
        ] {
            if let Ok(mp) = MatchPattern::parse(p) {
                let _ = mp.matches(b"a.b");
                let _ = mp.matches(b"");
                let _ = mp.matches(b"\xff");
            }
        }
    }
}
