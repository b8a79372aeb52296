//! The Prometheus text exposition (format 0.0.4) of spate's metrics: the model
//! ([`Family`], [`Series`]), the writer, and the families built from a [`Merged`]
//! snapshot:
//! - spate's own, `spate_<category>_<name>` per plugin (labels `plugin_id`, `type`)
//!   summed over shards, and the same per shard as `spate_shard_<category>_<name>`
//!   with a `shard` label (separate families, so `sum()` over either never counts a
//!   value twice); shard values (`spate_group_commit_*`, `spate_log_events_*`) the same
//!   way;
//! - fluent-plugin-prometheus's `fluentd_status_*` (prometheus_monitor),
//!   `fluentd_output_status_*` (prometheus_output_monitor) and `fluentd_tail_file_*`
//!   (prometheus_tail_monitor), with its names, labels and types;
//! - the `<metric>`s of `<filter>`/`<match> @type prometheus`, under their own names.

use std::fmt::Write;

use super::{Category, HistSnap, Merged, PluginSnapshot, Sample, Value};

/// The content type of the text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// One series of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub value: Value,
}

/// A metric family: name, help, type and its series.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub series: Vec<Series>,
}

impl Family {
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: Kind) -> Self {
        Family { name: name.into(), help: help.into(), kind, series: Vec::new() }
    }
}

/// Whether `s` is a valid Prometheus metric name.
pub fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// Whether `s` is a valid Prometheus label name.
pub fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        && !s.starts_with("__")
}

/// Adds `f` to `all`, merging it into a family of the same name (series with the same
/// labels are summed; the first family's help and type win).
pub fn add_family(all: &mut Vec<Family>, f: Family) {
    match all.iter_mut().find(|x| x.name == f.name) {
        None => all.push(f),
        Some(x) => {
            for s in f.series {
                match x.series.iter_mut().find(|y| y.labels == s.labels) {
                    Some(y) => y.value.add(&s.value),
                    None => x.series.push(s),
                }
            }
        }
    }
}

fn write_number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn write_escaped(out: &mut String, s: &str, help: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if !help => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn write_labels(out: &mut String, labels: &[(String, String)], extra: Option<(&str, &str)>) {
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(extra) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        write_escaped(out, v, false);
        out.push('"');
    }
    out.push('}');
}

fn write_line(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    extra: Option<(&str, &str)>,
    v: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    write_labels(out, labels, extra);
    out.push(' ');
    write_number(out, v);
    out.push('\n');
}

fn write_hist(out: &mut String, name: &str, labels: &[(String, String)], h: &HistSnap) {
    let mut cum = 0u64;
    let mut le = String::new();
    for (i, b) in h.bounds.iter().enumerate() {
        cum += h.counts.get(i).copied().unwrap_or(0);
        le.clear();
        write_number(&mut le, *b);
        write_line(out, name, "_bucket", labels, Some(("le", &le)), cum as f64);
    }
    write_line(out, name, "_bucket", labels, Some(("le", "+Inf")), h.count as f64);
    write_line(out, name, "_sum", labels, None, h.sum);
    write_line(out, name, "_count", labels, None, h.count as f64);
}

/// Renders families in the text format. Families without series are left out.
pub fn render(families: &[Family]) -> String {
    let mut out = String::with_capacity(4096);
    for f in families {
        if f.series.is_empty() {
            continue;
        }
        out.push_str("# HELP ");
        out.push_str(&f.name);
        out.push(' ');
        write_escaped(&mut out, &f.help, true);
        out.push_str("\n# TYPE ");
        out.push_str(&f.name);
        out.push(' ');
        out.push_str(f.kind.word());
        out.push('\n');
        for s in &f.series {
            match &s.value {
                Value::Counter(v) | Value::Gauge(v, _) => write_line(&mut out, &f.name, "", &s.labels, None, *v),
                Value::Histogram(h) => write_hist(&mut out, &f.name, &s.labels, h),
                Value::Summary { sum, count } => {
                    write_line(&mut out, &f.name, "_sum", &s.labels, None, *sum);
                    write_line(&mut out, &f.name, "_count", &s.labels, None, *count as f64);
                }
            }
        }
    }
    out
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Counter(_) => Kind::Counter,
        Value::Gauge(..) => Kind::Gauge,
        Value::Histogram(_) => Kind::Histogram,
        Value::Summary { .. } => Kind::Summary,
    }
}

