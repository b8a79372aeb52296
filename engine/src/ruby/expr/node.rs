//! The AST of the Ruby subset ([`Node`]) and the compile-time table of local variables
//! ([`Locals`]: assignments, named captures of `/(?<x>..)/ =~ s`, block parameters).

use super::method::MethodDef;
use super::{Local, Re};

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
    /// A local variable (its slot in the evaluation frame).
    Var(usize),
    /// `name = value`.
    Assign(usize, Box<Node>),
    /// `/(?<a>..)/ =~ subject`: the named groups set their locals (nil on no match).
    MatchAssign(Box<MatchAssign>),
    /// `recv.method { |params| body }`.
    Block(Box<BlockCall>),
    /// `Time.parse(s)`.
    TimeParse(Box<Node>),
    /// `Time.strptime(s, format)`.
    TimeStrptime(Box<Node>, Box<Node>),
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
    /// A bare name read as the record's field (record_reformer).
    Field(Box<[u8]>),
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

#[derive(Debug)]
pub(super) struct MatchAssign {
    pub re: Node,
    pub subject: Node,
    /// Group names and the slots they set.
    pub slots: Vec<(String, usize)>,
    /// `!~`.
    pub negate: bool,
}

/// The block-taking methods of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockM {
    Map,
    FlatMap,
    Select,
    Reject,
    FilterMap,
    Find,
    Any,
    All,
    NoneP,
    Count,
    SortBy,
    MinBy,
    MaxBy,
    Each,
}

impl BlockM {
    /// The method's name as written, for messages.
    pub(super) fn name_of(name: &str) -> &'static str {
        const NAMES: &[&str] = &[
            "map",
            "collect",
            "flat_map",
            "collect_concat",
            "select",
            "filter",
            "reject",
            "filter_map",
            "find",
            "detect",
            "any?",
            "all?",
            "none?",
            "count",
            "sort_by",
            "min_by",
            "max_by",
            "each",
        ];
        NAMES.iter().find(|n| **n == name).copied().unwrap_or("block")
    }

    pub(super) fn of(name: &str) -> Option<BlockM> {
        Some(match name {
            "map" | "collect" => BlockM::Map,
            "flat_map" | "collect_concat" => BlockM::FlatMap,
            "select" | "filter" => BlockM::Select,
            "reject" => BlockM::Reject,
            "filter_map" => BlockM::FilterMap,
            "find" | "detect" => BlockM::Find,
            "any?" => BlockM::Any,
            "all?" => BlockM::All,
            "none?" => BlockM::NoneP,
            "count" => BlockM::Count,
            "sort_by" => BlockM::SortBy,
            "min_by" => BlockM::MinBy,
            "max_by" => BlockM::MaxBy,
            "each" => BlockM::Each,
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub(super) struct BlockCall {
    pub recv: Node,
    pub m: BlockM,
    pub name: &'static str,
    pub params: Vec<usize>,
    pub body: Node,
    pub safe: bool,
}

/// Local variable names in scope while parsing, and how many slots a frame needs.
#[derive(Debug, Default)]
pub(super) struct Locals {
    visible: Vec<(String, usize)>,
    pub count: usize,
}

impl Locals {
    pub(super) fn lookup(&self, name: &str) -> Option<usize> {
        self.visible.iter().rev().find(|(n, _)| n == name).map(|(_, i)| *i)
    }

    /// The slot of `name` (a new one the first time).
    pub(super) fn declare(&mut self, name: &str) -> usize {
        match self.lookup(name) {
            Some(i) => i,
            None => self.fresh(name),
        }
    }

    /// A new slot for `name`, shadowing an outer one (block parameters).
    pub(super) fn fresh(&mut self, name: &str) -> usize {
        let i = self.count;
        self.count += 1;
        self.visible.push((name.to_string(), i));
        i
    }

    pub(super) fn mark(&self) -> usize {
        self.visible.len()
    }

    /// Forgets the names declared since `mark` (a block's parameters).
    pub(super) fn reset(&mut self, mark: usize) {
        self.visible.truncate(mark);
    }
}
