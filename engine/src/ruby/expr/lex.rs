//! The tokenizer of the Ruby subset: identifiers (method names may end in `?`/`!`),
//! constants, integers and floats, `'...'` and `"..."` strings (escapes and `#{}`
//! interpolation kept as code text for the parser), `/regexp/flags`, `:symbols`,
//! `%w[...]` word lists, keywords and operators. `/` is a regexp where an operand is
//! expected and division after one, as Ruby decides it for the code configs contain.

use super::ExprError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum StrPart {
    Lit(Vec<u8>),
    /// `#{code}`: the code and its byte offset in the whole expression.
    Code(String, usize),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Const(String),
    Int(i64),
    Float(f64),
    Str(Vec<StrPart>),
    Regex {
        body: String,
        flags: String,
    },
    Sym(String),
    Words(Vec<String>),
    /// An operator or punctuation, as written (`==`, `&.`, `(`...).
    Op(&'static str),
    /// `;` or a newline: a statement separator.
    Sep,
    Eof,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub tok: Tok,
    /// Byte offsets in the code.
    pub start: usize,
    pub end: usize,
}

/// Longest first, so `...` wins over `..` and `**` over `*`.
const OPS: &[&str] = &[
    "...", "**", "&.", "::", "==", "!=", "=~", "!~", "<=", ">=", "&&", "||", "..", "=>", "<<", "(", ")", "[", "]", "{",
    "}", ",", ".", "?", ":", "!", "<", ">", "+", "-", "*", "/", "%", "=", "|", "&", "^", "~",
];

pub(super) struct Lexer<'s> {
    s: &'s [u8],
    code: &'s str,
    /// Offset of `code` in the whole expression (for nested `#{}` code).
    base: usize,
    i: usize,
    toks: Vec<Token>,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl<'s> Lexer<'s> {
    pub(super) fn tokenize(code: &'s str, base: usize, full: &str) -> Result<Vec<Token>, ExprError> {
        let mut l = Lexer { s: code.as_bytes(), code, base, i: 0, toks: Vec::new() };
        l.run().map_err(|(at, msg)| ExprError::syntax(full, base + at, msg))?;
        Ok(l.toks)
    }

    /// The parts of `%Q[text]` (fluentd appends the closing `]` itself).
    pub(super) fn percent_q(text: &str) -> Result<Vec<StrPart>, ExprError> {
        let full = format!("{text}]");
        let mut l = Lexer { s: full.as_bytes(), code: &full, base: 0, i: 0, toks: Vec::new() };
        let parts = l.double_quoted(b']', Some(b'[')).map_err(|(at, msg)| ExprError::syntax(text, at, msg))?;
        if l.i != full.len() {
            return Err(ExprError::syntax(text, l.i, "unexpected text after an unbalanced ']' (the value is %Q[...])"));
        }
        Ok(parts)
    }

    fn push(&mut self, tok: Tok, start: usize) {
        self.toks.push(Token { tok, start: self.base + start, end: self.base + self.i });
    }

    /// Whether the previous token ends an operand (then `/` divides, `[` indexes...).
    fn after_operand(&self) -> bool {
        match self.toks.last().map(|t| &t.tok) {
            Some(
                Tok::Ident(_)
                | Tok::Const(_)
                | Tok::Int(_)
                | Tok::Float(_)
                | Tok::Str(_)
                | Tok::Regex { .. }
                | Tok::Sym(_)
                | Tok::Words(_),
            ) => true,
            Some(Tok::Op(o)) => matches!(*o, ")" | "]" | "}"),
            _ => false,
        }
    }

    fn after_dot(&self) -> bool {
        matches!(self.toks.last().map(|t| &t.tok), Some(Tok::Op(".") | Tok::Op("&.")))
    }

    fn run(&mut self) -> Result<(), (usize, String)> {
        while self.i < self.s.len() {
            let c = self.s[self.i];
            let start = self.i;
            match c {
                b' ' | b'\t' | b'\r' => self.i += 1,
                b'\\' if self.s.get(self.i + 1) == Some(&b'\n') => self.i += 2,
                b'\n' | b';' => {
                    self.i += 1;
                    self.push(Tok::Sep, start);
                }
                b'#' => {
                    // A comment runs to the end of the line.
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                b'0'..=b'9' => self.number()?,
                b'\'' => {
                    let s = self.single_quoted()?;
                    self.push(Tok::Str(vec![StrPart::Lit(s)]), start);
                }
                b'"' => {
                    self.i += 1;
                    let parts = self.double_quoted(b'"', None)?;
                    self.push(Tok::Str(parts), start);
                }
                b'/' if !self.after_operand() => self.regex()?,
                b'%' if !self.after_operand() && self.s.get(self.i + 1) == Some(&b'w') => self.words()?,
                b':' if self.s.get(self.i + 1).copied().is_some_and(is_ident_start)
                    && !self.after_operand()
                    && !self.after_dot() =>
                {
                    self.i += 1;
                    let name = self.ident_text();
                    self.push(Tok::Sym(name), start);
                }
                b':' if self.s.get(self.i + 1) == Some(&b'"') && !self.after_operand() => {
                    self.i += 2;
                    let parts = self.double_quoted(b'"', None)?;
                    match parts.as_slice() {
                        [StrPart::Lit(l)] => {
                            let name = String::from_utf8(l.clone()).map_err(|_| (start, "invalid symbol".into()))?;
                            self.push(Tok::Sym(name), start);
                        }
                        _ => return Err((start, "interpolated symbols are not supported".into())),
                    }
                }
                c if is_ident_start(c) || c >= 0x80 => {
                    let after_dot = self.after_dot();
                    let mut name = self.ident_text();
                    // Method names may end in `?` or `!` (`nil?`, `start_with?`); a local
                    // name followed by `?` is a ternary.
                    if after_dot {
                        if let Some(&q @ (b'?' | b'!')) = self.s.get(self.i) {
                            if self.s.get(self.i + 1) != Some(&b'=') {
                                name.push(q as char);
                                self.i += 1;
                            }
                        }
                    }
                    let tok = if !after_dot && name.as_bytes()[0].is_ascii_uppercase() {
                        Tok::Const(name)
                    } else {
                        Tok::Ident(name)
                    };
                    self.push(tok, start);
                }
                _ => {
                    let rest = &self.s[self.i..];
                    let Some(op) = OPS.iter().find(|o| rest.starts_with(o.as_bytes())) else {
                        return Err((start, format!("unexpected character {:?}", self.code[start..].chars().next())));
                    };
                    self.i += op.len();
                    self.push(Tok::Op(op), start);
                }
            }
        }
        self.push(Tok::Eof, self.i);
        Ok(())
    }

    fn ident_text(&mut self) -> String {
        let st = self.i;
        while self.i < self.s.len() && (is_ident(self.s[self.i]) || self.s[self.i] >= 0x80) {
            self.i += 1;
        }
        self.code[st..self.i].to_string()
    }

    fn number(&mut self) -> Result<(), (usize, String)> {
        let st = self.i;
        let digits = |l: &mut Self| {
            while l.i < l.s.len() && (l.s[l.i].is_ascii_digit() || (l.s[l.i] == b'_' && l.i > st)) {
                l.i += 1;
            }
        };
        if self.s[self.i] == b'0' && matches!(self.s.get(self.i + 1), Some(b'x' | b'X' | b'b' | b'B' | b'o' | b'O')) {
            let radix = match self.s[self.i + 1] {
                b'x' | b'X' => 16,
                b'b' | b'B' => 2,
                _ => 8,
            };
            self.i += 2;
            let ds = self.i;
            while self.i < self.s.len() && (self.s[self.i].is_ascii_hexdigit() || self.s[self.i] == b'_') {
                self.i += 1;
            }
            let text = self.code[ds..self.i].replace('_', "");
            let v = i64::from_str_radix(&text, radix).map_err(|_| (st, "invalid number".to_string()))?;
            self.push(Tok::Int(v), st);
            return Ok(());
        }
        digits(self);
        let mut float = false;
        if self.s.get(self.i) == Some(&b'.') && self.s.get(self.i + 1).is_some_and(u8::is_ascii_digit) {
            float = true;
            self.i += 1;
            digits(self);
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            let mut j = self.i + 1;
            if matches!(self.s.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if self.s.get(j).is_some_and(u8::is_ascii_digit) {
                float = true;
                self.i = j;
                digits(self);
            }
        }
        if self.s.get(self.i).copied().is_some_and(is_ident_start) {
            return Err((st, "invalid number".into()));
        }
        let text = self.code[st..self.i].replace('_', "");
        let tok = if float {
            Tok::Float(text.parse().map_err(|_| (st, "invalid number".to_string()))?)
        } else {
            Tok::Int(text.parse().map_err(|_| (st, "integer too large (no Bignum here)".to_string()))?)
        };
        self.push(tok, st);
        Ok(())
    }

    /// `'...'`: only `\'` and `\\` are escapes.
    fn single_quoted(&mut self) -> Result<Vec<u8>, (usize, String)> {
        let st = self.i;
        self.i += 1;
        let mut out = Vec::new();
        while let Some(&c) = self.s.get(self.i) {
            match c {
                b'\\' if matches!(self.s.get(self.i + 1), Some(b'\'' | b'\\')) => {
                    out.push(self.s[self.i + 1]);
                    self.i += 2;
                }
                b'\'' => {
                    self.i += 1;
                    return Ok(out);
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        Err((st, "unterminated string".into()))
    }

    /// The body of a double-quoted string (or `%Q[...]` with `open`/`close` brackets that
    /// nest), from just after the opening quote; consumes the closing one.
    pub(super) fn double_quoted(&mut self, close: u8, open: Option<u8>) -> Result<Vec<StrPart>, (usize, String)> {
        let st = self.i;
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let mut nest = 0usize;
        loop {
            let Some(&c) = self.s.get(self.i) else { return Err((st, "unterminated string".into())) };
            if Some(c) == open {
                nest += 1;
            } else if c == close {
                if nest == 0 {
                    self.i += 1;
                    if !lit.is_empty() || parts.is_empty() {
                        parts.push(StrPart::Lit(lit));
                    }
                    return Ok(parts);
                }
                nest -= 1;
            }
            match c {
                b'\\' => self.escape(&mut lit)?,
                b'#' if self.s.get(self.i + 1) == Some(&b'{') => {
                    let code_start = self.i + 2;
                    let end = find_code_end(self.s, code_start).ok_or((self.i, "unterminated #{".to_string()))?;
                    if !lit.is_empty() {
                        parts.push(StrPart::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(StrPart::Code(self.code[code_start..end].to_string(), self.base + code_start));
                    self.i = end + 1;
                }
                c => {
                    lit.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// One backslash escape of a double-quoted string.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), (usize, String)> {
        let at = self.i;
        let Some(&e) = self.s.get(self.i + 1) else { return Err((at, "unterminated string".into())) };
        self.i += 2;
        let byte = match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b's' => b' ',
            b'e' => 0x1b,
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'\n' => return Ok(()),
            b'0'..=b'7' => {
                // Octal: up to three digits ("\1" is "\x01", as in Ruby).
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match self.s.get(self.i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            self.i += 1;
                        }
                        _ => break,
                    }
                }
                (v & 0xff) as u8
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match self.s.get(self.i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            self.i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    return Err((at, "invalid hex escape".into()));
                }
                v as u8
            }
            b'u' => {
                let cps: Vec<u32> = if self.s.get(self.i) == Some(&b'{') {
                    let end = self.s[self.i..]
                        .iter()
                        .position(|&b| b == b'}')
                        .ok_or((at, "invalid Unicode escape".to_string()))?
                        + self.i;
                    let inner = &self.code[self.i + 1..end];
                    self.i = end + 1;
                    inner
                        .split_ascii_whitespace()
                        .map(|h| u32::from_str_radix(h, 16).map_err(|_| (at, "invalid Unicode escape".to_string())))
                        .collect::<Result<_, _>>()?
                } else {
                    let h = self.code.get(self.i..self.i + 4).ok_or((at, "invalid Unicode escape".to_string()))?;
                    self.i += 4;
                    vec![u32::from_str_radix(h, 16).map_err(|_| (at, "invalid Unicode escape".to_string()))?]
                };
                for cp in cps {
                    let ch = char::from_u32(cp).ok_or((at, "invalid Unicode code point".to_string()))?;
                    let mut b = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                return Ok(());
            }
            b'M' | b'C' | b'c' => return Err((at, "meta/control escapes are not supported".into())),
            other if other >= 0x80 => {
                // A backslash before a multi-byte character: the character itself.
                self.i -= 1;
                return Ok(());
            }
            other => other,
        };
        out.push(byte);
        Ok(())
    }

    fn regex(&mut self) -> Result<(), (usize, String)> {
        let st = self.i;
        self.i += 1;
        let mut body = String::new();
        let mut class = false;
        loop {
            let Some(&c) = self.s.get(self.i) else { return Err((st, "unterminated regexp".into())) };
            match c {
                b'\\' => {
                    let Some(&n) = self.s.get(self.i + 1) else { return Err((st, "unterminated regexp".into())) };
                    if n == b'/' {
                        body.push('/');
                    } else {
                        body.push('\\');
                        let ch = self.code[self.i + 1..].chars().next().unwrap_or('\\');
                        body.push(ch);
                        self.i += ch.len_utf8() - 1;
                    }
                    self.i += 2;
                }
                b'#' if self.s.get(self.i + 1) == Some(&b'{') => {
                    return Err((self.i, "interpolation in a regexp literal is not supported".into()))
                }
                b'[' => {
                    class = true;
                    body.push('[');
                    self.i += 1;
                }
                b']' => {
                    class = false;
                    body.push(']');
                    self.i += 1;
                }
                b'/' if !class => {
                    self.i += 1;
                    break;
                }
                _ => {
                    let ch = self.code[self.i..].chars().next().unwrap_or('?');
                    body.push(ch);
                    self.i += ch.len_utf8();
                }
            }
        }
        let fs = self.i;
        while self.s.get(self.i).is_some_and(|c| b"imxounse".contains(c)) {
            self.i += 1;
        }
        let flags = self.code[fs..self.i].to_string();
        self.push(Tok::Regex { body, flags }, st);
        Ok(())
    }

    /// `%w[a b c]` (any of `[({<` or a symbol as the delimiter).
    fn words(&mut self) -> Result<(), (usize, String)> {
        let st = self.i;
        let Some(&open) = self.s.get(self.i + 2) else { return Err((st, "unterminated %w".into())) };
        let close = match open {
            b'[' => b']',
            b'(' => b')',
            b'{' => b'}',
            b'<' => b'>',
            c if c.is_ascii_punctuation() => c,
            _ => return Err((st, "unknown %-literal".into())),
        };
        self.i += 3;
        let from = self.i;
        let end = self.s[from..].iter().position(|&c| c == close).ok_or((st, "unterminated %w".to_string()))? + from;
        let words = self.code[from..end].split_ascii_whitespace().map(str::to_string).collect();
        self.i = end + 1;
        self.push(Tok::Words(words), st);
        Ok(())
    }
}

/// Index of the `}` closing code that starts at `from` (strings, nested braces and
/// nested interpolations respected), or None.
pub(super) fn find_code_end(s: &[u8], from: usize) -> Option<usize> {
    code_end(s, from, 0)
}

fn code_end(s: &[u8], from: usize, nest: usize) -> Option<usize> {
    if nest > super::MAX_DEPTH {
        return None;
    }
    let mut j = from;
    let mut depth = 0usize;
    while let Some(&c) = s.get(j) {
        match c {
            b'\'' | b'"' => {
                let q = c;
                j += 1;
                while let Some(&d) = s.get(j) {
                    if d == b'\\' {
                        j += 2;
                        continue;
                    }
                    if d == q {
                        break;
                    }
                    if q == b'"' && d == b'#' && s.get(j + 1) == Some(&b'{') {
                        j = code_end(s, j + 2, nest + 1)?;
                    }
                    j += 1;
                }
                s.get(j)?;
            }
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(j),
            b'}' => depth -= 1,
            _ => {}
        }
        j += 1;
    }
    None
}
