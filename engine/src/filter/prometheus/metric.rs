//! fluent-plugin-prometheus's `<metric>` sections, shared by `<filter> @type prometheus`
//! and `<match> @type prometheus`: their parsing and validation (the plugin's own rules
//! and error texts: `type`, `name`, `desc`, `key`, `buckets`, `initialized`,
//! `<labels>` with record accessors and `${tag}`, `${tag_parts[N]}`, `${tag_prefix[N]}`,
//! `${tag_suffix[N]}`, `${hostname}`, `${worker_id}` and record-field placeholders,
//! `<initlabels>`). The series they count into are in [`super::store`].

use crate::config::{ConfigError, Element};
use crate::plugin::PlanCtx;
use crate::ruby::accessor::Accessor;

/// prometheus-client-ruby's default histogram buckets.
const DEFAULT_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Summary,
    Histogram,
}

impl MetricKind {
    fn word(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Summary => "summary",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One piece of a label template.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    Lit(String),
    Tag,
    TagParts(i64),
    TagPrefix(i64),
    TagSuffix(i64),
    /// `${hostname}`, `${worker_id}`: fixed per shard (filled in at build).
    Hostname,
    WorkerId,
    /// `${key}`: a top-level record field (its Ruby `to_s`).
    Field(Vec<u8>),
    /// `${key[N]}`: an element of an array field.
    FieldIndex(Vec<u8>, i64),
    /// `${key["k"]}`: a value of a map field.
    FieldKey(Vec<u8>, Vec<u8>),
    /// A placeholder that can never be expanded (`${tag_prefix[-1]}`...): kept as text.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum LabelDef {
    /// `$.a.b` / `$['a']`.
    Accessor(Accessor),
    Template(Vec<Piece>),
}

impl LabelDef {
    /// A record accessor for `$.`/`$[` values (an invalid one is an error, as the
    /// plugin's `RecordAccessor` raises), else a template.
    fn parse(v: &str) -> Result<LabelDef, String> {
        if v.starts_with("$.") || v.starts_with("$[") {
            return Accessor::parse(v).map(LabelDef::Accessor).map_err(|e| e.to_string());
        }
        Ok(LabelDef::Template(parse_template(v)))
    }

    /// Depends on the record (not only on the tag, host and worker).
    fn uses_record(&self) -> bool {
        match self {
            LabelDef::Accessor(_) => true,
            LabelDef::Template(p) => {
                p.iter().any(|x| matches!(x, Piece::Field(_) | Piece::FieldIndex(..) | Piece::FieldKey(..)))
            }
        }
    }

