//! The primaries of the Ruby subset's parser: literals, names (locals, the plugin's
//! locals, `require`), `if`/`unless`/`begin`, hashes, and the constants the subset knows
//! (`ENV`, `Time`, `Socket`, `CGI`, `JSON`, `Integer()`...), folded where they are
//! constant.

use super::lex::{StrPart, Tok};
use super::node::Node;
use super::parse::{parse_program, P};
use super::{ExprError, Local, Re};
use crate::ruby::regex::RubyRegex;

const KEYWORDS: &[&str] = &[
    "nil", "true", "false", "and", "or", "not", "if", "elsif", "else", "end", "then", "unless", "begin", "rescue",
    "ensure", "do", "self", "while", "until", "case", "when", "def", "class", "module", "return", "yield", "defined?",
];

/// Class names `is_a?` understands.
const CLASSES: &[&str] = &[
    "String",
    "Integer",
    "Float",
    "Numeric",
    "Array",
    "Hash",
    "NilClass",
    "TrueClass",
    "FalseClass",
    "Symbol",
    "Time",
    "Regexp",
    "MatchData",
    "Object",
];

impl P<'_, '_, '_> {
    fn string(&mut self, parts: Vec<StrPart>) -> Result<Node, ExprError> {
        let mut nodes = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                StrPart::Lit(l) => nodes.push(Node::Str(l)),
                StrPart::Code(c, at) => {
                    nodes.push(parse_program(&c, at, self.full, self.cx, self.depth + 1, &mut *self.locals)?)
                }
            }
        }
        Ok(match nodes.len() {
            0 => Node::Str(Vec::new()),
            1 if matches!(nodes[0], Node::Str(_)) => nodes.pop().unwrap_or(Node::Nil),
            _ => Node::Interp(nodes),
        })
    }

    pub(super) fn regex(&self, body: &str, flags: &str) -> Result<Node, ExprError> {
        let mut src = String::new();
        if flags.contains('x') {
            src.push_str("(?x)");
        }
        src.push_str(body);
        let re = RubyRegex::new(&src, flags.contains('i'), flags.contains('m'))
            .map_err(|reason| ExprError::Regexp { code: super::shorten(self.full), re: body.to_string(), reason })?;
        Ok(Node::Regex(Box::new(Re { re, src: body.to_string(), flags: flags.to_string() })))
    }

    /// A constant string argument (`ENV['X']`).
    fn const_str(&self, n: &Node, what: &str) -> Result<String, ExprError> {
        match n {
            Node::Str(s) => {
                String::from_utf8(s.clone()).map_err(|_| self.unsupported(format!("{what} with a non-UTF-8 name")))
            }
            _ => Err(self.unsupported(format!("{what} with a computed name"))),
        }
    }

    pub(super) fn primary(&mut self) -> Result<Node, ExprError> {
        self.skip_seps();
        let start = self.i;
        match self.next() {
            Tok::Int(i) => Ok(Node::Int(i)),
            Tok::Float(f) => Ok(Node::Float(f)),
            Tok::Str(parts) => {
                let mut n = self.string(parts)?;
                // Adjacent literals concatenate: 'a' "b".
                while let Tok::Str(more) = self.peek().clone() {
                    self.i += 1;
                    let m = self.string(more)?;
                    n = Node::Interp(vec![n, m]);
                }
                Ok(n)
            }
            Tok::Regex { body, flags } => self.regex(&body, &flags),
            Tok::Sym(s) => Ok(Node::Sym(s)),
            Tok::Words(w) => Ok(Node::Array(w.into_iter().map(|s| Node::Str(s.into_bytes())).collect())),
            Tok::Op("(") => {
                self.enter()?;
                let n = self.stmts(&[])?;
                self.skip_seps();
                self.expect_op(")")?;
                self.depth -= 1;
                Ok(n)
            }
            Tok::Op("[") => {
                self.enter()?;
                let items = self.args("]")?;
                self.depth -= 1;
                Ok(Node::Array(items))
            }
            Tok::Op("{") => {
                self.enter()?;
                let h = self.hash()?;
                self.depth -= 1;
                Ok(h)
            }
            Tok::Op("->") => Err(self.unsupported("lambdas")),
            Tok::Ident(name) => self.ident(&name),
            Tok::Const(name) => self.constant(&name),
            Tok::Eof => {
                self.i = start;
                Err(self.err_here("expected a value"))
            }
            _ => {
                self.i = start;
                Err(self.err_here("unexpected token"))
            }
        }
    }

    fn hash(&mut self) -> Result<Node, ExprError> {
        let mut pairs = Vec::new();
        loop {
            self.skip_seps();
            if self.eat_op("}") {
                return Ok(Node::Hash(pairs));
            }
            // `key: v` and `"key": v` make symbol keys.
            let key = match (self.peek().clone(), self.peek_at(1)) {
                (Tok::Ident(k), Tok::Op(":")) | (Tok::Const(k), Tok::Op(":")) => {
                    self.i += 2;
                    Node::Sym(k)
                }
                (Tok::Str(parts), Tok::Op(":")) => {
                    let adjacent = self.toks.get(self.i + 1).map(|t| t.start) == self.toks.get(self.i).map(|t| t.end);
                    if !adjacent {
                        return Err(self.err_here("expected `=>`"));
                    }
                    self.i += 2;
                    match self.string(parts)? {
                        Node::Str(s) => Node::Sym(String::from_utf8(s).map_err(|_| self.unsupported("this symbol"))?),
                        _ => return Err(self.unsupported("interpolated symbol keys")),
                    }
                }
                _ => {
                    let k = self.ternary()?;
                    self.skip_seps();
                    self.expect_op("=>")?;
                    k
                }
            };
            self.skip_seps();
            let v = self.not_and_or()?;
            pairs.push((key, v));
            self.skip_seps();
            if self.eat_op("}") {
                return Ok(Node::Hash(pairs));
            }
            self.expect_op(",")?;
        }
    }

    fn ident(&mut self, name: &str) -> Result<Node, ExprError> {
        match name {
            "nil" => return Ok(Node::Nil),
            "true" => return Ok(Node::Bool(true)),
            "false" => return Ok(Node::Bool(false)),
            "if" => return self.if_expr(false),
            "unless" => return self.if_expr(true),
            "begin" => return self.begin(),
            "not" => {
                let n = self.not_expr()?;
                return Ok(Node::Not(Box::new(n)));
            }
            _ => {}
        }
        if self.is_op("=") && !KEYWORDS.contains(&name) {
            // `name = value` (not `==`, which lexes as one operator).
            self.i += 1;
            let slot = self.locals.declare(name);
            let v = self.not_expr()?;
            return Ok(Node::Assign(slot, Box::new(v)));
        }
        if let Some(slot) = self.locals.lookup(name) {
            return Ok(Node::Var(slot));
        }
        if name == "require" {
            let lib = match self.next() {
                Tok::Str(parts) => match parts.as_slice() {
                    [StrPart::Lit(l)] => String::from_utf8_lossy(l).into_owned(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            // The standard libraries fluentd has loaded anyway: a no-op returning true.
            return if matches!(lib.as_str(), "time" | "json" | "date" | "uri" | "cgi" | "socket" | "ipaddr") {
                Ok(Node::Bool(true))
            } else {
                Err(self.unsupported(format!("require {lib:?}")))
            };
        }
        if let Some(l) = self.cx.locals.iter().find(|l| l.name() == name) {
            if *l == Local::Hostname {
                return Ok(Node::Str(self.cx.hostname.as_bytes().to_vec()));
            }
            // record_reformer's `tags` is `tag_parts` under its old name.
            return Ok(Node::Local(if *l == Local::Tags { Local::TagParts } else { *l }));
        }
        if KEYWORDS.contains(&name) {
            return Err(self.unsupported(format!("`{name}`")));
        }
        if self.is_op("(") {
            return Err(self.unsupported(format!("method `{name}`")));
        }
        if self.cx.locals.contains(&Local::RecordFields) {
            return Ok(Node::Field(name.as_bytes().into()));
        }
        let hint = if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            format!("; the v0.12 style `${{{name}}}` for a record field is `${{record[\"{name}\"]}}` in fluentd v1")
        } else {
            String::new()
        };
        Err(ExprError::UnknownName { code: super::shorten(self.full), name: name.to_string(), hint })
    }

    fn if_expr(&mut self, unless: bool) -> Result<Node, ExprError> {
        self.enter()?;
        let mut c = self.not_and_or()?;
        if unless {
            c = Node::Not(Box::new(c));
        }
        self.eat_kw("then");
        let a = self.stmts(&["elsif", "else", "end"])?;
        let b = if !unless && self.eat_kw("elsif") {
            Some(Box::new(self.if_expr(false)?))
        } else if self.eat_kw("else") {
            let b = self.stmts(&["end"])?;
            if !self.eat_kw("end") {
                return Err(self.err_here("expected `end`"));
            }
            Some(Box::new(b))
        } else {
            if !self.eat_kw("end") {
                return Err(self.err_here("expected `end`"));
            }
            None
        };
        self.depth -= 1;
        Ok(Node::If(Box::new(c), Box::new(a), b))
    }

    fn begin(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        let body = self.stmts(&["rescue", "ensure", "end"])?;
        let n = if self.eat_kw("rescue") {
            if matches!(self.peek(), Tok::Const(_)) || self.is_op("=>") {
                return Err(self.unsupported("`rescue` of a given exception class"));
            }
            let r = self.stmts(&["ensure", "else", "end"])?;
            Node::Rescue(Box::new(body), Box::new(r))
        } else {
            body
        };
        if !self.eat_kw("end") {
            return Err(self.err_here("expected `end` (`ensure`/`else` in begin are not supported)"));
        }
        self.depth -= 1;
        Ok(n)
    }

    /// `Const.method(...)` for the constants the subset knows.
    fn constant(&mut self, name: &str) -> Result<Node, ExprError> {
        if matches!(name, "Integer" | "Float" | "String") && self.is_op("(") {
            self.i += 1;
            let mut a = self.args(")")?;
            if a.len() != 1 {
                return Err(self.unsupported(format!("`{name}` with {} arguments", a.len())));
            }
            let kernel = match name {
                "Integer" => "Integer",
                "Float" => "Float",
                _ => "String",
            };
            return Ok(Node::Kernel(kernel, Box::new(a.remove(0))));
        }
        if let Some(c) = CLASSES.iter().find(|c| **c == name) {
            if !self.is_op(".") {
                return Ok(Node::Class(c));
            }
        }
        if name == "ENV" && self.is_op("[") {
            self.i += 1;
            let a = self.args("]")?;
            let [k] = a.as_slice() else { return Err(self.unsupported("ENV[] with several keys")) };
            let k = self.const_str(k, "ENV[]")?;
            return Ok((self.cx.env)(&k).map_or(Node::Nil, |v| Node::Str(v.into_bytes())));
        }
        if !self.eat_op(".") {
            return Err(self.unsupported(format!("the constant `{name}`")));
        }
        let m = match self.next() {
            Tok::Ident(m) => m,
            _ => return Err(self.err_here("expected a method name")),
        };
        let full = format!("{name}.{m}");
        let known = matches!(
            (name, m.as_str()),
            ("ENV", "fetch")
                | ("Socket", "gethostname")
                | ("Time", "now" | "at" | "parse" | "strptime")
                | ("CGI", "escape" | "unescape")
                | ("JSON", "generate" | "dump")
        );
        if !known {
            return Err(self.unsupported(format!("`{full}`")));
        }
        let args = if self.eat_op("(") { self.args(")")? } else { Vec::new() };
        let one = |p: &Self, mut a: Vec<Node>| -> Result<Node, ExprError> {
            if a.len() != 1 {
                return Err(p.unsupported(format!("`{full}` with {} arguments", a.len())));
            }
            Ok(a.remove(0))
        };
        match (name, m.as_str()) {
            ("ENV", "fetch") => {
                let (k, d) = match args.len() {
                    1 | 2 => {
                        let mut it = args.into_iter();
                        (it.next().unwrap_or(Node::Nil), it.next())
                    }
                    _ => return Err(self.unsupported("ENV.fetch with these arguments")),
                };
                let k = self.const_str(&k, "ENV.fetch")?;
                match ((self.cx.env)(&k), d) {
                    (Some(v), _) => Ok(Node::Str(v.into_bytes())),
                    (None, Some(d)) => Ok(d),
                    (None, None) => Err(ExprError::Limit {
                        code: super::shorten(self.full),
                        msg: format!("ENV.fetch('{k}'): {k} is not set (give a default: ENV.fetch('{k}', 'value'))"),
                    }),
                }
            }
            ("Socket", "gethostname") if args.is_empty() => Ok(Node::Str(self.cx.hostname.as_bytes().to_vec())),
            ("Time", "now") if args.is_empty() => Ok(Node::TimeNow),
            ("Time", "at") if (1..=2).contains(&args.len()) => Ok(Node::TimeAt(args)),
            ("Time", "parse") => Ok(Node::TimeParse(Box::new(one(self, args)?))),
            ("Time", "strptime") if args.len() == 2 => {
                let mut it = args.into_iter();
                let (a, b) = (it.next().unwrap_or(Node::Nil), it.next().unwrap_or(Node::Nil));
                Ok(Node::TimeStrptime(Box::new(a), Box::new(b)))
            }
            ("CGI", "escape") => Ok(Node::Cgi(true, Box::new(one(self, args)?))),
            ("CGI", "unescape") => Ok(Node::Cgi(false, Box::new(one(self, args)?))),
            ("JSON", "generate" | "dump") => Ok(Node::Json(Box::new(one(self, args)?))),
            _ => Err(self.unsupported(format!("`{full}`"))),
        }
    }
}