/// spate's family name for a value a plugin of `category` reports as `key`: fluentd's
/// keys get spate's names (events/bytes/batches in and out...), others are spate's
/// already; counters end in `_total`. `None`: not exported as a spate family
/// (fluentd's millisecond total, which the flush histogram replaces).
pub fn spate_name(category: Category, key: &str, kind: Kind) -> Option<String> {
    use super::names::*;
    let mapped = match (category, key) {
        (_, FLUSH_TIME_COUNT) => return None,
        (Category::Input, EMIT_RECORDS) => "events_out",
        (Category::Input, EMIT_SIZE) => "bytes_out",
        (Category::Input, EMIT_COUNT) => "batches_out",
        (_, EMIT_RECORDS) => "events_in",
        (_, EMIT_SIZE) => "bytes_in",
        (_, EMIT_COUNT) => "batches_in",
        (Category::Output, WRITE_COUNT) => "batches_out",
        (Category::Output, "write_records") => "events_out",
        (Category::Output, "write_bytes") => "bytes_out",
        (_, RETRY_COUNT) => "retries",
        (_, ROLLBACK_COUNT) => "rollbacks",
        (_, SLOW_FLUSH_COUNT) => "slow_flushes",
        (_, WRITE_SECONDARY_COUNT) => "secondary_writes",
        (_, DROP_OLDEST_CHUNK_COUNT) => "dropped_oldest_chunks",
        (_, BUFFER_QUEUE_LENGTH) => "buffer_queued_chunks",
        (_, BUFFER_STAGE_LENGTH) => "buffer_staged_chunks",
        (_, BUFFER_QUEUE_BYTE_SIZE) => "buffer_queued_bytes",
        (_, BUFFER_STAGE_BYTE_SIZE) => "buffer_staged_bytes",
        (_, BUFFER_TOTAL_LIMIT_SIZE) => "buffer_limit_bytes",
        (_, BUFFER_NEWEST_TIMEKEY) => "buffer_newest_timekey_seconds",
        (_, BUFFER_OLDEST_TIMEKEY) => "buffer_oldest_timekey_seconds",
        (_, k) => k,
    };
    let mut n = format!("spate_{}_{mapped}", category.name());
    if kind == Kind::Counter && !n.ends_with("_total") {
        n.push_str("_total");
    }
    Some(n)
}

fn plugin_labels(p: &PluginSnapshot) -> Vec<(String, String)> {
    vec![("plugin_id".into(), p.id.clone()), ("type".into(), p.type_name.clone())]
}

fn add_spate_sample(
    all: &mut Vec<Family>,
    prefix: &str,
    category: Category,
    s: &Sample,
    labels: Vec<(String, String)>,
) {
    let kind = kind_of(&s.value);
    let Some(name) = spate_name(category, &s.name, kind) else { return };
    let name = name.replacen("spate_", prefix, 1);
    let mut labels = labels;
    labels.extend(s.labels.iter().cloned());
    add_family(
        all,
        Family { name, help: s.help.clone(), kind, series: vec![Series { labels, value: s.value.clone() }] },
    );
}

fn shard_value_name(prefix: &str, s: &Sample) -> String {
    let mut n = format!("{prefix}{}", s.name);
    if matches!(s.value, Value::Counter(_)) && !n.ends_with("_total") {
        n.push_str("_total");
    }
    n
}

