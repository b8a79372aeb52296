//! The literal grammar of fluent.conf values (`literal_parser.rb`): unquoted, single-
//! and double-quoted strings, embedded `#{}` code, and multi-line JSON arrays/objects.

use super::*;

impl Parser<'_> {
    /// A value: JSON when it starts with `[` or `{`, else a string.
    pub(super) fn parse_literal(&mut self) -> Result<Option<Lit>, ConfigError> {
        self.spacing_without_comment();
        match self.peek() {
            Some(b'[') => self.scan_json(true).map(|s| Some(Lit::Str(s))),
            Some(b'{') => self.scan_json(false).map(|s| Some(Lit::Str(s))),
            _ => self.scan_string(Boundary::LineEnd),
        }
    }

    /// A quoted or unquoted string; None when an unquoted string is empty.
    pub(super) fn scan_string(&mut self, b: Boundary) -> Result<Option<Lit>, ConfigError> {
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
