//! The embedded-Ruby idioms real configs use inside `"#{...}"`, evaluated without Ruby:
//! `ENV['X']` / `ENV["X"]`, `a || b` (Ruby truthiness, short-circuit),
//! `ENV.fetch('X')` (a missing key is an error, as Ruby's KeyError) and
//! `ENV.fetch('X', 'default')`, `Socket.gethostname`, `hostname`, `worker_id`, fluentd's
//! helpers `use_nil` / `use_default`, string / integer / true / false / nil literals,
//! `+` between two strings or two integers, `File.join(...)` of strings (common in
//! fluentd-kubernetes-daemonset's pos_file paths), and parentheses. Anything else is an
//! error that says so: spate never runs Ruby.
//!
//! The code is parsed into a small AST first and evaluated afterwards, so that the right
//! side of `||` is only evaluated when needed, exactly as in Ruby.

use std::collections::HashMap;

/// Reads an environment variable.
pub type EnvFn = Box<dyn Fn(&str) -> Option<String>>;

/// What embedded code may read.
pub struct EvalContext {
    /// `hostname` and `Socket.gethostname`.
    pub hostname: String,
    /// `worker_id`; fluentd gives "" outside a worker (SERVERENGINE_WORKER_ID unset).
    pub worker_id: Option<u32>,
    /// `ENV[...]`.
    pub env: EnvFn,
}

impl EvalContext {
    /// The real process environment and host name.
    pub fn from_process() -> Self {
        EvalContext { hostname: hostname(), worker_id: None, env: Box::new(|k| std::env::var(k).ok()) }
    }

    /// A fixed environment (tests, `--dry-run` with a snapshot).
    pub fn with_env(hostname: &str, worker_id: Option<u32>, env: HashMap<String, String>) -> Self {
        EvalContext { hostname: hostname.to_string(), worker_id, env: Box::new(move |k| env.get(k).cloned()) }
    }
}

/// The machine's host name (`Socket.gethostname`).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A Ruby value the subset can produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Nil,
}

impl Value {
    fn truthy(&self) -> bool {
        !matches!(self, Value::Nil | Value::Bool(false))
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "String",
            Value::Int(_) => "Integer",
            Value::Bool(true) => "true",
            Value::Bool(false) => "false",
            Value::Nil => "nil",
        }
    }

    /// Ruby's `to_s` as used by string interpolation; None for nil (fluentd then treats
    /// the whole parameter value as nil).
    pub fn to_interpolated(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Nil => None,
        }
    }
}

/// The outcome of `#{...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eval {
    Value(Value),
    /// `use_nil`: the parameter is set to nil.
    SetNil,
    /// `use_default`: the parameter takes its default value.
    SetDefault,
}

pub const SUPPORTED: &str = "spate supports ENV['X'], ENV['X'] || 'default', ENV.fetch('X', 'default'), \
Socket.gethostname, hostname, worker_id, use_default, use_nil, File.join, string literals and '+'";

/// Bound on nested parentheses, interpolations and `ENV.fetch` defaults.
const MAX_DEPTH: usize = 32;
/// Longest code accepted inside one `#{}`.
const MAX_CODE: usize = 4096;
/// Longest string `+` may build.
const MAX_STRING: usize = 1 << 20;

#[derive(Debug)]
enum Expr {
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
}

#[derive(Debug)]
enum Part {
    Lit(String),
    Code(Expr),
}

