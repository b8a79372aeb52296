//! The fluent.conf v1 grammar, following fluentd's `v1_parser.rb`, `literal_parser.rb`
//! and `basic_parser.rb` rule for rule: sections `<name arg>...</name>`, `key value`
//! lines (a key alone means ""), `#` comments (a `#` inside an unquoted value is text
//! unless a blank precedes it), single-quoted strings (`\'` and `\\` only), double-quoted
//! strings (escapes, `#{}` embedded code, line continuation), multi-line JSON arrays and
//! objects (with `#` and `//` comments and `#{}`), and `@include` / root-level `include`
//! (files and globs relative to the including file, sorted; no URLs; a missing file is
//! an error, a glob matching nothing a warning).
//!
//! Parameters behave like fluentd's Ruby Hash: a key given twice keeps its first place
//! and its last value (spate also warns), and a value that is nil (an unset `ENV['X']`
//! inside `"#{}"`, or `use_nil`) or `use_default` leaves the parameter unset.
//!
//! Hostile input: section nesting, include depth and the number of included files are
//! bounded, include cycles are detected, every scan is linear, and any input gives `Ok`
//! or an error with file:line:col, never a panic.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::element::{Attr, ConfigError, Element, Pos, Warning};
use super::embedded::{self, Eval, EvalContext, Value};

/// Deepest section nesting (across included files).
pub const MAX_NESTING: usize = 64;
/// Deepest chain of `@include`s.
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Most files one configuration may read through `@include`.
const MAX_INCLUDED_FILES: usize = 4096;
/// Longest JSON value.
const MAX_JSON: usize = 1 << 20;
/// Bytes of JSON re-parsed to decide whether a `#` starts a comment (fluentd re-parses
/// the value so far at each `#`); bounded so a hostile value cannot take quadratic time.
const JSON_RESCAN_BUDGET: usize = 64 << 20;
/// Most alternatives one `{a,b}` glob may expand to.
const MAX_BRACE_EXPANSION: usize = 256;

/// fluentd's parameters with the reserved `@` prefix.
const RESERVED: &[&str] = &["@type", "@id", "@label", "@log_level"];
/// Sections where any other `@` parameter is an error (elsewhere only a warning).
const ELEM_SYMBOLS: &[&str] = &["match", "source", "filter", "system"];

/// State shared by a file and the files it includes.
struct Shared<'a> {
    ctx: &'a EvalContext,
    files_read: Cell<usize>,
    warnings: RefCell<Vec<Warning>>,
}

impl Shared<'_> {
    fn warn(&self, pos: Pos, msg: String) {
        self.warnings.borrow_mut().push(Warning { pos, msg });
    }
}

/// A scanned literal.
enum Lit {
    Str(String),
    /// nil: unset `ENV[...]` in `"#{}"`, `use_nil`, or (for a value) nothing at all.
    Nil,
    /// `use_default`.
    Default,
}

/// The parameters and subsections being collected for one element.
#[derive(Default)]
struct Body {
    /// Ruby Hash slots in first-assignment order: key, where it was last set, and the
    /// value (None for nil / use_default; such slots are dropped at the end).
    slots: Vec<(String, Pos, Option<String>)>,
    /// Key -> index in `slots` (keeps `set` constant-time for sections with many keys).
    index: HashMap<String, usize>,
    elems: Vec<Element>,
}

impl Body {
    /// Ruby Hash assignment: a repeated key keeps its place and takes the new value.
    fn set(&mut self, key: String, lit: Lit, pos: Pos, section: &str, shared: &Shared<'_>) {
        let value = match lit {
            Lit::Str(v) => Some(v),
            // nil / use_default: the parameter is not set (an earlier value is gone too).
            Lit::Nil | Lit::Default => None,
        };
        match self.index.get(&key).and_then(|&i| self.slots.get_mut(i)) {
            Some(slot) => {
                shared.warn(
                    pos.clone(),
                    format!(
                        "parameter '{key}' is given twice in {section} (previously at line {}); the later value wins, as in fluentd",
                        slot.1.line
                    ),
                );
                slot.1 = pos;
                slot.2 = value;
            }
            None => {
                self.index.insert(key.clone(), self.slots.len());
                self.slots.push((key, pos, value));
            }
        }
    }

    fn into_parts(self) -> (Vec<Attr>, Vec<Element>) {
        let attrs =
            self.slots.into_iter().filter_map(|(key, pos, v)| v.map(|value| Attr { key, value, pos })).collect();
        (attrs, self.elems)
    }
}

/// Parses `text` as a whole file; `includes` is the chain of files that included it
/// (canonical paths, for cycle detection). Returns the root and the warnings.
pub fn parse(
    text: &str,
    file: &str,
    base: &Path,
    ctx: &EvalContext,
    includes: Vec<PathBuf>,
) -> Result<(Element, Vec<Warning>), ConfigError> {
    let shared = Shared { ctx, files_read: Cell::new(0), warnings: RefCell::new(Vec::new()) };
    let mut p = Parser::new(text, file, base, &shared, &includes);
    let root_pos = p.pos(p.i);
    let mut body = Body::default();
    p.parse_element(None, &mut body, 0)?;
    let (attrs, elems) = body.into_parts();
    let root = Element::new("ROOT".into(), String::new(), attrs, elems, root_pos);
    Ok((root, shared.warnings.into_inner()))
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t')
}

/// Where an unquoted string ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Boundary {
    /// A value: LINE_END (blanks, an optional comment, end of line).
    LineEnd,
    /// A key: SPACING (whitespace).
    Spacing,
    /// A section argument: ZERO_OR_MORE_SPACING then '>'.
    Arg,
}

