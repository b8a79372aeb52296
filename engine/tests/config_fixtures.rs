//! fluentd's own example configs (read in place from ../shared/fixtures): the literal
//! rules of `v1_literal_example.conf` give exactly the values its comments state.

use std::path::Path;

use spate_engine::config::{parse_file, parse_str, EvalContext};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/fluentd-examples");

fn ctx() -> EvalContext {
    EvalContext { hostname: "h".into(), worker_id: None, env: Box::new(|_| None) }
}

#[test]
fn v1_literal_example_values_match_its_comments() {
    let path = Path::new(DIR).join("v1_literal_example.conf");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} not found", path.display());
        return;
    };
    // section2 key9 is `"#{test}"`: fluentd evaluates Ruby there; spate refuses, naming
    // the place.
    let e = parse_file(&path, &ctx()).unwrap_err().to_string();
    assert!(e.contains("v1_literal_example.conf:22:") && e.contains("embedded Ruby is not supported: `test`"), "{e}");

    // Everything else, with that one line left out.
    let without: String = text.lines().enumerate().filter(|(i, _)| *i != 21).map(|(_, l)| format!("{l}\n")).collect();
    let root = parse_str(&without, "v1_literal_example.conf", Path::new(DIR), &ctx()).unwrap();
    let sec = |n: &str| root.elements.iter().find(|e| e.name == n).unwrap();
    let s1 = sec("section1");
    let want1 = [
        ("key1", "text"),
        ("key2", "'"),
        ("key3", "\\"),
        ("key4", "\\t"),
        ("key5", "\\["),
        ("key6", "\\["),
        ("key7", "#t"),
        ("key8", "\\#{test}"),
        ("key9", "#{test}"),
        ("key10", r"\[(?<time>[^\]]*)\] (?<message>.*)"),
    ];
    for (k, v) in want1 {
        assert_eq!(s1.str(k), Some(v), "section1 {k}");
    }
    let s2 = sec("section2");
    let want2 = [
        ("key1", "text"),
        ("key2", "\""),
        ("key3", "\\"),
        ("key4", "\t"),
        ("key5", "["),
        ("key6", "\\["),
        ("key7", "#t"),
        ("key8", "#{test}"),
        ("key10", r"\[(?<time>[^\]]*)\] (?<message>.*)"),
    ];
    for (k, v) in want2 {
        assert_eq!(s2.str(k), Some(v), "section2 {k}");
    }
    let s3 = sec("section3");
    let want3 = [
        ("key1", "text"),
        ("key2", "\\"),
        ("key3", "\\\\"),
        ("key4", "\\t"),
        ("key5", "\\["),
        ("key6", "\\\\["),
        ("key7", "#t"),
        ("key8", "\\#{test}"),
        ("key9", "#{test}"),
        ("key10", r"\[(?<time>[^\]]*)\] (?<message>.*)"),
    ];
    for (k, v) in want3 {
        assert_eq!(s3.str(k), Some(v), "section3 {k}");
    }
    // The char counts the comments give.
    assert_eq!(s1.str("key8").unwrap().chars().count(), 8);
    assert_eq!(s2.str("key8").unwrap().chars().count(), 7);
    assert_eq!(s3.str("key6").unwrap().chars().count(), 3);
}

#[test]
fn every_fluentd_example_parses_or_fails_with_a_location() {
    let Ok(rd) = std::fs::read_dir(DIR) else {
        eprintln!("skipped: {DIR} not found");
        return;
    };
    let mut n = 0;
    for f in rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")) {
        n += 1;
        if let Err(e) = parse_file(&f, &ctx()) {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            let s = e.to_string();
            assert!(s.contains(&format!("{name}:")), "{name}: {s}");
            assert!(s.contains("embedded Ruby is not supported"), "only unsupported Ruby may fail to parse: {s}");
        }
    }
    assert!(n > 20);
}

#[test]
fn kubernetes_daemonset_style_config() {
    let conf = r##"
<match **>
  @type forward
  @id out_fwd
  @log_level "#{ENV['FLUENT_LOG_LEVEL'] || 'info'}"
  <server>
    host "#{ENV['FLUENT_FOWARD_HOST']}"
    port "#{ENV['FLUENT_FOWARD_PORT'] || 24224}"
  </server>
  <buffer tag>
    @type memory
    flush_mode interval
    flush_interval "#{ENV['FLUENT_BUFFER_FLUSH_INTERVAL'] || '5s'}"
    chunk_limit_size "#{ENV['FLUENT_BUFFER_CHUNK_LIMIT_SIZE'] || '2M'}"
    retry_forever true
    retry_max_interval 30
  </buffer>
</match>
"##;
    let env_ctx = EvalContext {
        hostname: "node-1".into(),
        worker_id: None,
        env: Box::new(|k| (k == "FLUENT_FOWARD_HOST").then(|| "aggregator.logging.svc".to_string())),
    };
    let root = parse_str(conf, "k8s.conf", Path::new("."), &env_ctx).unwrap();
    let m = &root.elements[0];
    assert_eq!(m.str("@log_level"), Some("info"));
    let s = &m.elements[0];
    assert_eq!(s.str("host"), Some("aggregator.logging.svc"));
    assert_eq!(s.int("port").unwrap(), Some(24224));
    let b = &m.elements[1];
    assert_eq!(b.arg, "tag");
    assert_eq!(b.time("flush_interval").unwrap(), Some(std::time::Duration::from_secs(5)));
    assert_eq!(b.size("chunk_limit_size").unwrap(), Some(2 << 20));
    assert_eq!(b.bool("retry_forever").unwrap(), Some(true));
    assert_eq!(b.time("retry_max_interval").unwrap(), Some(std::time::Duration::from_secs(30)));
}
