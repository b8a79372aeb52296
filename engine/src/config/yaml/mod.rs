//! fluentd's YAML configuration format (fluentd >= 1.15,
//! `lib/fluent/config/yaml_parser/`), read into the same [`Element`] tree as fluent.conf,
//! with file:line:col positions: a `system:` mapping and a `config:` list of `source`,
//! `filter`, `match`, `label` (`$name`, `config`) and `worker` (`$arg`, `config`) items;
//! `$type`/`$label`/`$id`/`$log_level` for the `@` parameters, `$tag` (match/filter) and
//! `$arg` (other sections) for arguments, a list of mappings for repeated subsections
//! (`<store>`), `!include` (globs, relative to the including file, sorted), `!fluent/s`
//! (a Ruby double-quoted string: escapes and `#{...}`, see `embedded/`), `!fluent/json`
//! (the value as JSON text), anchors, aliases and `<<` merge keys.
//!
//! Plain scalars are typed as Psych (Ruby's YAML) types them and written back as Ruby's
//! `to_s`: `0644` is 420, `On` is true, `3.40` is 3.4. Parsed with yaml-rust2's event API,
//! which gives each node's position. Differences from fluentd, which crashes on these
//! with a Ruby exception: an unknown item in `config:`, a `label`/`worker` without
//! `config:`, or a non-list `!include` are config errors naming the place. A `null` value
//! leaves the parameter at its default (fluentd sets it to nil), with a warning.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::element::{Attr, ConfigError, Element, Pos, Warning};
use super::embedded::{self, Eval, EvalContext};
use super::parser::{MAX_INCLUDE_DEPTH, MAX_NESTING};

/// Bound on the nodes one file may expand to (aliases copy their anchor).
const MAX_NODES: usize = 1_000_000;

#[derive(Debug, Clone)]
enum Kind {
    /// The text and whether it was plain (unquoted, so typed as Psych types it).
    Scalar(String, bool),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    /// A local tag (`!include` -> "include").
    tag: Option<String>,
    pos: Pos,
}

fn count(n: &Node) -> usize {
    1 + match &n.kind {
        Kind::Scalar(..) => 0,
        Kind::Seq(v) => v.iter().map(count).sum(),
        Kind::Map(v) => v.iter().map(|(k, x)| count(k) + count(x)).sum(),
    }
}

/// Builds [`Node`]s from yaml-rust2's events.
struct Builder {
    file: Arc<str>,
    /// Open containers: the node, and a pending key for mappings.
    stack: Vec<(Node, Option<Node>, usize)>,
    anchors: std::collections::HashMap<usize, Node>,
    root: Option<Node>,
    nodes: usize,
    err: Option<ConfigError>,
}

fn local_tag(t: Option<Tag>) -> Option<String> {
    let t = t?;
    match t.handle.as_str() {
        "!" => Some(t.suffix),
        // `!<tag:include>` and friends.
        "" => Some(t.suffix.strip_prefix("tag:").unwrap_or(&t.suffix).to_string()),
        _ => None,
    }
}

impl Builder {
    fn pos(&self, m: Marker) -> Pos {
        Pos { file: self.file.clone(), line: m.line() as u32, col: m.col() as u32 + 1 }
    }

    fn fail(&mut self, pos: Pos, msg: impl Into<String>) {
        if self.err.is_none() {
            self.err = Some(ConfigError::at(&pos, msg));
        }
    }