/// An open section, for messages.
struct Open<'n> {
    name: &'n str,
    label: String,
    pos: Pos,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    file: Arc<str>,
    line_starts: Vec<usize>,
    base: PathBuf,
    shared: &'a Shared<'a>,
    includes: &'a [PathBuf],
    json_rescan: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, file: &str, base: &Path, shared: &'a Shared<'a>, includes: &'a [PathBuf]) -> Self {
        let s = text.as_bytes();
        // A UTF-8 byte order mark is not part of the configuration.
        let start = if text.starts_with('\u{feff}') { 3 } else { 0 };
        let mut line_starts = vec![start];
        line_starts.extend(memchr::memchr_iter(b'\n', s).map(|i| i + 1));
        Parser {
            s,
            i: start,
            file: Arc::from(file),
            line_starts,
            base: base.to_path_buf(),
            shared,
            includes,
            json_rescan: 0,
        }
    }

    fn pos(&self, at: usize) -> Pos {
        let at = at.min(self.s.len());
        let line = self.line_starts.partition_point(|&st| st <= at).max(1);
        let start = self.line_starts[line - 1].min(at);
        let col = String::from_utf8_lossy(&self.s[start..at]).chars().count() + 1;
        Pos { file: self.file.clone(), line: u32::try_from(line).unwrap_or(u32::MAX), col: col as u32 }
    }

    fn err(&self, at: usize, msg: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.pos(at), msg)
    }

    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.s.get(at).copied()
    }

    fn starts(&self, t: &str) -> bool {
        self.s[self.i.min(self.s.len())..].starts_with(t.as_bytes())
    }

    fn text(&self, from: usize, to: usize) -> String {
        String::from_utf8_lossy(&self.s[from.min(to)..to]).into_owned()
    }

    /// SPACING: whitespace and `#` comments.
    fn spacing(&mut self) {
        while let Some(c) = self.peek() {
            if is_ws(c) {
                self.i += 1;
            } else if c == b'#' {
                self.skip_to_eol();
            } else {
                break;
            }
        }
    }

    /// Skips to just after the next '\r' or '\n' (or to EOF).
    fn skip_to_eol(&mut self) {
        while let Some(c) = self.peek() {
            self.i += 1;
            if c == b'\n' || c == b'\r' {
                break;
            }
        }
    }

    /// SPACING_WITHOUT_COMMENT; returns whether a newline was crossed or EOF reached
    /// (fluentd's test for a key without a value).
    fn spacing_without_comment(&mut self) -> bool {
        let mut nl = false;
        while let Some(c) = self.peek().filter(|c| is_ws(*c)) {
            nl |= c == b'\n';
            self.i += 1;
        }
        nl || self.eof()
    }

    /// Length of a LINE_END match at `at`: one or more of (blanks, an optional comment,
    /// then a newline or EOF).
    fn line_end_len(&self, at: usize) -> Option<usize> {
        let mut j = at;
        let mut matched = false;
        loop {
            let mut k = j;
            while self.byte(k).is_some_and(is_blank) {
                k += 1;
            }
            if self.byte(k) == Some(b'#') {
                while self.byte(k).is_some_and(|c| c != b'\r' && c != b'\n') {
                    k += 1;
                }
            }
            match self.byte(k) {
                None => return Some(k - at),
                Some(b'\r' | b'\n') => {
                    j = k + 1;
                    matched = true;
                }
                Some(_) => return matched.then_some(j - at),
            }
        }
    }

    fn line_end(&mut self) -> bool {
        match self.line_end_len(self.i) {
            Some(n) => {
                self.i += n;
                true
            }
            None => false,
        }
    }

    /// ZERO_OR_MORE_SPACING then '>' at `at`.
    fn arg_end_at(&self, at: usize) -> bool {
        let mut j = at;
        loop {
            match self.byte(j) {
                Some(c) if is_ws(c) => j += 1,
                Some(b'#') => {
                    while self.byte(j).is_some_and(|c| c != b'\r' && c != b'\n') {
                        j += 1;
                    }
                    if self.byte(j).is_none() {
                        return false;
                    }
                    j += 1;
                }
                Some(c) => return c == b'>',
                None => return false,
            }
        }
    }

    /// The first non-blank position from `self.i` (where unexpected text starts).
    fn next_non_blank(&self) -> usize {
        let mut j = self.i;
        while self.byte(j).is_some_and(is_blank) {
            j += 1;
        }
        j
    }

    fn scan_name(&mut self) -> String {
        let st = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
            self.i += 1;
        }
        self.text(st, self.i)
    }

    /// The body of a section (or of a file, when `open` is None) up to its end tag.
    fn parse_element(&mut self, open: Option<&Open<'_>>, body: &mut Body, depth: usize) -> Result<(), ConfigError> {
        let root = open.is_none();
        let section = open.map_or_else(|| "the top level".to_string(), |o| o.label.clone());
        loop {
            self.spacing();
            if self.eof() {
                return match open {
                    None => Ok(()),
                    Some(o) => Err(self.err(
                        self.i,
                        format!(
                            "expected end tag '</{}>' to close {} (opened at line {}) but got end of file",
                            o.name, o.label, o.pos.line
                        ),
                    )),
                };
            }
            if self.starts("</") {
                let at = self.i;
                self.i += 2;
                let e_name = self.scan_name();
                let after_name = self.i;
                self.spacing();
                if self.peek() != Some(b'>') {
                    return Err(self.err(after_name, format!("expected '>' to close end tag </{e_name}")));
                }
                self.i += 1;
                if !self.line_end() {
                    return Err(self.err(self.i, format!("expected end of line after end tag </{e_name}>")));
                }
                return match open {
                    Some(o) if o.name == e_name => Ok(()),
                    Some(o) => Err(self.err(
                        at,
                        format!(
                            "unmatched end tag </{e_name}>: expected </{}> to close {} (opened at line {})",
                            o.name, o.label, o.pos.line
                        ),
                    )),
                    None => Err(self.err(at, format!("unmatched end tag </{e_name}>: no section is open here"))),
                };
            }
            if self.peek() == Some(b'<') {
                self.parse_section(body, depth)?;
                continue;
            }
            if root {
                let kw = if self.starts("@include") {
                    8
                } else if self.starts("include") {
                    7
                } else {
                    0
                };
                // `(@include|include)` followed by SPACING (whitespace, a comment or EOF).
                if kw > 0 && self.byte(self.i + kw).is_none_or(|c| is_ws(c) || c == b'#') {
                    let at = self.i;
                    if kw == 7 {
                        self.shared.warn(self.pos(at), "'include' is deprecated. Use '@include' instead".into());
                    }
                    self.i += kw;
                    self.spacing();
                    self.parse_include(at, body, depth)?;
                    continue;
                }
            }
            self.parse_param(open, &section, body, depth)?;
        }
    }

    fn parse_section(&mut self, body: &mut Body, depth: usize) -> Result<(), ConfigError> {
        let at = self.i;
        self.i += 1;
        let name = self.scan_name();
        if name.is_empty() {
            return Err(self.err(self.i, "expected a section name (letters, digits, '_') after '<'"));
        }
        self.spacing();
        let arg = match self.scan_string(Boundary::Arg)? {
            Some(Lit::Str(s)) => s,
            _ => String::new(),
        };
        let after_arg = self.i;
        self.spacing();
        let label = if arg.is_empty() { format!("<{name}>") } else { format!("<{name} {arg}>") };
        if self.peek() != Some(b'>') {
            return Err(self.err(after_arg, format!("expected '>' to close {}", &label[..label.len() - 1])));
        }
        self.i += 1;
        if !self.line_end() {
            return Err(self.err(self.i, format!("expected end of line after {label}")));
        }
        if depth >= MAX_NESTING {
            return Err(self.err(at, format!("sections nested deeper than {MAX_NESTING} levels")));
        }
        let open = Open { name: &name, label, pos: self.pos(at) };
        let mut inner = Body::default();
        self.parse_element(Some(&open), &mut inner, depth + 1)?;
        let pos = open.pos;
        let (attrs, elems) = inner.into_parts();
        body.elems.push(Element::new(name, arg, attrs, elems, pos));
        Ok(())
    }

    fn parse_param(
        &mut self,
        open: Option<&Open<'_>>,
        section: &str,
        body: &mut Body,
        depth: usize,
    ) -> Result<(), ConfigError> {
        let at = self.i;
        let key = match self.scan_string(Boundary::Spacing)? {
            Some(Lit::Str(k)) => k,
            _ => return Err(self.err(at, "expected a parameter name")),
        };
        if self.spacing_without_comment() {
            // `key` alone on its line: the value is "" (true for a bool, as `tag_mapped`).
            body.set(key, Lit::Str(String::new()), self.pos(at), section, self.shared);
            return Ok(());
        }
        if key == "@include" {
            return self.parse_include(at, body, depth);
        }
        if key.starts_with('@') && !RESERVED.contains(&key.as_str()) {
            if open.is_none_or(|o| ELEM_SYMBOLS.contains(&o.name)) {
                return Err(self.err(
                    at,
                    format!(
                        "'@' is the system reserved prefix. Don't use '@' prefix parameter in the configuration: {key}"
                    ),
                ));
            }
            self.shared.warn(
                self.pos(at),
                format!("'@' is the system reserved prefix. It works in the nested configuration for now but it will be rejected: {key}"),
            );
        }
        let value = self.parse_literal()?.unwrap_or(Lit::Nil);
        if !self.line_end() {
            return Err(self.err(
                self.next_non_blank(),
                format!("expected end of line after the value of '{key}' (text after a quoted or JSON value?)"),
            ));
        }
        body.set(key, value, self.pos(at), section, self.shared);
        Ok(())
    }

    fn parse_include(&mut self, at: usize, body: &mut Body, depth: usize) -> Result<(), ConfigError> {
        let uri = match self.scan_string(Boundary::LineEnd)? {
            Some(Lit::Str(u)) if !u.is_empty() => u,
            _ => return Err(self.err(at, "expected a file path or glob after @include")),
        };
        if !self.line_end() {
            return Err(self.err(self.next_non_blank(), format!("expected end of line after @include {uri}")));
        }
        let path = match uri.split_once("://") {
            Some(("file", rest)) => rest.to_string(),
            Some((scheme, _)) => {
                return Err(self.err(
                    at,
                    format!("@include {uri}: only local files can be included ({scheme}:// is not supported)"),
                ))
            }
            None => uri.clone(),
        };
        // File.expand_path: relative to the including file, `.` and `..` resolved lexically.
        let joined =
            normalize(&if Path::new(&path).is_absolute() { PathBuf::from(&path) } else { self.base.join(&path) });
        let pattern = joined.to_string_lossy().into_owned();
        let files = expand_glob(&pattern).map_err(|e| self.err(at, format!("@include {uri}: {e}")))?;
        if files.is_empty() {
            // fluentd includes nothing either way; spate only lets a glob match nothing
            // (an empty conf.d), a missing file is a mistake (README: deliberate).
            if !pattern.contains(['*', '?', '[', '{']) {
                return Err(self.err(at, format!("@include {uri}: no such file: {pattern}")));
            }
            self.shared.warn(
                self.pos(at),
                format!("@include {uri}: no file matches {pattern}; nothing is included (fluentd ignores it too)"),
            );
            return Ok(());
        }
        if self.includes.len() >= MAX_INCLUDE_DEPTH {
            return Err(self.err(at, format!("@include {uri}: includes nested deeper than {MAX_INCLUDE_DEPTH} files")));
        }
        for f in files {
            let fname = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            const BACKUP: &[&str] = &["bak", "old", "backup", "orig", "prev", "conf", "tmp", "temp", "debug", "wip"];
            if path.ends_with("*.conf")
                && BACKUP
                    .iter()
                    .any(|x| fname.ends_with(&format!(".{x}.conf")) || fname.ends_with(&format!("_{x}.conf")))
            {
                self.shared.warn(
                    self.pos(at),
                    format!("There is a possibility that '@include {uri}' includes duplicated backed-up config file such as <{fname}>"),
                );
            }
            let canon = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
            if let Some(first) = self.includes.iter().position(|p| *p == canon) {
                let chain: Vec<String> =
                    self.includes[first..].iter().chain([&canon]).map(|p| p.display().to_string()).collect();
                return Err(self.err(at, format!("@include {uri}: include cycle: {}", chain.join(" -> "))));
            }
            let n = self.shared.files_read.get() + 1;
            if n > MAX_INCLUDED_FILES {
                return Err(self.err(at, format!("@include {uri}: more than {MAX_INCLUDED_FILES} files included")));
            }
            self.shared.files_read.set(n);
            let text = std::fs::read_to_string(&f)
                .map_err(|e| self.err(at, format!("@include {uri}: cannot read {}: {e}", f.display())))?;
            let base = f.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut chain = self.includes.to_vec();
            chain.push(canon);
            let mut p = Parser::new(&text, &f.to_string_lossy(), &base, self.shared, &chain);
            // fluentd parses an included file as a root element, into the includer's
            // element (so `@include` inside a section adds to that section).
            p.parse_element(None, body, depth)?;
        }
        Ok(())
    }

    /// A value: JSON when it starts with `[` or `{`, else a string.
    fn parse_literal(&mut self) -> Result<Option<Lit>, ConfigError> {
        self.spacing_without_comment();
        match self.peek() {
            Some(b'[') => self.scan_json(true).map(|s| Some(Lit::Str(s))),
            Some(b'{') => self.scan_json(false).map(|s| Some(Lit::Str(s))),
            _ => self.scan_string(Boundary::LineEnd),
        }
    }

    /// A quoted or unquoted string; None when an unquoted string is empty.
    fn scan_string(&mut self, b: Boundary) -> Result<Option<Lit>, ConfigError> {
        match self.peek() {
            Some(b'"') => self.scan_double_quoted().map(Some),
            Some(b'\'') => self.scan_single_quoted().map(|s| Some(Lit::Str(s))),
            _ => Ok(self.scan_nonquoted(b).map(Lit::Str)),
        }
    }

    fn at_boundary(&self, b: Boundary) -> bool {
        match b {
            Boundary::LineEnd => self.line_end_len(self.i).is_some(),
            Boundary::Spacing => self.peek().is_none_or(is_ws),
            Boundary::Arg => self.arg_end_at(self.i),
        }
    }

    fn scan_nonquoted(&mut self, b: Boundary) -> Option<String> {
        let st = self.i;
        while let Some(c) = self.peek() {
            // fluentd takes '#' as text inside an unquoted string (a comment needs a
            // blank before it, which the boundary sees), and its `.` never matches '\n'.
            if c == b'#' {
                self.i += 1;
                continue;
            }
            if c == b'\n' || self.at_boundary(b) {
                break;
            }
            if is_blank(c) || c == b'\r' {
                // Every blank of a run that is not a boundary continues to the same
                // place, so none of them is one: skip the run (keeps scanning linear).
                while self.peek().is_some_and(|c| is_blank(c) || c == b'\r') {
                    self.i += 1;
                }
            } else {
                self.i += 1;
            }
        }
        (self.i > st).then(|| self.text(st, self.i))
    }

    /// `'...'`: only `\'` and `\\` are escapes; fluentd does not let it span lines.
    fn scan_single_quoted(&mut self) -> Result<String, ConfigError> {
        let st = self.i;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err(st, "unexpected end of file in a single quoted string")),
                Some(b'\n') => {
                    return Err(self.err(
                        st,
                        "unexpected end of line in a single quoted string (only double-quoted strings may span lines)",
                    ))
                }
                Some(b'\'') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') if matches!(self.byte(self.i + 1), Some(b'\'' | b'\\')) => {
                    out.push(self.s[self.i + 1]);
                    self.i += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// `"..."`: escapes, `#{}` embedded code, may span lines (`\` at the end of a line
    /// joins it with the next).
    fn scan_double_quoted(&mut self) -> Result<Lit, ConfigError> {
        let st = self.i;
        self.i += 1;
        let mut out = Vec::new();
        let (mut nil, mut default) = (false, false);
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err(st, "unexpected end of file in a double quoted string"));
            };
            let next = self.byte(self.i + 1);
            if c == b'"' {
                self.i += 1;
                return Ok(if nil {
                    Lit::Nil
                } else if default {
                    Lit::Default
                } else {
                    Lit::Str(String::from_utf8_lossy(&out).into_owned())
                });
            }
            if c == b'\\' {
                match next {
                    // Line continuation.
                    Some(b'\n') => self.i += 2,
                    Some(b'\r') if self.byte(self.i + 2) == Some(b'\n') => self.i += 3,
                    Some(b'\r') => self.i += 2,
                    None => self.i += 1,
                    Some(e) => {
                        let ch = match e {
                            b'r' => b'\r',
                            b'n' => b'\n',
                            b't' => b'\t',
                            b'f' => 0x0c,
                            b'b' => 0x08,
                            b'0' => 0,
                            e if e.is_ascii_alphanumeric() => {
                                return Err(self.err(
                                    self.i,
                                    format!(
                                        "unexpected back-slash escape character '{}' (fluentd knows \\\" \\' \\\\ \\r \\n \\t \\f \\b \\0)",
                                        e as char
                                    ),
                                ));
                            }
                            // A symbol stands for itself: \" \' \\ \[ \# ...
                            e => e,
                        };
                        out.push(ch);
                        self.i += 2;
                    }
                }
                continue;
            }
            if c == b'#' && next == Some(b'{') {
                match self.embedded_code()? {
                    Eval::Value(v) => match v.to_interpolated() {
                        Some(s) => out.extend_from_slice(s.as_bytes()),
                        // fluentd: a nil anywhere in the string makes the value nil.
                        None => nil = true,
                    },
                    Eval::SetNil => nil = true,
                    Eval::SetDefault => default = true,
                }
                continue;
            }
            out.push(c);
            self.i += 1;
        }
    }

    /// Evaluates `#{...}` at `self.i` and moves past it.
    fn embedded_code(&mut self) -> Result<Eval, ConfigError> {
        let at = self.i;
        let code_start = self.i + 2;
        let end = embedded::find_code_end(self.s, code_start)
            .ok_or_else(|| self.err(at, "expected '}' to end the embedded code #{...}"))?;
        let code = self.text(code_start, end);
        self.i = end + 1;
        embedded::eval(&code, self.shared.ctx).map_err(|m| self.err(at, m))
    }

    /// A JSON array/object value that may span lines, with `#` comments after complete
    /// elements, `//` and `/* */` comments, and `#{}` embedded code (also inside JSON
    /// strings, as in fluentd); kept as compact JSON text (fluentd's JSON.dump).
    fn scan_json(&mut self, is_array: bool) -> Result<String, ConfigError> {
        let what = if is_array { "array" } else { "hash" };
        let close = if is_array { "]" } else { "}" };
        let st = self.i;
        let mut buf = String::from(if is_array { "[" } else { "{" });
        self.i += 1;
        // Where the current line starts in `buf` (fluentd's line_buffer).
        let mut line_start = buf.len();
        let mut depth = 1usize;
        let mut in_str = false;
        loop {
            if buf.len() > MAX_JSON {
                return Err(self.err(st, format!("JSON {what} value longer than {MAX_JSON} bytes")));
            }
            let Some(c) = self.peek() else {
                return Err(self.err(
                    st,
                    format!("got incomplete JSON {what} configuration (no matching '{close}' before end of file)"),
                ));
            };
            let next = self.byte(self.i + 1);
            if in_str {
                match c {
                    b'#' if next == Some(b'{') && self.embedded_code_follows() => {
                        let s = self.json_embedded_code()?;
                        buf.push_str(&s);
                        continue;
                    }
                    b'\\' => {
                        buf.push('\\');
                        self.i += 1;
                        // Keep the escaped character with its backslash (so `\"` does not
                        // end the string), unless it is '#': fluentd still expands `\#{`.
                        if let Some(n) = self.peek().filter(|n| *n != b'#' && n.is_ascii()) {
                            buf.push(n as char);
                            self.i += 1;
                        }
                        continue;
                    }
                    b'"' => in_str = false,
                    _ => {}
                }
                self.push_char(&mut buf);
                continue;
            }
            match c {
                b'"' => in_str = true,
                b'#' => {
                    // fluentd: '#' starts a comment when the value so far (without a
                    // trailing comma on this line) closes into valid JSON (which needs
                    // depth 1); otherwise `#{` is code.
                    if depth == 1 && self.json_closes(&buf, line_start, close, st, what)? {
                        while self.peek().is_some_and(|c| c != b'\n') {
                            self.i += 1;
                        }
                        if !self.eof() {
                            self.i += 1;
                        }
                        buf.push('\n');
                        line_start = buf.len();
                        continue;
                    }
                    if next == Some(b'{') && self.embedded_code_follows() {
                        let s = self.json_embedded_code()?;
                        buf.push_str(&s);
                        continue;
                    }
                    return Err(self.err(
                        self.i,
                        format!(
                            "unexpected '#' in a JSON {what}: fluentd reads '#' as a comment only after a complete element on the same line (quote it if it is text)"
                        ),
                    ));
                }
                b'/' if next == Some(b'/') => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                    continue;
                }
                b'/' if next == Some(b'*') => {
                    let from = self.i + 2;
                    let Some(end) = memchr::memmem::find(&self.s[from..], b"*/") else {
                        return Err(self.err(self.i, format!("unterminated /* comment in a JSON {what}")));
                    };
                    self.i = from + end + 2;
                    buf.push(' ');
                    continue;
                }
                b'\n' => {
                    self.i += 1;
                    buf.push('\n');
                    line_start = buf.len();
                    continue;
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        buf.push(c as char);
                        // Nothing appended later can repair an invalid value, so fail
                        // here (fluentd reads on to EOF and reports "incomplete").
                        return match serde_json::from_str::<serde_json::Value>(&buf) {
                            Ok(v) if v.is_array() == is_array => Ok(v.to_string()),
                            Ok(_) => Err(self.err(st, format!("got invalid JSON {what}: mismatched brackets"))),
                            Err(e) => Err(self.err(st, format!("got invalid JSON {what} configuration: {e}"))),
                        };
                    }
                }
                _ => {}
            }
            self.push_char(&mut buf);
        }
    }

    /// fluentd's test for a comment: does the JSON so far, with the current line's
    /// trailing blanks and comma removed, close into a valid value?
    fn json_closes(
        &mut self,
        buf: &str,
        line_start: usize,
        close: &str,
        st: usize,
        what: &str,
    ) -> Result<bool, ConfigError> {
        let line = buf[line_start..].trim_end();
        let line = line.strip_suffix(',').unwrap_or(line);
        self.json_rescan += line_start + line.len() + 1;
        if self.json_rescan > JSON_RESCAN_BUDGET {
            return Err(self.err(st, format!("JSON {what} value too complex (too many '#' comments)")));
        }
        let candidate = format!("{}{line}{close}", &buf[..line_start]);
        Ok(serde_json::from_str::<serde_json::Value>(&candidate).is_ok())
    }

    /// Appends the (possibly multi-byte) character at `self.i` to `buf`.
    fn push_char(&mut self, buf: &mut String) {
        let Some(c) = self.peek() else { return };
        if c < 0x80 {
            buf.push(c as char);
            self.i += 1;
            return;
        }
        let len = if c >= 0xF0 {
            4
        } else if c >= 0xE0 {
            3
        } else {
            2
        };
        let end = (self.i + len).min(self.s.len());
        buf.push_str(&String::from_utf8_lossy(&self.s[self.i..end]));
        self.i = end;
    }

    /// fluentd's `@ss.exist?(/^\{[^}]+\}/)` after a '#': `{`, some text, `}`.
    fn embedded_code_follows(&self) -> bool {
        let rest = &self.s[(self.i + 1).min(self.s.len())..];
        rest.first() == Some(&b'{') && rest.get(1).is_some_and(|c| *c != b'}') && rest[1..].contains(&b'}')
    }

    /// `#{...}` inside a JSON value: fluentd inserts the resulting string as raw text.
    fn json_embedded_code(&mut self) -> Result<String, ConfigError> {
        let at = self.i;
        match self.embedded_code()? {
            Eval::Value(Value::Str(s)) => Ok(s),
            Eval::Value(Value::Nil) => Err(self.err(
                at,
                "embedded code in a JSON value gave nil (an unset ENV variable?); fluentd fails here too: give a default with ||",
            )),
            Eval::Value(v) => Err(self.err(
                at,
                format!(
                    "embedded code in a JSON value must give a string, got {}: quote it, e.g. '{}'",
                    match v {
                        Value::Int(_) => "an integer",
                        _ => "a boolean",
                    },
                    v.to_interpolated().unwrap_or_default()
                ),
            )),
            Eval::SetNil | Eval::SetDefault => {
                Err(self.err(at, "use_nil / use_default cannot be used inside a JSON value (fluentd fails here too)"))
            }
        }
    }
}

