//! fluentd's monitor_agent documents, from a [`Merged`] snapshot: one JSON object per
//! plugin with fluentd's keys in fluentd's order (`plugin_id`, `plugin_category`,
//! `type`, `config`, `output_plugin`, the buffer keys, `retry_count`, then the plugin's
//! statistics: `emit_records`, `emit_size`, and for outputs `emit_count`,
//! `write_count`, `rollback_count`, ...; `retry` last), the LTSV rendering of
//! `/api/plugins`, and `/api/config.json`.

use serde_json::{json, Map, Value as J};

use super::{Category, PluginInfo, PluginSnapshot, RetryState};

/// What to include (monitor_agent's `include_config`/`include_retry`, overridden by
/// `?with_config=`/`?with_retry=`; `?with_ivars=` and `?debug=1`).
#[derive(Debug, Clone, Default)]
pub struct Opts {
    pub with_config: bool,
    pub with_retry: bool,
    /// `?with_ivars=a,b`: fluentd returns those Ruby instance variables; spate has none,
    /// so the object is empty (present, as fluentd's is for unknown names).
    pub ivars: Option<Vec<String>>,
    /// `?debug=1`: pretty JSON (fluentd adds every instance variable; spate has none).
    pub debug: bool,
}

fn n(p: Option<&PluginSnapshot>, key: &str) -> u64 {
    p.and_then(|p| p.get(key)).map_or(0, |v| v.number().max(0.0) as u64)
}

/// Ruby's `Time#to_s` (`2026-11-24 10:00:00 +0000`), which is how fluentd's JSON shows
/// the retry times.
fn ruby_time(t: f64) -> J {
    let mut b = Vec::new();
    crate::log::format_time(&mut b, t.floor() as i64, 0, 0);
    J::String(String::from_utf8_lossy(&b).into_owned())
}

fn retry_json(r: Option<RetryState>) -> J {
    match r {
        None => J::Object(Map::new()),
        Some(r) => json!({"start": ruby_time(r.start), "steps": r.steps, "next_time": ruby_time(r.next_time)}),
    }
}

/// One plugin's monitor_agent object. `p` is its merged snapshot (`None`: no shard
/// reported it, all counts are 0).
pub fn plugin_json(info: &PluginInfo, p: Option<&PluginSnapshot>, opts: &Opts) -> J {
    use super::names::*;
    let mut o = Map::new();
    o.insert("plugin_id".into(), J::String(info.id.clone()));
    o.insert("plugin_category".into(), J::String(info.category.name().into()));
    o.insert("type".into(), J::String(info.type_name.clone()));
    if opts.with_config {
        let cfg: Map<String, J> = info.config.iter().map(|(k, v)| (k.clone(), J::String(v.clone()))).collect();
        o.insert("config".into(), J::Object(cfg));
    }
    let output = info.category == Category::Output;
    o.insert("output_plugin".into(), J::Bool(output));
    let buffered = p.is_some_and(|p| p.buffered);
    let staged = n(p, BUFFER_STAGE_BYTE_SIZE);
    let queued = n(p, BUFFER_QUEUE_BYTE_SIZE);
    let timekeys: Vec<i64> = p.map(|p| p.timekeys.clone()).unwrap_or_default();
    if buffered {
        o.insert("buffer_queue_length".into(), json!(n(p, BUFFER_QUEUE_LENGTH)));
        o.insert("buffer_timekeys".into(), json!(timekeys));
        o.insert("buffer_total_queued_size".into(), json!(staged + queued));
    }
    o.insert("retry_count".into(), if output { json!(n(p, RETRY_COUNT)) } else { J::Null });
    o.insert("emit_records".into(), json!(n(p, EMIT_RECORDS)));
    o.insert("emit_size".into(), json!(n(p, EMIT_SIZE)));
    if output {
        for k in [
            EMIT_COUNT,
            WRITE_COUNT,
            WRITE_SECONDARY_COUNT,
            ROLLBACK_COUNT,
            SLOW_FLUSH_COUNT,
            FLUSH_TIME_COUNT,
            DROP_OLDEST_CHUNK_COUNT,
        ] {
            o.insert(k.into(), json!(n(p, k)));
        }
        if buffered {
            o.insert("buffer_stage_length".into(), json!(n(p, BUFFER_STAGE_LENGTH)));
            o.insert("buffer_stage_byte_size".into(), json!(staged));
            o.insert("buffer_queue_byte_size".into(), json!(queued));
            let ratio = p.map_or(100.0, super::prom::available_ratio);
            o.insert("buffer_available_buffer_space_ratios".into(), json!(ratio));
            if let (Some(min), Some(max)) = (timekeys.iter().min(), timekeys.iter().max()) {
                o.insert("buffer_oldest_timekey".into(), json!(min));
                o.insert("buffer_newest_timekey".into(), json!(max));
            }
        }
        if opts.with_retry {
            o.insert("retry".into(), retry_json(p.and_then(|p| p.retry)));
        }
    }
    if opts.ivars.is_some() || opts.debug {
        o.insert("instance_variables".into(), J::Object(Map::new()));
    }
    J::Object(o)
}

