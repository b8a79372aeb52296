//! The embedded-Ruby idioms real configs use inside `"#{...}"`, evaluated without Ruby:
//! `ENV['X']` / `ENV["X"]`, `a || b` (Ruby truthiness, short-circuit),
//! `ENV.fetch('X')` (a missing key is an error, as Ruby's KeyError) and
//! `ENV.fetch('X', 'default')`, `Socket.gethostname`, `hostname`, `worker_id`, fluentd's
//! helpers `use_nil` / `use_default`, string / integer / true / false / nil literals,
//! `+` between two strings or two integers, `File.join(...)` of strings (common in
//! fluentd-kubernetes-daemonset's pos_file paths), parentheses, `c ? a : b`, `==`/`!=`,
//! local variables and `;` (`host = ENV.fetch('H'); 'https://' + host`), the `rescue`
//! modifier, `IPAddr.new(x).ipv6?` (fluentd-kubernetes-daemonset's kubernetes_url) and
//! `Socket.gethostbyname(name).first`. The code may span lines. A bare name that is not a
//! local (`ENV['X'] || gzip`) is Ruby's NameError when it is evaluated, as in fluentd (so
//! it only fails when `ENV['X']` is unset). Anything else is an error that says so:
//! spate never runs Ruby. `parse.rs` holds the grammar.
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
c ? a : b, ==, !=, local variables, ';', x rescue y, Socket.gethostname, Socket.gethostbyname(h).first, \
IPAddr.new(x).ipv6?, hostname, worker_id, use_default, use_nil, File.join, string literals and '+'";

/// Bound on nested parentheses, interpolations and `ENV.fetch` defaults.
const MAX_DEPTH: usize = 32;
/// Longest code accepted inside one `#{}`.
const MAX_CODE: usize = 4096;
/// Longest string `+` may build.
const MAX_STRING: usize = 1 << 20;

mod parse;
#[cfg(test)]
mod tests;

pub use parse::find_code_end;
use parse::{Expr, Part};

enum Raise {
    SetNil,
    SetDefault,
    Error(String),
}

/// Locals assigned by the code (`host = ...`), in assignment order.
type Locals = Vec<(String, Value)>;

fn eval_expr(e: &Expr, ctx: &EvalContext, locals: &mut Locals) -> Result<Value, Raise> {
    Ok(match e {
        Expr::Str(parts) => {
            let mut s = String::new();
            for p in parts {
                match p {
                    Part::Lit(l) => s.push_str(l),
                    // Ruby's "#{nil}" is "" (only fluentd's outer level turns nil into unset).
                    Part::Code(c) => s.push_str(&eval_expr(c, ctx, locals)?.to_interpolated().unwrap_or_default()),
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
            let k = env_key(k, ctx, locals)?;
            (ctx.env)(&k).map_or(Value::Nil, Value::Str)
        }
        Expr::Fetch(k, d) => {
            let k = env_key(k, ctx, locals)?;
            // Ruby evaluates arguments before the call, so the default is evaluated even
            // when the variable is set.
            let d = d.as_ref().map(|d| eval_expr(d, ctx, locals)).transpose()?;
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
                v = eval_expr(t, ctx, locals)?;
                if v.truthy() {
                    break;
                }
            }
            v
        }
        Expr::FileJoin(args) => {
            let mut parts = Vec::with_capacity(args.len());
            for a in args {
                match eval_expr(a, ctx, locals)? {
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
                let y = eval_expr(t, ctx, locals)?;
                acc = Some(match acc {
                    None => y,
                    Some(x) => add(x, y)?,
                });
            }
            acc.unwrap_or(Value::Nil)
        }
        Expr::Eq(a, b, is_eq) => {
            let (x, y) = (eval_expr(a, ctx, locals)?, eval_expr(b, ctx, locals)?);
            Value::Bool((x == y) == *is_eq)
        }
        Expr::If(c, a, b) => {
            if eval_expr(c, ctx, locals)?.truthy() {
                eval_expr(a, ctx, locals)?
            } else {
                eval_expr(b, ctx, locals)?
            }
        }
        Expr::Rescue(a, b) => match eval_expr(a, ctx, locals) {
            Err(Raise::Error(_)) => eval_expr(b, ctx, locals)?,
            other => other?,
        },
        Expr::Assign(name, v) => {
            let v = eval_expr(v, ctx, locals)?;
            match locals.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = v.clone(),
                None => locals.push((name.clone(), v.clone())),
            }
            v
        }
        Expr::Name(name) => match locals.iter().find(|(n, _)| n == name) {
            Some((_, v)) => v.clone(),
            None => {
                let short: String = name.chars().take(40).collect();
                let name = if short.len() < name.len() { short + "..." } else { short };
                return Err(Raise::Error(format!(
                    "undefined local variable or method '{name}' (fluentd fails here too; quote a literal: '{name}')"
                )));
            }
        },
        Expr::Seq(v) => {
            let mut last = Value::Nil;
            for x in v {
                last = eval_expr(x, ctx, locals)?;
            }
            last
        }
        Expr::IpIs(a, v6) => match eval_expr(a, ctx, locals)? {
            Value::Str(s) => match ip_addr(&s) {
                Some(ip) => Value::Bool(ip.is_ipv6() == *v6),
                None => return Err(Raise::Error(format!("IPAddr::InvalidAddressError: invalid address: {s}"))),
            },
            other => {
                return Err(Raise::Error(format!(
                    "IPAddr.new: no implicit conversion of {} into String",
                    other.type_name()
                )))
            }
        },
        Expr::CanonName(a) => match eval_expr(a, ctx, locals)? {
            Value::Str(s) => Value::Str(
                crate::sys::canonical_name(&s)
                    .map_err(|e| Raise::Error(format!("Socket.gethostbyname({s:?}): SocketError: {e}")))?,
            ),
            other => {
                return Err(Raise::Error(format!(
                    "Socket.gethostbyname: no implicit conversion of {} into String",
                    other.type_name()
                )))
            }
        },
    })
}

/// What `IPAddr.new` accepts of an address: IPv4, IPv6 (also in brackets, with a zone
/// or a prefix length).
fn ip_addr(s: &str) -> Option<std::net::IpAddr> {
    let t = s.trim_start_matches('[').trim_end_matches(']');
    let t = t.split(['%', '/']).next().unwrap_or(t);
    t.parse().ok()
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

fn env_key(k: &Expr, ctx: &EvalContext, locals: &mut Locals) -> Result<String, Raise> {
    match eval_expr(k, ctx, locals)? {
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

/// A Ruby double-quoted string's content (`!fluent/s` in YAML configs: fluentd evaluates
/// `"\"#{val}\""`): escapes and `#{...}`.
pub fn eval_string(s: &str, ctx: &EvalContext) -> Result<Eval, String> {
    eval(&format!("\"{s}\""), ctx)
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
    let mut p = parse::P { s: code.as_bytes(), i: 0 };
    let e = p.program(0).map_err(|_| unsupported())?;
    // Trailing blanks and `;`.
    while p.s.get(p.i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b';')) {
        p.i += 1;
    }
    if p.i != p.s.len() {
        return Err(unsupported());
    }
    match eval_expr(&e, ctx, &mut Vec::new()) {
        Ok(v) => Ok(Eval::Value(v)),
        Err(Raise::SetNil) => Ok(Eval::SetNil),
        Err(Raise::SetDefault) => Ok(Eval::SetDefault),
        Err(Raise::Error(m)) => Err(format!("in embedded code `{}`: {m}", shorten(code))),
    }
}