    /// Adds a finished node to the open container (or makes it the root).
    fn add(&mut self, n: Node, anchor: usize) {
        self.nodes += count(&n);
        if self.nodes > MAX_NODES {
            let pos = n.pos.clone();
            self.fail(pos, format!("YAML document expands to more than {MAX_NODES} nodes (aliases?)"));
            return;
        }
        if anchor > 0 {
            self.anchors.insert(anchor, n.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(n);
                }
            }
            Some((Node { kind: Kind::Seq(v), .. }, _, _)) => v.push(n),
            Some((Node { kind: Kind::Map(v), .. }, key, _)) => match key.take() {
                None => *key = Some(n),
                Some(k) => v.push((k, n)),
            },
            Some(_) => {}
        }
    }

    fn open(&mut self, kind: Kind, tag: Option<Tag>, pos: Pos, anchor: usize) {
        if self.stack.len() >= MAX_NESTING {
            self.fail(pos, format!("YAML nested deeper than {MAX_NESTING} levels"));
            return;
        }
        self.stack.push((Node { kind, tag: local_tag(tag), pos }, None, anchor));
    }

    fn close(&mut self) {
        if let Some((n, _, anchor)) = self.stack.pop() {
            self.add(n, anchor);
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.err.is_some() {
            return;
        }
        let pos = self.pos(mark);
        match ev {
            Event::Scalar(s, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain;
                self.add(Node { kind: Kind::Scalar(s, plain), tag: local_tag(tag), pos }, anchor)
            }
            Event::SequenceStart(anchor, tag) => self.open(Kind::Seq(Vec::new()), tag, pos, anchor),
            Event::MappingStart(anchor, tag) => self.open(Kind::Map(Vec::new()), tag, pos, anchor),
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut n) => {
                    n.pos = pos;
                    self.add(n, 0)
                }
                None => self.fail(pos, "YAML alias to an unknown anchor"),
            },
            _ => {}
        }
    }
}

/// What reading a YAML config carries along.
struct Cx<'a> {
    ctx: &'a EvalContext,
    /// The chain of including files (canonical paths, for cycle detection).
    includes: Vec<PathBuf>,
    warnings: Vec<Warning>,
}

/// Parses a YAML config file into a `ROOT` element.
pub(super) fn parse_file(path: &Path, ctx: &EvalContext) -> Result<(Element, Vec<Warning>), ConfigError> {
    let mut cx = Cx { ctx, includes: Vec::new(), warnings: Vec::new() };
    let name: Arc<str> = Arc::from(&*path.to_string_lossy());
    let root = load(path, name.clone(), &mut cx)?;
    let root_pos = root.pos.clone();
    let Kind::Map(top) = root.kind else {
        return Err(ConfigError::at(&root_pos, "a YAML config is a mapping with `config:` (and `system:`)"));
    };
    let mut elems = Vec::new();
    // fluentd builds `system` first, then `config`.
    if let Some((k, sys)) = top.iter().rev().find(|(k, _)| scalar(k) == Some("system")) {
        elems.push(section(&mut cx, "system", sys, false, &k.pos)?);
    }
    if let Some((_, conf)) = top.iter().rev().find(|(k, _)| scalar(k) == Some("config")) {
        elems.extend(config_list(&mut cx, conf, 0)?);
    }
    let root = Element::new("ROOT".into(), String::new(), Vec::new(), elems, Pos { file: name, line: 1, col: 1 });
    Ok((root, cx.warnings))
}

/// Reads and parses one YAML file into a node.
fn load(path: &Path, name: Arc<str>, cx: &mut Cx<'_>) -> Result<Node, ConfigError> {
    let at = Pos { file: name.clone(), line: 1, col: 1 };
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::at(&at, format!("cannot read config file: {e}")))?;
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if cx.includes.contains(&canon) {
        return Err(ConfigError::at(&at, "!include cycle: this file includes itself"));
    }
    let mut b =
        Builder { file: name.clone(), stack: Vec::new(), anchors: Default::default(), root: None, nodes: 0, err: None };
    let mut p = Parser::new_from_str(&text);
    if let Err(e) = p.load(&mut b, false) {
        let m = e.marker();
        let pos = Pos { file: name.clone(), line: m.line() as u32, col: m.col() as u32 + 1 };
        return Err(ConfigError::at(&pos, format!("YAML: {}", e.info())));
    }
    if let Some(e) = b.err {
        return Err(e);
    }
    let root = b.root.unwrap_or(Node { kind: Kind::Map(Vec::new()), tag: None, pos: at });
    cx.includes.push(canon);
    let r = resolve_includes(root, path.parent().unwrap_or(Path::new(".")), cx, 0);
    cx.includes.pop();
    r
}

