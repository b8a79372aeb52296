//! The parser of the embedded-Ruby subset: code to [`Expr`], with Ruby's precedence for
//! what the subset has (`+` > `== !=` > `||` > `? :` > modifier `rescue` > `=` > `;`).

use super::MAX_DEPTH;

#[derive(Debug)]
pub(super) enum Expr {
    Str(Vec<Part>),
    Int(i64),
    Bool(bool),
    Nil,
    Env(Box<Expr>),
    Fetch(Box<Expr>, Option<Box<Expr>>),
    Hostname,
    WorkerId,
    UseNil,
    UseDefault,
    /// `a || b || ...` (flat, so long chains need no deep recursion).
    Or(Vec<Expr>),
    /// `a + b + ...`, left to right.
    Add(Vec<Expr>),
    FileJoin(Vec<Expr>),
    /// `a == b` (true) / `a != b` (false).
    Eq(Box<Expr>, Box<Expr>, bool),
    /// `c ? a : b`.
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `a rescue b`.
    Rescue(Box<Expr>, Box<Expr>),
    /// `name = value`.
    Assign(String, Box<Expr>),
    /// A name: a local assigned before, or Ruby's NameError when evaluated.
    Name(String),
    /// `a; b; ...`: the value of the last.
    Seq(Vec<Expr>),
    /// `IPAddr.new(x).ipv6?` (true) / `.ipv4?` (false).
    IpIs(Box<Expr>, bool),
    /// `Socket.gethostbyname(x).first`: the canonical name of `x`.
    CanonName(Box<Expr>),
}

#[derive(Debug)]
pub(super) enum Part {
    Lit(String),
    Code(Expr),
}

/// Why parsing stopped: the code is outside the subset.
pub(super) struct Unsupported;

pub(super) struct P<'a> {
    pub(super) s: &'a [u8],
    pub(super) i: usize,
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Words that are Ruby syntax, never a name of the subset.
const KEYWORDS: &[&str] =
    &["if", "unless", "else", "elsif", "end", "then", "do", "and", "or", "not", "def", "class", "begin", "rescue"];

