//! The Ruby expressions real fluentd configs put in `${...}` (filter_record_transformer's
//! `enable_ruby`, record_modifier): parsed once at config time into a small AST, evaluated
//! per event against the record's msgpack bytes without running Ruby. Values read from
//! the record are borrowed (no copy); only what an expression computes (a `gsub`, a
//! `split`, a `+`) allocates.
//!
//! The subset (anything else is a config error naming the expression):
//! - locals: `record`, `tag`, `time` (a Time), `tag_parts`, `tag_prefix`, `tag_suffix`,
//!   `hostname` (each plugin says which it provides);
//! - literals: strings (`'...'`, `"..."` with escapes and `#{}`), integers, floats, `nil`,
//!   `true`, `false`, `[...]`, `{"k" => v, "k": v, k: v}`, `/regexp/imx`, `:symbols`,
//!   `%w[...]`;
//! - operators: `+ - * / %`, `== != < > <= >=`, `=~ !~`, `! && || and or not`,
//!   `c ? a : b`, `if/elsif/else/end`, `unless`, `begin ... rescue ... end`, `x rescue y`,
//!   `;`, `&.`, ranges in `[]`;
//! - local variables, `/(?<name>..)/ =~ s` setting locals, blocks on arrays and hashes
//!   (`map select reject find any? ... each`, see `blocks.rs`), `require` of a loaded
//!   standard library (a no-op);
//! - `ENV['X']`, `ENV.fetch('X', d)` (read at config time), `Socket.gethostname`,
//!   `Time.now`, `Time.at(sec[, usec])`, `Time.parse`, `Time.strptime`, `CGI.escape`,
//!   `CGI.unescape`, `JSON.generate`;
//! - the methods of [`method::METHODS`] (strings, arrays, hashes, numbers, times, match
//!   data), with Ruby's semantics for the types they are called on.
//!
//! Evaluation errors are Ruby's exceptions (`NoMethodError` on nil, `TypeError`...): the
//! caller treats the event as fluentd treats an exception in a filter.

mod blocks;
mod env;
mod eval;
mod lex;
pub mod method;
mod node;
mod parse;
mod primary;
mod string;
#[cfg(test)]
mod tests;
mod types;
mod value;

pub use env::Scope;
pub use value::{RTime, Val};

use crate::ruby::regex::RubyRegex;

/// Longest code accepted in one `${...}`.
pub const MAX_CODE: usize = 16 * 1024;
/// Deepest nesting of parentheses, calls and interpolations.
pub const MAX_DEPTH: usize = 64;
/// Longest string an expression may build (`*`, `+`, `gsub`...).
pub const MAX_STRING: usize = 16 << 20;

/// The locals a plugin provides to its expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Record,
    Tag,
    Time,
    TagParts,
    TagPrefix,
    TagSuffix,
    Hostname,
    /// `time` as a `Fluent::EventTime` (record_modifier) rather than a Time.
    EventTime,
    /// record_reformer's `tags` (its old name for `tag_parts`).
    Tags,
    /// Not a local: record_reformer resolves any other bare name to the record's field of
    /// that name (its `method_missing`), raising NameError when the record has none.
    RecordFields,
}

impl Local {
    pub fn name(self) -> &'static str {
        match self {
            Local::Record => "record",
            Local::Tag => "tag",
            Local::Time => "time",
            Local::TagParts => "tag_parts",
            Local::TagPrefix => "tag_prefix",
            Local::TagSuffix => "tag_suffix",
            Local::Hostname => "hostname",
            Local::EventTime => "time",
            Local::Tags => "tags",
            // Never matches an identifier.
            Local::RecordFields => "<record fields>",
        }
    }

    /// Every local record_transformer provides.
    pub const ALL: [Local; 7] =
        [Local::Record, Local::Tag, Local::Time, Local::TagParts, Local::TagPrefix, Local::TagSuffix, Local::Hostname];

    /// What record_reformer's `CleanroomExpander` provides.
    pub const REFORMER: [Local; 9] = [
        Local::Record,
        Local::Tag,
        Local::Time,
        Local::TagParts,
        Local::TagPrefix,
        Local::TagSuffix,
        Local::Hostname,
        Local::Tags,
        Local::RecordFields,
    ];
}

/// What compiling may consult: the locals in scope, `ENV` and the host name (both read
/// once, at config time).
pub struct CompileCx<'e> {
    pub locals: &'e [Local],
    pub env: &'e dyn Fn(&str) -> Option<String>,
    pub hostname: &'e str,
}