/// Replaces `!include` scalars by the included files' lists (fluentd's `eval_include`).
fn resolve_includes(n: Node, dir: &Path, cx: &mut Cx<'_>, depth: usize) -> Result<Node, ConfigError> {
    if depth > MAX_NESTING {
        return Err(ConfigError::at(&n.pos, format!("YAML nested deeper than {MAX_NESTING} levels")));
    }
    match n.kind {
        Kind::Scalar(ref s, _) if n.tag.as_deref() == Some("include") => {
            if cx.includes.len() >= MAX_INCLUDE_DEPTH {
                return Err(ConfigError::at(&n.pos, format!("!include nested deeper than {MAX_INCLUDE_DEPTH} files")));
            }
            let pattern = if Path::new(s).is_absolute() { PathBuf::from(s) } else { dir.join(s) };
            let mut files: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy())
                .map_err(|e| ConfigError::at(&n.pos, format!("!include {s}: invalid pattern: {e}")))?
                .filter_map(Result::ok)
                .collect();
            files.sort();
            if files.is_empty() {
                cx.warnings.push(Warning { pos: n.pos.clone(), msg: format!("!include {s}: no file matches") });
            }
            let mut items = Vec::new();
            for f in files {
                let name: Arc<str> = Arc::from(&*f.to_string_lossy());
                let inc = load(&f, name, cx)?;
                match inc.kind {
                    Kind::Seq(v) => items.extend(v),
                    _ => {
                        return Err(ConfigError::at(
                            &n.pos,
                            format!("!include {}: an included YAML file must be a list of sections", f.display()),
                        ))
                    }
                }
            }
            Ok(Node { kind: Kind::Seq(items), tag: Some("included".into()), pos: n.pos })
        }
        Kind::Seq(v) => {
            let v = v.into_iter().map(|x| resolve_includes(x, dir, cx, depth + 1)).collect::<Result<_, _>>()?;
            Ok(Node { kind: Kind::Seq(v), ..n })
        }
        Kind::Map(v) => {
            let mut out = Vec::with_capacity(v.len());
            for (k, x) in v {
                out.push((k, resolve_includes(x, dir, cx, depth + 1)?));
            }
            Ok(Node { kind: Kind::Map(out), ..n })
        }
        Kind::Scalar(..) => Ok(n),
    }
}

fn scalar(n: &Node) -> Option<&str> {
    match &n.kind {
        Kind::Scalar(s, _) => Some(s),
        _ => None,
    }
}

/// A mapping's pairs as a Ruby Hash sees them: `<<` merge keys applied, a repeated key
/// keeping its first place with the last value.
fn pairs(n: &Node) -> Result<Vec<(String, &Node, Pos)>, ConfigError> {
    let Kind::Map(v) = &n.kind else { return Err(ConfigError::at(&n.pos, "expected a mapping")) };
    let mut out: Vec<(String, &Node, Pos)> = Vec::new();
    for (k, x) in v {
        let Some(key) = scalar(k) else { return Err(ConfigError::at(&k.pos, "a mapping key must be a scalar")) };
        if key == "<<" && matches!(&k.kind, Kind::Scalar(_, true)) {
            let sources: Vec<&Node> = match &x.kind {
                Kind::Map(_) => vec![x],
                Kind::Seq(items) if x.tag.as_deref() != Some("included") => items.iter().collect(),
                _ => {
                    return Err(ConfigError::at(
                        &x.pos,
                        "`<<` merges a mapping (an alias such as *common); fluentd cannot merge an !include either",
                    ))
                }
            };
            for src in sources {
                for (mk, mx, mpos) in pairs(src)? {
                    put(&mut out, mk, mx, mpos);
                }
            }
            continue;
        }
        put(&mut out, key.to_string(), x, k.pos.clone());
    }
    Ok(out)
}

fn put<'n>(out: &mut Vec<(String, &'n Node, Pos)>, k: String, x: &'n Node, pos: Pos) {
    match out.iter_mut().find(|(o, _, _)| *o == k) {
        Some(slot) => slot.1 = x,
        None => out.push((k, x, pos)),
    }
}