impl P<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            true
        } else {
            false
        }
    }

    /// A whole identifier (not a prefix of a longer one).
    fn ident(&mut self, w: &str) -> bool {
        self.ws();
        let rest = &self.s[self.i..];
        if rest.starts_with(w.as_bytes()) && !rest.get(w.len()).copied().is_some_and(is_ident) {
            self.i += w.len();
            true
        } else {
            false
        }
    }

    /// `stmt (; stmt)*`.
    pub(super) fn program(&mut self, depth: usize) -> Result<Expr, Unsupported> {
        if depth > MAX_DEPTH {
            return Err(Unsupported);
        }
        let mut v = vec![self.stmt(depth)?];
        while self.eat(";") {
            self.ws();
            if self.i == self.s.len() || self.s[self.i] == b')' {
                break;
            }
            v.push(self.stmt(depth)?);
        }
        Ok(if v.len() == 1 { v.swap_remove(0) } else { Expr::Seq(v) })
    }

    /// `name = stmt` or an expression with an optional `rescue` modifier.
    fn stmt(&mut self, depth: usize) -> Result<Expr, Unsupported> {
        if depth > MAX_DEPTH {
            return Err(Unsupported);
        }
        self.ws();
        let st = self.i;
        let mut j = self.i;
        while self.s.get(j).copied().is_some_and(is_ident) {
            j += 1;
        }
        if j > st && (self.s[st].is_ascii_lowercase() || self.s[st] == b'_') {
            let name = std::str::from_utf8(&self.s[st..j]).map_err(|_| Unsupported)?.to_string();
            let mut k = j;
            while self.s.get(k).is_some_and(|c| matches!(c, b' ' | b'\t')) {
                k += 1;
            }
            if self.s.get(k) == Some(&b'=') && !matches!(self.s.get(k + 1), Some(b'=' | b'~' | b'>')) {
                if KEYWORDS.contains(&name.as_str()) {
                    return Err(Unsupported);
                }
                self.i = k + 1;
                let v = self.stmt(depth + 1)?;
                return Ok(Expr::Assign(name, Box::new(v)));
            }
        }
        let e = self.ternary(depth)?;
        if self.ident("rescue") {
            let r = self.ternary(depth)?;
            return Ok(Expr::Rescue(Box::new(e), Box::new(r)));
        }
        Ok(e)
    }

    fn ternary(&mut self, depth: usize) -> Result<Expr, Unsupported> {
        if depth > MAX_DEPTH {
            return Err(Unsupported);
        }
        let c = self.or(depth)?;
        if self.eat("?") {
            let a = self.ternary(depth + 1)?;
            if !self.eat(":") {
                return Err(Unsupported);
            }
            let b = self.ternary(depth + 1)?;
            return Ok(Expr::If(Box::new(c), Box::new(a), Box::new(b)));
        }
        Ok(c)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, Unsupported> {
        let mut terms = vec![self.eq(depth)?];
        while self.eat("||") {
            terms.push(self.eq(depth)?);
        }
        Ok(if terms.len() == 1 { terms.swap_remove(0) } else { Expr::Or(terms) })
    }

    fn eq(&mut self, depth: usize) -> Result<Expr, Unsupported> {
        let a = self.sum(depth)?;
        for (op, is_eq) in [("==", true), ("!=", false)] {
            if self.eat(op) {
                let b = self.sum(depth)?;
                return Ok(Expr::Eq(Box::new(a), Box::new(b), is_eq));
            }
        }
        Ok(a)
    }

    fn sum(&mut self, depth: usize) -> Result<Expr, Unsupported> {
        let mut terms = vec![self.primary(depth)?];
        loop {
            self.ws();
            // `+` but not `+=`.
            if self.s.get(self.i) == Some(&b'+') && self.s.get(self.i + 1) != Some(&b'=') {
                self.i += 1;
                terms.push(self.primary(depth)?);
            } else {
                return Ok(if terms.len() == 1 { terms.swap_remove(0) } else { Expr::Add(terms) });
            }
        }
    }

    fn call_args(&mut self, depth: usize) -> Result<Vec<Expr>, Unsupported> {
        let mut args = Vec::new();
        if !self.eat(")") {
            loop {
                args.push(self.ternary(depth + 1)?);
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    return Err(Unsupported);
                }
            }
        }
        Ok(args)
    }

    fn one_arg(&mut self, depth: usize) -> Result<Box<Expr>, Unsupported> {
        if !self.eat("(") {
            return Err(Unsupported);
        }
        let mut a = self.call_args(depth)?;
        if a.len() != 1 {
            return Err(Unsupported);
        }
        Ok(Box::new(a.remove(0)))
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, Unsupported> {
        self.ws();
        if self.eat("(") {
            let e = self.program(depth + 1)?;
            return if self.eat(")") { Ok(e) } else { Err(Unsupported) };
        }
        if self.ident("ENV") {
            if self.eat("[") {
                let k = self.ternary(depth + 1)?;
                return if self.eat("]") { Ok(Expr::Env(Box::new(k))) } else { Err(Unsupported) };
            }
            if self.eat(".") && self.ident("fetch") && self.eat("(") {
                let k = self.ternary(depth + 1)?;
                let d = if self.eat(",") { Some(Box::new(self.ternary(depth + 1)?)) } else { None };
                return if self.eat(")") { Ok(Expr::Fetch(Box::new(k), d)) } else { Err(Unsupported) };
            }
            return Err(Unsupported);
        }
        if self.ident("File") {
            if !(self.eat(".") && self.ident("join") && self.eat("(")) {
                return Err(Unsupported);
            }
            return Ok(Expr::FileJoin(self.call_args(depth)?));
        }
        if self.ident("IPAddr") {
            if !(self.eat(".") && self.ident("new")) {
                return Err(Unsupported);
            }
            let a = self.one_arg(depth)?;
            let v6 = if self.eat(".ipv6?") {
                true
            } else if self.eat(".ipv4?") {
                false
            } else {
                return Err(Unsupported);
            };
            return Ok(Expr::IpIs(a, v6));
        }
        if self.ident("Socket") {
            if !self.eat(".") {
                return Err(Unsupported);
            }
            if self.ident("gethostname") {
                // `Socket.gethostname()` is the same call.
                if self.eat("(") && !self.eat(")") {
                    return Err(Unsupported);
                }
                return Ok(Expr::Hostname);
            }
            if self.ident("gethostbyname") {
                let a = self.one_arg(depth)?;
                return if self.eat(".first") && !self.s.get(self.i).copied().is_some_and(is_ident) {
                    Ok(Expr::CanonName(a))
                } else {
                    Err(Unsupported)
                };
            }
            return Err(Unsupported);
        }
        for (w, e) in [
            ("use_nil", Expr::UseNil),
            ("use_default", Expr::UseDefault),
            ("nil", Expr::Nil),
            ("true", Expr::Bool(true)),
            ("false", Expr::Bool(false)),
        ] {
            if self.ident(w) {
                return Ok(e);
            }
        }
        match self.s.get(self.i) {
            Some(b'\'') => self.single_quoted(),
            Some(b'"') => self.double_quoted(depth),
            Some(c) if c.is_ascii_digit() || *c == b'-' => self.integer(),
            Some(c) if c.is_ascii_lowercase() || *c == b'_' => {
                let st = self.i;
                while self.s.get(self.i).copied().is_some_and(is_ident) {
                    self.i += 1;
                }
                let name = std::str::from_utf8(&self.s[st..self.i]).map_err(|_| Unsupported)?;
                // A method call on it, a block or an argument list: outside the subset.
                if matches!(self.s.get(self.i), Some(b'.' | b'(' | b'?' | b'!' | b'[' | b'{')) {
                    return Err(Unsupported);
                }
                Ok(match name {
                    "hostname" => Expr::Hostname,
                    "worker_id" => Expr::WorkerId,
                    n if KEYWORDS.contains(&n) => return Err(Unsupported),
                    n => Expr::Name(n.to_string()),
                })
            }
            _ => Err(Unsupported),
        }
    }

    fn integer(&mut self) -> Result<Expr, Unsupported> {
        let st = self.i;
        if self.s.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            self.i += 1;
        }
        // A float, a method call on the number, or an identifier: outside the subset.
        if self.s.get(self.i).is_some_and(|c| is_ident(*c) || *c == b'.') {
            return Err(Unsupported);
        }
        let text = std::str::from_utf8(&self.s[st..self.i]).map_err(|_| Unsupported)?;
        super::super::types::parse_int(text).map(Expr::Int).map_err(|_| Unsupported)
    }

    /// Ruby `'...'`: only `\'` and `\\` are escapes.
    fn single_quoted(&mut self) -> Result<Expr, Unsupported> {
        let mut out = Vec::new();
        let mut j = self.i + 1;
        while let Some(&c) = self.s.get(j) {
            match c {
                b'\\' if matches!(self.s.get(j + 1), Some(b'\'' | b'\\')) => {
                    out.push(self.s[j + 1]);
                    j += 2;
                }
                b'\'' => {
                    self.i = j + 1;
                    let s = String::from_utf8(out).map_err(|_| Unsupported)?;
                    return Ok(Expr::Str(vec![Part::Lit(s)]));
                }
                c => {
                    out.push(c);
                    j += 1;
                }
            }
        }
        Err(Unsupported)
    }

    /// Ruby `"..."` with the usual escapes and `#{}` interpolation.
    fn double_quoted(&mut self, depth: usize) -> Result<Expr, Unsupported> {
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let mut j = self.i + 1;
        loop {
            let Some(&c) = self.s.get(j) else { return Err(Unsupported) };
            match c {
                b'"' => {
                    self.i = j + 1;
                    parts.push(Part::Lit(String::from_utf8(lit).map_err(|_| Unsupported)?));
                    return Ok(Expr::Str(parts));
                }
                b'\\' => {
                    let e = *self.s.get(j + 1).ok_or(Unsupported)?;
                    let ch = match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'0' => 0,
                        b's' => b' ',
                        b'e' => 0x1b,
                        b'a' => 0x07,
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'v' => 0x0b,
                        // \u, \x, \M-, \C-: outside the subset.
                        b'u' | b'x' | b'M' | b'C' | b'c' => return Err(Unsupported),
                        other => other,
                    };
                    lit.push(ch);
                    j += 2;
                }
                b'#' if self.s.get(j + 1) == Some(&b'{') => {
                    let end = find_code_end(self.s, j + 2).ok_or(Unsupported)?;
                    let inner = &self.s[j + 2..end];
                    let mut sub = P { s: inner, i: 0 };
                    let e = sub.program(depth + 1)?;
                    sub.ws();
                    if sub.i != inner.len() {
                        return Err(Unsupported);
                    }
                    parts.push(Part::Lit(String::from_utf8(std::mem::take(&mut lit)).map_err(|_| Unsupported)?));
                    parts.push(Part::Code(e));
                    j = end + 1;
                }
                c => {
                    lit.push(c);
                    j += 1;
                }
            }
        }
    }
}

/// Index of the `}` that closes code starting at `from` (string literals and nested
/// braces respected; the code may span lines, as in fluentd), or None.
pub fn find_code_end(s: &[u8], from: usize) -> Option<usize> {
    let mut j = from;
    let mut quote: Option<u8> = None;
    let mut depth = 0usize;
    while let Some(&c) = s.get(j) {
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
                _ => {}
            },
        }
        j += 1;
    }
    None
}
