//! The embedded-Ruby idioms real configs use inside `"#{...}"`, evaluated without Ruby:
//! `ENV['X']`, `ENV["X"]`, `ENV['X'] || 'default'` (chains of `||`),
//! `ENV.fetch('X', 'default')`, `ENV.fetch('X')`, `Socket.gethostname`, `hostname`,
//! `worker_id`, string literals, `use_nil` and `use_default`. Anything else is an error
//! that says so: spate never runs Ruby.

/// Reads an environment variable.
pub type EnvFn = Box<dyn Fn(&str) -> Option<String>>;

/// What embedded code may read.
pub struct EvalContext {
    pub hostname: String,
    /// `worker_id`; fluentd gives "" outside a worker.
    pub worker_id: Option<u32>,
    pub env: EnvFn,
}

impl EvalContext {
    /// The real process environment and host name.
    pub fn from_process() -> Self {
        EvalContext { hostname: hostname(), worker_id: None, env: Box::new(|k| std::env::var(k).ok()) }
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

/// Result of evaluating embedded code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    /// Ruby nil (an unset ENV var): interpolates as "".
    Nil,
    /// `use_nil` / `use_default`: the parameter is treated as not set.
    Unset,
}

pub const SUPPORTED: &str =
    "spate supports ENV['X'], ENV['X'] || 'default', ENV.fetch('X', 'default'), Socket.gethostname, hostname and worker_id";

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
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
    fn string(&mut self) -> Option<String> {
        self.ws();
        let q = *self.s.get(self.i)?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        let mut out = Vec::new();
        let mut j = self.i + 1;
        while j < self.s.len() {
            let c = self.s[j];
            if c == b'\\' && j + 1 < self.s.len() {
                out.push(self.s[j + 1]);
                j += 2;
                continue;
            }
            if c == q {
                self.i = j + 1;
                return Some(String::from_utf8_lossy(&out).into_owned());
            }
            out.push(c);
            j += 1;
        }
        None
    }
    fn ident(&mut self, w: &str) -> bool {
        self.ws();
        let rest = &self.s[self.i..];
        if rest.starts_with(w.as_bytes())
            && rest.get(w.len()).is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        {
            self.i += w.len();
            true
        } else {
            false
        }
    }
}

fn term(p: &mut P<'_>, ctx: &EvalContext) -> Result<Value, ()> {
    if p.ident("ENV") {
        if p.eat("[") {
            let k = p.string().ok_or(())?;
            if !p.eat("]") {
                return Err(());
            }
            return Ok((ctx.env)(&k).map_or(Value::Nil, Value::Str));
        }
        if p.eat(".fetch") && p.eat("(") {
            let k = p.string().ok_or(())?;
            let default = if p.eat(",") { Some(term(p, ctx)?) } else { None };
            if !p.eat(")") {
                return Err(());
            }
            return match ((ctx.env)(&k), default) {
                (Some(v), _) => Ok(Value::Str(v)),
                (None, Some(d)) => Ok(d),
                (None, None) => Ok(Value::Str(format!("\u{0}missing ENV key {k}"))),
            };
        }
        return Err(());
    }
    if p.eat("Socket.gethostname") || p.ident("hostname") {
        return Ok(Value::Str(ctx.hostname.clone()));
    }
    if p.ident("worker_id") {
        return Ok(Value::Str(ctx.worker_id.map_or_else(String::new, |w| w.to_string())));
    }
    if p.ident("use_nil") || p.ident("use_default") {
        return Ok(Value::Unset);
    }
    if p.ident("nil") {
        return Ok(Value::Nil);
    }
    for b in ["true", "false"] {
        if p.ident(b) {
            return Ok(Value::Str(b.into()));
        }
    }
    // Numeric literals (`ENV['PORT'] || 24224`).
    p.ws();
    let st = p.i;
    while p.i < p.s.len() && (p.s[p.i].is_ascii_digit() || (p.i > st && matches!(p.s[p.i], b'.' | b'_'))) {
        p.i += 1;
    }
    if p.i > st {
        return Ok(Value::Str(String::from_utf8_lossy(&p.s[st..p.i]).replace('_', "")));
    }
    p.string().map(Value::Str).ok_or(())
}

/// Evaluates the code between `#{` and `}`.
pub fn eval(code: &str, ctx: &EvalContext) -> Result<Value, String> {
    let unsupported = || format!("embedded Ruby is not supported: `{}`; {SUPPORTED}", code.trim());
    let mut p = P { s: code.as_bytes(), i: 0 };
    let mut v = term(&mut p, ctx).map_err(|_| unsupported())?;
    while p.eat("||") {
        let next = term(&mut p, ctx).map_err(|_| unsupported())?;
        if matches!(v, Value::Nil) {
            v = next;
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(unsupported());
    }
    if let Value::Str(s) = &v {
        if let Some(k) = s.strip_prefix("\u{0}missing ENV key ") {
            return Err(format!("ENV.fetch('{k}'): key not found (set {k} or give a default)"));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> EvalContext {
        EvalContext {
            hostname: "host1".into(),
            worker_id: Some(3),
            env: Box::new(|k| match k {
                "SET" => Some("value".into()),
                _ => None,
            }),
        }
    }

    #[test]
    fn supported_idioms() {
        let c = ctx();
        assert_eq!(eval("ENV['SET']", &c), Ok(Value::Str("value".into())));
        assert_eq!(eval("ENV[\"SET\"]", &c), Ok(Value::Str("value".into())));
        assert_eq!(eval("ENV['UNSET']", &c), Ok(Value::Nil));
        assert_eq!(eval("ENV['UNSET'] || 'dflt'", &c), Ok(Value::Str("dflt".into())));
        assert_eq!(eval("ENV['SET'] || 'dflt'", &c), Ok(Value::Str("value".into())));
        assert_eq!(eval("ENV['UNSET'] || ENV['SET']", &c), Ok(Value::Str("value".into())));
        assert_eq!(eval("ENV.fetch('UNSET', 'd2')", &c), Ok(Value::Str("d2".into())));
        assert_eq!(eval("ENV.fetch('SET', 'd2')", &c), Ok(Value::Str("value".into())));
        assert!(eval("ENV.fetch('UNSET')", &c).unwrap_err().contains("key not found"));
        assert_eq!(eval("Socket.gethostname", &c), Ok(Value::Str("host1".into())));
        assert_eq!(eval(" hostname ", &c), Ok(Value::Str("host1".into())));
        assert_eq!(eval("worker_id", &c), Ok(Value::Str("3".into())));
        assert_eq!(eval("use_nil", &c), Ok(Value::Unset));
        assert_eq!(eval("ENV['UNSET'] || 24224", &c), Ok(Value::Str("24224".into())));
        assert_eq!(eval("ENV['UNSET'] || true", &c), Ok(Value::Str("true".into())));
    }

    #[test]
    fn anything_else_is_an_error() {
        let c = ctx();
        for code in ["system('rm -rf /')", "1 + 1", "ENV['X'].upcase", "`id`", "File.read('/etc/passwd')", "ENV", ""] {
            let e = eval(code, &c).unwrap_err();
            assert!(e.contains("not supported") && e.contains("ENV.fetch"), "{code}: {e}");
        }
    }
}