/// Ruby's `Float#to_s` for the values a config holds.
fn ruby_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if f == f.trunc() && f.abs() < 1e16 {
        return format!("{f:.1}");
    }
    let s = format!("{f}");
    if f.abs() >= 1e16 || (f != 0.0 && f.abs() < 1e-4) {
        let e = format!("{f:e}");
        let (m, x) = e.split_once('e').unwrap_or((&e, "0"));
        let m = if m.contains('.') { m.to_string() } else { format!("{m}.0") };
        let x: i32 = x.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs());
    }
    s
}

/// A plain scalar as Psych types it, for JSON (`!fluent/json`) and for Ruby's `to_s`.
enum Typed {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

fn psych_type(s: &str) -> Typed {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "" | "~" | "null" => return Typed::Null,
        "yes" | "true" | "on" => return Typed::Bool(true),
        "no" | "false" | "off" => return Typed::Bool(false),
        ".inf" | "+.inf" => return Typed::Float(f64::INFINITY),
        "-.inf" => return Typed::Float(f64::NEG_INFINITY),
        ".nan" => return Typed::Float(f64::NAN),
        _ => {}
    }
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let clean: String = body.chars().filter(|&c| c != '_' && c != ',').collect();
    let int = |digits: &str, radix: u32| -> Option<i128> {
        if digits.is_empty() || body.starts_with('_') {
            return None;
        }
        i128::from_str_radix(digits, radix).ok().map(|v| if neg { -v } else { v })
    };
    let parsed = if let Some(h) = clean.strip_prefix("0x") {
        int(h, 16)
    } else if let Some(b) = clean.strip_prefix("0b") {
        int(b, 2)
    } else if clean.len() > 1 && clean.starts_with('0') && clean.bytes().all(|c| c.is_ascii_digit()) {
        int(&clean[1..], 8)
    } else if !clean.is_empty() && clean.bytes().all(|c| c.is_ascii_digit()) {
        int(&clean, 10)
    } else {
        None
    };
    if let Some(v) = parsed {
        return Typed::Int(v);
    }
    // Psych's base-10 float: digits, a '.', digits, an optional exponent.
    let float_like = clean.contains('.')
        && clean.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        && clean.bytes().filter(|&c| c == b'.').count() == 1;
    if float_like {
        if let Ok(f) = clean.parse::<f64>() {
            return Typed::Float(if neg { -f } else { f });
        }
    }
    // `:sym` is a Symbol; its to_s drops the colon.
    if let Some(sym) = s.strip_prefix(':') {
        if !sym.is_empty() && sym.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Typed::Str(sym.to_string());
        }
    }
    Typed::Str(s.to_string())
}

fn to_json(n: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &n.kind {
        Kind::Scalar(s, true) => match psych_type(s) {
            Typed::Null => J::Null,
            Typed::Bool(b) => J::Bool(b),
            Typed::Int(i) => i64::try_from(i).map(J::from).unwrap_or_else(|_| J::String(i.to_string())),
            Typed::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            Typed::Str(s) => J::String(s),
        },
        Kind::Scalar(s, false) => J::String(s.clone()),
        Kind::Seq(v) => J::Array(v.iter().map(to_json).collect()),
        Kind::Map(v) => {
            J::Object(v.iter().map(|(k, x)| (scalar(k).unwrap_or_default().to_string(), to_json(x))).collect())
        }
    }
}