/// Why parsing stopped: the code is outside the subset.
struct Unsupported;

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl P<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| matches!(c, b' ' | b'\t')) {
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

    fn expr(&mut self, depth: usize) -> Result<Expr, Unsupported> {
        if depth > MAX_DEPTH {
            return Err(Unsupported);
        }
        let mut terms = vec![self.sum(depth)?];
        while self.eat("||") {
            terms.push(self.sum(depth)?);
        }
        Ok(if terms.len() == 1 { terms.swap_remove(0) } else { Expr::Or(terms) })
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

    fn primary(&mut self, depth: usize) -> Result<Expr, Unsupported> {
        self.ws();
        if self.eat("(") {
            let e = self.expr(depth + 1)?;
            return if self.eat(")") { Ok(e) } else { Err(Unsupported) };
        }
        if self.ident("ENV") {
            if self.eat("[") {
                let k = self.expr(depth + 1)?;
                return if self.eat("]") { Ok(Expr::Env(Box::new(k))) } else { Err(Unsupported) };
            }
            if self.eat(".") && self.ident("fetch") && self.eat("(") {
                let k = self.expr(depth + 1)?;
                let d = if self.eat(",") { Some(Box::new(self.expr(depth + 1)?)) } else { None };
                return if self.eat(")") { Ok(Expr::Fetch(Box::new(k), d)) } else { Err(Unsupported) };
            }
            return Err(Unsupported);
        }
        if self.ident("File") {
            if !(self.eat(".") && self.ident("join") && self.eat("(")) {
                return Err(Unsupported);
            }
            let mut args = Vec::new();
            if !self.eat(")") {
                loop {
                    args.push(self.expr(depth + 1)?);
                    if self.eat(")") {
                        break;
                    }
                    if !self.eat(",") {
                        return Err(Unsupported);
                    }
                }
            }
            return Ok(Expr::FileJoin(args));
        }
        if self.ident("Socket") {
            return if self.eat(".") && self.ident("gethostname") {
                // `Socket.gethostname()` is the same call.
                if self.eat("(") && !self.eat(")") {
                    return Err(Unsupported);
                }
                Ok(Expr::Hostname)
            } else {
                Err(Unsupported)
            };
        }
        for (w, e) in [("hostname", Expr::Hostname), ("worker_id", Expr::WorkerId)] {
            if self.ident(w) {
                return Ok(e);
            }
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
        super::types::parse_int(text).map(Expr::Int).map_err(|_| Unsupported)
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
                    let e = sub.expr(depth + 1)?;
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
/// braces respected), or None. Code does not span lines.
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
                } else if c == b'\n' {
                    return None;
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

/// Why evaluation stopped.
enum Raise {
    SetNil,
    SetDefault,
    Error(String),
}

fn eval_expr(e: &Expr, ctx: &EvalContext) -> Result<Value, Raise> {
    Ok(match e {
        Expr::Str(parts) => {
            let mut s = String::new();
            for p in parts {
                match p {
                    Part::Lit(l) => s.push_str(l),
                    // Ruby's "#{nil}" is "" (only fluentd's outer level turns nil into unset).
                    Part::Code(c) => s.push_str(&eval_expr(c, ctx)?.to_interpolated().unwrap_or_default()),
                }
            }
            Value::Str(s)
        }
        Expr::Int(i) => Value::Int(*i),
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Nil => Value::Nil,
        Expr::Hostname => Value::Str(ctx.hostname.clone()),
        Expr::WorkerId => Value::Str(ctx.worker_id.map_or_else(String::new, |w| w.to_string())),
        Expr::UseNil => return Err(Raise::SetNil),
        Expr::UseDefault => return Err(Raise::SetDefault),
        Expr::Env(k) => {
            let k = env_key(k, ctx)?;
            (ctx.env)(&k).map_or(Value::Nil, Value::Str)
        }
        Expr::Fetch(k, d) => {
            let k = env_key(k, ctx)?;
            // Ruby evaluates arguments before the call, so the default is evaluated even
            // when the variable is set.
            let d = d.as_ref().map(|d| eval_expr(d, ctx)).transpose()?;
            match ((ctx.env)(&k), d) {
                (Some(v), _) => Value::Str(v),
                (None, Some(d)) => d,
                (None, None) => {
                    return Err(Raise::Error(format!(
                        "ENV.fetch('{k}'): key not found: set {k} or give a default, e.g. ENV.fetch('{k}', 'value')"
                    )))
                }
            }
        }
        Expr::Or(terms) => {
            let mut v = Value::Nil;
            for t in terms {
                v = eval_expr(t, ctx)?;
                if v.truthy() {
                    break;
                }
            }
            v
        }
        Expr::FileJoin(args) => {
            let mut parts = Vec::with_capacity(args.len());
            for a in args {
                match eval_expr(a, ctx)? {
                    Value::Str(s) => parts.push(s),
                    other => {
                        return Err(Raise::Error(format!(
                            "File.join: no implicit conversion of {} into String",
                            other.type_name()
                        )))
                    }
                }
            }
            Value::Str(file_join(&parts))
        }
        Expr::Add(terms) => {
            let mut acc: Option<Value> = None;
            for t in terms {
                let y = eval_expr(t, ctx)?;
                acc = Some(match acc {
                    None => y,
                    Some(x) => add(x, y)?,
                });
            }
            acc.unwrap_or(Value::Nil)
        }
    })
}

/// Ruby's File.join for strings (file.c rb_file_join): between two parts, a '/' is
/// added when neither side has one, and the left side's trailing '/'s are dropped when
/// the right side starts with '/'.
fn file_join(parts: &[String]) -> String {
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            // Where the trailing run of '/' starts (chompdirsep).
            let tail = out.trim_end_matches('/').len();
            if p.starts_with('/') {
                out.truncate(tail);
            } else if tail == out.len() {
                out.push('/');
            }
        }
        out.push_str(p);
    }
    out
}

fn add(x: Value, y: Value) -> Result<Value, Raise> {
    match (x, y) {
        (Value::Str(x), Value::Str(y)) => {
            if x.len() + y.len() > MAX_STRING {
                return Err(Raise::Error(format!("string longer than {MAX_STRING} bytes")));
            }
            Ok(Value::Str(x + &y))
        }
        (Value::Int(x), Value::Int(y)) => {
            x.checked_add(y).map(Value::Int).ok_or_else(|| Raise::Error("integer overflow in '+'".into()))
        }
        (Value::Nil, _) => {
            Err(Raise::Error("undefined method '+' for nil (an ENV variable used with '+' is not set?)".into()))
        }
        (x, y) => {
            Err(Raise::Error(format!("no implicit conversion of {} into {} (in '+')", y.type_name(), x.type_name())))
        }
    }
}

fn env_key(k: &Expr, ctx: &EvalContext) -> Result<String, Raise> {
    match eval_expr(k, ctx)? {
        Value::Str(s) => Ok(s),
        other => Err(Raise::Error(format!("no implicit conversion of {} into String (ENV key)", other.type_name()))),
    }
}

fn shorten(code: &str) -> String {
    let t = code.trim();
    let mut out: String = t.chars().take(120).collect();
    if out.len() < t.len() {
        out.push_str("...");
    }
    out
}

/// Evaluates the code between `#{` and `}`. The error message is complete but has no
/// location (the caller adds file:line:col).
pub fn eval(code: &str, ctx: &EvalContext) -> Result<Eval, String> {
    // fluentd evaluates `hostname = ...; worker_id = ...` before the code, so empty code
    // yields the value of that last assignment: the worker id (or "").
    if code.trim().is_empty() {
        return Ok(Eval::Value(Value::Str(ctx.worker_id.map_or_else(String::new, |w| w.to_string()))));
    }
    let unsupported = || format!("embedded Ruby is not supported: `{}`; {SUPPORTED}", shorten(code));
    if code.len() > MAX_CODE {
        return Err(format!("embedded code longer than {MAX_CODE} bytes: `{}`", shorten(code)));
    }
    let mut p = P { s: code.as_bytes(), i: 0 };
    let e = p.expr(0).map_err(|_| unsupported())?;
    p.ws();
    if p.i != p.s.len() {
        return Err(unsupported());
    }
    match eval_expr(&e, ctx) {
        Ok(v) => Ok(Eval::Value(v)),
        Err(Raise::SetNil) => Ok(Eval::SetNil),
        Err(Raise::SetDefault) => Ok(Eval::SetDefault),
        Err(Raise::Error(m)) => Err(format!("in embedded code `{}`: {m}", shorten(code))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> EvalContext {
        let env = HashMap::from([
            ("SET".to_string(), "value".to_string()),
            ("EMPTY".to_string(), String::new()),
            ("HOST".to_string(), "10.0.0.1".to_string()),
            ("PORT".to_string(), "443".to_string()),
        ]);
        EvalContext::with_env("host1", Some(3), env)
    }

    fn s(v: &str) -> Result<Eval, String> {
        Ok(Eval::Value(Value::Str(v.into())))
    }

    #[test]
    fn supported_idioms() {
        let c = ctx();
        assert_eq!(eval("ENV['SET']", &c), s("value"));
        assert_eq!(eval("ENV[\"SET\"]", &c), s("value"));
        assert_eq!(eval("ENV['UNSET']", &c), Ok(Eval::Value(Value::Nil)));
        assert_eq!(eval("ENV['UNSET'] || 'dflt'", &c), s("dflt"));
        assert_eq!(eval("ENV['SET'] || 'dflt'", &c), s("value"));
        // "" is truthy in Ruby.
        assert_eq!(eval("ENV['EMPTY'] || 'dflt'", &c), s(""));
        assert_eq!(eval("ENV['UNSET'] || ENV['SET']", &c), s("value"));
        assert_eq!(eval("ENV['UNSET'] || ENV['UNSET2'] || 'x'", &c), s("x"));
        assert_eq!(eval("ENV.fetch('UNSET', 'd2')", &c), s("d2"));
        assert_eq!(eval("ENV.fetch('SET', 'd2')", &c), s("value"));
        assert_eq!(eval("ENV.fetch(\"SET\")", &c), s("value"));
        assert_eq!(eval("Socket.gethostname", &c), s("host1"));
        assert_eq!(eval("Socket.gethostname()", &c), s("host1"));
        assert_eq!(eval(" hostname ", &c), s("host1"));
        assert_eq!(eval("worker_id", &c), s("3"));
        assert_eq!(eval("use_nil", &c), Ok(Eval::SetNil));
        assert_eq!(eval("use_default", &c), Ok(Eval::SetDefault));
        assert_eq!(eval("ENV['UNSET'] || use_default", &c), Ok(Eval::SetDefault));
        assert_eq!(eval("ENV['SET'] || use_default", &c), s("value"));
        assert_eq!(eval("ENV['UNSET'] || 24224", &c), Ok(Eval::Value(Value::Int(24224))));
        assert_eq!(eval("ENV['UNSET'] || true", &c), Ok(Eval::Value(Value::Bool(true))));
        assert_eq!(eval("1+1", &c), Ok(Eval::Value(Value::Int(2))));
        assert_eq!(eval("\"}\"", &c), s("}"));
        assert_eq!(eval("'it\\'s' + \"\\t#{ENV['SET']}\"", &c), s("it's\tvalue"));
        assert_eq!(eval("(ENV['UNSET'] || 'a') + 'b'", &c), s("ab"));
        // fluentd-kubernetes-daemonset's kubernetes_url.
        assert_eq!(
            eval(
                "ENV['FLUENT_FILTER_KUBERNETES_URL'] || 'https://' + ENV.fetch('HOST') + ':' + ENV.fetch('PORT') + '/api'",
                &c
            ),
            s("https://10.0.0.1:443/api")
        );
        // fluentd-kubernetes-daemonset's pos_file.
        assert_eq!(
            eval("File.join('/var/log/', ENV.fetch('FLUENT_POS_EXTRA_DIR', ''), 'fluentd-containers.log.pos')", &c),
            s("/var/log/fluentd-containers.log.pos")
        );
        assert_eq!(eval("File.join('/var/log/', ENV['SET'], 'x.pos')", &c), s("/var/log/value/x.pos"));
        // Empty code: fluentd's prepended `worker_id = ...` is the last expression.
        assert_eq!(eval("", &c), s("3"));
    }

    #[test]
    fn ruby_errors_are_config_errors() {
        let c = ctx();
        let e = eval("ENV.fetch('UNSET')", &c).unwrap_err();
        assert!(e.contains("key not found") && e.contains("ENV.fetch('UNSET', 'value')"), "{e}");
        // The right side of || is not evaluated when the left is truthy...
        assert_eq!(eval("ENV['SET'] || ENV.fetch('UNSET')", &c), s("value"));
        // ...but arguments are, as in Ruby.
        assert_eq!(eval("ENV.fetch('SET', use_default)", &c), Ok(Eval::SetDefault));
        let e = eval("ENV['UNSET'] + 'x'", &c).unwrap_err();
        assert!(e.contains("undefined method '+' for nil"), "{e}");
        let e = eval("'x' + 1", &c).unwrap_err();
        assert!(e.contains("no implicit conversion of Integer into String"), "{e}");
    }

    #[test]
    fn file_join_follows_ruby() {
        let j = |v: &[&str]| file_join(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(j(&["a", "b"]), "a/b");
        assert_eq!(j(&["a/", "b"]), "a/b");
        assert_eq!(j(&["a/", "/b"]), "a/b");
        assert_eq!(j(&["a//", "//b"]), "a//b");
        assert_eq!(j(&["a", "/b"]), "a/b");
        assert_eq!(j(&["a/", "", "b"]), "a/b");
        assert_eq!(j(&["a", "", "b"]), "a/b");
        assert_eq!(j(&["", "b"]), "/b");
        assert_eq!(j(&["a", ""]), "a/");
        assert_eq!(j(&["/", "/a"]), "/a");
        assert_eq!(j(&["/", "a"]), "/a");
        assert_eq!(j(&["a"]), "a");
        assert_eq!(j(&[]), "");
        let c = ctx();
        assert!(eval("File.join('a', nil)", &c).unwrap_err().contains("File.join: no implicit conversion of nil"));
    }

    #[test]
    fn anything_else_is_an_error() {
        let c = ctx();
        for code in [
            "system('rm -rf /')",
            "ENV['X'].upcase",
            "`id`",
            "File.read('/etc/passwd')",
            "File.join(Dir.pwd, 'x')",
            "File.read('x')",
            "File.join('a' 'b')",
            "Dir.pwd",
            "ENV",
            "ENV['X'",
            "test",
            "#",
            "1.5",
            "ENV['X'] ||",
            "hostnames",
            "'unterminated",
            "\"\\u00e9\"",
            "ENV.fetch('X') { 'd' }",
            "Socket.getifaddrs.first",
        ] {
            let e = eval(code, &c).unwrap_err();
            assert!(
                e.starts_with("embedded Ruby is not supported: `") && e.contains("ENV.fetch('X', 'default')"),
                "{code}: {e}"
            );
        }
        let deep = format!("{}'x'{}", "(".repeat(100), ")".repeat(100));
        assert!(eval(&deep, &c).unwrap_err().contains("not supported"));
        let long = "x".repeat(1000);
        assert!(eval(&long, &c).unwrap_err().len() < 400);
    }

    #[test]
    fn long_chains_are_flat_and_bounded() {
        let c = ctx();
        // Chains evaluate iteratively (no recursion per operand).
        let ors = format!("{} || 'end'", vec!["ENV['UNSET']"; 200].join(" || "));
        assert_eq!(eval(&ors, &c), s("end"));
        let adds = vec!["'ab'"; 600].join("+");
        assert_eq!(eval(&adds, &c), s(&"ab".repeat(600)));
        let e = eval(&vec!["'a'"; 2000].join("+"), &c).unwrap_err();
        assert!(e.starts_with("embedded code longer than 4096 bytes"), "{e}");
    }

    #[test]
    fn random_code_never_panics() {
        let c = ctx();
        let atoms = [
            "ENV",
            "[",
            "]",
            "'X'",
            "\"SET\"",
            "||",
            "+",
            "(",
            ")",
            ".",
            "fetch",
            ",",
            "use_nil",
            "use_default",
            "nil",
            "true",
            "1",
            "-",
            "File",
            "join",
            "Socket",
            "gethostname",
            "hostname",
            "worker_id",
            "#{",
            "}",
            "\\",
            " ",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20000 {
            let mut code = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for k in 0..(x % 12) {
                code.push_str(atoms[((x >> (k * 5)) % atoms.len() as u64) as usize]);
            }
            let _ = eval(&code, &c);
        }
    }
}
