//! `out_rewrite_tag_filter` (fluent-plugin-rewrite-tag-filter, bundled with
//! fluent-package): each event is matched against the `<rule>`s in order (`key`, a
//! record accessor; `pattern`, a Ruby regexp; `invert`); the first rule that applies
//! gives the event a new tag (`tag`, with `$1`... captures, `${tag}`/`__TAG__`,
//! `${tag_parts[N]}`, `${hostname}`/`__HOSTNAME__`) and optionally a label, and the event
//! is routed again: to the rule's `label`, else to the plugin's `@label`, else through
//! the label the plugin is in (fluentd's `router`). Events no rule applies to, and
//! events whose tag would not change without a label change, are dropped (fluentd's
//! loop protection); the router also bounds chains of re-routing.
//!
//! As in the plugin: the value matched is the accessor's value `to_s` (missing: "", and
//! an empty value skips a non-inverted rule), invalid UTF-8 is matched scrubbed with `?`,
//! `capitalize_regex_backreference` capitalizes the captures, `remove_tag_prefix` /
//! `remove_tag_regexp` strip the tag used by the placeholders, `emit_mode batch` (the
//! default) emits one batch per new (label, tag), `record` keeps the event order. A key
//! path through a scalar (Ruby raises) counts as a missing value. `hostname_command`
//! runs no command: `hostname`, `hostname -s` and `hostname -f` are supported, anything
//! else is a config error.

use std::rc::Rc;

use bytes::Bytes;
use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx, Registration, ShardCtx,
};
use crate::ruby::accessor::{Accessor, Dug};
use crate::ruby::regex::{RubyRegex, Spans};
use crate::ruby::value::{capitalize, scrub, write_to_s};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "rewrite_tag_filter",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Output(plan),
    params: "`<rule>` (`key` with record accessors, `pattern`, `invert`, `tag` with `$1`..., `${tag}`/`__TAG__`, `${tag_parts[N]}`, `${hostname}`/`__HOSTNAME__`; `label`), `capitalize_regex_backreference`, `remove_tag_prefix`, `remove_tag_regexp`, `hostname_command` (`hostname`, `hostname -s`, `hostname -f`), `emit_mode` (`batch`, `record`), `@label`; re-emitted events are routed again, with fluentd's loop protection",
};

/// A piece of a rule's `tag`.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Lit(Vec<u8>),
    /// `$N`.
    Capture(usize),
    Tag,
    Hostname,
    /// `${tag_parts[N]}`.
    Part(usize),
    /// An unknown placeholder: "" (fluentd warns per event; spate once, at startup).
    Empty,
}

#[derive(Debug, Clone)]
struct Rule {
    accessor: Accessor,
    re: RubyRegex,
    invert: bool,
    tag: Vec<Piece>,
    /// `label`: the label index.
    label: Option<usize>,
}

#[derive(Debug)]
struct RewritePlan {
    id: String,
    rules: Vec<Rule>,
    capitalize: bool,
    strip: Option<Strip>,
    hostname: Vec<u8>,
    batch_mode: bool,
    /// Where re-emitted events go without a rule label: `@label`, or the plugin's label.
    label: usize,
}

/// `remove_tag_prefix` / `remove_tag_regexp`.
#[derive(Debug, Clone)]
enum Strip {
    /// `^prefix\.?`.
    Prefix(Vec<u8>),
    Regexp(RubyRegex),
}