/// spate's own families: per plugin summed, per plugin per shard, and shard values.
pub fn spate_families(m: &Merged) -> Vec<Family> {
    let mut all = Vec::new();
    for p in &m.plugins {
        for s in &p.samples {
            add_spate_sample(&mut all, "spate_", p.category, s, plugin_labels(p));
        }
    }
    for s in &m.shard_values {
        add_family(
            &mut all,
            Family {
                name: shard_value_name("spate_", s),
                help: s.help.clone(),
                kind: kind_of(&s.value),
                series: vec![Series { labels: s.labels.clone(), value: s.value.clone() }],
            },
        );
    }
    for sh in &m.shards {
        let shard = sh.shard.to_string();
        for p in &sh.plugins {
            for s in &p.samples {
                let mut l = plugin_labels(p);
                l.push(("shard".into(), shard.clone()));
                add_spate_sample(&mut all, "spate_shard_", p.category, s, l);
            }
        }
        for s in &sh.shard_values {
            let mut labels = s.labels.clone();
            labels.push(("shard".into(), shard.clone()));
            add_family(
                &mut all,
                Family {
                    name: shard_value_name("spate_shard_", s),
                    help: s.help.clone(),
                    kind: kind_of(&s.value),
                    series: vec![Series { labels, value: s.value.clone() }],
                },
            );
        }
    }
    all
}

/// The `<metric>`s of prometheus filters and outputs, merged across plugins by name.
pub fn user_families(m: &Merged) -> Vec<Family> {
    let mut all = Vec::new();
    for p in &m.plugins {
        for s in &p.user {
            add_family(
                &mut all,
                Family {
                    name: s.name.clone(),
                    help: s.help.clone(),
                    kind: kind_of(&s.value),
                    series: vec![Series { labels: s.labels.clone(), value: s.value.clone() }],
                },
            );
        }
    }
    all
}

fn num(p: &PluginSnapshot, key: &str) -> Option<f64> {
    p.get(key).map(Value::number)
}

fn with_base(base: &[(String, String)], rest: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut l = base.to_vec();
    l.extend(rest);
    l
}

/// fluent-plugin-prometheus's prometheus_monitor families (`fluentd_status_*`) with
/// labels `plugin_id`, `plugin_category`, `type` after the `<labels>` ones.
pub fn status_families(m: &Merged, base: &[(String, String)]) -> Vec<Family> {
    use super::names::*;
    let mut queue = Family::new("fluentd_status_buffer_queue_length", "Current buffer queue length.", Kind::Gauge);
    let mut total =
        Family::new("fluentd_status_buffer_total_bytes", "Current total size of queued buffers.", Kind::Gauge);
    let mut retry = Family::new("fluentd_status_retry_count", "Current retry counts.", Kind::Gauge);
    let mut newest = Family::new("fluentd_status_buffer_newest_timekey", "Newest timekey in buffer.", Kind::Gauge);
    let mut oldest = Family::new("fluentd_status_buffer_oldest_timekey", "Oldest timekey in buffer.", Kind::Gauge);
    for p in &m.plugins {
        let labels = with_base(
            base,
            vec![
                ("plugin_id".into(), p.id.clone()),
                ("plugin_category".into(), p.category.name().into()),
                ("type".into(), p.type_name.clone()),
            ],
        );
        let g = |v: f64| Series { labels: labels.clone(), value: Value::Gauge(v, super::Merge::Sum) };
        if p.buffered {
            queue.series.push(g(num(p, BUFFER_QUEUE_LENGTH).unwrap_or(0.0)));
            let t = num(p, BUFFER_QUEUE_BYTE_SIZE).unwrap_or(0.0) + num(p, BUFFER_STAGE_BYTE_SIZE).unwrap_or(0.0);
            total.series.push(g(t));
        }
        if p.category == Category::Output {
            retry.series.push(g(num(p, RETRY_COUNT).unwrap_or(0.0)));
        }
        if let (Some(min), Some(max)) = (p.timekeys.iter().min(), p.timekeys.iter().max()) {
            newest.series.push(g(*max as f64));
            oldest.series.push(g(*min as f64));
        }
    }
    vec![newest, oldest, queue, total, retry]
}

