//! The parser of the Ruby subset: tokens to [`Node`]s, with Ruby's operator precedence
//! (`! ` > `* / %` > `+ -` > comparisons > `== != =~ !~` > `&&` > `||` > `..` > `? :` >
//! modifier `rescue` > `not` > `and or` > modifier `if unless`). Names are resolved here:
//! locals a plugin does not provide, unknown methods and unknown constants are config
//! errors, and `ENV[...]`, `Socket.gethostname` and literals are folded to constants.

use super::lex::{Lexer, Tok, Token};
use super::method;
use super::node::{BlockCall, BlockM, Call, Locals, MatchAssign, Node, Op};
use super::{CompileCx, ExprError, MAX_DEPTH};

pub(super) struct P<'c, 'e, 'l> {
    pub(super) toks: Vec<Token>,
    pub(super) i: usize,
    /// The whole expression (for messages).
    pub(super) full: &'c str,
    pub(super) cx: &'c CompileCx<'e>,
    pub(super) depth: usize,
    pub(super) locals: &'l mut Locals,
}

/// Parses `code` (at byte offset `base` of `full`) as a sequence of statements.
pub(super) fn parse_program(
    code: &str,
    base: usize,
    full: &str,
    cx: &CompileCx<'_>,
    depth: usize,
    locals: &mut Locals,
) -> Result<Node, ExprError> {
    if depth > MAX_DEPTH {
        return Err(ExprError::Limit { code: super::shorten(full), msg: "nested too deeply".into() });
    }
    let toks = Lexer::tokenize(code, base, full)?;
    let mut p = P { toks, i: 0, full, cx, depth, locals };
    let n = p.stmts(&[])?;
    if !matches!(p.peek(), Tok::Eof) {
        return Err(p.err_here("unexpected token"));
    }
    Ok(n)
}