/// Parses a rule's `tag` the way the plugin expands it: `$N` captures first, then the
/// placeholders fluentd's `/(\${[a-z_]+(\[[0-9]+\])?}|__[A-Z_]+__)/` finds.
fn parse_tag(t: &str, e: &Element) -> Result<Vec<Piece>, ConfigError> {
    let b = t.as_bytes();
    let mut out = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    let flush = |lit: &mut Vec<u8>, out: &mut Vec<Piece>| {
        if !lit.is_empty() {
            out.push(Piece::Lit(std::mem::take(lit)));
        }
    };
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let st = i + 1;
            let mut j = st;
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            flush(&mut lit, &mut out);
            out.push(Piece::Capture(t[st..j].parse().unwrap_or(usize::MAX)));
            i = j;
            continue;
        }
        if t[i..].starts_with("${") {
            if let Some(end) = t[i..].find('}') {
                let inner = &t[i + 2..i + end];
                let (name, idx) = match inner.split_once('[') {
                    Some((n, rest)) => (n, rest.strip_suffix(']')),
                    None => (inner, None),
                };
                let name_ok = !name.is_empty() && name.bytes().all(|c| c.is_ascii_lowercase() || c == b'_');
                let idx_ok = idx.is_none_or(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()));
                if name_ok && idx_ok && (idx.is_some() == inner.contains('[')) {
                    if inner.starts_with("tag_parts[") && inner.contains("..") {
                        return Err(e.error("${tag_parts[n]} and __TAG_PARTS[n]__ placeholder does not support range"));
                    }
                    flush(&mut lit, &mut out);
                    out.push(match (name, idx) {
                        ("tag", None) => Piece::Tag,
                        ("hostname", None) => Piece::Hostname,
                        ("tag_parts", Some(d)) => Piece::Part(d.parse().unwrap_or(usize::MAX)),
                        _ => {
                            crate::warn!(
                                "{}: rewrite_tag_filter: unknown placeholder `${{{inner}}}` in tag {t:?}: it expands to \"\"",
                                e.pos
                            );
                            Piece::Empty
                        }
                    });
                    i += end + 1;
                    continue;
                }
            }
        }
        if t[i..].starts_with("__") {
            let rest = &t[i + 2..];
            let n = rest.bytes().take_while(|c| c.is_ascii_uppercase() || *c == b'_').count();
            // `__[A-Z_]+__`: the name is followed by `__` (which the run may include).
            let run = &rest[..n];
            if let Some(name) = run.strip_suffix("__").filter(|x| !x.is_empty()) {
                flush(&mut lit, &mut out);
                out.push(match name {
                    "TAG" => Piece::Tag,
                    "HOSTNAME" => Piece::Hostname,
                    _ => {
                        crate::warn!("{}: rewrite_tag_filter: unknown placeholder `__{name}__` in tag {t:?}", e.pos);
                        Piece::Empty
                    }
                });
                i += 2 + name.len() + 2;
                continue;
            }
        }
        lit.push(b[i]);
        i += 1;
    }
    flush(&mut lit, &mut out);
    Ok(out)
}