/// A parameter value as fluentd's config types see it (`to_s` of the Ruby object), or
/// None for nil / `use_nil` / `use_default` (the parameter keeps its default).
fn value_text(cx: &mut Cx<'_>, key: &str, n: &Node) -> Result<Option<String>, ConfigError> {
    match n.tag.as_deref() {
        Some("fluent/json") => return Ok(Some(to_json(n).to_string())),
        Some("fluent/s") => {
            let Some(s) = scalar(n) else { return Err(ConfigError::at(&n.pos, "!fluent/s takes a string")) };
            // fluentd: instance_eval("\"#{val}\"").
            return match embedded::eval_string(s, cx.ctx).map_err(|m| ConfigError::at(&n.pos, m))? {
                Eval::Value(v) => Ok(v.to_interpolated()),
                Eval::SetNil | Eval::SetDefault => Ok(None),
            };
        }
        _ => {}
    }
    Ok(match &n.kind {
        Kind::Scalar(s, false) => Some(s.clone()),
        Kind::Scalar(s, true) => match psych_type(s) {
            Typed::Null => {
                cx.warnings.push(Warning {
                    pos: n.pos.clone(),
                    msg: format!("{key}: null: the parameter keeps its default (fluentd sets it to nil)"),
                });
                None
            }
            Typed::Bool(b) => Some(b.to_string()),
            Typed::Int(i) => Some(i.to_string()),
            Typed::Float(f) => Some(ruby_float(f)),
            Typed::Str(s) => Some(s),
        },
        // An array parameter (`[502, 503]`): JSON, which array parameters accept.
        Kind::Seq(_) => Some(to_json(n).to_string()),
        Kind::Map(_) => None,
    })
}

/// A section argument: a scalar, or a list joined with `,` (as fluentd does).
fn arg_text(cx: &mut Cx<'_>, what: &str, n: &Node) -> Result<String, ConfigError> {
    match &n.kind {
        Kind::Seq(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|x| value_text(cx, what, x).map(Option::unwrap_or_default))
                .collect::<Result<_, _>>()?;
            if what == "$tag" {
                cx.warnings.push(Warning {
                    pos: n.pos.clone(),
                    msg: format!(
                        "$tag list: fluentd joins it with ',' into one pattern `{}` (a literal comma); list patterns \
                         separated by spaces instead: `$tag: \"a b\"`",
                        parts.join(",")
                    ),
                });
            }
            Ok(parts.join(","))
        }
        _ => Ok(value_text(cx, what, n)?.unwrap_or_default()),
    }
}

/// `section_build`: a mapping into an element named `name`; in a nested section, `$arg`
/// is its argument.
/// `at`: where the section is written (its key; a mapping's own marker is after its
/// first key).
fn section(cx: &mut Cx<'_>, name: &str, n: &Node, nested: bool, at: &Pos) -> Result<Element, ConfigError> {
    let Kind::Map(_) = n.kind else {
        return Err(ConfigError::at(&n.pos, format!("<{name}>: expected a mapping of parameters")));
    };
    let mut attrs: Vec<Attr> = Vec::new();
    let mut elems = Vec::new();
    let mut arg = None;
    let kv = pairs(n)?;
    for special in ["$type", "$label", "$id", "$log_level"] {
        if let Some((_, x, pos)) = kv.iter().find(|(k, _, _)| k == special) {
            if let Some(v) = value_text(cx, special, x)? {
                attrs.push(Attr { key: format!("@{}", &special[1..]), value: v, pos: pos.clone() });
            }
        }
    }
    for (key, x, pos) in &kv {
        if matches!(key.as_str(), "$type" | "$label" | "$id" | "$log_level") {
            continue;
        }
        if !nested && (name == "match" || name == "filter") && key == "$tag" {
            arg = Some(arg_text(cx, "$tag", x)?);
            continue;
        }
        if nested && key == "$arg" {
            arg = Some(arg_text(cx, "$arg", x)?);
            continue;
        }
        match &x.kind {
            Kind::Seq(items)
                if x.tag.is_none() && items.first().is_some_and(|f| !matches!(f.kind, Kind::Scalar(..))) =>
            {
                for item in items {
                    let at = first_key_pos(item).unwrap_or_else(|| item.pos.clone());
                    elems.push(section(cx, key, item, true, &at)?);
                }
            }
            Kind::Map(_) if x.tag.is_none() => elems.push(section(cx, key, x, true, pos)?),
            _ => {
                if let Some(v) = value_text(cx, key, x)? {
                    match attrs.iter_mut().find(|a| a.key == *key) {
                        Some(a) => a.value = v,
                        None => attrs.push(Attr { key: key.clone(), value: v, pos: pos.clone() }),
                    }
                }
            }
        }
    }
    Ok(Element::new(name.to_string(), arg.unwrap_or_default(), attrs, elems, at.clone()))
}