/// Why an expression is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error("Ruby expression `{code}`: syntax error at column {col}: {msg}")]
    Syntax { code: String, col: usize, msg: String },
    #[error(
        "Ruby expression `{code}`: not supported: {what} (spate evaluates a subset of Ruby without running \
         Ruby; see the README's \"Ruby in configs\")"
    )]
    Unsupported { code: String, what: String },
    #[error(
        "Ruby expression `{code}`: undefined local variable or method `{name}`{hint} (fluentd raises NameError \
         for every event)"
    )]
    UnknownName { code: String, name: String, hint: String },
    #[error("Ruby expression `{code}`: invalid regexp /{re}/: {reason}")]
    Regexp { code: String, re: String, reason: String },
    #[error("Ruby expression `{code}`: {msg}")]
    Limit { code: String, msg: String },
}

/// Shortens code for messages.
pub(crate) fn shorten(code: &str) -> String {
    let t = code.trim();
    let mut out: String = t.chars().take(160).collect();
    if out.len() < t.len() {
        out.push_str("...");
    }
    out
}

impl ExprError {
    fn syntax(code: &str, at: usize, msg: impl Into<String>) -> ExprError {
        let col = code.get(..at.min(code.len())).map_or(at, |p| p.chars().count()) + 1;
        ExprError::Syntax { code: shorten(code), col, msg: msg.into() }
    }
    fn unsupported(code: &str, what: impl Into<String>) -> ExprError {
        ExprError::Unsupported { code: shorten(code), what: what.into() }
    }
}

/// A Ruby exception raised while evaluating (the event fails as in fluentd).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RubyError {
    #[error("undefined method '{method}' for {recv}")]
    NoMethod { method: &'static str, recv: &'static str },
    #[error("{0}")]
    Type(String),
    #[error("{0}")]
    Argument(String),
    #[error("divided by 0")]
    ZeroDivision,
    #[error("{0}")]
    Range(String),
    #[error("key not found: {0}")]
    Key(String),
    #[error("{0}")]
    Index(String),
    /// record_reformer's `method_missing` for a field the record does not have.
    #[error("undefined local variable or method `{0}'")]
    Name(String),
}

/// A compiled expression.
#[derive(Debug)]
pub struct Program {
    node: node::Node,
    src: Box<str>,
    /// Local variable slots the evaluation frame needs.
    nvars: usize,
}

impl Program {
    /// Compiles the code of one `${...}` (or `#{...}`).
    pub fn compile(code: &str, cx: &CompileCx<'_>) -> Result<Program, ExprError> {
        if code.len() > MAX_CODE {
            return Err(ExprError::Limit { code: shorten(code), msg: format!("longer than {MAX_CODE} bytes") });
        }
        let mut locals = node::Locals::default();
        let node = parse::parse_program(code, 0, code, cx, 0, &mut locals)?;
        Ok(Program { node, src: code.into(), nvars: locals.count })
    }

    /// The code as written.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Evaluates against one event.
    pub fn eval<'a>(&'a self, scope: &Scope<'a>) -> Result<Val<'a>, RubyError> {
        let env = env::Env::new(scope, self.nvars);
        eval::eval(&self.node, &env)
    }
}

/// Ruby's `gsub(re, replacement)` of a string (`\\1`, `\\k<name>`... in the
/// replacement), for plugins that take a regexp and a replacement (record_modifier's
/// `<replace>`).
pub fn gsub(s: &[u8], re: &Re, repl: &[u8]) -> Result<Vec<u8>, RubyError> {
    match string::gsub(&std::borrow::Cow::Borrowed(s), string::Pat::Re(re), repl, true)? {
        Val::Str(v) => Ok(v.into_owned()),
        _ => Ok(s.to_vec()),
    }
}

/// One piece of a string built by interpolation.
#[derive(Debug)]
pub enum Segment {
    Lit(Vec<u8>),
    Code(Program),
}

/// Compiles `%Q[text]`: a double-quoted Ruby string with `#{...}` interpolations whose
/// delimiters are `[` `]` (nested pairs are literal; an unbalanced `]` ends the string
/// and the rest is a syntax error, as in Ruby). This is how fluentd's
/// `RubyPlaceholderExpander` evaluates a `<record>` value with `${...}` in it.
pub fn compile_interpolation(text: &str, cx: &CompileCx<'_>) -> Result<Vec<Segment>, ExprError> {
    if text.len() > MAX_CODE {
        return Err(ExprError::Limit { code: shorten(text), msg: format!("longer than {MAX_CODE} bytes") });
    }
    let parts = lex::Lexer::percent_q(text)?;
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p {
            lex::StrPart::Lit(l) => out.push(Segment::Lit(l)),
            lex::StrPart::Code(c, at) => {
                let mut locals = node::Locals::default();
                let node = parse::parse_program(&c, at, text, cx, 1, &mut locals)?;
                out.push(Segment::Code(Program { node, src: c.into(), nvars: locals.count }));
            }
        }
    }
    Ok(out)
}

/// A regexp literal of an expression.
#[derive(Debug)]
pub struct Re {
    pub re: RubyRegex,
    /// The source as written (`inspect` / `to_s`).
    pub src: String,
    pub flags: String,
}