fn hostname_of(cmd: &str, host: &str, e: &Element) -> Result<String, ConfigError> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    match words.as_slice() {
        ["hostname"] => Ok(host.to_string()),
        ["hostname", "-s" | "--short"] => Ok(host.split('.').next().unwrap_or(host).to_string()),
        ["hostname", "-f" | "--fqdn" | "--long"] => {
            Ok(crate::sys::canonical_name(host).unwrap_or_else(|_| host.to_string()))
        }
        _ => Err(e.error(format!(
            "hostname_command {cmd:?}: spate runs no commands; supported: hostname, hostname -s, hostname -f"
        ))),
    }
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let id = ctx.id(e, "rewrite_tag_filter");
    if let Some(a) = e.attrs.iter().find(|a| a.key.starts_with("rewriterule")) {
        return Err(ConfigError::at(
            &a.pos,
            "\"rewriterule<num>\" support has been dropped. Use <rule> section instead.",
        ));
    }
    let mut rules = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for r in e.elements_named("rule") {
        let key = r.str("key").ok_or_else(|| r.error("'key' parameter is required in <rule>"))?;
        let pattern = r.str("pattern").ok_or_else(|| r.error("'pattern' parameter is required in <rule>"))?;
        let tag = r.str("tag").ok_or_else(|| r.error("'tag' parameter is required in <rule>"))?;
        let invert = r.bool("invert")?.unwrap_or(false);
        let accessor = Accessor::parse(key).map_err(|x| r.error(x.to_string()))?;
        let re = RubyRegex::from_config(pattern).map_err(|x| r.error(format!("pattern {pattern:?}: {x}")))?;
        let label = match r.str("label") {
            None | Some("") => None,
            Some(l) => {
                Some(ctx.label_named(l).ok_or_else(|| r.error(format!("label {l} refers to no <label {l}> section")))?)
            }
        };
        names.push(format!("{key}{}{pattern}", if invert { "!" } else { "" }));
        rules.push(Rule { accessor, re, invert, tag: parse_tag(tag, r)?, label });
        r.warn_unused();
    }
    if rules.is_empty() {
        return Err(e.error("missing rewriterules: rewrite_tag_filter needs at least one <rule>"));
    }
    let mut uniq = names.clone();
    uniq.sort();
    uniq.dedup();
    if uniq.len() != names.len() {
        return Err(e.error("duplicated rewriterules found: two <rule>s with the same key, invert and pattern"));
    }
    let strip = match (e.str("remove_tag_prefix"), e.str("remove_tag_regexp")) {
        (Some(_), Some(_)) => return Err(e.error("remove_tag_prefix and remove_tag_regexp are exclusive")),
        (Some(p), None) => Some(Strip::Prefix(p.as_bytes().to_vec())),
        (None, Some(r)) => Some(Strip::Regexp(
            RubyRegex::from_config(r).map_err(|x| e.error(format!("remove_tag_regexp {r:?}: {x}")))?,
        )),
        (None, None) => None,
    };
    let hostname = hostname_of(e.str("hostname_command").unwrap_or("hostname"), &ctx.hostname, e)?;
    let batch_mode = match e.str("emit_mode") {
        None | Some("batch") => true,
        Some("record") => false,
        Some(o) => return Err(e.error(format!("emit_mode: valid options are record,batch but got {o}"))),
    };
    let label = ctx.label_ref(e)?.unwrap_or_else(|| ctx.current_label());
    Ok(Box::new(RewritePlan {
        id,
        rules,
        capitalize: e.bool("capitalize_regex_backreference")?.unwrap_or(false),
        strip,
        hostname: hostname.into_bytes(),
        batch_mode,
        label,
    }))
}

impl OutputPlan for RewritePlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "rewrite_tag_filter"
    }
    fn describe(&self, labels: &[String]) -> String {
        let to = labels.get(self.label).map_or("?", |l| if l.is_empty() { "(top level)" } else { l });
        format!("rewrite_tag_filter {} ({} rules) -> {to}", self.id, self.rules.len())
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        Ok(Rc::new(RewriteTagFilter {
            id: self.id.clone(),
            metrics: OutputMetrics::default(),
            rules: self.rules.clone(),
            capitalize: self.capitalize,
            strip: self.strip.clone(),
            hostname: self.hostname.clone(),
            batch_mode: self.batch_mode,
            label: self.label,
        }))
    }
}

/// The events going to one (label, tag).
struct Group {
    label: usize,
    tag: Vec<u8>,
    entries: Vec<u8>,
    count: u32,
}

/// The rewrite_tag_filter output on one shard.
pub struct RewriteTagFilter {
    id: String,
    metrics: OutputMetrics,
    rules: Vec<Rule>,
    capitalize: bool,
    strip: Option<Strip>,
    hostname: Vec<u8>,
    batch_mode: bool,
    label: usize,
}

/// Per-batch placeholder values.
struct TagCtx<'t> {
    tag: &'t [u8],
    parts: Vec<&'t [u8]>,
}

