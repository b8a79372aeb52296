//! The fluent.conf v1 grammar, following fluentd's `v1_parser.rb` / `literal_parser.rb`
//! rule for rule: sections `<name arg>...</name>`, `key value` lines, comments, single-
//! and double-quoted strings (with fluentd's escapes and `#{}` in double quotes only),
//! multi-line JSON values, and `@include` (files and globs, relative to the including
//! file). Nesting and include depth are bounded; any input gives `Ok` or an error with
//! file:line:col, never a panic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ruby::{self, EvalContext};
use super::{Attr, ConfigError, Element, Pos};

const MAX_NESTING: usize = 64;
const MAX_INCLUDE_DEPTH: usize = 16;
/// Parameters fluentd reserves with an `@` prefix.
const RESERVED: &[&str] = &["@type", "@id", "@label", "@log_level"];
const ELEM_SYMBOLS: &[&str] = &["match", "source", "filter", "system"];

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    file: Arc<str>,
    line_starts: Vec<usize>,
    base: PathBuf,
    ctx: &'a EvalContext,
    includes: Vec<PathBuf>,
}

pub fn parse(
    text: &str,
    file: &str,
    base: &Path,
    ctx: &EvalContext,
    includes: Vec<PathBuf>,
) -> Result<Element, ConfigError> {
    let mut p = Parser::new(text, file, base, ctx, includes);
    let root_pos = p.pos(0);
    let mut attrs = Vec::new();
    let mut elems = Vec::new();
    p.parse_element(true, None, &mut attrs, &mut elems, 0)?;
    Ok(Element::new("ROOT".into(), String::new(), attrs, elems, root_pos))
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, file: &str, base: &Path, ctx: &'a EvalContext, includes: Vec<PathBuf>) -> Self {
        let s = text.as_bytes();
        let mut line_starts = vec![0];
        for (i, &b) in s.iter().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        Parser { s, i: 0, file: Arc::from(file), line_starts, base: base.to_path_buf(), ctx, includes }
    }

    fn pos(&self, at: usize) -> Pos {
        let line = self.line_starts.partition_point(|&st| st <= at).max(1);
        let start = self.line_starts[line - 1];
        let col = String::from_utf8_lossy(&self.s[start..at.min(self.s.len())]).chars().count() + 1;
        Pos { file: self.file.clone(), line: line as u32, col: col as u32 }
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

    fn starts(&self, t: &str) -> bool {
        self.s[self.i..].starts_with(t.as_bytes())
    }

    /// Skips whitespace and `#` comments (fluentd's SPACING).
    fn spacing(&mut self) {
        while let Some(c) = self.peek() {
            if is_ws(c) {
                self.i += 1;
            } else if c == b'#' {
                while let Some(c) = self.peek() {
                    self.i += 1;
                    if c == b'\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    /// Skips whitespace only; returns whether a newline (or EOF) was crossed.
    fn spacing_without_comment(&mut self) -> bool {
        let mut nl = false;
        while let Some(c) = self.peek() {
            if !is_ws(c) {
                break;
            }
            nl |= c == b'\n';
            self.i += 1;
        }
        nl || self.eof()
    }

    /// Length of a LINE_END match at `at` (one or more of: blanks, an optional comment,
    /// then a newline or EOF), or None.
    fn line_end_len(&self, at: usize) -> Option<usize> {
        let mut j = at;
        let mut matched = false;
        loop {
            let mut k = j;
            while k < self.s.len() && matches!(self.s[k], b' ' | b'\t') {
                k += 1;
            }
            if k < self.s.len() && self.s[k] == b'#' {
                while k < self.s.len() && !matches!(self.s[k], b'\r' | b'\n') {
                    k += 1;
                }
            }
            if k >= self.s.len() {
                return Some(k - at);
            }
            if matches!(self.s[k], b'\r' | b'\n') {
                j = k + 1;
                matched = true;
                continue;
            }
            return matched.then_some(j - at);
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

    /// ZERO_OR_MORE_SPACING then '>' at `at` (end of a section argument).
    fn at_arg_end(&self, at: usize) -> bool {
        let mut j = at;
        while j < self.s.len() {
            let c = self.s[j];
            if is_ws(c) {
                j += 1;
            } else if c == b'#' {
                while j < self.s.len() && self.s[j] != b'\n' {
                    j += 1;
                }
                if j >= self.s.len() {
                    return false;
                }
                j += 1;
            } else {
                return c == b'>';
            }
        }
        false
    }

    fn scan_name(&mut self) -> String {
        let st = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'_' {
                self.i += 1;
            } else {
                break;
            }
        }
        String::from_utf8_lossy(&self.s[st..self.i]).into_owned()
    }

    fn parse_element(
        &mut self,
        root: bool,
        name: Option<&str>,
        attrs: &mut Vec<Attr>,
        elems: &mut Vec<Element>,
        depth: usize,
    ) -> Result<(), ConfigError> {
        loop {
            self.spacing();
            if self.eof() {
                if root {
                    return Ok(());
                }
                return Err(
                    self.err(self.i, format!("expected end tag '</{}>' but got end of file", name.unwrap_or("")))
                );
            }
            if self.starts("</") {
                let at = self.i;
                self.i += 2;
                let e_name = self.scan_name();
                self.spacing();
                if self.peek() != Some(b'>') {
                    return Err(self.err(self.i, format!("expected '>' to close </{e_name}")));
                }
                self.i += 1;
                if !self.line_end() {
                    return Err(self.err(self.i, "expected end of line after end tag"));
                }
                if Some(e_name.as_str()) != name {
                    return Err(self.err(
                        at,
                        format!(
                            "unmatched end tag </{e_name}>; expected </{}>",
                            name.unwrap_or("(none: not inside a section)")
                        ),
                    ));
                }
                return Ok(());
            } else if self.peek() == Some(b'<') {
                let at = self.i;
                self.i += 1;
                let e_name = self.scan_name();
                if e_name.is_empty() {
                    return Err(self.err(self.i, "expected a section name after '<'"));
                }
                self.spacing();
                let arg = self.scan_string(Boundary::Arg)?.unwrap_or_default();
                self.spacing();
                if self.peek() != Some(b'>') {
                    return Err(self.err(
                        self.i,
                        format!("expected '>' to close <{e_name}{}{arg}", if arg.is_empty() { "" } else { " " }),
                    ));
                }
                self.i += 1;
                if !self.line_end() {
                    return Err(self.err(self.i, "expected end of line after tag"));
                }
                if depth + 1 > MAX_NESTING {
                    return Err(self.err(at, format!("sections nested deeper than {MAX_NESTING} levels")));
                }
                let mut a = Vec::new();
                let mut e = Vec::new();
                self.parse_element(false, Some(&e_name), &mut a, &mut e, depth + 1)?;
                elems.push(Element::new(e_name, arg, a, e, self.pos(at)));
            } else if root && (self.starts("@include") || self.starts("include")) && {
                let l = if self.starts("@include") { 8 } else { 7 };
                self.s.get(self.i + l).is_none_or(|c| is_ws(*c) || *c == b'#')
            } {
                let at = self.i;
                self.i += if self.starts("@include") { 8 } else { 7 };
                self.spacing();
                self.parse_include(at, attrs, elems)?;
            } else {
                let at = self.i;
                let key = self.scan_string(Boundary::Spacing)?.unwrap_or_default();
                let nl = self.spacing_without_comment();
                if nl {
                    attrs.push(Attr { key, value: String::new(), pos: self.pos(at) });
                    continue;
                }
                if key == "@include" {
                    self.parse_include(at, attrs, elems)?;
                    continue;
                }
                if key.starts_with('@') && !RESERVED.contains(&key.as_str()) {
                    if root || name.is_some_and(|n| ELEM_SYMBOLS.contains(&n)) {
                        return Err(self.err(at, format!("'@' is the system reserved prefix. Don't use '@' prefix parameter in the configuration: {key}")));
                    }
                    crate::warn!(
                        "{}: '@' is the system reserved prefix; it works in nested sections for now: {key}",
                        self.pos(at)
                    );
                }
                let value = self.parse_literal()?;
                if !self.line_end() {
                    return Err(self.err(self.i, format!("expected end of line after the value of {key}")));
                }
                if let Some(value) = value {
                    attrs.push(Attr { key, value, pos: self.pos(at) });
                }
            }
        }
    }

    fn parse_include(&mut self, at: usize, attrs: &mut Vec<Attr>, elems: &mut Vec<Element>) -> Result<(), ConfigError> {
        let uri = self.scan_string(Boundary::LineEnd)?.unwrap_or_default();
        self.line_end();
        if uri.contains("://") && !uri.starts_with("file://") {
            return Err(self.err(at, format!("@include {uri}: only files can be included (no URLs)")));
        }
        let path = uri.strip_prefix("file://").unwrap_or(&uri);
        let pattern = if Path::new(path).is_absolute() { PathBuf::from(path) } else { self.base.join(path) };
        let pattern_s = pattern.display().to_string();
        let mut files: Vec<PathBuf> = match glob::glob(&pattern_s) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(e) => return Err(self.err(at, format!("@include {uri}: bad glob pattern: {e}"))),
        };
        files.sort();
        if files.is_empty() && !pattern_s.contains(['*', '?', '[']) {
            return Err(self.err(at, format!("@include {uri}: no such file ({pattern_s})")));
        }
        if self.includes.len() >= MAX_INCLUDE_DEPTH {
            return Err(self.err(at, format!("@include nested deeper than {MAX_INCLUDE_DEPTH} files")));
        }
        for f in files {
            let canon = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
            if self.includes.contains(&canon) {
                return Err(self.err(at, format!("@include {}: include cycle", f.display())));
            }
            let text =
                std::fs::read_to_string(&f).map_err(|e| self.err(at, format!("@include {}: {e}", f.display())))?;
            let base = f.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut inc = self.includes.clone();
            inc.push(canon);
            let mut p = Parser::new(&text, &f.display().to_string(), &base, self.ctx, inc);
            p.parse_element(true, None, attrs, elems, 0)?;
        }
        Ok(())
    }

    fn parse_literal(&mut self) -> Result<Option<String>, ConfigError> {
        self.spacing_without_comment();
        match self.peek() {
            Some(b'[') => self.scan_json(true).map(Some),
            Some(b'{') => self.scan_json(false).map(Some),
            _ => self.scan_string(Boundary::LineEnd),
        }
    }

    fn scan_string(&mut self, b: Boundary) -> Result<Option<String>, ConfigError> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                self.scan_double_quoted()
            }
            Some(b'\'') => {
                self.i += 1;
                self.scan_single_quoted().map(Some)
            }
            _ => Ok(self.scan_nonquoted(b)),
        }
    }

    fn at_boundary(&self, b: Boundary) -> bool {
        match b {
            Boundary::LineEnd => self.line_end_len(self.i).is_some(),
            Boundary::Spacing => self.peek().is_none_or(is_ws),
            Boundary::Arg => self.at_arg_end(self.i),
        }
    }

    fn scan_nonquoted(&mut self, b: Boundary) -> Option<String> {
        let st = self.i;
        while let Some(c) = self.peek() {
            // fluentd takes '#' literally inside an unquoted value; a comment needs a
            // blank before it (that is part of the LINE_END boundary).
            if c != b'#' && self.at_boundary(b) {
                break;
            }
            self.i += 1;
        }
        (self.i > st).then(|| String::from_utf8_lossy(&self.s[st..self.i]).into_owned())
    }

    fn scan_single_quoted(&mut self) -> Result<String, ConfigError> {
        let st = self.i;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err(st, "unexpected end of file in a single quoted string")),
                Some(b'\'') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') if matches!(self.s.get(self.i + 1), Some(b'\'') | Some(b'\\')) => {
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

    /// Returns None when embedded code said `use_nil`/`use_default`.
    fn scan_double_quoted(&mut self) -> Result<Option<String>, ConfigError> {
        let st = self.i;
        let mut out = Vec::new();
        let mut unset = false;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err(st, "unexpected end of file in a double quoted string"));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok((!unset).then(|| String::from_utf8_lossy(&out).into_owned()));
                }
                b'\\' => {
                    match self.s.get(self.i + 1).copied() {
                        // Backslash-newline continues the line.
                        Some(b'\n') => self.i += 2,
                        Some(b'\r') if self.s.get(self.i + 2) == Some(&b'\n') => self.i += 3,
                        None => return Err(self.err(st, "unexpected end of file in a double quoted string")),
                        Some(e) => {
                            let ch = match e {
                                b'"' => b'"',
                                b'\'' => b'\'',
                                b'r' => b'\r',
                                b'n' => b'\n',
                                b't' => b'\t',
                                b'f' => 0x0c,
                                b'b' => 0x08,
                                b'0' => 0,
                                e if e.is_ascii_alphanumeric() => {
                                    return Err(self.err(
                                        self.i,
                                        format!("unexpected back-slash escape character '{}'", e as char),
                                    ));
                                }
                                e => e,
                            };
                            out.push(ch);
                            self.i += 2;
                        }
                    }
                }
                b'#' if self.s.get(self.i + 1) == Some(&b'{') => {
                    let at = self.i;
                    self.i += 2;
                    let code_start = self.i;
                    let end =
                        self.find_code_end().ok_or_else(|| self.err(at, "expected '}' to end embedded code #{...}"))?;
                    let code = String::from_utf8_lossy(&self.s[code_start..end]).into_owned();
                    self.i = end + 1;
                    match ruby::eval(&code, self.ctx).map_err(|m| self.err(at, m))? {
                        ruby::Value::Str(s) => out.extend_from_slice(s.as_bytes()),
                        ruby::Value::Nil => {}
                        ruby::Value::Unset => unset = true,
                    }
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// Index of the `}` closing embedded code starting at `self.i` (quotes respected).
    fn find_code_end(&self) -> Option<usize> {
        let mut j = self.i;
        let mut quote: Option<u8> = None;
        let mut depth = 0usize;
        while j < self.s.len() {
            let c = self.s[j];
            match quote {
                Some(q) => {
                    if c == b'\\' {
                        j += 1;
                    } else if c == q {
                        quote = None;
                    }
                }
                None => match c {
                    b'\'' | b'"' => quote = Some(c),
                    b'{' => depth += 1,
                    b'}' if depth == 0 => return Some(j),
                    b'}' => depth -= 1,
                    b'\n' => return None,
                    _ => {}
                },
            }
            j += 1;
        }
        None
    }

    /// A JSON array/object value that may span lines, with `#` comments after complete
    /// lines and `#{}` embedded code; kept as compact JSON text (fluentd's JSON.dump).
    fn scan_json(&mut self, is_array: bool) -> Result<String, ConfigError> {
        let st = self.i;
        let mut buf: Vec<u8> = Vec::new();
        let mut line: Vec<u8> = Vec::new();
        // The opening bracket.
        buf.push(self.s[self.i]);
        self.i += 1;
        let close = if is_array { b']' } else { b'}' };
        let mut in_str = false;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err(
                    st,
                    format!("got incomplete JSON {} configuration", if is_array { "array" } else { "hash" }),
                ));
            };
            self.i += 1;
            if in_str {
                line.push(c);
                if c == b'\\' {
                    if let Some(n) = self.peek() {
                        line.push(n);
                        self.i += 1;
                    }
                } else if c == b'"' {
                    in_str = false;
                }
                continue;
            }
            match c {
                b'"' => {
                    in_str = true;
                    line.push(c);
                }
                b'#' if self.peek() == Some(b'{') => {
                    let at = self.i - 1;
                    self.i += 1;
                    let code_start = self.i;
                    let end =
                        self.find_code_end().ok_or_else(|| self.err(at, "expected '}' to end embedded code #{...}"))?;
                    let code = String::from_utf8_lossy(&self.s[code_start..end]).into_owned();
                    self.i = end + 1;
                    if let ruby::Value::Str(s) = ruby::eval(&code, self.ctx).map_err(|m| self.err(at, m))? {
                        line.extend_from_slice(s.as_bytes());
                    }
                }
                b'#' => {
                    // A comment: skip to the end of the line.
                    while let Some(n) = self.peek() {
                        if n == b'\n' {
                            break;
                        }
                        self.i += 1;
                    }
                }
                b'\n' => {
                    buf.append(&mut line);
                    buf.push(b'\n');
                }
                c => {
                    line.push(c);
                    if c == close {
                        let mut attempt = buf.clone();
                        attempt.extend_from_slice(&line);
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&attempt) {
                            return Ok(v.to_string());
                        }
                    }
                }
            }
            if buf.len() + line.len() > (1 << 20) {
                return Err(self.err(st, "JSON value longer than 1 MiB"));
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Boundary {
    /// End of a value: blanks, an optional comment, end of line.
    LineEnd,
    /// End of a key: whitespace.
    Spacing,
    /// End of a section argument: optional spacing then '>'.
    Arg,
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn ctx() -> EvalContext {
        EvalContext {
            hostname: "myhost".into(),
            worker_id: None,
            env: Box::new(|k| match k {
                "FLUENT_ELASTICSEARCH_HOST" => Some("es.local".into()),
                "PORT" => Some("9200".into()),
                _ => None,
            }),
        }
    }

    fn p(s: &str) -> Result<Element, ConfigError> {
        parse_str(s, "test.conf", Path::new("."), &ctx())
    }

    #[test]
    fn directives_attrs_and_nesting() {
        let r = p("# top comment\n<source>\n  @type forward\n  port 24224 # a comment\n  bind 0.0.0.0\n</source>\n\n<match app.** other>\n  @type forward\n  <server>\n    host 10.0.0.1\n  </server>\n  <buffer tag,time>\n    flush_interval 5s\n  </buffer>\n</match>\n").unwrap();
        assert_eq!(r.elements.len(), 2);
        let s = &r.elements[0];
        assert_eq!(s.name, "source");
        assert_eq!(s.plugin_type(), Some("forward"));
        assert_eq!(s.str("port"), Some("24224"));
        assert_eq!(s.pos.to_string(), "test.conf:2:1");
        assert_eq!(s.get("bind").unwrap().pos.to_string(), "test.conf:5:3");
        let m = &r.elements[1];
        assert_eq!(m.arg, "app.** other");
        assert_eq!(m.elements[0].name, "server");
        assert_eq!(m.elements[1].arg, "tag,time");
        assert_eq!(m.elements[1].time("flush_interval").unwrap(), Some(std::time::Duration::from_secs(5)));
    }

    #[test]
    fn old_type_syntax_and_key_without_value() {
        let r = p("<match foo>\n  type file\n  path /var/log/x\n  tag_mapped\n</match>\n").unwrap();
        let m = &r.elements[0];
        assert_eq!(m.plugin_type(), Some("file"));
        assert_eq!(m.str("tag_mapped"), Some(""));
        assert_eq!(m.bool("tag_mapped").unwrap(), Some(true));
    }

    #[test]
    fn quoting_and_escapes() {
        let r = p("<s>\n  a \"x\\ty\\\"z\"\n  b 'it\\'s'\n  c \"#{ENV['FLUENT_ELASTICSEARCH_HOST']}:#{ENV['PORT']}\"\n  d \"#{ENV['NOPE'] || 'dflt'}\"\n  e \"#{ENV.fetch('NOPE', 'f')}\"\n  f \"#{Socket.gethostname}\"\n  g '#{ENV[\"X\"]}'\n  h #{hostname}\n  i \"multi\nline\"\n</s>\n").unwrap();
        let s = &r.elements[0];
        assert_eq!(s.str("a"), Some("x\ty\"z"));
        assert_eq!(s.str("b"), Some("it's"));
        assert_eq!(s.str("c"), Some("es.local:9200"));
        assert_eq!(s.str("d"), Some("dflt"));
        assert_eq!(s.str("e"), Some("f"));
        assert_eq!(s.str("f"), Some("myhost"));
        assert_eq!(s.str("g"), Some("#{ENV[\"X\"]}"));
        assert_eq!(s.str("h"), Some("#{hostname}"));
        assert_eq!(s.str("i"), Some("multi\nline"));
    }

    #[test]
    fn json_values_span_lines() {
        let r = p("<s>\n  arr [\"a\",\n    \"b\", # comment\n    \"c\"]\n  obj {\"k\": \"v\",\n   \"n\": 1}\n  after x\n</s>\n").unwrap();
        let s = &r.elements[0];
        assert_eq!(s.array("arr").unwrap(), Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(s.hash("obj").unwrap(), Some(vec![("k".into(), "v".into()), ("n".into(), "1".into())]));
        assert_eq!(s.str("after"), Some("x"));
    }

    #[test]
    fn errors_name_file_line_col() {
        let e = p("<source>\n  @type forward\n").unwrap_err();
        assert!(e.to_string().starts_with("test.conf:3:1: expected end tag '</source>'"), "{e}");
        let e = p("<source>\n</match>\n").unwrap_err();
        assert!(e.to_string().starts_with("test.conf:2:1: unmatched end tag"), "{e}");
        let e = p("<match a\n").unwrap_err();
        assert!(e.to_string().contains("expected '>'"), "{e}");
        let e = p("<s>\n  k \"abc\n").unwrap_err();
        assert!(e.to_string().contains("unexpected end of file in a double quoted string"), "{e}");
        let e = p("<s>\n  k \"\\q\"\n</s>\n").unwrap_err();
        assert!(e.to_string().contains("unexpected back-slash escape character 'q'"), "{e}");
        let e = p("<s>\n  k \"#{`id`}\"\n</s>\n").unwrap_err();
        assert!(
            e.to_string().starts_with("test.conf:2:") && e.to_string().contains("embedded Ruby is not supported"),
            "{e}"
        );
        let e = p("@foo bar\n").unwrap_err();
        assert!(e.to_string().contains("reserved prefix"), "{e}");
        let e = p("<s>\n  k [1, 2\n</s>\n").unwrap_err();
        assert!(e.to_string().contains("incomplete JSON array"), "{e}");
    }

    #[test]
    fn includes_globs_and_cycles() {
        let dir = std::env::temp_dir().join(format!("spate-cfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("conf.d/a.conf"), "<match a>\n  @type null\n</match>\n").unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "<match b>\n  @type null\n</match>\n").unwrap();
        std::fs::write(
            dir.join("main.conf"),
            "<source>\n  @type forward\n</source>\n@include conf.d/*.conf\ninclude conf.d/a.conf\n",
        )
        .unwrap();
        let r = parse_file(&dir.join("main.conf"), &ctx()).unwrap();
        let args: Vec<&str> = r.elements.iter().map(|e| e.arg.as_str()).collect();
        assert_eq!(args, vec!["", "a", "b", "a"]);
        assert!(r.elements[1].pos.file.ends_with("a.conf"));
        std::fs::write(dir.join("loop.conf"), "@include loop.conf\n").unwrap();
        let e = parse_file(&dir.join("loop.conf"), &ctx()).unwrap_err();
        assert!(e.to_string().contains("cycle"), "{e}");
        let e = p("@include /nonexistent/spate.conf\n").unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unused_parameters_are_reported() {
        let r = p("<source>\n  @type forward\n  port 1\n  typo_param 2\n</source>\n").unwrap();
        let s = &r.elements[0];
        let _ = (s.plugin_type(), s.str("port"));
        let unused: Vec<&str> = s.unused_attrs().iter().map(|a| a.key.as_str()).collect();
        assert_eq!(unused, vec!["typo_param"]);
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
        ];
        for s in seeds {
            let _ = p(s);
            for i in 0..s.len() {
                if s.is_char_boundary(i) {
                    let _ = p(&s[..i]);
                }
            }
        }
        let deep = "<a>\n".repeat(100);
        assert!(p(&deep).unwrap_err().to_string().contains("nested deeper"));
        let mut x: u64 = 0x2545F4914F6CDD1D;
        for _ in 0..2000 {
            let mut b = String::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let alphabet = b"<>/#\"'{}[]\\ \n@ab$=,:";
                let c = alphabet[(x % alphabet.len() as u64) as usize] as char;
                b.push(c);
            }
            let _ = p(&b);
        }
    }
}