/// `/api/plugins.json`: `{"plugins": [...]}`.
pub fn plugins_json(list: &[J], pretty: bool) -> String {
    let doc = json!({ "plugins": list });
    if pretty {
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    } else {
        doc.to_string()
    }
}

fn ltsv_value(v: &J, out: &mut String) {
    match v {
        J::Null => {}
        J::String(s) => out.push_str(s),
        J::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ltsv_value(x, out);
            }
        }
        other => out.push_str(&other.to_string()),
    }
}

/// fluentd's LTSV rendering (`/api/plugins`, `/api/config`): one line per object,
/// `key:value` joined by tabs; arrays joined by commas, nested objects left out.
pub fn ltsv(rows: &[J]) -> String {
    let mut out = String::new();
    for r in rows {
        let Some(m) = r.as_object() else { continue };
        let mut first = true;
        for (k, v) in m {
            if v.is_object() {
                continue;
            }
            if !first {
                out.push('\t');
            }
            first = false;
            out.push_str(k);
            out.push(':');
            ltsv_value(v, &mut out);
        }
        out.push('\n');
    }
    out
}

/// `/api/config.json`'s object: the process and fluentd's supervisor options.
pub fn config_json(config_path: Option<&str>) -> J {
    json!({
        "pid": std::process::id(),
        "ppid": crate::sys::parent_pid(),
        "version": env!("CARGO_PKG_VERSION"),
        "config_path": config_path,
        "pid_file": J::Null,
        "plugin_dirs": Vec::<String>::new(),
        "log_path": J::Null,
        "root_dir": J::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Merge, Visitor};

    fn info(id: &str, category: Category, ty: &str) -> PluginInfo {
        PluginInfo {
            id: id.into(),
            category,
            type_name: ty.into(),
            config: vec![("@type".into(), ty.into())],
            pattern: None,
        }
    }

    #[test]
    fn input_object_has_fluentds_keys_in_order() {
        let mut p = PluginSnapshot::new("in", Category::Input, "forward");
        p.counter("emit_records", "", 10);
        p.counter("emit_size", "", 1000);
        let j = plugin_json(&info("in", Category::Input, "forward"), Some(&p), &Opts::default());
        assert_eq!(
            j.to_string(),
            r#"{"plugin_id":"in","plugin_category":"input","type":"forward","output_plugin":false,"retry_count":null,"emit_records":10,"emit_size":1000}"#
        );
        assert_eq!(
            ltsv(&[j]),
            "plugin_id:in\tplugin_category:input\ttype:forward\toutput_plugin:false\tretry_count:\temit_records:10\temit_size:1000\n"
        );
    }

    #[test]
    fn buffered_output_object() {
        let mut p = PluginSnapshot::new("out", Category::Output, "forward");
        p.gauge("buffer_queue_byte_size", "", 40.0, Merge::Sum);
        p.gauge("buffer_stage_byte_size", "", 60.0, Merge::Sum);
        p.gauge("buffer_total_limit_size", "", 1000.0, Merge::Sum);
        p.timekeys(&mut [1_700_000_000i64].into_iter());
        let opts = Opts { with_config: true, with_retry: true, ..Opts::default() };
        let j = plugin_json(&info("out", Category::Output, "forward"), Some(&p), &opts);
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "plugin_id",
                "plugin_category",
                "type",
                "config",
                "output_plugin",
                "buffer_queue_length",
                "buffer_timekeys",
                "buffer_total_queued_size",
                "retry_count",
                "emit_records",
                "emit_size",
                "emit_count",
                "write_count",
                "write_secondary_count",
                "rollback_count",
                "slow_flush_count",
                "flush_time_count",
                "drop_oldest_chunk_count",
                "buffer_stage_length",
                "buffer_stage_byte_size",
                "buffer_queue_byte_size",
                "buffer_available_buffer_space_ratios",
                "buffer_oldest_timekey",
                "buffer_newest_timekey",
                "retry"
            ]
        );
        assert_eq!(j["buffer_total_queued_size"], 100);
        assert_eq!(j["buffer_available_buffer_space_ratios"], 90.0);
        assert_eq!(j["retry"], json!({}));
    }
}
