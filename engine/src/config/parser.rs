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
//!
//! The literal grammar (strings, embedded code, JSON) is in [`literal`], `@include` in
//! [`include`].

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
}

mod include;
mod literal;
#[cfg(test)]
mod tests;