impl P<'_, '_, '_> {
    pub(super) fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.tok)
    }

    pub(super) fn peek_at(&self, k: usize) -> &Tok {
        self.toks.get(self.i + k).map_or(&Tok::Eof, |t| &t.tok)
    }

    pub(super) fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.full.len(), |t| t.start)
    }

    pub(super) fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    pub(super) fn is_op(&self, o: &str) -> bool {
        matches!(self.peek(), Tok::Op(x) if *x == o)
    }

    pub(super) fn eat_op(&mut self, o: &str) -> bool {
        if self.is_op(o) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn is_kw(&self, k: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x == k)
    }

    pub(super) fn eat_kw(&mut self, k: &str) -> bool {
        if self.is_kw(k) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn skip_seps(&mut self) {
        while matches!(self.peek(), Tok::Sep) {
            self.i += 1;
        }
    }

    pub(super) fn err_here(&self, msg: &str) -> ExprError {
        let what = match self.peek() {
            Tok::Eof => "end of expression".to_string(),
            _ => {
                let t = &self.toks[self.i.min(self.toks.len() - 1)];
                format!("`{}`", self.full.get(t.start..t.end).unwrap_or("?"))
            }
        };
        ExprError::syntax(self.full, self.pos(), format!("{msg}: {what}"))
    }

    pub(super) fn unsupported(&self, what: impl Into<String>) -> ExprError {
        ExprError::unsupported(self.full, what)
    }

    pub(super) fn expect_op(&mut self, o: &str) -> Result<(), ExprError> {
        if self.eat_op(o) {
            Ok(())
        } else {
            Err(self.err_here(&format!("expected `{o}`")))
        }
    }

    pub(super) fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::Limit { code: super::shorten(self.full), msg: "nested too deeply".into() });
        }
        Ok(())
    }

    /// Statements up to EOF or one of the `end` keywords; the value of the last one.
    pub(super) fn stmts(&mut self, until: &[&str]) -> Result<Node, ExprError> {
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
    pub(super) fn stmt(&mut self) -> Result<Node, ExprError> {
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
    pub(super) fn not_and_or(&mut self) -> Result<Node, ExprError> {
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

    pub(super) fn not_expr(&mut self) -> Result<Node, ExprError> {
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

    pub(super) fn ternary(&mut self) -> Result<Node, ExprError> {
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
        // `/(?<name>..)/ =~ s`: Ruby assigns the named groups to locals.
        if let (Tok::Regex { .. }, Tok::Op(op @ ("=~" | "!~"))) = (self.peek().clone(), self.peek_at(1).clone()) {
            let re = self.comparison()?;
            if self.is_op(op) {
                self.i += 1;
                self.skip_seps();
                let subject = self.comparison()?;
                let names = match &re {
                    Node::Regex(r) => r.re.group_names(),
                    _ => Vec::new(),
                };
                if !names.is_empty() {
                    let slots = names.into_iter().map(|(n, _)| (n.clone(), self.locals.declare(&n))).collect();
                    return Ok(Node::MatchAssign(Box::new(MatchAssign { re, subject, slots, negate: op == "!~" })));
                }
                let op = if op == "=~" { Op::Match } else { Op::NoMatch };
                return Ok(Node::Chain(Box::new(re), vec![(op, subject)]));
            }
            return Ok(re);
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

    pub(super) fn args(&mut self, close: &str) -> Result<Vec<Node>, ExprError> {
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
                    n = self.block(n, &name, args, safe)?;
                    continue;
                }
                if self.is_op("=") {
                    return Err(self.unsupported("assignment"));
                }
                if matches!(
                    name.as_str(),
                    "map" | "collect" | "select" | "filter" | "reject" | "flat_map" | "filter_map"
                ) {
                    return Err(self.unsupported(format!("`{name}` without a block")));
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

    /// `recv.name { |a, b| body }` / `do |a, b| body end`.
    fn block(&mut self, recv: Node, name: &str, args: Vec<Node>, safe: bool) -> Result<Node, ExprError> {
        let Some(m) = super::node::BlockM::of(name) else {
            return Err(self.unsupported(format!("a block (`{name} {{ |x| ... }}`)")));
        };
        if !args.is_empty() {
            return Err(self.unsupported(format!("`{name}` with both arguments and a block")));
        }
        let brace = self.eat_op("{");
        if !brace {
            self.eat_kw("do");
        }
        let mark = self.locals.mark();
        let mut params = Vec::new();
        if self.eat_op("|") {
            loop {
                match self.next() {
                    Tok::Ident(p) => params.push(self.locals.fresh(&p)),
                    _ => {
                        self.i -= 1;
                        return Err(self.unsupported("this block parameter list (plain names only: |k, v|)"));
                    }
                }
                if self.eat_op("|") {
                    break;
                }
                self.expect_op(",")?;
            }
        }
        self.enter()?;
        let body = if brace {
            let b = self.stmts(&[])?;
            self.skip_seps();
            self.expect_op("}")?;
            b
        } else {
            let b = self.stmts(&["end"])?;
            if !self.eat_kw("end") {
                return Err(self.err_here("expected `end`"));
            }
            b
        };
        self.depth -= 1;
        self.locals.reset(mark);
        let name = BlockM::name_of(name);
        Ok(Node::Block(Box::new(BlockCall { recv, m, name, params, body, safe })))
    }

    pub(super) fn call(&self, recv: Node, name: &str, args: Vec<Node>, safe: bool) -> Result<Node, ExprError> {
        let Some(m) = method::lookup(name) else {
            return Err(self.unsupported(format!("method `{name}`")));
        };
        if args.len() < m.min || args.len() > m.max {
            let want = if m.min == m.max { m.min.to_string() } else { format!("{}..{}", m.min, m.max) };
            return Err(self.unsupported(format!("`{name}` with {} argument(s) (takes {want})", args.len())));
        }
        Ok(Node::Call(Box::new(Call { recv, m, args, safe })))
    }
}
