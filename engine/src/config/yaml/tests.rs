//! The cases of fluentd's test/config/test_yaml_parser.rb (expected values from that
//! file, converted to what the Element carries: fluentd keeps Ruby objects, spate their
//! `to_s`), plus positions and errors.

use std::path::Path;

use super::super::{parse_file_with_warnings_as, Element, EvalContext, FileType};

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir() -> Dir {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d =
        std::env::temp_dir().join(format!("spate-yaml-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn ctx() -> EvalContext {
    EvalContext::with_env("myhost", None, [("HOST_X".to_string(), "h1".to_string())].into())
}

fn write(d: &Dir, name: &str, text: &str) -> std::path::PathBuf {
    let p = d.0.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn parse(text: &str) -> Element {
    let d = dir();
    let p = write(&d, "t.yaml", text);
    parse_file_with_warnings_as(&p, &ctx(), FileType::Guess).unwrap().0
}

fn err(text: &str) -> String {
    let d = dir();
    let p = write(&d, "t.yaml", text);
    parse_file_with_warnings_as(&p, &ctx(), FileType::Guess).unwrap_err().to_string()
}

fn names(e: &Element) -> Vec<&str> {
    e.elements.iter().map(|x| x.name.as_str()).collect()
}

#[test]
fn special_dollar_keys() {
    let c = parse("config:\n  - source:\n      $type: dummy_type\n      $label: dummy_label\n      $id: dummy_id\n      $log_level: debug\n      $unknown: unknown\n");
    let s = &c.elements[0];
    assert_eq!(s.name, "source");
    assert_eq!(s.str("@type"), Some("dummy_type"));
    assert_eq!(s.str("@label"), Some("dummy_label"));
    assert_eq!(s.str("@id"), Some("dummy_id"));
    assert_eq!(s.str("@log_level"), Some("debug"));
    assert_eq!(s.str("@unknown"), None);
    assert_eq!(s.str("$unknown"), Some("unknown"));
    let c = parse("config:\n  - match:\n      $tag: dummy_tag\n");
    assert_eq!((c.elements[0].name.as_str(), c.elements[0].arg.as_str()), ("match", "dummy_tag"));
    let c = parse(
        "config:\n  - worker:\n      $arg: dummy_arg\n      config:\n        - source:\n            $type: dummy\n",
    );
    assert_eq!((c.elements[0].name.as_str(), c.elements[0].arg.as_str()), ("worker", "dummy_arg"));
}

#[test]
fn fluent_s_and_fluent_json() {
    let c = parse("config:\n  - source:\n      host: !fluent/s \"#{Socket.gethostname}\"\n      h2: !fluent/s \"x-#{ENV['HOST_X']}\\t\"\n      h3: !fluent/s \"#{ENV['NOPE'] || use_default}\"\n");
    assert_eq!(c.elements[0].str("host"), Some("myhost"));
    assert_eq!(c.elements[0].str("h2"), Some("x-h1\t"));
    assert_eq!(c.elements[0].str("h3"), None);
    let c = parse(
        "config:\n  - source:\n      hash_param: !fluent/json {\n        \"k\": \"v\",\n        \"k1\": 10\n      }\n",
    );
    assert_eq!(c.elements[0].str("hash_param"), Some(r#"{"k":"v","k1":10}"#));
    let e = err("config:\n  - source:\n      host: !fluent/s \"#{`id`}\"\n");
    assert!(e.contains("t.yaml:3:") && e.contains("embedded Ruby is not supported"), "{e}");
}

#[test]
fn root_elements() {
    let c = parse("config:\n  - source:\n      $type: dummy\nsystem:\n  dummy: dummy\nunknown:\n  dummy: dummy\n");
    assert_eq!(names(&c), ["system", "source"]);
    assert_eq!(names(&parse("config:\n  - source:\n      $type: dummy\n")), ["source"]);
    assert_eq!(names(&parse("system:\n  dummy: dummy\n")), ["system"]);
    assert!(parse("").elements.is_empty());
}

#[test]
fn config_section_directives_and_include() {
    let d = dir();
    write(&d, "dummy.yaml", "- filter:\n    $type: dummy\n");
    let p = write(
        &d,
        "t.yaml",
        "config:\n  - source:\n      $type: dummy\n  - filter:\n      $type: dummy\n  - match:\n      $tag: dummy\n  - worker:\n      $arg: 0\n      config:\n        - source:\n            $type: dummy\n  - label:\n      $name: dummy\n      config:\n        - filter:\n            $type: dummy\n  - !include dummy.yaml\n",
    );
    let (c, _) = parse_file_with_warnings_as(&p, &ctx(), FileType::Guess).unwrap();
    assert_eq!(names(&c), ["source", "filter", "match", "worker", "label", "filter"]);
    assert_eq!(c.elements[3].arg, "0");
    assert_eq!(c.elements[4].arg, "dummy");
    assert_eq!(names(&c.elements[4]), ["filter"]);
    // The included section names its own file.
    assert!(c.elements[5].pos.to_string().ends_with("dummy.yaml:1:3"), "{}", c.elements[5].pos);
    // An included fluent.conf (not a list): fluentd raises TypeError; spate says why.
    write(&d, "dummy.conf", "<filter **>\n  type dummy\n</filter>\n");
    let p = write(&d, "u.yaml", "config:\n  - !include dummy.conf\n");
    let e = parse_file_with_warnings_as(&p, &ctx(), FileType::Guess).unwrap_err().to_string();
    assert!(e.contains("must be a list of sections"), "{e}");
    // Globs, sorted; a pattern matching nothing is a warning.
    write(&d, "b.inc.yaml", "- match:\n    $tag: b\n");
    write(&d, "a.inc.yaml", "- match:\n    $tag: a\n");
    let p = write(&d, "v.yaml", "config:\n  - !include '*.inc.yaml'\n  - !include none/*.yaml\n");
    let (c, w) = parse_file_with_warnings_as(&p, &ctx(), FileType::Guess).unwrap();
    assert_eq!(c.elements.iter().map(|e| e.arg.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(w[0].msg.contains("no file matches"), "{w:?}");
    // A cycle is an error.
    let p = write(&d, "self.yaml", "- !include self.yaml\n");
    let p2 = write(&d, "w.yaml", "config:\n  - !include self.yaml\n");
    let _ = p;
    let e = parse_file_with_warnings_as(&p2, &ctx(), FileType::Guess).unwrap_err().to_string();
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn unknown_directives_and_missing_config_are_errors() {
    // fluentd raises NoMethodError for these.
    let e = err("config:\n  - source:\n      $type: dummy\n  - unknown:\n      $type: dummy\n");
    assert!(e.starts_with("") && e.contains("t.yaml:4:5: unknown directive `unknown`"), "{e}");
    let e = err("config:\n  - label:\n      $name: dummy_label\n");
    assert!(e.contains("label: needs a `config:` list"), "{e}");
    let e = err("config:\n  - worker:\n      $arg: 0\n");
    assert!(e.contains("worker: needs a `config:` list"), "{e}");
}

#[test]
fn label_worker_source_filter_match() {
    let c = parse("config:\n  - label:\n      config:\n        - filter:\n            $type: dummy\n");
    assert_eq!((c.elements[0].arg.as_str(), names(&c.elements[0])), ("", vec!["filter"]));
    let c = parse("config:\n  - source:\n      $type: dummy_type\n      port: 8888\n");
    assert_eq!(c.elements[0].str("port"), Some("8888"));
    let c = parse("config:\n  - source:\n      port: 8888\n");
    assert_eq!(c.elements[0].str("@type"), None);
    let c = parse("config:\n  - filter:\n      $tag: ['dummy_tag_A', 'dummy_tag_B']\n      $type: dummy_type\n");
    assert_eq!(c.elements[0].arg, "dummy_tag_A,dummy_tag_B");
    let c = parse(
        "config:\n  - match:\n      $tag:\n        - dummy_tag_C\n        - dummy_tag_D\n      $type: dummy_type\n",
    );
    assert_eq!(c.elements[0].arg, "dummy_tag_C,dummy_tag_D");
    let c = parse("config:\n  - match:\n      $type: dummy_type\n");
    assert_eq!(c.elements[0].arg, "");
}

#[test]
fn merge_keys() {
    let c = parse(
        "common_parameter: &common_parameter\n  common_param1: foobarbaz\n  common_param2: 12345\n\nconfig:\n  - match:\n      $tag: dummy_tag_1\n      $type: dummy_type_1\n      <<: *common_parameter\n  - match:\n      $tag: dummy_tag_2\n      $type: dummy_type_2\n      <<: *common_parameter\n      common_param: override\n",
    );
    assert_eq!(c.elements.len(), 2);
    assert_eq!(c.elements[0].str("common_param1"), Some("foobarbaz"));
    assert_eq!(c.elements[0].str("common_param2"), Some("12345"));
    assert_eq!(c.elements[1].str("common_param"), Some("override"));
    assert_eq!(c.elements[1].str("common_param2"), Some("12345"));
    let e = err("config:\n  - match:\n      <<: *unknown_anchor\n");
    assert!(e.contains("t.yaml:3:11:") && e.contains("unknown anchor"), "{e}");
    let d = dir();
    write(&d, "fluent-common.yaml", "common_param: foobarbaz\n");
    let p = write(&d, "t.yaml", "config:\n  - match:\n      $tag: x\n      <<: !include fluent-common.yaml\n");
    assert!(parse_file_with_warnings_as(&p, &ctx(), FileType::Guess).is_err());
}

#[test]
fn yaml_values_as_psych_types_them() {
    let d = dir();
    let p = write(
        &d,
        "t.yaml",
        "config:\n  - source:\n      mode: 0644\n      float_value: 3.40\n      flag_on: On\n      flag_off: Off\n      nothing: null\n      date: 2026-01-01\n      symbol1: :foo\n      quoted: '0644'\n      hex: 0x1f\n      big: 1_000\n      f2: 2.0\n      codes: [502, 503]\n      codes1: 503\n",
    );
    let (c, w) = parse_file_with_warnings_as(&p, &ctx(), FileType::Guess).unwrap();
    let s = &c.elements[0];
    assert_eq!(s.str("mode"), Some("420"));
    assert_eq!(s.str("float_value"), Some("3.4"));
    assert_eq!(s.str("flag_on"), Some("true"));
    assert_eq!(s.str("flag_off"), Some("false"));
    assert_eq!(s.str("nothing"), None);
    assert!(w.iter().any(|w| w.msg.contains("nothing: null")), "{w:?}");
    assert_eq!(s.str("date"), Some("2026-01-01"));
    assert_eq!(s.str("symbol1"), Some("foo"));
    assert_eq!(s.str("quoted"), Some("0644"));
    assert_eq!(s.str("hex"), Some("31"));
    assert_eq!(s.str("big"), Some("1000"));
    assert_eq!(s.str("f2"), Some("2.0"));
    // Array parameters take a sequence or a bare scalar.
    assert_eq!(s.array("codes").unwrap(), Some(vec!["502".to_string(), "503".to_string()]));
    assert_eq!(s.array("codes1").unwrap(), Some(vec!["503".to_string()]));
}

#[test]
fn subsections_positions_and_file_type() {
    let c = parse(
        "config:\n  - match:\n      $tag: app.**\n      $type: copy\n      store:\n        - $type: stdout\n        - $type: file\n          path: /tmp/x\n          buffer:\n            $arg: time,tag\n            timekey: 1h\n",
    );
    let m = &c.elements[0];
    assert_eq!(names(m), ["store", "store"]);
    assert_eq!(m.elements[1].str("path"), Some("/tmp/x"));
    let b = &m.elements[1].elements[0];
    assert_eq!((b.name.as_str(), b.arg.as_str(), b.str("timekey")), ("buffer", "time,tag", Some("1h")));
    assert!(b.unused_attrs().is_empty() || b.attrs.iter().all(|a| a.key != "$arg"));
    // Positions: sections at their key, parameters at theirs.
    assert_eq!(m.pos.line, 2);
    assert_eq!(m.get("@type").map(|a| (a.pos.line, a.pos.col)), Some((4, 7)));
    assert_eq!(m.elements[1].get("path").map(|a| a.pos.line), Some(8));
    // YAML syntax errors are located.
    let e = err("config:\n  - source:\n      a: [1, 2\n");
    assert!(e.contains("t.yaml:") && e.contains("YAML:"), "{e}");
    // --config-file-type yaml reads any file name as YAML; guess does not.
    let d = dir();
    let p = write(&d, "fluent.conf", "config:\n  - source:\n      $type: forward\n");
    let (c, _) = parse_file_with_warnings_as(&p, &ctx(), FileType::Yaml).unwrap();
    assert_eq!(c.elements[0].str("@type"), Some("forward"));
    assert!(parse_file_with_warnings_as(&p, &ctx(), FileType::Guess).is_ok_and(|(c, _)| c.elements.is_empty()));
}

#[test]
fn bounded_against_alias_bombs_and_depth() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..8 {
        bomb.push_str(&format!(
            "b{i}: &b{i} [{}]\n",
            vec![if i == 0 { "*a".to_string() } else { format!("*b{}", i - 1) }; 10].join(", ")
        ));
    }
    let e = err(&bomb);
    assert!(e.contains("more than 1000000 nodes"), "{e}");
    let deep = format!("config: {}1{}\n", "[".repeat(100), "]".repeat(100));
    assert!(!err(&deep).is_empty());
    let _ = Path::new(".");
}