impl RewriteTagFilter {
    /// The tag the placeholders see (`remove_tag_prefix` / `remove_tag_regexp` applied).
    fn placeholder_tag<'t>(&self, tag: &'t [u8]) -> &'t [u8] {
        match &self.strip {
            None => tag,
            Some(Strip::Prefix(p)) => match tag.strip_prefix(p.as_slice()) {
                Some(rest) => rest.strip_prefix(b".").unwrap_or(rest),
                None => tag,
            },
            Some(Strip::Regexp(re)) => {
                // `tag.sub(re, '')`: the first match removed.
                let Ok(text) = std::str::from_utf8(tag) else { return tag };
                match re.captures_at(text, 0).and_then(|g| g.first().copied().flatten()) {
                    // Only a prefix match leaves a subslice; fluentd's configs anchor it.
                    Some((0, end)) => &tag[end..],
                    _ => tag,
                }
            }
        }
    }

    /// Appends a rule's tag: `subject[spans[N]]` for `$N` (spans[0] is the whole match).
    fn expand(&self, pieces: &[Piece], subject: &[u8], spans: &Spans, tc: &TagCtx<'_>, out: &mut Vec<u8>) {
        for p in pieces {
            match p {
                Piece::Lit(l) => out.extend_from_slice(l),
                Piece::Capture(n) => {
                    if let Some(c) = spans.get(*n).copied().flatten().filter(|_| *n > 0).map(|(a, b)| &subject[a..b]) {
                        if self.capitalize {
                            out.extend_from_slice(&capitalize(c));
                        } else {
                            out.extend_from_slice(c);
                        }
                    }
                }
                Piece::Tag => out.extend_from_slice(tc.tag),
                Piece::Hostname => out.extend_from_slice(&self.hostname),
                Piece::Part(i) => {
                    if let Some(p) = tc.parts.get(*i) {
                        out.extend_from_slice(p);
                    }
                }
                Piece::Empty => {}
            }
        }
    }
}

impl Output for RewriteTagFilter {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "rewrite_tag_filter"
    }
    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }

    fn emit(&self, batch: &EventBatch, emitter: &dyn Emitter) -> Result<(), EmitError> {
        let ptag = self.placeholder_tag(&batch.tag);
        // Ruby's `tag.split('.')` (trailing empty parts dropped).
        let mut parts: Vec<&[u8]> = ptag.split(|&c| c == b'.').collect();
        while parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        let tc = TagCtx { tag: ptag, parts };
        let mut groups: Vec<Group> = Vec::new();
        let mut text = Vec::new();
        let mut scrubbed = Vec::new();
        let mut newtag = Vec::new();
        let mut spans: Spans = Vec::new();
        let mut locs: Vec<_> = self.rules.iter().map(|r| r.re.capture_locations()).collect();
        for ev in batch.events() {
            newtag.clear();
            let mut target = None;
            for (rule, locs) in self.rules.iter().zip(locs.iter_mut()) {
                text.clear();
                let value: &[u8] = match rule.accessor.dig(ev.record) {
                    Dug::Value(v) => match v.as_str() {
                        Some(s) => s,
                        None => {
                            write_to_s(v, &mut text);
                            &text
                        }
                    },
                    Dug::Nil | Dug::TypeError => b"",
                };
                if value.is_empty() && !rule.invert {
                    continue;
                }
                let subject: &str = match std::str::from_utf8(value) {
                    Ok(t) => t,
                    Err(_) => {
                        scrub(value, &mut scrubbed);
                        std::str::from_utf8(&scrubbed).unwrap_or("")
                    }
                };
                let matched = rule.re.captures_read(subject, locs, &mut spans);
                if matched == rule.invert {
                    continue;
                }
                if rule.invert {
                    spans.clear();
                }
                self.expand(&rule.tag, subject.as_bytes(), &spans, &tc, &mut newtag);
                target = Some(rule.label);
                break;
            }
            let Some(rule_label) = target else { continue };
            // fluentd: an event whose tag does not change and gets no label is dropped
            // (it would loop).
            if rule_label.is_none() && newtag[..] == batch.tag[..] {
                continue;
            }
            let label = rule_label.unwrap_or(self.label);
            let hit = if self.batch_mode {
                groups.iter().position(|g| g.label == label && g.tag == newtag)
            } else {
                groups.last().filter(|g| g.label == label && g.tag == newtag).map(|_| groups.len() - 1)
            };
            let g = match hit {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(Group { label, tag: newtag.clone(), entries: Vec::new(), count: 0 });
                    let n = groups.len() - 1;
                    &mut groups[n]
                }
            };
            batch.format.append_packed(&mut g.entries, ev.raw);
            g.count += 1;
        }
        let mut first_err = None;
        for g in groups {
            let Some(mut b) = batch.with_packed_entries(Bytes::from(g.entries), g.count) else { continue };
            b.tag = Bytes::from(g.tag);
            if let Err(e) = emitter.emit(g.label, b) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests;