/// Lexical `.` / `..` resolution, as Ruby's File.expand_path.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}

/// Ruby's Dir.glob (as fluentd's @include uses it): `*`, `?`, `[...]`, `**/`, `{a,b}`;
/// `*` matches neither '/' nor a leading '.'; results sorted bytewise, without duplicates.
fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let mut alternatives = Vec::new();
    expand_braces(pattern, &mut alternatives)?;
    let opts =
        glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: true };
    let mut files: Vec<PathBuf> = Vec::new();
    for p in alternatives {
        let paths = glob::glob_with(&p, opts).map_err(|e| format!("invalid pattern {p}: {e}"))?;
        files.extend(paths.filter_map(Result::ok));
    }
    files.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
    files.dedup();
    Ok(files)
}

/// Expands the first `{a,b,...}` group (nesting respected) and recurses on the results.
fn expand_braces(p: &str, out: &mut Vec<String>) -> Result<(), String> {
    if out.len() > MAX_BRACE_EXPANSION {
        return Err(format!("pattern expands to more than {MAX_BRACE_EXPANSION} alternatives"));
    }
    let b = p.as_bytes();
    let Some(open) = b.iter().position(|&c| c == b'{') else {
        out.push(p.to_string());
        return Ok(());
    };
    let mut depth = 0usize;
    let mut commas = Vec::new();
    let mut close = None;
    for (j, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(j);
                    break;
                }
            }
            b',' if depth == 1 => commas.push(j),
            _ => {}
        }
    }
    let Some(close) = close else {
        out.push(p.to_string());
        return Ok(());
    };
    let (pre, post) = (&p[..open], &p[close + 1..]);
    let mut start = open + 1;
    for end in commas.into_iter().chain([close]) {
        expand_braces(&format!("{pre}{}{post}", &p[start..end]), out)?;
        start = end + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::*;

    fn ctx() -> EvalContext {
        let env = HashMap::from([
            ("FLUENT_ELASTICSEARCH_HOST".to_string(), "es.local".to_string()),
            ("PORT".to_string(), "9200".to_string()),
            ("EMBEDDED_VAR".to_string(), "embedded".to_string()),
            ("NESTED_EMBEDDED_VAR".to_string(), "nested-embedded".to_string()),
        ]);
        EvalContext::with_env("myhost", None, env)
    }

    fn p(s: &str) -> Result<Element, ConfigError> {
        pw(s).map(|(r, _)| r)
    }

    /// Parses and returns the warnings as text.
    fn pw(s: &str) -> Result<(Element, Vec<String>), ConfigError> {
        parse_str_with_warnings(s, "test.conf", Path::new("."), &ctx())
            .map(|(r, w)| (r, w.iter().map(ToString::to_string).collect()))
    }

    fn file(path: &Path) -> Result<Element, ConfigError> {
        parse_file_with_warnings(path, &ctx()).map(|(r, _)| r)
    }

    fn in_dir(text: &str, dir: &Path) -> Result<Element, ConfigError> {
        parse_str_with_warnings(text, "t.conf", dir, &ctx()).map(|(r, _)| r)
    }

    /// The value of `k` after parsing `k <text>` at the top level (fluentd's
    /// `parse_text` in test_literal_parser.rb).
    fn lit(text: &str) -> Option<String> {
        let r = p(&format!("k {text}")).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        r.str("k").map(str::to_string)
    }

    fn lit_err(text: &str) -> String {
        match p(&format!("k {text}")) {
            Ok(r) => panic!("{text:?} parsed as {:?}", r.str("k")),
            Err(e) => e.to_string(),
        }
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(&lit(text).unwrap()).unwrap()
    }

    #[test]
    fn directives_attrs_and_nesting() {
        let r = p("# top comment\n<source>\n  @type forward\n  port 24224 # a comment\n  bind 0.0.0.0\n</source>\n\n<match app.** other>\n  @type forward\n  <server>\n    host 10.0.0.1\n  </server>\n  <buffer tag,time>\n    flush_interval 5s\n  </buffer>\n</match>\n<label @OUT>\n  <match **>\n    @type null\n  </match>\n</label>\n<worker 0-1>\n</worker>\n<system>\n  workers 2\n</system>\n").unwrap();
        let names: Vec<(&str, &str)> = r.elements.iter().map(|e| (e.name.as_str(), e.arg.as_str())).collect();
        assert_eq!(
            names,
            [("source", ""), ("match", "app.** other"), ("label", "@OUT"), ("worker", "0-1"), ("system", "")]
        );
        assert_eq!(r.name, "ROOT");
        let s = &r.elements[0];
        assert_eq!(s.plugin_type(), Some("forward"));
        assert_eq!(s.str("port"), Some("24224"));
        assert_eq!(s.pos.to_string(), "test.conf:2:1");
        assert_eq!(s.get("bind").unwrap().pos.to_string(), "test.conf:5:3");
        let m = &r.elements[1];
        assert_eq!(m.elements[0].name, "server");
        assert_eq!(m.elements[1].arg, "tag,time");
        assert_eq!(m.elements[1].time("flush_interval").unwrap(), Some(std::time::Duration::from_secs(5)));
        assert_eq!(r.elements[2].elements[0].arg, "**");
    }

    #[test]
    fn fluentd_attribute_parsing() {
        // test_config_parser.rb 'attribute parsing'.
        let r = p("\n  k1 v1\n  k2 v2\n").unwrap();
        assert_eq!((r.str("k1"), r.str("k2")), (Some("v1"), Some("v2")));
        let r = p("\n  k1\n  k2 v2\n").unwrap();
        assert_eq!((r.str("k1"), r.str("k2")), (Some(""), Some("v2")));
        assert_eq!(p("1 1").unwrap().str("1"), Some("1"));
        for v in ["_.%$!,", "/=~-~@`:?", "()*{}.[]"] {
            assert_eq!(lit(v).as_deref(), Some(v));
        }
        assert_eq!(p("  k1     a    ").unwrap().str("k1"), Some("a"));
        assert_eq!(p("k1 a  b  c").unwrap().str("k1"), Some("a  b  c"));
        assert_eq!(p("k1\n").unwrap().str("k1"), Some(""));
        assert_eq!(p("k1").unwrap().str("k1"), Some(""));
        // non-quoted
        assert_eq!(p("  k1 #not_comment").unwrap().str("k1"), Some("#not_comment"));
        assert_eq!(p("  k1 a#not_comment").unwrap().str("k1"), Some("a#not_comment"));
        assert_eq!(p("  k1 a #comment").unwrap().str("k1"), Some("a"));
        assert_eq!(p("  k1 \\\\").unwrap().str("k1"), Some("\\\\"));
        assert_eq!(p("  k1 \\").unwrap().str("k1"), Some("\\"));
        assert_eq!(p("  k1 \\[").unwrap().str("k1"), Some("\\["));
        assert_eq!(p("  k1 \\n").unwrap().str("k1"), Some("\\n"));
        // double quoted
        assert_eq!(p("  k1 \"a#comment\"").unwrap().str("k1"), Some("a#comment"));
        assert!(p("  k1 \"a\" 1").is_err());
        assert_eq!(p("  k1 \"\\\\\"").unwrap().str("k1"), Some("\\"));
        assert!(p("  k1 \"\\\"").is_err());
        assert_eq!(p("  k1 \"\\\"\"").unwrap().str("k1"), Some("\""));
        assert!(p("  k1 \"\"\"").is_err());
        assert!(p("  k1 \"\"'").is_err());
        assert_eq!(p("  k1 \"\\[\"").unwrap().str("k1"), Some("["));
        assert_eq!(p("  k1 \"\\n\"").unwrap().str("k1"), Some("\n"));
        // multi-line double-quoted strings
        let v = "line1\n                       line2";
        assert_eq!(p(&format!("k1      \"{v}\"")).unwrap().str("k1"), Some(v));
        let r = p("k1      \"line1\\\n                       line2\"").unwrap();
        assert_eq!(r.str("k1"), Some("line1                       line2"));
        let r = p("k1 \"line1\n  line2\\\n  line3\"").unwrap();
        assert_eq!(r.str("k1"), Some("line1\n  line2  line3"));
        // single quoted
        assert_eq!(p("  k1 'a#comment'").unwrap().str("k1"), Some("a#comment"));
        assert!(p("  k1 'a' 1").is_err());
        assert_eq!(p("  k1 '\\\\'").unwrap().str("k1"), Some("\\"));
        assert!(p("  k1 '\\'").is_err());
        assert_eq!(p("  k1 '\\''").unwrap().str("k1"), Some("'"));
        assert!(p("  k1 '''").is_err());
        assert_eq!(p("  k1 '\\['").unwrap().str("k1"), Some("\\["));
        assert_eq!(p("  k1 '\\n'").unwrap().str("k1"), Some("\\n"));
    }

    #[test]
    fn fluentd_literal_parser_cases() {
        // test_literal_parser.rb: numbers and keywords stay text.
        for t in
            ["true", "false", "trueX", "0", "-1", "01", "0x61", "0s", "1.1", "-12.1e7", ".0", "1.", "NaN", "-Infinity"]
        {
            assert_eq!(lit(t).as_deref(), Some(t));
        }
        assert_eq!(lit("0 ").as_deref(), Some("0"));
        assert_eq!(lit(" -1 ").as_deref(), Some("-1"));
        // double quoted
        for (want, t) in [
            ("", r#""""#),
            ("text", r#""text""#),
            ("\"", r#""\"""#),
            ("\t", r#""\t""#),
            ("\n", r#""\n""#),
            ("\r\n", r#""\r\n""#),
            ("\x0c\x08", r#""\f\b""#),
            (".t", r#""\.t""#),
            ("$t", r#""\$t""#),
            ("#t", r#""\#t""#),
            ("\0", r#""\0""#),
            ("t\nt", "\"t\nt\""),
            ("tt", "\"t\\\nt\""),
            ("t\"", "t\""),
            ("#{test}", r#""\#{test}""#),
            ("$}", r#""$}""#),
            ("\\", r#""\\""#),
            ("[", r#""\[""#),
        ] {
            assert_eq!(lit(t).as_deref(), Some(want), "{t}");
        }
        for t in [r#""\z""#, r#""\1""#, "\"t"] {
            lit_err(t);
        }
        // single quoted
        for (want, t) in [
            ("", "''"),
            ("'", r"'\''"),
            (r"\t", r"'\t'"),
            (r"\r\n", r"'\r\n'"),
            (r"\#t", r"'\#t'"),
            (r"\z", r"'\z'"),
            (r"\0", r"'\0'"),
            ("t'", "t'"),
            ("#{test}", "'#{test}'"),
            ("\\", r"'\\'"),
            (r"\[", r"'\['"),
        ] {
            assert_eq!(lit(t).as_deref(), Some(want), "{t}");
        }
        lit_err("'t");
        // non-quoted
        for t in [r#"\""#, r"\t", r"\r\n", r"\#t", r"\z", "#{test}", r"\\", "#foo", "foo#bar", "t{", "}t", "t[", "]t"] {
            assert_eq!(lit(t).as_deref(), Some(t), "{t}");
        }
        for (want, t) in [("text", " text"), ("#foo", " #foo"), ("foo", "foo #bar"), ("foo", "foo\t#bar")] {
            assert_eq!(lit(t).as_deref(), Some(want), "{t}");
        }
        lit_err("{t");
        lit_err("[t");
        // embedded code
        assert_eq!(lit("\"#{1+1}\"").as_deref(), Some("2"));
        assert_eq!(lit("\"#{}\"").as_deref(), Some(""));
        assert_eq!(lit("\"#{\"}\"}\"").as_deref(), Some("}"));
        lit_err("\"#{#}\"");
        assert_eq!(lit("\"foo#{hostname}\"").as_deref(), Some("foomyhost"));
        assert_eq!(lit("\"foo#{worker_id}\"").as_deref(), Some("foo"));
        assert_eq!(lit("\"#{use_nil}\""), None);
        assert_eq!(lit("\"#{use_default}\""), None);
        assert_eq!(lit("\"#{1+1}foo#{2+2}bar\"").as_deref(), Some("2foo4bar"));
    }

    #[test]
    fn fluentd_json_cases() {
        use serde_json::json;
        assert_eq!(json("[]"), json!([]));
        assert_eq!(json("[ 1 , 2 ]"), json!([1, 2]));
        assert_eq!(json("[\n1\n,\n2\n]"), json!([1, 2]));
        assert_eq!(json("[ \"a\" , \"b\" ]"), json!(["a", "b"]));
        assert_eq!(json("[\"a\",\"#{hostname}\"]"), json!(["a", "myhost"]));
        assert_eq!(json("[\"a\",\"foo#{worker_id}\"]"), json!(["a", "foo"]));
        assert_eq!(json("[\"#{ENV['PORT']} #{hostname}\"]"), json!(["9200 myhost"]));
        lit_err("[1,2,]");
        assert_eq!(
            json("[\n \"a\", // this is a\n \"b\", // this is b\n \"c\"  // this is c\n]"),
            json!(["a", "b", "c"])
        );
        assert_eq!(json("[\n \"a\", # this is a\n \"b\", # this is b\n \"c\"  # this is c\n]"), json!(["a", "b", "c"]));
        assert!(lit_err("[\n \"a\", # this is a\n \"b\", # this is b\n \"c\", # this is c\n]").contains("JSON array"));
        assert_eq!(json("{ \"a\" : 1 , \"b\" : 2 }"), json!({"a": 1, "b": 2}));
        lit_err("{\"a\":1,\"b\":2,}");
        assert_eq!(json("{\n\"a\"\n:\n1\n,\n\"b\"\n:\n2\n}"), json!({"a": 1, "b": 2}));
        assert_eq!(json("{\"a\":\"b\",\"#{hostname}\":\"d\"}"), json!({"a": "b", "myhost": "d"}));
        assert_eq!(
            json("{\n \"a\": 1, # this is a\n \"b\": 2, # this is b\n \"c\": 3  # this is c\n}"),
            json!({"a": 1, "b": 2, "c": 3})
        );
        assert_eq!(json("[\"a#b\", /* c */ \"d\"]"), json!(["a#b", "d"]));
        assert_eq!(json("[\"q\\\"#x\\\\\"]"), json!(["q\"#x\\"]));
        // Compact JSON text, key order kept (fluentd's JSON.dump).
        assert_eq!(lit("{ \"key1\": \"value1\", \"key2\": 2 }").as_deref(), Some(r#"{"key1":"value1","key2":2}"#));
        assert_eq!(lit("[\"value1\", \"value2\", 100]").as_deref(), Some(r#"["value1","value2",100]"#));
        // A quoted JSON text is just a string.
        assert_eq!(lit("'{\"a\":\"b\",\"c\":\"#{v1}\"}'").as_deref(), Some(r##"{"a":"b","c":"#{v1}"}"##));
        assert_eq!(lit("\"{\\\"a\\\":\\\"#{hostname}\\\"}\"").as_deref(), Some(r#"{"a":"myhost"}"#));
        // Errors.
        assert!(lit_err("[\"#{ENV['UNSET']}\"]").contains("gave nil"));
        assert!(lit_err("[\"#{1}\"]").contains("must give a string"));
        assert!(lit_err("[1 2]").contains("invalid JSON array"));
        assert!(lit_err("[1}").contains("invalid JSON array"));
        assert!(lit_err("{\"a\": x#y}").contains("unexpected '#'"));
        assert!(lit_err("[1, /* x").contains("unterminated /*"));
        assert!(lit_err("[1] x").contains("expected end of line after the value of 'k'"));
    }

    #[test]
    fn fluentd_element_parsing() {
        let r = p("").unwrap();
        assert!(r.elements.is_empty() && r.attrs.is_empty());
        let r = p("\n<test var>\n  key [\"a\",\n\"b\", \"c\",\n\"d\"]\n</test>\n").unwrap();
        assert_eq!(r.elements[0].str("key"), Some(r#"["a","b","c","d"]"#));
        assert_eq!(p("<test >\n</test>\n").unwrap().elements[0].arg, "");
        assert_eq!(p("<test    a    >\n</test>\n").unwrap().elements[0].arg, "a");
        assert_eq!(p("<test    a.** b.** >\n</test>\n").unwrap().elements[0].arg, "a.** b.**");
        for arg in ["**", "*.*", "1", "_.%$!", "/", "()*{}.[]"] {
            assert_eq!(p(&format!("<test {arg}>\n</test>\n")).unwrap().elements[0].arg, arg);
        }
        let e = p("<test #a>\n</test>\n").unwrap_err().to_string();
        assert!(e.contains("expected end tag '</test>'"), "{e}");
        let e = p("<test></test>\n").unwrap_err().to_string();
        assert_eq!(e, "test.conf:1:7: expected end of line after <test>");
        let e = p("<test>\n</test><test>\n</test>\n").unwrap_err().to_string();
        assert_eq!(e, "test.conf:2:8: expected end of line after end tag </test>");
        // Embedded code in section arguments.
        let r = p("<test \"#{ENV[\"EMBEDDED_VAR\"]}\">\n  key 1\n  <nested1 \"#{ENV[\"NESTED_EMBEDDED_VAR\"]}\">\n  </nested1>\n  <nested2 \"#{Socket.gethostname}\">\n  </nested2>\n</test>\n").unwrap();
        let t = &r.elements[0];
        assert_eq!(
            (t.arg.as_str(), t.elements[0].arg.as_str(), t.elements[1].arg.as_str()),
            ("embedded", "nested-embedded", "myhost")
        );
        // A comment after a tag.
        let r = p("<source> # top-level\n  @type forward\n</source> # end\n").unwrap();
        assert_eq!(r.elements[0].plugin_type(), Some("forward"));
    }

    #[test]
    fn reserved_at_prefix() {
        for conf in [
            "<match>\n  @k v\n</match>\n",
            "<source>\n  @k v\n</source>\n",
            "<filter>\n  @k v\n</filter>\n",
            "<system>\n  @k v\n</system>\n",
            "  @k v ",
        ] {
            let e = p(conf).unwrap_err().to_string();
            assert!(e.contains("'@' is the system reserved prefix") && e.contains(": @k"), "{conf}: {e}");
        }
        let (r, warns) = pw("<match>\n  <record>\n    @k v\n  </record>\n</match>\n").unwrap();
        assert_eq!(warns, ["test.conf:3:5: '@' is the system reserved prefix. It works in the nested configuration for now but it will be rejected: @k"]);
        assert_eq!(r.elements[0].elements[0].str("@k"), Some("v"));
        let r = p("<match x>\n  @type file\n  @id out1\n  @label @X\n  @log_level debug\n</match>\n").unwrap();
        let m = &r.elements[0];
        assert_eq!((m.str("@id"), m.str("@label"), m.str("@log_level")), (Some("out1"), Some("@X"), Some("debug")));
    }

    #[test]
    fn old_type_syntax_and_key_without_value() {
        let r = p("<match foo>\n  type file\n  id f1\n  path /var/log/x\n  tag_mapped\n</match>\n").unwrap();
        let m = &r.elements[0];
        assert_eq!(m.plugin_type(), Some("file"));
        // fluentd's Element#[] maps @type/@id/@log_level to the old names.
        assert_eq!(m.str("@id"), Some("f1"));
        assert_eq!(m.str("tag_mapped"), Some(""));
        assert_eq!(m.bool("tag_mapped").unwrap(), Some(true));
        assert!(m.unused_attrs().iter().all(|a| a.key == "path"));
    }

    #[test]
    fn embedded_ruby_in_values() {
        let r = p("<s>\n  a \"#{ENV['FLUENT_ELASTICSEARCH_HOST']}:#{ENV['PORT']}\"\n  b \"#{ENV['NOPE'] || 'dflt'}\"\n  c \"#{ENV.fetch('NOPE', 'f')}\"\n  d \"#{Socket.gethostname}\"\n  e '#{ENV[\"X\"]}'\n  f #{hostname}\n  g \"#{ENV['NOPE']}\"\n  h \"prefix-#{ENV['NOPE']}\"\n  i \"#{ENV['NOPE'] || use_default}\"\n</s>\n").unwrap();
        let s = &r.elements[0];
        assert_eq!(s.str("a"), Some("es.local:9200"));
        assert_eq!(s.str("b"), Some("dflt"));
        assert_eq!(s.str("c"), Some("f"));
        assert_eq!(s.str("d"), Some("myhost"));
        // Single-quoted and unquoted values are not evaluated.
        assert_eq!(s.str("e"), Some("#{ENV[\"X\"]}"));
        assert_eq!(s.str("f"), Some("#{hostname}"));
        // nil (an unset variable) anywhere makes the value nil: not set.
        assert_eq!(s.str("g"), None);
        assert_eq!(s.str("h"), None);
        assert_eq!(s.str("i"), None);
        // A later nil / use_default removes an earlier value, as fluentd's hash does; a
        // value set again keeps the key's first place.
        let r = p("k v1\nk \"#{use_default}\"\n").unwrap();
        assert_eq!(r.str("k"), None);
        let r = p("a 1\nb \"#{use_nil}\"\nc 3\nb 2\n").unwrap();
        let kv: Vec<(&str, &str)> = r.attrs.iter().map(|a| (a.key.as_str(), a.value.as_str())).collect();
        assert_eq!(kv, [("a", "1"), ("b", "2"), ("c", "3")]);
        let e = p("<s>\n  k \"a#{ENV.fetch('NOPE')}\"\n</s>\n").unwrap_err().to_string();
        assert!(
            e.starts_with("test.conf:2:7: in embedded code `ENV.fetch('NOPE')`: ENV.fetch('NOPE'): key not found"),
            "{e}"
        );
        let e = p("<s>\n  k \"#{`id`}\"\n</s>\n").unwrap_err().to_string();
        assert!(e.starts_with("test.conf:2:6: embedded Ruby is not supported: ``id``; spate supports ENV['X']"), "{e}");
        let e = p("k \"#{ENV['X']\n\"\n").unwrap_err().to_string();
        assert!(e.starts_with("test.conf:1:4: expected '}' to end the embedded code"), "{e}");
        // Code may span lines (fluentd finds its end with Ruby's lexer); positions after
        // it stay right.
        let r = p("<s>\n  k \"#{ENV['NOPE'] ||\n     'multi'}\"\n  after 1\n  bad\n</s>\n").unwrap();
        assert_eq!(r.elements[0].str("k"), Some("multi"));
        assert_eq!(r.elements[0].get("after").map(|a| a.pos.line), Some(4));
        let r = p("k \"#{ENV['NOPE'] ? ENV['NOPE'] : 'info'}\"\n").unwrap();
        assert_eq!(r.str("k"), Some("info"));
    }

    #[test]
    fn duplicate_keys_later_wins_in_first_place() {
        let (r, warns) = pw("<s>\n  a 1\n  b 2\n  a 3\n</s>\n").unwrap();
        assert_eq!(warns, ["test.conf:4:3: parameter 'a' is given twice in <s> (previously at line 2); the later value wins, as in fluentd"]);
        let s = &r.elements[0];
        let kv: Vec<(&str, &str)> = s.attrs.iter().map(|a| (a.key.as_str(), a.value.as_str())).collect();
        assert_eq!(kv, [("a", "3"), ("b", "2")]);
        assert_eq!(s.get("a").unwrap().pos.line, 4);
    }

    #[test]
    fn errors_name_file_line_col() {
        let cases: &[(&str, &str)] = &[
            ("<source>\n  @type forward\n", "test.conf:3:1: expected end tag '</source>' to close <source> (opened at line 1) but got end of file"),
            ("<source>\n</match>\n", "test.conf:2:1: unmatched end tag </match>: expected </source> to close <source> (opened at line 1)"),
            ("</match>\n", "test.conf:1:1: unmatched end tag </match>: no section is open here"),
            ("<match app.**\n  @type stdout\n</match>\n", "test.conf:1:14: expected '>' to close <match app.**"),
            ("<match a>\n</match\n", "test.conf:2:8: expected '>' to close end tag </match"),
            ("<>\n</>\n", "test.conf:1:2: expected a section name (letters, digits, '_') after '<'"),
            ("<s>\n  k \"abc\n", "test.conf:2:5: unexpected end of file in a double quoted string"),
            ("<s>\n  k 'abc\n'\n</s>\n", "test.conf:2:5: unexpected end of line in a single quoted string (only double-quoted strings may span lines)"),
            ("<s>\n  k [1, 2\n</s>\n", "test.conf:2:5: got incomplete JSON array configuration (no matching ']' before end of file)"),
            ("<s>\n  k \"x\" y\n</s>\n", "test.conf:2:9: expected end of line after the value of 'k' (text after a quoted or JSON value?)"),
        ];
        for (conf, want) in cases {
            assert_eq!(p(conf).unwrap_err().to_string(), *want, "{conf:?}");
        }
        let e = p("<s>\n  k \"\\q\"\n</s>\n").unwrap_err().to_string();
        assert!(e.starts_with("test.conf:2:6: unexpected back-slash escape character 'q'"), "{e}");
        // Columns count characters, not bytes.
        let e = p("<s>\n  ké \"\\z\"\n</s>\n").unwrap_err().to_string();
        assert!(e.starts_with("test.conf:2:7:"), "{e}");
        let deep = "<a>\n".repeat(100);
        assert_eq!(p(&deep).unwrap_err().to_string(), "test.conf:65:1: sections nested deeper than 64 levels");
    }

    #[test]
    fn crlf_and_bom() {
        let r = p("\u{feff}<source>\r\n  @type forward\r\n  port 1 # c\r\n  k \"a\\\r\nb\"\r\n</source>\r\n").unwrap();
        let s = &r.elements[0];
        assert_eq!((s.plugin_type(), s.str("port"), s.str("k")), (Some("forward"), Some("1"), Some("ab")));
        assert_eq!(s.pos.to_string(), "test.conf:1:1");
    }

    #[test]
    fn includes_globs_and_cycles() {
        let dir = std::env::temp_dir().join(format!("spate-cfg-inc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let w = |rel: &str, text: &str| {
            let f = dir.join(rel);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        };
        // test_config_parser.rb '@include parsing'.
        w(
            "config_test_1.conf",
            &format!(
                "\n  k1 root_config\n  include dir/config_test_2.conf  #\n  @include {}/config_test_4.conf\n  include file://{}/config_test_5.conf\n  @include config.d/*.conf\n",
                dir.display(),
                dir.display()
            ),
        );
        w("dir/config_test_2.conf", "\n  k2 relative_path_include\n  @include ../config_test_3.conf\n");
        w("config_test_3.conf", "\n  k3 relative_include_in_included_file\n");
        w("config_test_4.conf", "\n  k4 absolute_path_include\n");
        w("config_test_5.conf", "\n  k5 uri_include\n");
        w(
            "config.d/config_test_6.conf",
            "\n  k6 wildcard_include_1\n  <elem1 name>\n    include normal_parameter\n  </elem1>\n",
        );
        w("config.d/config_test_7.conf", "\n  k7 wildcard_include_2\n");
        w("config.d/config_test_8.conf", "\n  <elem2 name>\n    @include ../dir/config_test_9.conf\n  </elem2>\n");
        w(
            "dir/config_test_9.conf",
            "\n  k9 embedded\n  <elem3 name>\n    nested nested_value\n    include hoge\n  </elem3>\n",
        );
        w(
            "config.d/00_config_test_8.conf",
            "\n  k8 wildcard_include_3\n  <elem4 name>\n    include normal_parameter\n  </elem4>\n",
        );
        w("config.d/.hidden.conf", "hidden 1\n");
        let c = file(&dir.join("config_test_1.conf")).unwrap();
        let keys: Vec<&str> = c.attrs.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["k1", "k2", "k3", "k4", "k5", "k8", "k6", "k7"]);
        assert_eq!(c.str("k5"), Some("uri_include"));
        let elem1 = c.elements_named("elem1").next().unwrap();
        assert_eq!((elem1.arg.as_str(), elem1.str("include")), ("name", Some("normal_parameter")));
        let elem2 = c.elements_named("elem2").next().unwrap();
        assert_eq!(elem2.str("k9"), Some("embedded"));
        assert!(elem2.get("include").is_none());
        let elem3 = elem2.elements_named("elem3").next().unwrap();
        assert_eq!((elem3.str("nested"), elem3.str("include")), (Some("nested_value"), Some("hoge")));
        // Positions name the included file.
        assert!(c.get("k2").unwrap().pos.to_string().ends_with("dir/config_test_2.conf:2:3"));
        // `..` is resolved (File.expand_path).
        let k3 = c.get("k3").unwrap().pos.to_string();
        assert!(k3.ends_with("/config_test_3.conf:2:3") && !k3.contains(".."), "{k3}");

        // Braces, as Ruby's Dir.glob.
        w("b/x.conf", "x 1\n");
        w("b/y.conf", "y 1\n");
        w("b/z.conf", "z 1\n");
        w("braces.conf", "@include b/{y,x}.conf\n");
        let r = file(&dir.join("braces.conf")).unwrap();
        assert_eq!(r.attrs.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(), ["x", "y"]);

        // Cycles, depth, missing files, URLs.
        w("loop.conf", "@include loop2.conf\n");
        w("loop2.conf", "<match x>\n  @include loop.conf\n</match>\n");
        let e = file(&dir.join("loop.conf")).unwrap_err().to_string();
        assert!(
            e.contains("loop2.conf:2:3: @include loop.conf: include cycle: ") && e.contains("loop.conf -> "),
            "{e}"
        );
        for i in 0..20 {
            w(&format!("d{i}.conf"), &format!("@include d{}.conf\n", i + 1));
        }
        let e = file(&dir.join("d0.conf")).unwrap_err().to_string();
        assert!(e.contains("d15.conf:1:1: @include d16.conf: includes nested deeper than 16 files"), "{e}");
        let e = p("@include /nonexistent/spate.conf\n").unwrap_err().to_string();
        assert_eq!(e, "test.conf:1:1: @include /nonexistent/spate.conf: no such file: /nonexistent/spate.conf");
        let (r, warns) = pw("@include /nonexistent/*.conf\n").unwrap();
        assert!(r.elements.is_empty() && warns.len() == 1, "{warns:?}");
        let e = p("@include http://example.com/fluent.conf\n").unwrap_err().to_string();
        assert_eq!(e, "test.conf:1:1: @include http://example.com/fluent.conf: only local files can be included (http:// is not supported)");
        let e = p("@include\n").unwrap_err().to_string();
        assert!(e.contains("expected a file path"), "{e}");
        let e = in_dir("@include b\n", &dir).unwrap_err().to_string();
        assert!(e.starts_with("t.conf:1:1: @include b: cannot read"), "{e}");
        // `include` is a plain key inside a section, `@include` is not.
        let r = in_dir("<s>\n  include b/x.conf\n  @include b/y.conf\n</s>\n", &dir).unwrap();
        // Warnings: a missing file, the old `include`, a backup file caught by *.conf.
        w("bk/a.conf", "a 1\n");
        w("bk/a.bak.conf", "a 2\n");
        let (r2, warns) = parse_str_with_warnings(
            "include b/x.conf\n@include bk/*.conf\n@include none/*.conf\n",
            "t.conf",
            &dir,
            &ctx(),
        )
        .unwrap();
        assert_eq!(r2.str("a"), Some("1"));
        let warns: Vec<String> = warns.iter().map(ToString::to_string).collect();
        assert_eq!(warns.len(), 4, "{warns:#?}");
        assert_eq!(warns[0], "t.conf:1:1: 'include' is deprecated. Use '@include' instead");
        assert_eq!(warns[1], "t.conf:2:1: There is a possibility that '@include bk/*.conf' includes duplicated backed-up config file such as <a.bak.conf>");
        assert!(
            warns[2].contains("bk/a.conf:1:1: parameter 'a' is given twice in the top level (previously at line 1)"),
            "{}",
            warns[2]
        );
        assert!(
            warns[3].starts_with("t.conf:3:1: @include none/*.conf: no file matches ")
                && warns[3].ends_with("nothing is included (fluentd ignores it too)"),
            "{}",
            warns[3]
        );
        assert_eq!((r.elements[0].str("include"), r.elements[0].str("y")), (Some("b/x.conf"), Some("1")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn brace_expansion() {
        let mut v = Vec::new();
        super::expand_braces("a{b,c{d,e}}f{1,2}", &mut v).unwrap();
        assert_eq!(v, ["abf1", "abf2", "acdf1", "acdf2", "acef1", "acef2"]);
        let mut v = Vec::new();
        super::expand_braces("a{b", &mut v).unwrap();
        assert_eq!(v, ["a{b"]);
        let mut v = Vec::new();
        assert!(super::expand_braces(&"{a,b,c,d}".repeat(8), &mut v).is_err());
    }

    #[test]
    fn unused_parameters_are_reported() {
        let r = p("<source>\n  @type forward\n  port 1\n  typo_param 2\n</source>\n").unwrap();
        let s = &r.elements[0];
        let _ = (s.plugin_type(), s.str("port"));
        let unused: Vec<String> = s.unused_attrs().iter().map(|a| format!("{} {}", a.key, a.pos)).collect();
        assert_eq!(unused, ["typo_param test.conf:4:3"]);
    }

    /// A tiny deterministic generator (no dependency needed).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let seeds = [
            "<",
            "</",
            "<a",
            "<a>",
            "</a>",
            "<a>\n</b>\n",
            "\"",
            "'",
            "k \"#{",
            "k [",
            "k {",
            "k \"\\",
            "#{",
            "<a b c #>\n</a>",
            "@include",
            "k [\"#{ENV['X']}\"]",
            "\u{feff}<é>\n</é>\n",
            "k [\"\\",
            "k {\"a\":#{",
            "k [/*",
            "k [1, #",
            "k \"#{'",
            "k \"#{\"#{\"#{",
            "<a \"#{use_nil}\">\n</a>",
            "\"k\" v",
            "\"#{use_nil}\" v",
            "k \"#{ENV.fetch(\"",
            "k [\"é#{hostname}é\", 1] # ü",
            "<a>\n  k [1,\n  # c\n  2]\n</a>\n",
            "k \"\r",
            "k\r",
        ];
        for s in seeds {
            for i in 0..=s.len() {
                if s.is_char_boundary(i) {
                    let _ = p(&s[..i]);
                }
            }
        }
        // Random strings over the grammar's alphabet.
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let alphabet: Vec<char> = "<>/#\"'{}[]\\ \n\r\t@ab$=,:*é|(){}ENV".chars().collect();
        for _ in 0..20000 {
            let len = rng.below(48);
            let s: String = (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            let _ = p(&s);
        }
        // Mutations of a realistic configuration.
        let base = "<source>\n  @type forward\n  port \"#{ENV['PORT'] || 24224}\"\n</source>\n<match app.**>\n  @type copy\n  <store>\n    @type file\n    path /var/log/x # c\n    <buffer tag,time>\n      timekey 1h\n      headers {\"a\": \"#{hostname}\", # c\n        \"b\": [1, 2]}\n    </buffer>\n  </store>\n</match>\n";
        assert!(p(base).is_ok());
        let bytes = base.as_bytes();
        let ins = b"<>/#\"'{}[]\\ \n@$,:";
        for _ in 0..20000 {
            let mut m = bytes.to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len());
                match rng.below(3) {
                    0 => {
                        m.remove(at);
                    }
                    1 => m.insert(at, ins[rng.below(ins.len())]),
                    _ => m[at] = ins[rng.below(ins.len())],
                }
                if m.is_empty() {
                    m.push(b'<');
                }
            }
            let _ = p(&String::from_utf8_lossy(&m));
        }
    }

    #[test]
    fn hostile_sizes_stay_fast() {
        let t = std::time::Instant::now();
        // Long blank runs inside an argument and a value (would be quadratic if every
        // blank re-scanned the run).
        let _ = p(&format!("<a b{}c>\n</a>\n", " ".repeat(200_000)));
        let _ = p(&format!("k a{}b\n", " ".repeat(200_000)));
        // Many distinct keys in one section, then all unset again.
        let many: String = (0..100_000).map(|i| format!("k{i} v\n")).collect();
        assert_eq!(p(&many).unwrap().attrs.len(), 100_000);
        let unset: String = (0..100_000).map(|i| format!("k{i} \"#{{use_nil}}\"\n")).collect();
        assert!(p(&format!("{many}{unset}")).unwrap().attrs.is_empty());
        // Long Ruby chains and many embedded expressions.
        let _ = p(&format!("k \"#{{{}}}\"\n", vec!["'a'"; 100_000].join("+")));
        let _ = p(&format!("k \"{}\"\n", "#{hostname}".repeat(100_000)));
        // A JSON value re-scanned at many '#' (fluentd's comment test) hits the budget.
        let e = p(&format!("k [1 1 {}\n", "#{'a'}".repeat(150_000))).unwrap_err().to_string();
        assert!(e.contains("too complex") || e.contains("longer than"), "{e}");
        // Many '#' at the top level of a JSON array.
        let _ = p(&format!("k [1 {}\n", "#{x}".repeat(50_000)));
        let _ = p(&format!("k [{}\n", "1,\n#c\n".repeat(20_000)));
        // Deep JSON.
        let _ = p(&format!("k {}\n", "[".repeat(100_000)));
        let _ = p(&format!("k {}{}\n", "[".repeat(1000), "]".repeat(1000)));
        // A very long JSON value.
        assert!(p(&format!("k [\"{}\"]\n", "x".repeat(2 << 20))).unwrap_err().to_string().contains("longer than"));
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "{:?}", t.elapsed());
    }
}