/// fluent-plugin-prometheus's prometheus_output_monitor families
/// (`fluentd_output_status_*`, outputs only) with labels `plugin_id`, `type` after the
/// `<labels>` ones. `gauge_all false` makes the cumulative ones counters, as there.
pub fn output_status_families(m: &Merged, base: &[(String, String)], gauge_all: bool) -> Vec<Family> {
    use super::names::*;
    let cg = if gauge_all { Kind::Gauge } else { Kind::Counter };
    let defs: &[(&str, &str, Kind)] = &[
        ("buffer_total_bytes", "Current total size of stage and queue buffers.", Kind::Gauge),
        ("buffer_stage_length", "Current length of stage buffers.", Kind::Gauge),
        ("buffer_stage_byte_size", "Current total size of stage buffers.", Kind::Gauge),
        ("buffer_queue_length", "Current length of queue buffers.", Kind::Gauge),
        ("buffer_queue_byte_size", "Current total size of queue buffers.", Kind::Gauge),
        ("buffer_available_space_ratio", "Ratio of available space in buffer.", Kind::Gauge),
        ("buffer_newest_timekey", "Newest timekey in buffer.", Kind::Gauge),
        ("buffer_oldest_timekey", "Oldest timekey in buffer.", Kind::Gauge),
        ("retry_count", "Current retry counts.", cg),
        ("num_errors", "Current number of errors.", cg),
        ("emit_count", "Current emit counts.", cg),
        ("emit_records", "Current emit records.", cg),
        ("write_count", "Current write counts.", cg),
        ("rollback_count", "Current rollback counts.", Kind::Gauge),
        ("flush_time_count", "Total flush time.", cg),
        ("slow_flush_count", "Current slow flush counts.", cg),
        ("retry_wait", "Current retry wait", Kind::Gauge),
    ];
    let mut fams: Vec<Family> =
        defs.iter().map(|(n, h, k)| Family::new(format!("fluentd_output_status_{n}"), *h, *k)).collect();
    for p in m.plugins.iter().filter(|p| p.category == Category::Output) {
        let labels = with_base(base, vec![("plugin_id".into(), p.id.clone()), ("type".into(), p.type_name.clone())]);
        let mut vals: Vec<(&str, f64)> = Vec::new();
        if p.buffered {
            let stage = num(p, BUFFER_STAGE_BYTE_SIZE).unwrap_or(0.0);
            let queue = num(p, BUFFER_QUEUE_BYTE_SIZE).unwrap_or(0.0);
            vals.push(("buffer_total_bytes", stage + queue));
            vals.push(("buffer_stage_length", num(p, BUFFER_STAGE_LENGTH).unwrap_or(0.0)));
            vals.push(("buffer_stage_byte_size", stage));
            vals.push(("buffer_queue_length", num(p, BUFFER_QUEUE_LENGTH).unwrap_or(0.0)));
            vals.push(("buffer_queue_byte_size", queue));
            vals.push(("buffer_available_space_ratio", available_ratio(p)));
            if let (Some(min), Some(max)) = (p.timekeys.iter().min(), p.timekeys.iter().max()) {
                vals.push(("buffer_newest_timekey", *max as f64));
                vals.push(("buffer_oldest_timekey", *min as f64));
            }
        }
        let retries = num(p, RETRY_COUNT).unwrap_or(0.0);
        vals.push(("retry_count", retries));
        vals.push(("num_errors", retries));
        for (fam, key) in [
            ("emit_count", EMIT_COUNT),
            ("emit_records", EMIT_RECORDS),
            ("write_count", WRITE_COUNT),
            ("rollback_count", ROLLBACK_COUNT),
            ("flush_time_count", FLUSH_TIME_COUNT),
            ("slow_flush_count", SLOW_FLUSH_COUNT),
        ] {
            vals.push((fam, num(p, key).unwrap_or(0.0)));
        }
        // fluentd: next retry time minus the first failure, 0 when not retrying.
        vals.push(("retry_wait", p.retry.map_or(0.0, |r| (r.next_time - r.start).max(0.0))));
        for (n, v) in vals {
            if let Some(f) = fams.iter_mut().find(|f| f.name.strip_prefix("fluentd_output_status_") == Some(n)) {
                let value =
                    if f.kind == Kind::Counter { Value::Counter(v) } else { Value::Gauge(v, super::Merge::Sum) };
                f.series.push(Series { labels: labels.clone(), value });
            }
        }
    }
    fams
}