fn first_key_pos(n: &Node) -> Option<Pos> {
    match &n.kind {
        Kind::Map(v) => v.first().map(|(k, _)| k.pos.clone()),
        _ => None,
    }
}

/// `label` (`$name`, `config`) and `worker` (`$arg`, `config`).
fn nested_config(
    cx: &mut Cx<'_>,
    name: &str,
    argkey: &str,
    n: &Node,
    depth: usize,
    at: &Pos,
) -> Result<Element, ConfigError> {
    let kv = pairs(n)?;
    let arg = match kv.iter().find(|(k, _, _)| k == argkey) {
        Some((_, x, _)) => arg_text(cx, argkey, x)?,
        None => String::new(),
    };
    let Some((_, conf, _)) = kv.iter().find(|(k, _, _)| k == "config") else {
        return Err(ConfigError::at(at, format!("{name}: needs a `config:` list of sections")));
    };
    for (k, _, pos) in &kv {
        if k != argkey && k != "config" {
            cx.warnings
                .push(Warning { pos: pos.clone(), msg: format!("{name}: `{k}` is ignored (fluentd ignores it too)") });
        }
    }
    let elems = config_list(cx, conf, depth + 1)?;
    Ok(Element::new(name.to_string(), arg, Vec::new(), elems, at.clone()))
}

fn directive(cx: &mut Cx<'_>, key: &str, x: &Node, depth: usize, at: &Pos) -> Result<Element, ConfigError> {
    match key {
        "label" => nested_config(cx, "label", "$name", x, depth, at),
        "worker" => nested_config(cx, "worker", "$arg", x, depth, at),
        _ => section(cx, key, x, false, at),
    }
}

/// `config_build`: the items of a `config:` list, in fluentd's order per item (label,
/// source, filter, match, worker); included files' items one key each.
fn config_list(cx: &mut Cx<'_>, n: &Node, depth: usize) -> Result<Vec<Element>, ConfigError> {
    if depth > MAX_NESTING {
        return Err(ConfigError::at(&n.pos, format!("labels/workers nested deeper than {MAX_NESTING} levels")));
    }
    let Kind::Seq(items) = &n.kind else {
        return Err(ConfigError::at(&n.pos, "`config:` must be a list of sections (`- source: ...`)"));
    };
    let mut out = Vec::new();
    for item in items {
        match &item.kind {
            Kind::Seq(included) if item.tag.as_deref() == Some("included") => {
                // fluentd's included_sections_build: the first key of each item; other
                // keys are dropped.
                for inc in included {
                    let kv = pairs(inc)?;
                    if let Some((k, x, at)) = kv.first() {
                        if matches!(k.as_str(), "label" | "worker" | "source" | "filter" | "match") {
                            out.push(directive(cx, k, x, depth, at)?);
                        }
                    }
                }
            }
            Kind::Map(_) => {
                let kv = pairs(item)?;
                for want in ["label", "source", "filter", "match", "worker"] {
                    if let Some((k, x, at)) = kv.iter().find(|(k, _, _)| k == want) {
                        out.push(directive(cx, k, x, depth, at)?);
                    }
                }
                if let Some((k, _, pos)) = kv
                    .iter()
                    .find(|(k, _, _)| !matches!(k.as_str(), "label" | "source" | "filter" | "match" | "worker"))
                {
                    return Err(ConfigError::at(
                        pos,
                        format!(
                            "unknown directive `{k}` in `config:`; expected source, filter, match, label or worker"
                        ),
                    ));
                }
            }
            _ => {
                return Err(ConfigError::at(
                    &item.pos,
                    "a `config:` item is a mapping such as `- source: {$type: forward}` or `- !include file.yaml`",
                ))
            }
        }
    }
    Ok(out)
}

/// Whether `path` is a YAML config by fluentd's guess (`.yaml` / `.yml`).
pub(super) fn is_yaml_path(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

#[cfg(test)]
mod tests;
