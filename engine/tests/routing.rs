//! Routing semantics in process: fluent.conf -> plan -> one shard's router, batches
//! emitted and counted per output (`@id`): patterns, first match wins, filter order,
//! labels with `@label`, `@type relabel`, `@type copy`, `<worker N>`.

use std::path::Path;
use std::rc::Rc;

use spate_engine::config::{parse_str, EvalContext};
use spate_engine::input::forward::ForwardInput;
use spate_engine::plan::{build_shard, plan, ShardGraph};
use spate_protocol::encode::{raw, TimeFormat};
use spate_protocol::{EventBatch, EventTime};
use spate_testkit::wire;

fn graph(conf: &str, shard: usize) -> ShardGraph {
    let ctx = EvalContext { hostname: "h".into(), worker_id: None, env: Box::new(|_| None) };
    let root = parse_str(conf, "t.conf", Path::new("."), &ctx).unwrap();
    let p = plan(&root, Some(2), "h").unwrap();
    build_shard(&p, shard).expect("shard builds")
}

fn batch(tag: &str, msgs: &[&str]) -> EventBatch {
    let events = msgs.iter().enumerate().map(|(i, m)| {
        let mut r = Vec::new();
        raw::map_header(&mut r, 1);
        raw::str(&mut r, b"message");
        raw::str(&mut r, m.as_bytes());
        (EventTime::new(i as u32, 0), TimeFormat::EventTime, r)
    });
    wire::batch(tag.as_bytes(), wire::entries(events))
}

fn count(g: &ShardGraph, id: &str) -> u64 {
    g.outputs()
        .iter()
        .find(|o| o.id() == id)
        .map(|o| o.metrics().emit_records.get())
        .unwrap_or_else(|| panic!("no output {id}"))
}

#[test]
fn first_matching_match_wins_and_patterns_follow_fluentd() {
    let g = graph(
        "<match app.web>\n@type null\n@id web\n</match>\n<match app.*>\n@type null\n@id app_one\n</match>\n<match app.** {x,y}.z>\n@type null\n@id app_all\n</match>\n<match **>\n@type null\n@id rest\n</match>\n",
        0,
    );
    for t in ["app.web", "app.db", "app", "app.a.b", "x.z", "y.z", "other"] {
        g.router.emit(0, batch(t, &["m"])).unwrap();
    }
    assert_eq!(count(&g, "web"), 1);
    assert_eq!(count(&g, "app_one"), 1);
    assert_eq!(count(&g, "app_all"), 4, "app, app.a.b, x.z, y.z");
    assert_eq!(count(&g, "rest"), 1);
    assert_eq!(g.router.cached_routes(), 7);
}

#[test]
fn filters_apply_in_order_before_the_first_match_only() {
    let g = graph(
        r#"
<filter app.**>
  @type grep
  <exclude>
    key message
    pattern /debug/
  </exclude>
</filter>
<filter app.**>
  @type record_transformer
  <record>
    tag_was ${tag}
  </record>
</filter>
<match app.**>
  @type null
  @id out
</match>
<filter app.**>
  @type grep
  <regexp>
    key message
    pattern /never/
  </regexp>
</filter>
"#,
        0,
    );
    g.router.emit(0, batch("app.x", &["info a", "debug b", "warn c"])).unwrap();
    assert_eq!(count(&g, "out"), 2, "the grep after the <match> does not apply");
}

#[test]
fn labels_relabel_and_copy() {
    let g = graph(
        r#"
<source>
  @type forward
  @label @IN
  port 0
</source>
<match **>
  @type null
  @id top
</match>
<label @IN>
  <match keep.**>
    @type copy
    <store>
      @type null
      @id store1
    </store>
    <store>
      @type relabel
      @label @OUT
    </store>
  </match>
  <match **>
    @type null
    @id in_rest
  </match>
</label>
<label @OUT>
  <filter **>
    @type grep
    <regexp>
      key message
      pattern /x/
    </regexp>
  </filter>
  <match **>
    @type null
    @id out
  </match>
</label>
"#,
        0,
    );
    assert_eq!(g.inputs.len(), 1);
    let input = g.inputs[0].as_any().downcast_ref::<ForwardInput>().expect("in_forward");
    assert_eq!(input.conf.label, 1, "@label @IN on the source");
    g.router.emit(1, batch("keep.a", &["x1", "y", "x2"])).unwrap();
    g.router.emit(1, batch("drop.a", &["x"])).unwrap();
    g.router.emit(0, batch("top", &["t"])).unwrap();
    assert_eq!(count(&g, "store1"), 3);
    assert_eq!(count(&g, "out"), 2);
    assert_eq!(count(&g, "in_rest"), 1);
    assert_eq!(count(&g, "top"), 1);
}