/// fluentd's `buffer_available_buffer_space_ratios`: percent of `total_limit_size` free.
pub fn available_ratio(p: &PluginSnapshot) -> f64 {
    use super::names::*;
    let used = num(p, BUFFER_STAGE_BYTE_SIZE).unwrap_or(0.0) + num(p, BUFFER_QUEUE_BYTE_SIZE).unwrap_or(0.0);
    match num(p, BUFFER_TOTAL_LIMIT_SIZE) {
        Some(limit) if limit > 0.0 => ((1.0 - used / limit) * 100.0 * 10.0).round() / 10.0,
        _ => 100.0,
    }
}

/// prometheus_tail_monitor's families (`fluentd_tail_file_*`) from inputs of type
/// `tail` that report `tail_file_<name>` values (labelled with their path). spate has
/// no in_tail yet, so this is empty until one reports such values.
pub fn tail_families(m: &Merged, base: &[(String, String)]) -> Vec<Family> {
    let defs: &[(&str, &str)] = &[
        ("position", "Current position of file."),
        ("inode", "Current inode of file."),
        ("closed", "Number of files closed."),
        ("opened", "Number of files opened."),
        ("rotated", "Number of files rotated."),
        ("throttled", "Number of times files got throttled."),
    ];
    let mut fams: Vec<Family> =
        defs.iter().map(|(n, h)| Family::new(format!("fluentd_tail_file_{n}"), *h, Kind::Gauge)).collect();
    for p in m.plugins.iter().filter(|p| p.category == Category::Input && p.type_name == "tail") {
        for s in &p.samples {
            let Some(n) = s.name.strip_prefix("tail_file_") else { continue };
            if let Some(f) = fams.iter_mut().find(|f| f.name.strip_prefix("fluentd_tail_file_") == Some(n)) {
                let mut labels =
                    with_base(base, vec![("plugin_id".into(), p.id.clone()), ("type".into(), p.type_name.clone())]);
                labels.extend(s.labels.iter().cloned());
                f.series.push(Series { labels, value: Value::Gauge(s.value.number(), super::Merge::Sum) });
            }
        }
    }
    fams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let mut f = Family::new("x_total", "help with \\ and\nnewline", Kind::Counter);
        f.series.push(Series { labels: vec![("a".into(), "q\"uote".into())], value: Value::Counter(3.0) });
        let mut h = Family::new("lat_seconds", "latency", Kind::Histogram);
        h.series.push(Series {
            labels: vec![],
            value: Value::Histogram(HistSnap { bounds: vec![0.5, 1.0], counts: vec![1, 2, 3], sum: 7.5, count: 6 }),
        });
        let text = render(&[f, h, Family::new("empty", "nothing", Kind::Gauge)]);
        assert_eq!(
            text,
            "# HELP x_total help with \\\\ and\\nnewline\n# TYPE x_total counter\nx_total{a=\"q\\\"uote\"} 3\n\
             # HELP lat_seconds latency\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{le=\"0.5\"} 1\nlat_seconds_bucket{le=\"1\"} 3\nlat_seconds_bucket{le=\"+Inf\"} 6\n\
             lat_seconds_sum 7.5\nlat_seconds_count 6\n"
        );
    }

    #[test]
    fn names() {
        assert!(valid_metric_name("fluentd_input_status_num_records_total"));
        assert!(!valid_metric_name("1abc"));
        assert!(!valid_metric_name("a-b"));
        assert!(valid_label_name("tag"));
        assert!(!valid_label_name("__x"));
        assert_eq!(
            spate_name(Category::Output, "emit_records", Kind::Counter).as_deref(),
            Some("spate_output_events_in_total")
        );
        assert_eq!(
            spate_name(Category::Input, "acks_sent", Kind::Counter).as_deref(),
            Some("spate_input_acks_sent_total")
        );
        assert_eq!(spate_name(Category::Output, "flush_time_count", Kind::Counter), None);
    }
}
