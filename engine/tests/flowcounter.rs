//! out_flowcounter (fluent-plugin-flowcounter) through a live spate: counts and bytes per
//! tag emitted every unit into the plugin's `@label`, tagged and joined, and the
//! configuration errors.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use spate_protocol::EventTime;

#[test]
fn counts_reach_the_label_every_unit() {
    let conf = "<source>\n  @type forward\n  bind 127.0.0.1\n  port {PORT}\n</source>\n\
<match docker.**>\n  @type copy\n  <store>\n    @type flowcounter\n    @label @counts\n    unit second\n    output_style tagged\n    count_keys *\n    input_tag_remove_prefix docker\n  </store>\n  <store>\n    @type flowcounter\n    @label @counts\n    unit second\n    aggregate all\n    tag flowcount.all\n    count_keys log\n  </store>\n</match>\n\
<label @counts>\n  <match flowcount flowcount.all>\n    @type stdout\n  </match>\n</label>\n";
    let spate = Spate::start("flowcounter", conf, Stdio::piped());
    let recs = [r#"{"log":"abc"}"#, r#"{"log":"hello","n":1}"#, r#"{"other":1}"#];
    send_json(&spate, "docker.web", EventTime::new(1_700_000_000, 0), &recs, "f1");
    // Two emits of one shard take about 2.1 s (its watcher wakes every 500 ms and emits
    // once a unit has passed); stdout is read only at the stop, so wait with a margin.
    std::thread::sleep(Duration::from_millis(3600));
    let (_, out, err) = spate.stop();
    let packed: usize = recs.iter().map(|r| spate_protocol::json::to_msgpack(r.as_bytes()).unwrap().len()).sum();
    // Two shards: the events reached one of them; each shard reports what it counted.
    let tagged: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.contains(" flowcount: "))
        .filter_map(|l| serde_json::from_str(l.split_once(" flowcount: ").unwrap().1).ok())
        .collect();
    let hit = tagged.iter().find(|v| v["count"] == 3).unwrap_or_else(|| panic!("{out}\n{err}"));
    assert_eq!(hit["tag"], "web", "input_tag_remove_prefix docker");
    assert_eq!(hit["bytes"].as_u64(), Some(packed as u64), "count_keys *: the records' msgpack size");
    let r = hit["count_rate"].as_f64().unwrap();
    assert!(r > 0.0 && r <= 3.0, "{hit}");
    let keys: Vec<&str> = hit.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["count", "bytes", "count_rate", "bytes_rate", "tag"]);
    // Later intervals report the tag again with 0 (no delete_idle).
    assert!(tagged.iter().any(|v| v["count"] == 0 && v["tag"] == "web"), "{out}");
    let all: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.contains(" flowcount.all: "))
        .filter_map(|l| serde_json::from_str(l.split_once(" flowcount.all: ").unwrap().1).ok())
        .collect();
    let hit = all.iter().find(|v| v["count"] == 3).unwrap_or_else(|| panic!("{out}"));
    // count_keys log: "abc" + "hello" (missing keys count 0).
    assert_eq!(hit["bytes"], 8);
    let keys: Vec<&str> = hit.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["count", "bytes", "count_rate", "bytes_rate"]);
}

#[test]
fn config_errors_name_the_parameter() {
    for (body, want) in [
        ("output_style tagged\n  aggregate all\n", "aggregate must be 'tag' when output_style is 'tagged'"),
        ("unit second\n  timestamp_counting true\n", "timestamp_counting cannot be enabled with unit: second"),
        ("unit day\n  timestamp_counting true\n", "requires timestamp_timezone"),
        ("unit week\n", "unit"),
    ] {
        let (ok, err) = dry_run(&format!("<match **>\n  @type flowcounter\n  {body}</match>\n"));
        assert!(!ok && err.contains(want) && err.contains("fluent.conf:"), "{body}: {err}");
    }
}

/// Without `@label`, the counts go to the label the plugin is in (fluentd's router of
/// that label), not to the top level.
#[test]
fn counts_stay_in_the_plugins_label() {
    let out = dry_run_output(
        "<source>\n  @type forward\n</source>\n<match **>\n  @type relabel\n  @label @in\n</match>\n<label @in>\n  <match **>\n    @type flowcounter\n  </match>\n</label>\n",
    );
    let graph = String::from_utf8_lossy(&out.stdout);
    assert!(graph.contains("flowcounter every 60s -> flowcount @in"), "{graph}");
}