#[test]
fn worker_sections_place_plugins_on_shards() {
    let conf = "<worker 1>\n<source>\n@type forward\nport 0\n</source>\n<match **>\n@type null\n@id w1\n</match>\n</worker>\n<match **>\n@type null\n@id all\n</match>\n";
    let g0 = graph(conf, 0);
    let g1 = graph(conf, 1);
    assert_eq!(g0.inputs.len(), 0);
    assert_eq!(g1.inputs.len(), 1);
    g0.router.emit(0, batch("a", &["m"])).unwrap();
    g1.router.emit(0, batch("a", &["m"])).unwrap();
    assert_eq!(count(&g0, "all"), 1);
    assert_eq!(count(&g1, "w1"), 1, "worker 1's match comes first on shard 1");
    assert!(g0.outputs().iter().all(|o| o.id() != "w1"));
}

#[test]
fn unknown_labels_types_and_bad_workers_are_config_errors() {
    let ctx = EvalContext { hostname: "h".into(), worker_id: None, env: Box::new(|_| None) };
    // The supported list is the registry's, sorted; it grows as plugins land.
    let outputs =
        spate_engine::plugin::supported(spate_engine::registry::PLUGINS, spate_engine::plugin::Kind::Output).join(", ");
    let names: Vec<&str> = outputs.split(", ").collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "{outputs}");
    assert!(["copy", "file", "forward", "stdout"].iter().all(|n| names.contains(n)), "{outputs}");
    for (conf, want) in [
        (
            "<source>\n@type forward\n@label @NOPE\n</source>\n",
            "t.conf:1:1: @label @NOPE refers to no <label @NOPE> section",
        ),
        (
            "<match **>\n@type mongo\n</match>\n",
            &format!("t.conf:1:1: unknown output plugin type 'mongo' in <match **>; spate supports: {}", outputs),
        ),
        ("<filter **>\n@type kubernetes_metadata\n</filter>\n", "unknown filter plugin type 'kubernetes_metadata'"),
        ("<worker 5>\n</worker>\n", "worker ids must be within 0..1"),
        ("<match {a>\n@type null\n</match>\n<match /(/>\n@type null\n</match>\n", "invalid match pattern"),
        (
            "<filter **>\n@type record_transformer\nenable_ruby true\n<record>\nx ${record.each_with_index{|k| k}}\n</record>\n</filter>\n",
            "t.conf:1:1: <record> x: Ruby expression `record.each_with_index{|k| k}`: not supported: a block",
        ),
        (
            "<source>\n@type forward\ninflate_memory_limit 4m\n</source>\n",
            "t.conf:1:1: inflate_memory_limit must be at least 9m",
        ),
    ] {
        let root = parse_str(conf, "t.conf", Path::new("."), &ctx).unwrap();
        let e = plan(&root, Some(2), "h").unwrap_err().to_string();
        assert!(e.contains(want), "{conf}: {e}");
    }
    let _ = Rc::new(());
}

/// out_copy takes fluentd's four copy modes and v0.12's deep_copy (each store gets the
/// events whatever the mode); another mode is an error at its line.
#[test]
fn copy_modes_of_fluentd_are_accepted_and_others_located() {
    let conf = |param: &str| {
        format!("<match **>\n  @type copy\n  {param}\n  <store>\n    @type null\n    @id a\n  </store>\n  <store>\n    @type null\n    @id b\n  </store>\n</match>\n")
    };
    let ctx = EvalContext { hostname: "h".into(), worker_id: None, env: Box::new(|_| None) };
    for p in ["copy_mode no_copy", "copy_mode shallow", "copy_mode deep", "copy_mode marshal", "deep_copy true"] {
        let g = graph(&conf(p), 0);
        g.router.emit(0, batch("x", &["m1", "m2"])).unwrap();
        assert_eq!((count(&g, "a"), count(&g, "b")), (2, 2), "{p}");
    }
    let root = parse_str(&conf("copy_mode fast"), "t.conf", Path::new("."), &ctx).unwrap();
    let e = plan(&root, Some(2), "h").unwrap_err().to_string();
    assert_eq!(e, "t.conf:3:3: copy_mode \"fast\": expected no_copy, shallow, deep or marshal");
}
