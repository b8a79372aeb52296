//! The parser of the Ruby subset: tokens to [`Node`]s, with Ruby's operator precedence
//! (`! ` > `* / %` > `+ -` > comparisons > `== != =~ !~` > `&&` > `||` > `..` > `? :` >
//! modifier `rescue` > `not` > `and or` > modifier `if unless`). Names are resolved here:
//! locals a plugin does not provide, unknown methods and unknown constants are config
//! errors, and `ENV[...]`, `Socket.gethostname` and literals are folded to constants.

use super::lex::{Lexer, StrPart, Tok, Token};
use super::method::{self, MethodDef};
use super::{CompileCx, ExprError, Local, Re, MAX_DEPTH};
use crate::ruby::regex::RubyRegex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Match,
    NoMatch,
}

#[derive(Debug)]
pub(super) struct Call {
    pub recv: Node,
    pub m: &'static MethodDef,
    pub args: Vec<Node>,
    /// `&.`: nil receiver gives nil.
    pub safe: bool,
}

#[derive(Debug)]
pub(super) enum Node {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Vec<u8>),
    Sym(String),
    Regex(Box<Re>),
    /// `"a#{b}c"`: the `to_s` of each part, concatenated.
    Interp(Vec<Node>),
    Array(Vec<Node>),
    Hash(Vec<(Node, Node)>),
    Local(Local),
    Call(Box<Call>),
    Not(Box<Node>),
    /// `a && b && ...` (flat: long chains need no deep recursion).
    And(Vec<Node>),
    Or(Vec<Node>),
    /// `a op b op c ...`, left to right (flat).
    Chain(Box<Node>, Vec<(Op, Node)>),
    Neg(Box<Node>),
    If(Box<Node>, Box<Node>, Option<Box<Node>>),
    Seq(Vec<Node>),
    Rescue(Box<Node>, Box<Node>),
    Range(Box<Node>, Option<Box<Node>>, bool),
    TimeNow,
    TimeAt(Vec<Node>),
    /// `CGI.escape` (true) / `CGI.unescape` (false).
    Cgi(bool, Box<Node>),
    /// `Integer(x)`, `Float(x)`, `String(x)`.
    Kernel(&'static str, Box<Node>),
    Json(Box<Node>),
    /// A class constant (`String`, `Hash`...), for `is_a?`.
    Class(&'static str),
}

struct P<'c, 'e> {
    toks: Vec<Token>,
    i: usize,
    /// The whole expression (for messages).
    full: &'c str,
    cx: &'c CompileCx<'e>,
    depth: usize,
}

/// Parses `code` (at byte offset `base` of `full`) as a sequence of statements.
pub(super) fn parse_program(
    code: &str,
    base: usize,
    full: &str,
    cx: &CompileCx<'_>,
    depth: usize,
) -> Result<Node, ExprError> {
    if depth > MAX_DEPTH {
        return Err(ExprError::Limit { code: super::shorten(full), msg: "nested too deeply".into() });
    }
    let toks = Lexer::tokenize(code, base, full)?;
    let mut p = P { toks, i: 0, full, cx, depth };
    let n = p.stmts(&[])?;
    if !matches!(p.peek(), Tok::Eof) {
        return Err(p.err_here("unexpected token"));
    }
    Ok(n)
}

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

impl P<'_, '_> {
    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn peek_at(&self, k: usize) -> &Tok {
        self.toks.get(self.i + k).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.full.len(), |t| t.start)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn is_op(&self, o: &str) -> bool {
        matches!(self.peek(), Tok::Op(x) if *x == o)
    }

    fn eat_op(&mut self, o: &str) -> bool {
        if self.is_op(o) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn is_kw(&self, k: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x == k)
    }

    fn eat_kw(&mut self, k: &str) -> bool {
        if self.is_kw(k) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_seps(&mut self) {
        while matches!(self.peek(), Tok::Sep) {
            self.i += 1;
        }
    }

    fn err_here(&self, msg: &str) -> ExprError {
        let what = match self.peek() {
            Tok::Eof => "end of expression".to_string(),
            _ => {
                let t = &self.toks[self.i.min(self.toks.len() - 1)];
                format!("`{}`", self.full.get(t.start..t.end).unwrap_or("?"))
            }
        };
        ExprError::syntax(self.full, self.pos(), format!("{msg}: {what}"))
    }

    fn unsupported(&self, what: impl Into<String>) -> ExprError {
        ExprError::unsupported(self.full, what)
    }

    fn expect_op(&mut self, o: &str) -> Result<(), ExprError> {
        if self.eat_op(o) {
            Ok(())
        } else {
            Err(self.err_here(&format!("expected `{o}`")))
        }
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::Limit { code: super::shorten(self.full), msg: "nested too deeply".into() });
        }
        Ok(())
    }

    /// Statements up to EOF or one of the `end` keywords; the value of the last one.
    fn stmts(&mut self, until: &[&str]) -> Result<Node, ExprError> {
        let mut v = Vec::new();
        loop {
            self.skip_seps();
            if matches!(self.peek(), Tok::Eof) || self.is_op(")") || until.iter().any(|k| self.is_kw(k)) {
                break;
            }
            v.push(self.stmt()?);
            if !matches!(self.peek(), Tok::Sep) {
                break;
            }
        }
        Ok(match v.len() {
            0 => Node::Nil,
            1 => v.pop().unwrap_or(Node::Nil),
            _ => Node::Seq(v),
        })
    }

    /// `expr [if c | unless c | rescue x]...`
    fn stmt(&mut self) -> Result<Node, ExprError> {
        let mut n = self.not_and_or()?;
        loop {
            if self.eat_kw("if") {
                let c = self.not_and_or()?;
                n = Node::If(Box::new(c), Box::new(n), None);
            } else if self.eat_kw("unless") {
                let c = self.not_and_or()?;
                n = Node::If(Box::new(Node::Not(Box::new(c))), Box::new(n), None);
            } else if self.is_kw("while") || self.is_kw("until") {
                return Err(self.unsupported("a loop"));
            } else {
                return Ok(n);
            }
        }
    }

    /// `a and b`, `a or b` (same precedence, left to right).
    fn not_and_or(&mut self) -> Result<Node, ExprError> {
        let mut n = self.not_expr()?;
        loop {
            if self.eat_kw("and") {
                self.skip_seps();
                let r = self.not_expr()?;
                n = match n {
                    Node::And(mut v) => {
                        v.push(r);
                        Node::And(v)
                    }
                    n => Node::And(vec![n, r]),
                };
            } else if self.eat_kw("or") {
                self.skip_seps();
                let r = self.not_expr()?;
                n = match n {
                    Node::Or(mut v) => {
                        v.push(r);
                        Node::Or(v)
                    }
                    n => Node::Or(vec![n, r]),
                };
            } else {
                return Ok(n);
            }
        }
    }

    fn not_expr(&mut self) -> Result<Node, ExprError> {
        if self.eat_kw("not") {
            self.enter()?;
            let n = self.not_expr()?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(n)));
        }
        self.rescue_mod()
    }

    fn rescue_mod(&mut self) -> Result<Node, ExprError> {
        let n = self.ternary()?;
        if self.eat_kw("rescue") {
            let r = self.ternary()?;
            return Ok(Node::Rescue(Box::new(n), Box::new(r)));
        }
        Ok(n)
    }

    fn ternary(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        let c = self.range()?;
        let n = if self.eat_op("?") {
            self.skip_seps();
            let a = self.ternary()?;
            self.skip_seps();
            self.expect_op(":")?;
            self.skip_seps();
            let b = self.ternary()?;
            Node::If(Box::new(c), Box::new(a), Some(Box::new(b)))
        } else {
            c
        };
        self.depth -= 1;
        Ok(n)
    }

    fn range(&mut self) -> Result<Node, ExprError> {
        let a = self.oror()?;
        for (op, excl) in [("..", false), ("...", true)] {
            if self.eat_op(op) {
                // An endless range (`a..`) ends at `]`, `)` or `,`.
                let b = if self.is_op("]") || self.is_op(")") || self.is_op(",") {
                    None
                } else {
                    Some(Box::new(self.oror()?))
                };
                return Ok(Node::Range(Box::new(a), b, excl));
            }
        }
        Ok(a)
    }

    fn oror(&mut self) -> Result<Node, ExprError> {
        let n = self.andand()?;
        if !self.is_op("||") {
            return Ok(n);
        }
        let mut v = vec![n];
        while self.eat_op("||") {
            self.skip_seps();
            v.push(self.andand()?);
        }
        Ok(Node::Or(v))
    }

    fn andand(&mut self) -> Result<Node, ExprError> {
        let n = self.equality()?;
        if !self.is_op("&&") {
            return Ok(n);
        }
        let mut v = vec![n];
        while self.eat_op("&&") {
            self.skip_seps();
            v.push(self.equality()?);
        }
        Ok(Node::And(v))
    }

    fn binary_loop(
        &mut self,
        ops: &[(&str, Op)],
        next: fn(&mut Self) -> Result<Node, ExprError>,
    ) -> Result<Node, ExprError> {
        let n = next(self)?;
        let mut rest = Vec::new();
        'outer: loop {
            for (s, op) in ops {
                if self.eat_op(s) {
                    self.skip_seps();
                    rest.push((*op, next(self)?));
                    continue 'outer;
                }
            }
            return Ok(if rest.is_empty() { n } else { Node::Chain(Box::new(n), rest) });
        }
    }

    fn equality(&mut self) -> Result<Node, ExprError> {
        if self.is_op("===") {
            return Err(self.unsupported("`===`"));
        }
        self.binary_loop(&[("==", Op::Eq), ("!=", Op::Ne), ("=~", Op::Match), ("!~", Op::NoMatch)], Self::comparison)
    }

    fn comparison(&mut self) -> Result<Node, ExprError> {
        self.binary_loop(&[("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)], Self::additive)
    }

    fn additive(&mut self) -> Result<Node, ExprError> {
        self.binary_loop(&[("+", Op::Add), ("-", Op::Sub)], Self::multiplicative)
    }

    fn multiplicative(&mut self) -> Result<Node, ExprError> {
        self.binary_loop(&[("*", Op::Mul), ("/", Op::Div), ("%", Op::Mod)], Self::unary)
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        let n = if self.eat_op("!") {
            Node::Not(Box::new(self.unary()?))
        } else if self.eat_op("-") {
            match self.unary()? {
                Node::Int(i) => Node::Int(i.checked_neg().ok_or_else(|| self.unsupported("this integer"))?),
                Node::Float(f) => Node::Float(-f),
                n => Node::Neg(Box::new(n)),
            }
        } else if self.eat_op("+") {
            self.unary()?
        } else {
            let b = self.postfix()?;
            if self.eat_op("**") {
                let e = self.unary()?;
                Node::Chain(Box::new(b), vec![(Op::Pow, e)])
            } else {
                b
            }
        };
        self.depth -= 1;
        Ok(n)
    }

    fn args(&mut self, close: &str) -> Result<Vec<Node>, ExprError> {
        let mut v = Vec::new();
        self.skip_seps();
        if self.eat_op(close) {
            return Ok(v);
        }
        loop {
            self.skip_seps();
            if matches!(self.peek(), Tok::Ident(_)) && matches!(self.peek_at(1), Tok::Op(":")) {
                return Err(self.unsupported("keyword arguments"));
            }
            if self.is_op("*") || self.is_op("&") {
                return Err(self.unsupported("splat and block arguments"));
            }
            v.push(self.not_and_or()?);
            self.skip_seps();
            if self.eat_op(close) {
                return Ok(v);
            }
            self.expect_op(",")?;
        }
    }

    fn postfix(&mut self) -> Result<Node, ExprError> {
        let saved = self.depth;
        let r = self.postfix_chain();
        self.depth = saved;
        r
    }

    /// Each call in `a.b.c[0]` counts as one level of nesting (evaluation recurses per
    /// call).
    fn postfix_chain(&mut self) -> Result<Node, ExprError> {
        let mut n = self.primary()?;
        loop {
            if self.is_op(".") || self.is_op("&.") || self.is_op("[") {
                self.enter()?;
            }
            if self.is_op(".") || self.is_op("&.") {
                let safe = self.is_op("&.");
                self.i += 1;
                self.skip_seps();
                let name = match self.next() {
                    Tok::Ident(s) | Tok::Const(s) => s,
                    _ => {
                        self.i -= 1;
                        return Err(self.err_here("expected a method name"));
                    }
                };
                let args = if self.is_op("(") {
                    self.i += 1;
                    self.args(")")?
                } else {
                    Vec::new()
                };
                if self.is_op("{") || self.is_kw("do") {
                    return Err(self.unsupported(format!("a block (`{name} {{ |x| ... }}`)")));
                }
                if self.is_op("=") {
                    return Err(self.unsupported("assignment"));
                }
                n = self.call(n, &name, args, safe)?;
            } else if self.is_op("[") {
                self.i += 1;
                let args = self.args("]")?;
                if self.is_op("=") {
                    return Err(self.unsupported("assignment"));
                }
                n = self.call(n, "[]", args, false)?;
            } else if self.is_op("::") {
                return Err(self.unsupported("`::`"));
            } else {
                return Ok(n);
            }
        }
    }

    fn call(&self, recv: Node, name: &str, args: Vec<Node>, safe: bool) -> Result<Node, ExprError> {
        let Some(m) = method::lookup(name) else {
            return Err(self.unsupported(format!("method `{name}`")));
        };
        if args.len() < m.min || args.len() > m.max {
            let want = if m.min == m.max { m.min.to_string() } else { format!("{}..{}", m.min, m.max) };
            return Err(self.unsupported(format!("`{name}` with {} argument(s) (takes {want})", args.len())));
        }
        Ok(Node::Call(Box::new(Call { recv, m, args, safe })))
    }

    fn string(&self, parts: Vec<StrPart>) -> Result<Node, ExprError> {
        let mut nodes = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                StrPart::Lit(l) => nodes.push(Node::Str(l)),
                StrPart::Code(c, at) => nodes.push(parse_program(&c, at, self.full, self.cx, self.depth + 1)?),
            }
        }
        Ok(match nodes.len() {
            0 => Node::Str(Vec::new()),
            1 if matches!(nodes[0], Node::Str(_)) => nodes.pop().unwrap_or(Node::Nil),
            _ => Node::Interp(nodes),
        })
    }

    fn regex(&self, body: &str, flags: &str) -> Result<Node, ExprError> {
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

    fn primary(&mut self) -> Result<Node, ExprError> {
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
        if let Some(l) = self.cx.locals.iter().find(|l| l.name() == name) {
            if *l == Local::Hostname {
                return Ok(Node::Str(self.cx.hostname.as_bytes().to_vec()));
            }
            return Ok(Node::Local(*l));
        }
        if KEYWORDS.contains(&name) {
            return Err(self.unsupported(format!("`{name}`")));
        }
        if self.is_op("(") {
            return Err(self.unsupported(format!("method `{name}`")));
        }
        if self.is_op("=") {
            return Err(self.unsupported("assignment"));
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
                | ("Time", "now" | "at")
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
            ("CGI", "escape") => Ok(Node::Cgi(true, Box::new(one(self, args)?))),
            ("CGI", "unescape") => Ok(Node::Cgi(false, Box::new(one(self, args)?))),
            ("JSON", "generate" | "dump") => Ok(Node::Json(Box::new(one(self, args)?))),
            _ => Err(self.unsupported(format!("`{full}`"))),
        }
    }
}