    fn is_dynamic(&self, raw: &str) -> bool {
        matches!(self, LabelDef::Accessor(_)) || raw.starts_with("${")
    }
}

/// Splits a label value into text and placeholders, as the plugin's
/// `/(\${[^\[}]+(\[[^\]]+\])?})/` finds them.
fn parse_template(s: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        lit.push_str(&rest[..i]);
        let body = &rest[i + 2..];
        let name_len = body.find(['[', '}']).unwrap_or(body.len());
        let name = &body[..name_len];
        let after = &body[name_len..];
        let (index, tail) = if let Some(a) = after.strip_prefix('[') {
            match a.find(']') {
                Some(j) if j > 0 && a[j + 1..].starts_with('}') => (Some(&a[..j]), &a[j + 2..]),
                _ => (None, ""),
            }
        } else if let Some(t) = after.strip_prefix('}') {
            (None, t)
        } else {
            (None, "")
        };
        let whole_len = rest.len() - i - tail.len();
        let ok = !name.is_empty() && (after.starts_with('}') || index.is_some());
        if !ok {
            // Not a placeholder: keep "${" and go on after it.
            lit.push_str("${");
            rest = body;
            continue;
        }
        let whole = &rest[i..i + whole_len];
        if !lit.is_empty() {
            out.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        out.push(placeholder(name, index, whole));
        rest = tail;
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

fn placeholder(name: &str, index: Option<&str>, whole: &str) -> Piece {
    let int = index.and_then(|i| i.parse::<i64>().ok());
    match (name, index) {
        ("tag", None) => Piece::Tag,
        ("tag_parts", Some(_)) => int.map_or(Piece::Unknown(whole.into()), Piece::TagParts),
        // The plugin builds only non-negative prefix/suffix indices.
        ("tag_prefix", Some(_)) => int.filter(|i| *i >= 0).map_or(Piece::Unknown(whole.into()), Piece::TagPrefix),
        ("tag_suffix", Some(_)) => int.filter(|i| *i >= 0).map_or(Piece::Unknown(whole.into()), Piece::TagSuffix),
        ("tag" | "tag_parts" | "tag_prefix" | "tag_suffix", _) => Piece::Unknown(whole.into()),
        ("hostname", None) => Piece::Hostname,
        ("worker_id", None) => Piece::WorkerId,
        ("hostname" | "worker_id", Some(_)) => Piece::Unknown(whole.into()),
        (n, None) => Piece::Field(n.as_bytes().to_vec()),
        (n, Some(i)) => {
            if let Some(k) = i.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                Piece::FieldKey(n.as_bytes().to_vec(), k.as_bytes().to_vec())
            } else {
                match int {
                    Some(ix) => Piece::FieldIndex(n.as_bytes().to_vec(), ix),
                    None => Piece::Unknown(whole.into()),
                }
            }
        }
    }
}

/// `<labels>` of a plugin or a metric, in order.
#[derive(Debug, Clone, Default)]
pub struct Labels(pub(super) Vec<(String, String, LabelDef)>);

impl Labels {
    /// Reads the (at most one) `<labels>` section of `e`.
    pub fn parse(e: &Element) -> Result<Labels, ConfigError> {
        let mut it = e.elements_named("labels");
        let Some(l) = it.next() else { return Ok(Labels::default()) };
        if let Some(second) = it.next() {
            return Err(second.error("labels section must have at most 1"));
        }
        l.mark_all_used();
        let mut out = Vec::new();
        for a in &l.attrs {
            if !crate::metrics::prom::valid_label_name(&a.key) {
                return Err(ConfigError::at(
                    &a.pos,
                    format!("invalid label name {:?} (labels match [a-zA-Z_][a-zA-Z0-9_]*)", a.key),
                ));
            }
            let def = LabelDef::parse(&a.value).map_err(|m| ConfigError::at(&a.pos, m))?;
            out.push((a.key.clone(), a.value.clone(), def));
        }
        Ok(Labels(out))
    }

    /// Static labels for the monitors: `${hostname}` and `${worker_id}` expanded, record
    /// accessors refused (as the plugin does).
    pub fn static_values(
        &self,
        e: &Element,
        plugin: &str,
        hostname: &str,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let mut out = Vec::new();
        for (k, _, d) in &self.0 {
            let LabelDef::Template(pieces) = d else {
                return Err(e.error(format!("record accessor syntax is not available in {plugin}")));
            };
            let mut v = String::new();
            for p in pieces {
                match p {
                    Piece::Lit(s) | Piece::Unknown(s) => v.push_str(s),
                    Piece::Hostname => v.push_str(hostname),
                    // spate sums its shards: one process, worker 0.
                    Piece::WorkerId => v.push('0'),
                    // Nothing of a record here: kept as written.
                    _ => v.push_str(&template_text(p)),
                }
            }
            out.push((k.clone(), v));
        }
        Ok(out)
    }

    fn merged(&self, over: &Labels) -> Labels {
        let mut v = self.0.clone();
        for (k, raw, d) in &over.0 {
            match v.iter_mut().find(|(x, _, _)| x == k) {
                Some(slot) => *slot = (k.clone(), raw.clone(), d.clone()),
                None => v.push((k.clone(), raw.clone(), d.clone())),
            }
        }
        Labels(v)
    }
}

pub(super) fn template_text(p: &Piece) -> String {
    match p {
        Piece::Lit(s) | Piece::Unknown(s) => s.clone(),
        Piece::Tag => "${tag}".into(),
        Piece::TagParts(i) => format!("${{tag_parts[{i}]}}"),
        Piece::TagPrefix(i) => format!("${{tag_prefix[{i}]}}"),
        Piece::TagSuffix(i) => format!("${{tag_suffix[{i}]}}"),
        Piece::Hostname => "${hostname}".into(),
        Piece::WorkerId => "${worker_id}".into(),
        Piece::Field(k) => format!("${{{}}}", String::from_utf8_lossy(k)),
        Piece::FieldIndex(k, i) => format!("${{{}[{i}]}}", String::from_utf8_lossy(k)),
        Piece::FieldKey(k, x) => format!("${{{}[\"{}\"]}}", String::from_utf8_lossy(k), String::from_utf8_lossy(x)),
    }
}

/// One `<metric>`.
#[derive(Debug)]
pub struct MetricDef {
    pub name: String,
    pub desc: String,
    pub kind: MetricKind,
    pub(super) key: Option<Accessor>,
    pub(super) buckets: Vec<f64>,
    pub(super) labels: Labels,
    /// `initialized true`: label sets created at start with zero values (label values
    /// in `labels` order; `${worker_id}`/`${hostname}` filled in per shard).
    pub(super) init: Vec<Vec<Piece>>,
    /// Labels depend only on the tag (and host/worker): computed once per batch.
    pub(super) tag_only: bool,
}

impl MetricDef {
    fn parse(e: &Element, base: &Labels, ctx: &mut PlanCtx<'_>) -> Result<MetricDef, ConfigError> {
        let name = e.str("name").ok_or_else(|| e.error("metric requires 'name' option"))?.to_string();
        let desc = e.str("desc").ok_or_else(|| e.error("metric requires 'desc' option"))?.to_string();
        let kind = match e.str("type") {
            Some("counter") => MetricKind::Counter,
            Some("gauge") => MetricKind::Gauge,
            Some("summary") => MetricKind::Summary,
            Some("histogram") => MetricKind::Histogram,
            _ => return Err(e.error("type option must be 'counter', 'gauge', 'summary' or 'histogram'")),
        };
        if !crate::metrics::prom::valid_metric_name(&name) {
            return Err(e.error(format!("metric name {name:?} must match [a-zA-Z_:][a-zA-Z0-9_:]*")));
        }
        let key = match e.str("key") {
            None => None,
            Some(k) => Some(Accessor::parse(k).map_err(|x| e.error(x.to_string()))?),
        };
        if key.is_none() && kind != MetricKind::Counter {
            return Err(e.error(format!("{} metric requires 'key' option", kind.word())));
        }
        let mut buckets = DEFAULT_BUCKETS.to_vec();
        if let Some(b) = e.str("buckets") {
            if kind != MetricKind::Histogram {
                return Err(e.error("buckets is only for histogram metrics"));
            }
            buckets = b
                .split(',')
                .map(|x| {
                    x.trim().parse::<f64>().map_err(|_| e.error(format!("buckets: {:?} is not a number", x.trim())))
                })
                .collect::<Result<_, _>>()?;
            if buckets.windows(2).any(|w| w[0] >= w[1]) || buckets.iter().any(|x| !x.is_finite()) {
                return Err(e.error("Bucket values must be sorted (ascending, finite)"));
            }
        }
        let initialized = e.str("initialized") == Some("true");
        let labels = base.merged(&Labels::parse(e)?);
        let reserved = match kind {
            MetricKind::Histogram => Some("le"),
            MetricKind::Summary => Some("quantile"),
            _ => None,
        };
        if let Some(r) = reserved {
            if labels.0.iter().any(|(k, _, _)| k == r) {
                return Err(e.error(format!("label '{r}' is reserved for {} metrics", kind.word())));
            }
        }
        let init = if initialized { init_sets(e, &name, &labels)? } else { Vec::new() };
        for i in e.elements_named("initlabels") {
            i.mark_all_used();
        }
        let keys: Vec<&str> = labels.0.iter().map(|(k, _, _)| k.as_str()).collect();
        let signature = format!("{} {:?} {keys:?}", kind.word(), desc);
        if let Err(prev) = ctx.register_name("prometheus metric", &name, &signature) {
            return Err(e.error(format!(
                "{name} has already been registered with a different type, docstring or labels ({prev}; here: {signature})"
            )));
        }
        let tag_only = !labels.0.iter().any(|(_, _, d)| d.uses_record());
        Ok(MetricDef { name, desc, kind, key, buckets, labels, init, tag_only })
    }
}

/// fluent-plugin-prometheus's `parse_initlabels_elements`, with its checks and texts.
fn init_sets(e: &Element, name: &str, labels: &Labels) -> Result<Vec<Vec<Piece>>, ConfigError> {
    let mut sets = Vec::new();
    let mut declared: Vec<String> = Vec::new();
    for block in e.elements_named("initlabels") {
        let mut set: Vec<Option<Piece>> = vec![None; labels.0.len()];
        for a in &block.attrs {
            let Some(pos) = labels.0.iter().position(|(k, _, _)| *k == a.key) else {
                return Err(ConfigError::at(
                    &a.pos,
                    format!("Key {} in <initlabels> is non existent in <labels> for metric {name}", a.key),
                ));
            };
            let v = &a.value;
            if v.starts_with("$.") || v.starts_with("$[") || v.starts_with("${") {
                return Err(ConfigError::at(
                    &a.pos,
                    format!(
                        "Cannot use RecordAccessor or placeholder {v} (key {}) in a <initlabels> in metric {name}",
                        a.key
                    ),
                ));
            }
            let (_, raw, d) = &labels.0[pos];
            if !d.is_dynamic(raw) {
                return Err(ConfigError::at(
                    &a.pos,
                    format!(
                        "Cannot set <initlabels> on non RecordAccessor/Placeholder key {} (value {v}) in metric {name}",
                        a.key
                    ),
                ));
            }
            if raw == "${worker_id}" || raw == "${hostname}" {
                return Err(ConfigError::at(
                    &a.pos,
                    format!("Cannot set <initlabels> on reserved placeholder {raw} for key {} in metric {name}", a.key),
                ));
            }
            set[pos] = Some(Piece::Lit(v.clone()));
            declared.push(a.key.clone());
        }
        for (i, (_, raw, d)) in labels.0.iter().enumerate() {
            if set[i].is_none() && !matches!(d, LabelDef::Accessor(_)) {
                set[i] = Some(match raw.as_str() {
                    "${worker_id}" => Piece::WorkerId,
                    "${hostname}" => Piece::Hostname,
                    r if !r.starts_with("${") => Piece::Lit(r.to_string()),
                    _ => continue,
                });
            }
        }
        for (i, (k, _, _)) in labels.0.iter().enumerate() {
            if set[i].is_some() && !declared.contains(k) {
                declared.push(k.clone());
            }
        }
        sets.push((block.pos.clone(), set));
    }
    for (k, raw, d) in &labels.0 {
        if d.is_dynamic(raw) && !declared.contains(k) {
            return Err(e.error(format!("RecordAccessor/Placeholder key {k} with value {raw} has not been set in a <initlabels> for initialized metric {name}")));
        }
    }
    // prometheus-client-ruby's init_label_set: every block must give every label.
    let mut out = Vec::new();
    for (pos, set) in sets {
        if let Some(i) = set.iter().position(Option::is_none) {
            let missing = labels.0.get(i).map(|(k, _, _)| k.clone()).unwrap_or_default();
            return Err(ConfigError::at(
                &pos,
                format!("initlabels for metric {name} must have the same signature than labels (missing {missing})"),
            ));
        }
        out.push(set.into_iter().flatten().collect());
    }
    if out.is_empty() {
        out.push(labels.0.iter().map(|(_, raw, _)| Piece::Lit(raw.clone())).collect());
    }
    Ok(out)
}

/// A plugin's `<labels>` and `<metric>`s (the plan half, shared by all shards).
#[derive(Debug)]
pub struct Defs {
    pub(super) defs: Vec<MetricDef>,
}

impl Defs {
    /// Reads `<labels>` and every `<metric>` of a prometheus filter or output.
    pub fn parse(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Defs, ConfigError> {
        let base = Labels::parse(e)?;
        let mut defs = Vec::new();
        for m in e.elements_named("metric") {
            defs.push(MetricDef::parse(m, &base, ctx)?);
            m.warn_unused();
        }
        Ok(Defs { defs })
    }

    pub fn len(&self) -> usize {
        self.defs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// The metric names, for `--dry-run`.
    pub fn names(&self) -> Vec<&str> {
        self.defs.iter().map(|d| d.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(parse_template("${tag}"), vec![Piece::Tag]);
        assert_eq!(
            parse_template("a-${tag_parts[-1]}-${foo[\"k\"]}${bar[2]}"),
            vec![
                Piece::Lit("a-".into()),
                Piece::TagParts(-1),
                Piece::Lit("-".into()),
                Piece::FieldKey(b"foo".to_vec(), b"k".to_vec()),
                Piece::FieldIndex(b"bar".to_vec(), 2)
            ]
        );
        assert_eq!(parse_template("${tag_prefix[-1]}"), vec![Piece::Unknown("${tag_prefix[-1]}".into())]);
        assert_eq!(parse_template("x${"), vec![Piece::Lit("x${".into())]);
        assert_eq!(parse_template("${}"), vec![Piece::Lit("${}".into())]);
        assert_eq!(
            parse_template("${hostname}/${worker_id}"),
            vec![Piece::Hostname, Piece::Lit("/".into()), Piece::WorkerId]
        );
    }
}
