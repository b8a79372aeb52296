//! Tests of `config/parser.rs`.

use std::collections::HashMap;

use super::super::*;

fn ctx() -> EvalContext {
    let env = HashMap::from([
        ("FLUENT_ELASTICSEARCH_HOST".to_string(), "es.local".to_string()),
        ("PORT".to_string(), "9200".to_string()),
        ("EMBEDDED_VAR".to_string(), "embedded".to_string()),
        ("NESTED_EMBEDDED_VAR".to_string(), "nested-embedded".to_string()),
    ]);
    EvalContext::with_env("myhost", None, env)
}

fn p(s: &str) -> Result<Element, ConfigError> {
    pw(s).map(|(r, _)| r)
}

/// Parses and returns the warnings as text.
fn pw(s: &str) -> Result<(Element, Vec<String>), ConfigError> {
    parse_str_with_warnings(s, "test.conf", Path::new("."), &ctx())
        .map(|(r, w)| (r, w.iter().map(ToString::to_string).collect()))
}

fn file(path: &Path) -> Result<Element, ConfigError> {
    parse_file_with_warnings(path, &ctx()).map(|(r, _)| r)
}

fn in_dir(text: &str, dir: &Path) -> Result<Element, ConfigError> {
    parse_str_with_warnings(text, "t.conf", dir, &ctx()).map(|(r, _)| r)
}

/// The value of `k` after parsing `k <text>` at the top level (fluentd's
/// `parse_text` in test_literal_parser.rb).
fn lit(text: &str) -> Option<String> {
    let r = p(&format!("k {text}")).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    r.str("k").map(str::to_string)
}

fn lit_err(text: &str) -> String {
    match p(&format!("k {text}")) {
        Ok(r) => panic!("{text:?} parsed as {:?}", r.str("k")),
        Err(e) => e.to_string(),
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(&lit(text).unwrap()).unwrap()
}

#[test]
fn directives_attrs_and_nesting() {
    let r = p("# top comment\n<source>\n  @type forward\n  port 24224 # a comment\n  bind 0.0.0.0\n</source>\n\n<match app.** other>\n  @type forward\n  <server>\n    host 10.0.0.1\n  </server>\n  <buffer tag,time>\n    flush_interval 5s\n  </buffer>\n</match>\n<label @OUT>\n  <match **>\n    @type null\n  </match>\n</label>\n<worker 0-1>\n</worker>\n<system>\n  workers 2\n</system>\n").unwrap();
    let names: Vec<(&str, &str)> = r.elements.iter().map(|e| (e.name.as_str(), e.arg.as_str())).collect();
    assert_eq!(
        names,
        [("source", ""), ("match", "app.** other"), ("label", "@OUT"), ("worker", "0-1"), ("system", "")]
    );
    assert_eq!(r.name, "ROOT");
    let s = &r.elements[0];
    assert_eq!(s.plugin_type(), Some("forward"));
    assert_eq!(s.str("port"), Some("24224"));
    assert_eq!(s.pos.to_string(), "test.conf:2:1");
    assert_eq!(s.get("bind").unwrap().pos.to_string(), "test.conf:5:3");
    let m = &r.elements[1];
    assert_eq!(m.elements[0].name, "server");
    assert_eq!(m.elements[1].arg, "tag,time");
    assert_eq!(m.elements[1].time("flush_interval").unwrap(), Some(std::time::Duration::from_secs(5)));
    assert_eq!(r.elements[2].elements[0].arg, "**");
}

#[test]
fn fluentd_attribute_parsing() {
    // test_config_parser.rb 'attribute parsing'.
    let r = p("\n  k1 v1\n  k2 v2\n").unwrap();
    assert_eq!((r.str("k1"), r.str("k2")), (Some("v1"), Some("v2")));
    let r = p("\n  k1\n  k2 v2\n").unwrap();
    assert_eq!((r.str("k1"), r.str("k2")), (Some(""), Some("v2")));
    assert_eq!(p("1 1").unwrap().str("1"), Some("1"));
    for v in ["_.%$!,", "/=~-~@`:?", "()*{}.[]"] {
        assert_eq!(lit(v).as_deref(), Some(v));
    }
    assert_eq!(p("  k1     a    ").unwrap().str("k1"), Some("a"));
    assert_eq!(p("k1 a  b  c").unwrap().str("k1"), Some("a  b  c"));
    assert_eq!(p("k1\n").unwrap().str("k1"), Some(""));
    assert_eq!(p("k1").unwrap().str("k1"), Some(""));
    // non-quoted
    assert_eq!(p("  k1 #not_comment").unwrap().str("k1"), Some("#not_comment"));
    assert_eq!(p("  k1 a#not_comment").unwrap().str("k1"), Some("a#not_comment"));
    assert_eq!(p("  k1 a #comment").unwrap().str("k1"), Some("a"));
    assert_eq!(p("  k1 \\\\").unwrap().str("k1"), Some("\\\\"));
    assert_eq!(p("  k1 \\").unwrap().str("k1"), Some("\\"));
    assert_eq!(p("  k1 \\[").unwrap().str("k1"), Some("\\["));
    assert_eq!(p("  k1 \\n").unwrap().str("k1"), Some("\\n"));
    // double quoted
    assert_eq!(p("  k1 \"a#comment\"").unwrap().str("k1"), Some("a#comment"));
    assert!(p("  k1 \"a\" 1").is_err());
    assert_eq!(p("  k1 \"\\\\\"").unwrap().str("k1"), Some("\\"));
    assert!(p("  k1 \"\\\"").is_err());
    assert_eq!(p("  k1 \"\\\"\"").unwrap().str("k1"), Some("\""));
    assert!(p("  k1 \"\"\"").is_err());
    assert!(p("  k1 \"\"'").is_err());
    assert_eq!(p("  k1 \"\\[\"").unwrap().str("k1"), Some("["));
    assert_eq!(p("  k1 \"\\n\"").unwrap().str("k1"), Some("\n"));
    // multi-line double-quoted strings
    let v = "line1\n                       line2";
    assert_eq!(p(&format!("k1      \"{v}\"")).unwrap().str("k1"), Some(v));
    let r = p("k1      \"line1\\\n                       line2\"").unwrap();
    assert_eq!(r.str("k1"), Some("line1                       line2"));
    let r = p("k1 \"line1\n  line2\\\n  line3\"").unwrap();
    assert_eq!(r.str("k1"), Some("line1\n  line2  line3"));
    // single quoted
    assert_eq!(p("  k1 'a#comment'").unwrap().str("k1"), Some("a#comment"));
    assert!(p("  k1 'a' 1").is_err());
    assert_eq!(p("  k1 '\\\\'").unwrap().str("k1"), Some("\\"));
    assert!(p("  k1 '\\'").is_err());
    assert_eq!(p("  k1 '\\''").unwrap().str("k1"), Some("'"));
    assert!(p("  k1 '''").is_err());
    assert_eq!(p("  k1 '\\['").unwrap().str("k1"), Some("\\["));
    assert_eq!(p("  k1 '\\n'").unwrap().str("k1"), Some("\\n"));
}

#[test]
fn fluentd_literal_parser_cases() {
    // test_literal_parser.rb: numbers and keywords stay text.
    for t in ["true", "false", "trueX", "0", "-1", "01", "0x61", "0s", "1.1", "-12.1e7", ".0", "1.", "NaN", "-Infinity"]
    {
        assert_eq!(lit(t).as_deref(), Some(t));
    }
    assert_eq!(lit("0 ").as_deref(), Some("0"));
    assert_eq!(lit(" -1 ").as_deref(), Some("-1"));
    // double quoted
    for (want, t) in [
        ("", r#""""#),
        ("text", r#""text""#),
        ("\"", r#""\"""#),
        ("\t", r#""\t""#),
        ("\n", r#""\n""#),
        ("\r\n", r#""\r\n""#),
        ("\x0c\x08", r#""\f\b""#),
        (".t", r#""\.t""#),
        ("$t", r#""\$t""#),
        ("#t", r#""\#t""#),
        ("\0", r#""\0""#),
        ("t\nt", "\"t\nt\""),
        ("tt", "\"t\\\nt\""),
        ("t\"", "t\""),
        ("#{test}", r#""\#{test}""#),
        ("$}", r#""$}""#),
        ("\\", r#""\\""#),
        ("[", r#""\[""#),
    ] {
        assert_eq!(lit(t).as_deref(), Some(want), "{t}");
    }
    for t in [r#""\z""#, r#""\1""#, "\"t"] {
        lit_err(t);
    }
    // single quoted
    for (want, t) in [
        ("", "''"),
        ("'", r"'\''"),
        (r"\t", r"'\t'"),
        (r"\r\n", r"'\r\n'"),
        (r"\#t", r"'\#t'"),
        (r"\z", r"'\z'"),
        (r"\0", r"'\0'"),
        ("t'", "t'"),
        ("#{test}", "'#{test}'"),
        ("\\", r"'\\'"),
        (r"\[", r"'\['"),
    ] {
        assert_eq!(lit(t).as_deref(), Some(want), "{t}");
    }
    lit_err("'t");
    // non-quoted
    for t in [r#"\""#, r"\t", r"\r\n", r"\#t", r"\z", "#{test}", r"\\", "#foo", "foo#bar", "t{", "}t", "t[", "]t"] {
        assert_eq!(lit(t).as_deref(), Some(t), "{t}");
    }
    for (want, t) in [("text", " text"), ("#foo", " #foo"), ("foo", "foo #bar"), ("foo", "foo\t#bar")] {
        assert_eq!(lit(t).as_deref(), Some(want), "{t}");
    }
    lit_err("{t");
    lit_err("[t");
    // embedded code
    assert_eq!(lit("\"#{1+1}\"").as_deref(), Some("2"));
    assert_eq!(lit("\"#{}\"").as_deref(), Some(""));
    assert_eq!(lit("\"#{\"}\"}\"").as_deref(), Some("}"));
    lit_err("\"#{#}\"");
    assert_eq!(lit("\"foo#{hostname}\"").as_deref(), Some("foomyhost"));
    assert_eq!(lit("\"foo#{worker_id}\"").as_deref(), Some("foo"));
    assert_eq!(lit("\"#{use_nil}\""), None);
    assert_eq!(lit("\"#{use_default}\""), None);
    assert_eq!(lit("\"#{1+1}foo#{2+2}bar\"").as_deref(), Some("2foo4bar"));
}

#[test]
fn fluentd_json_cases() {
    use serde_json::json;
    assert_eq!(json("[]"), json!([]));
    assert_eq!(json("[ 1 , 2 ]"), json!([1, 2]));
    assert_eq!(json("[\n1\n,\n2\n]"), json!([1, 2]));
    assert_eq!(json("[ \"a\" , \"b\" ]"), json!(["a", "b"]));
    assert_eq!(json("[\"a\",\"#{hostname}\"]"), json!(["a", "myhost"]));
    assert_eq!(json("[\"a\",\"foo#{worker_id}\"]"), json!(["a", "foo"]));
    assert_eq!(json("[\"#{ENV['PORT']} #{hostname}\"]"), json!(["9200 myhost"]));
    lit_err("[1,2,]");
    assert_eq!(json("[\n \"a\", // this is a\n \"b\", // this is b\n \"c\"  // this is c\n]"), json!(["a", "b", "c"]));
    assert_eq!(json("[\n \"a\", # this is a\n \"b\", # this is b\n \"c\"  # this is c\n]"), json!(["a", "b", "c"]));
    assert!(lit_err("[\n \"a\", # this is a\n \"b\", # this is b\n \"c\", # this is c\n]").contains("JSON array"));
    assert_eq!(json("{ \"a\" : 1 , \"b\" : 2 }"), json!({"a": 1, "b": 2}));
    lit_err("{\"a\":1,\"b\":2,}");
    assert_eq!(json("{\n\"a\"\n:\n1\n,\n\"b\"\n:\n2\n}"), json!({"a": 1, "b": 2}));
    assert_eq!(json("{\"a\":\"b\",\"#{hostname}\":\"d\"}"), json!({"a": "b", "myhost": "d"}));
    assert_eq!(
        json("{\n \"a\": 1, # this is a\n \"b\": 2, # this is b\n \"c\": 3  # this is c\n}"),
        json!({"a": 1, "b": 2, "c": 3})
    );
    assert_eq!(json("[\"a#b\", /* c */ \"d\"]"), json!(["a#b", "d"]));
    assert_eq!(json("[\"q\\\"#x\\\\\"]"), json!(["q\"#x\\"]));
    // Compact JSON text, key order kept (fluentd's JSON.dump).
    assert_eq!(lit("{ \"key1\": \"value1\", \"key2\": 2 }").as_deref(), Some(r#"{"key1":"value1","key2":2}"#));
    assert_eq!(lit("[\"value1\", \"value2\", 100]").as_deref(), Some(r#"["value1","value2",100]"#));
    // A quoted JSON text is just a string.
    assert_eq!(lit("'{\"a\":\"b\",\"c\":\"#{v1}\"}'").as_deref(), Some(r##"{"a":"b","c":"#{v1}"}"##));
    assert_eq!(lit("\"{\\\"a\\\":\\\"#{hostname}\\\"}\"").as_deref(), Some(r#"{"a":"myhost"}"#));
    // Errors.
    assert!(lit_err("[\"#{ENV['UNSET']}\"]").contains("gave nil"));
    assert!(lit_err("[\"#{1}\"]").contains("must give a string"));
    assert!(lit_err("[1 2]").contains("invalid JSON array"));
    assert!(lit_err("[1}").contains("invalid JSON array"));
    assert!(lit_err("{\"a\": x#y}").contains("unexpected '#'"));
    assert!(lit_err("[1, /* x").contains("unterminated /*"));
    assert!(lit_err("[1] x").contains("expected end of line after the value of 'k'"));
}

#[test]
fn fluentd_element_parsing() {
    let r = p("").unwrap();
    assert!(r.elements.is_empty() && r.attrs.is_empty());
    let r = p("\n<test var>\n  key [\"a\",\n\"b\", \"c\",\n\"d\"]\n</test>\n").unwrap();
    assert_eq!(r.elements[0].str("key"), Some(r#"["a","b","c","d"]"#));
    assert_eq!(p("<test >\n</test>\n").unwrap().elements[0].arg, "");
    assert_eq!(p("<test    a    >\n</test>\n").unwrap().elements[0].arg, "a");
    assert_eq!(p("<test    a.** b.** >\n</test>\n").unwrap().elements[0].arg, "a.** b.**");
    for arg in ["**", "*.*", "1", "_.%$!", "/", "()*{}.[]"] {
        assert_eq!(p(&format!("<test {arg}>\n</test>\n")).unwrap().elements[0].arg, arg);
    }
    let e = p("<test #a>\n</test>\n").unwrap_err().to_string();
    assert!(e.contains("expected end tag '</test>'"), "{e}");
    let e = p("<test></test>\n").unwrap_err().to_string();
    assert_eq!(e, "test.conf:1:7: expected end of line after <test>");
    let e = p("<test>\n</test><test>\n</test>\n").unwrap_err().to_string();
    assert_eq!(e, "test.conf:2:8: expected end of line after end tag </test>");
    // Embedded code in section arguments.
    let r = p("<test \"#{ENV[\"EMBEDDED_VAR\"]}\">\n  key 1\n  <nested1 \"#{ENV[\"NESTED_EMBEDDED_VAR\"]}\">\n  </nested1>\n  <nested2 \"#{Socket.gethostname}\">\n  </nested2>\n</test>\n").unwrap();
    let t = &r.elements[0];
    assert_eq!(
        (t.arg.as_str(), t.elements[0].arg.as_str(), t.elements[1].arg.as_str()),
        ("embedded", "nested-embedded", "myhost")
    );
    // A comment after a tag.
    let r = p("<source> # top-level\n  @type forward\n</source> # end\n").unwrap();
    assert_eq!(r.elements[0].plugin_type(), Some("forward"));
}

#[test]
fn reserved_at_prefix() {
    for conf in [
        "<match>\n  @k v\n</match>\n",
        "<source>\n  @k v\n</source>\n",
        "<filter>\n  @k v\n</filter>\n",
        "<system>\n  @k v\n</system>\n",
        "  @k v ",
    ] {
        let e = p(conf).unwrap_err().to_string();
        assert!(e.contains("'@' is the system reserved prefix") && e.contains(": @k"), "{conf}: {e}");
    }
    let (r, warns) = pw("<match>\n  <record>\n    @k v\n  </record>\n</match>\n").unwrap();
    assert_eq!(warns, ["test.conf:3:5: '@' is the system reserved prefix. It works in the nested configuration for now but it will be rejected: @k"]);
    assert_eq!(r.elements[0].elements[0].str("@k"), Some("v"));
    let r = p("<match x>\n  @type file\n  @id out1\n  @label @X\n  @log_level debug\n</match>\n").unwrap();
    let m = &r.elements[0];
    assert_eq!((m.str("@id"), m.str("@label"), m.str("@log_level")), (Some("out1"), Some("@X"), Some("debug")));
}

#[test]
fn old_type_syntax_and_key_without_value() {
    let r = p("<match foo>\n  type file\n  id f1\n  path /var/log/x\n  tag_mapped\n</match>\n").unwrap();
    let m = &r.elements[0];
    assert_eq!(m.plugin_type(), Some("file"));
    // fluentd's Element#[] maps @type/@id/@log_level to the old names.
    assert_eq!(m.str("@id"), Some("f1"));
    assert_eq!(m.str("tag_mapped"), Some(""));
    assert_eq!(m.bool("tag_mapped").unwrap(), Some(true));
    assert!(m.unused_attrs().iter().all(|a| a.key == "path"));
}

#[test]
fn embedded_ruby_in_values() {
    let r = p("<s>\n  a \"#{ENV['FLUENT_ELASTICSEARCH_HOST']}:#{ENV['PORT']}\"\n  b \"#{ENV['NOPE'] || 'dflt'}\"\n  c \"#{ENV.fetch('NOPE', 'f')}\"\n  d \"#{Socket.gethostname}\"\n  e '#{ENV[\"X\"]}'\n  f #{hostname}\n  g \"#{ENV['NOPE']}\"\n  h \"prefix-#{ENV['NOPE']}\"\n  i \"#{ENV['NOPE'] || use_default}\"\n</s>\n").unwrap();
    let s = &r.elements[0];
    assert_eq!(s.str("a"), Some("es.local:9200"));
    assert_eq!(s.str("b"), Some("dflt"));
    assert_eq!(s.str("c"), Some("f"));
    assert_eq!(s.str("d"), Some("myhost"));
    // Single-quoted and unquoted values are not evaluated.
    assert_eq!(s.str("e"), Some("#{ENV[\"X\"]}"));
    assert_eq!(s.str("f"), Some("#{hostname}"));
    // nil (an unset variable) anywhere makes the value nil: not set.
    assert_eq!(s.str("g"), None);
    assert_eq!(s.str("h"), None);
    assert_eq!(s.str("i"), None);
    // A later nil / use_default removes an earlier value, as fluentd's hash does; a
    // value set again keeps the key's first place.
    let r = p("k v1\nk \"#{use_default}\"\n").unwrap();
    assert_eq!(r.str("k"), None);
    let r = p("a 1\nb \"#{use_nil}\"\nc 3\nb 2\n").unwrap();
    let kv: Vec<(&str, &str)> = r.attrs.iter().map(|a| (a.key.as_str(), a.value.as_str())).collect();
    assert_eq!(kv, [("a", "1"), ("b", "2"), ("c", "3")]);
    let e = p("<s>\n  k \"a#{ENV.fetch('NOPE')}\"\n</s>\n").unwrap_err().to_string();
    assert!(
        e.starts_with("test.conf:2:7: in embedded code `ENV.fetch('NOPE')`: ENV.fetch('NOPE'): key not found"),
        "{e}"
    );
    let e = p("<s>\n  k \"#{`id`}\"\n</s>\n").unwrap_err().to_string();
    assert!(e.starts_with("test.conf:2:6: embedded Ruby is not supported: ``id``; spate supports ENV['X']"), "{e}");
    let e = p("k \"#{ENV['X']\n\"\n").unwrap_err().to_string();
    assert!(e.starts_with("test.conf:1:4: expected '}' to end the embedded code"), "{e}");
    // Code may span lines (fluentd finds its end with Ruby's lexer); positions after
    // it stay right.
    let r = p("<s>\n  k \"#{ENV['NOPE'] ||\n     'multi'}\"\n  after 1\n  bad\n</s>\n").unwrap();
    assert_eq!(r.elements[0].str("k"), Some("multi"));
    assert_eq!(r.elements[0].get("after").map(|a| a.pos.line), Some(4));
    let r = p("k \"#{ENV['NOPE'] ? ENV['NOPE'] : 'info'}\"\n").unwrap();
    assert_eq!(r.str("k"), Some("info"));
}

#[test]
fn duplicate_keys_later_wins_in_first_place() {
    let (r, warns) = pw("<s>\n  a 1\n  b 2\n  a 3\n</s>\n").unwrap();
    assert_eq!(warns, ["test.conf:4:3: parameter 'a' is given twice in <s> (previously at line 2); the later value wins, as in fluentd"]);
    let s = &r.elements[0];
    let kv: Vec<(&str, &str)> = s.attrs.iter().map(|a| (a.key.as_str(), a.value.as_str())).collect();
    assert_eq!(kv, [("a", "3"), ("b", "2")]);
    assert_eq!(s.get("a").unwrap().pos.line, 4);
}

#[test]
fn errors_name_file_line_col() {
    let cases: &[(&str, &str)] = &[
        ("<source>\n  @type forward\n", "test.conf:3:1: expected end tag '</source>' to close <source> (opened at line 1) but got end of file"),
        ("<source>\n</match>\n", "test.conf:2:1: unmatched end tag </match>: expected </source> to close <source> (opened at line 1)"),
        ("</match>\n", "test.conf:1:1: unmatched end tag </match>: no section is open here"),
        ("<match app.**\n  @type stdout\n</match>\n", "test.conf:1:14: expected '>' to close <match app.**"),
        ("<match a>\n</match\n", "test.conf:2:8: expected '>' to close end tag </match"),
        ("<>\n</>\n", "test.conf:1:2: expected a section name (letters, digits, '_') after '<'"),
        ("<s>\n  k \"abc\n", "test.conf:2:5: unexpected end of file in a double quoted string"),
        ("<s>\n  k 'abc\n'\n</s>\n", "test.conf:2:5: unexpected end of line in a single quoted string (only double-quoted strings may span lines)"),
        ("<s>\n  k [1, 2\n</s>\n", "test.conf:2:5: got incomplete JSON array configuration (no matching ']' before end of file)"),
        ("<s>\n  k \"x\" y\n</s>\n", "test.conf:2:9: expected end of line after the value of 'k' (text after a quoted or JSON value?)"),
    ];
    for (conf, want) in cases {
        assert_eq!(p(conf).unwrap_err().to_string(), *want, "{conf:?}");
    }
    let e = p("<s>\n  k \"\\q\"\n</s>\n").unwrap_err().to_string();
    assert!(e.starts_with("test.conf:2:6: unexpected back-slash escape character 'q'"), "{e}");
    // Columns count characters, not bytes.
    let e = p("<s>\n  ké \"\\z\"\n</s>\n").unwrap_err().to_string();
    assert!(e.starts_with("test.conf:2:7:"), "{e}");
    let deep = "<a>\n".repeat(100);
    assert_eq!(p(&deep).unwrap_err().to_string(), "test.conf:65:1: sections nested deeper than 64 levels");
}

#[test]
fn crlf_and_bom() {
    let r = p("\u{feff}<source>\r\n  @type forward\r\n  port 1 # c\r\n  k \"a\\\r\nb\"\r\n</source>\r\n").unwrap();
    let s = &r.elements[0];
    assert_eq!((s.plugin_type(), s.str("port"), s.str("k")), (Some("forward"), Some("1"), Some("ab")));
    assert_eq!(s.pos.to_string(), "test.conf:1:1");
}

#[test]
fn includes_globs_and_cycles() {
    let dir = std::env::temp_dir().join(format!("spate-cfg-inc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let w = |rel: &str, text: &str| {
        let f = dir.join(rel);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    };
    // test_config_parser.rb '@include parsing'.
    w(
        "config_test_1.conf",
        &format!(
            "\n  k1 root_config\n  include dir/config_test_2.conf  #\n  @include {}/config_test_4.conf\n  include file://{}/config_test_5.conf\n  @include config.d/*.conf\n",
            dir.display(),
            dir.display()
        ),
    );
    w("dir/config_test_2.conf", "\n  k2 relative_path_include\n  @include ../config_test_3.conf\n");
    w("config_test_3.conf", "\n  k3 relative_include_in_included_file\n");
    w("config_test_4.conf", "\n  k4 absolute_path_include\n");
    w("config_test_5.conf", "\n  k5 uri_include\n");
    w(
        "config.d/config_test_6.conf",
        "\n  k6 wildcard_include_1\n  <elem1 name>\n    include normal_parameter\n  </elem1>\n",
    );
    w("config.d/config_test_7.conf", "\n  k7 wildcard_include_2\n");
    w("config.d/config_test_8.conf", "\n  <elem2 name>\n    @include ../dir/config_test_9.conf\n  </elem2>\n");
    w(
        "dir/config_test_9.conf",
        "\n  k9 embedded\n  <elem3 name>\n    nested nested_value\n    include hoge\n  </elem3>\n",
    );
    w(
        "config.d/00_config_test_8.conf",
        "\n  k8 wildcard_include_3\n  <elem4 name>\n    include normal_parameter\n  </elem4>\n",
    );
    w("config.d/.hidden.conf", "hidden 1\n");
    let c = file(&dir.join("config_test_1.conf")).unwrap();
    let keys: Vec<&str> = c.attrs.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["k1", "k2", "k3", "k4", "k5", "k8", "k6", "k7"]);
    assert_eq!(c.str("k5"), Some("uri_include"));
    let elem1 = c.elements_named("elem1").next().unwrap();
    assert_eq!((elem1.arg.as_str(), elem1.str("include")), ("name", Some("normal_parameter")));
    let elem2 = c.elements_named("elem2").next().unwrap();
    assert_eq!(elem2.str("k9"), Some("embedded"));
    assert!(elem2.get("include").is_none());
    let elem3 = elem2.elements_named("elem3").next().unwrap();
    assert_eq!((elem3.str("nested"), elem3.str("include")), (Some("nested_value"), Some("hoge")));
    // Positions name the included file.
    assert!(c.get("k2").unwrap().pos.to_string().ends_with("dir/config_test_2.conf:2:3"));
    // `..` is resolved (File.expand_path).
    let k3 = c.get("k3").unwrap().pos.to_string();
    assert!(k3.ends_with("/config_test_3.conf:2:3") && !k3.contains(".."), "{k3}");

    // Braces, as Ruby's Dir.glob.
    w("b/x.conf", "x 1\n");
    w("b/y.conf", "y 1\n");
    w("b/z.conf", "z 1\n");
    w("braces.conf", "@include b/{y,x}.conf\n");
    let r = file(&dir.join("braces.conf")).unwrap();
    assert_eq!(r.attrs.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(), ["x", "y"]);

    // Cycles, depth, missing files, URLs.
    w("loop.conf", "@include loop2.conf\n");
    w("loop2.conf", "<match x>\n  @include loop.conf\n</match>\n");
    let e = file(&dir.join("loop.conf")).unwrap_err().to_string();
    assert!(e.contains("loop2.conf:2:3: @include loop.conf: include cycle: ") && e.contains("loop.conf -> "), "{e}");
    for i in 0..20 {
        w(&format!("d{i}.conf"), &format!("@include d{}.conf\n", i + 1));
    }
    let e = file(&dir.join("d0.conf")).unwrap_err().to_string();
    assert!(e.contains("d15.conf:1:1: @include d16.conf: includes nested deeper than 16 files"), "{e}");
    let e = p("@include /nonexistent/spate.conf\n").unwrap_err().to_string();
    assert_eq!(e, "test.conf:1:1: @include /nonexistent/spate.conf: no such file: /nonexistent/spate.conf");
    let (r, warns) = pw("@include /nonexistent/*.conf\n").unwrap();
    assert!(r.elements.is_empty() && warns.len() == 1, "{warns:?}");
    let e = p("@include http://example.com/fluent.conf\n").unwrap_err().to_string();
    assert_eq!(e, "test.conf:1:1: @include http://example.com/fluent.conf: only local files can be included (http:// is not supported)");
    let e = p("@include\n").unwrap_err().to_string();
    assert!(e.contains("expected a file path"), "{e}");
    let e = in_dir("@include b\n", &dir).unwrap_err().to_string();
    assert!(e.starts_with("t.conf:1:1: @include b: cannot read"), "{e}");
    // `include` is a plain key inside a section, `@include` is not.
    let r = in_dir("<s>\n  include b/x.conf\n  @include b/y.conf\n</s>\n", &dir).unwrap();
    // Warnings: a missing file, the old `include`, a backup file caught by *.conf.
    w("bk/a.conf", "a 1\n");
    w("bk/a.bak.conf", "a 2\n");
    let (r2, warns) =
        parse_str_with_warnings("include b/x.conf\n@include bk/*.conf\n@include none/*.conf\n", "t.conf", &dir, &ctx())
            .unwrap();
    assert_eq!(r2.str("a"), Some("1"));
    let warns: Vec<String> = warns.iter().map(ToString::to_string).collect();
    assert_eq!(warns.len(), 4, "{warns:#?}");
    assert_eq!(warns[0], "t.conf:1:1: 'include' is deprecated. Use '@include' instead");
    assert_eq!(warns[1], "t.conf:2:1: There is a possibility that '@include bk/*.conf' includes duplicated backed-up config file such as <a.bak.conf>");
    assert!(
        warns[2].contains("bk/a.conf:1:1: parameter 'a' is given twice in the top level (previously at line 1)"),
        "{}",
        warns[2]
    );
    assert!(
        warns[3].starts_with("t.conf:3:1: @include none/*.conf: no file matches ")
            && warns[3].ends_with("nothing is included (fluentd ignores it too)"),
        "{}",
        warns[3]
    );
    assert_eq!((r.elements[0].str("include"), r.elements[0].str("y")), (Some("b/x.conf"), Some("1")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn brace_expansion() {
    let mut v = Vec::new();
    super::include::expand_braces("a{b,c{d,e}}f{1,2}", &mut v).unwrap();
    assert_eq!(v, ["abf1", "abf2", "acdf1", "acdf2", "acef1", "acef2"]);
    let mut v = Vec::new();
    super::include::expand_braces("a{b", &mut v).unwrap();
    assert_eq!(v, ["a{b"]);
    let mut v = Vec::new();
    assert!(super::include::expand_braces(&"{a,b,c,d}".repeat(8), &mut v).is_err());
}

#[test]
fn unused_parameters_are_reported() {
    let r = p("<source>\n  @type forward\n  port 1\n  typo_param 2\n</source>\n").unwrap();
    let s = &r.elements[0];
    let _ = (s.plugin_type(), s.str("port"));
    let unused: Vec<String> = s.unused_attrs().iter().map(|a| format!("{} {}", a.key, a.pos)).collect();
    assert_eq!(unused, ["typo_param test.conf:4:3"]);
}

#[test]
fn hostile_inputs_never_panic() {
    let seeds = [
        "<",
        "</",
        "<a",
        "<a>",
        "</a>",
        "<a>\n</b>\n",
        "\"",
        "'",
        "k \"#{",
        "k [",
        "k {",
        "k \"\\",
        "#{",
        "<a b c #>\n</a>",
        "@include",
        "k [\"#{ENV['X']}\"]",
        "\u{feff}<é>\n</é>\n",
        "k [\"\\",
        "k {\"a\":#{",
        "k [/*",
        "k [1, #",
        "k \"#{'",
        "k \"#{\"#{\"#{",
        "<a \"#{use_nil}\">\n</a>",
        "\"k\" v",
        "\"#{use_nil}\" v",
        "k \"#{ENV.fetch(\"",
        "k [\"é#{hostname}é\", 1] # ü",
        "<a>\n  k [1,\n  # c\n  2]\n</a>\n",
        "k \"\r",
        "k\r",
    ];
    for s in seeds {
        for i in 0..=s.len() {
            if s.is_char_boundary(i) {
                let _ = p(&s[..i]);
            }
        }
    }
    // Random strings over the grammar's alphabet.
    let mut rng = spate_testkit::rng::Rng(0x2545_F491_4F6C_DD1D);
    let alphabet: Vec<char> = "<>/#\"'{}[]\\ \n\r\t@ab$=,:*é|(){}ENV".chars().collect();
    for _ in 0..20000 {
        let len = rng.below(48);
        let s: String = (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect();
        let _ = p(&s);
    }
    // Mutations of a realistic configuration.
    let base = "<source>\n  @type forward\n  port \"#{ENV['PORT'] || 24224}\"\n</source>\n<match app.**>\n  @type copy\n  <store>\n    @type file\n    path /var/log/x # c\n    <buffer tag,time>\n      timekey 1h\n      headers {\"a\": \"#{hostname}\", # c\n        \"b\": [1, 2]}\n    </buffer>\n  </store>\n</match>\n";
    assert!(p(base).is_ok());
    let bytes = base.as_bytes();
    let ins = b"<>/#\"'{}[]\\ \n@$,:";
    for _ in 0..20000 {
        let mut m = bytes.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(m.len());
            match rng.below(3) {
                0 => {
                    m.remove(at);
                }
                1 => m.insert(at, ins[rng.below(ins.len())]),
                _ => m[at] = ins[rng.below(ins.len())],
            }
            if m.is_empty() {
                m.push(b'<');
            }
        }
        let _ = p(&String::from_utf8_lossy(&m));
    }
}

#[test]
fn hostile_sizes_stay_fast() {
    let t = std::time::Instant::now();
    // Long blank runs inside an argument and a value (would be quadratic if every
    // blank re-scanned the run).
    let _ = p(&format!("<a b{}c>\n</a>\n", " ".repeat(200_000)));
    let _ = p(&format!("k a{}b\n", " ".repeat(200_000)));
    // Many distinct keys in one section, then all unset again.
    let many: String = (0..100_000).map(|i| format!("k{i} v\n")).collect();
    assert_eq!(p(&many).unwrap().attrs.len(), 100_000);
    let unset: String = (0..100_000).map(|i| format!("k{i} \"#{{use_nil}}\"\n")).collect();
    assert!(p(&format!("{many}{unset}")).unwrap().attrs.is_empty());
    // Long Ruby chains and many embedded expressions.
    let _ = p(&format!("k \"#{{{}}}\"\n", vec!["'a'"; 100_000].join("+")));
    let _ = p(&format!("k \"{}\"\n", "#{hostname}".repeat(100_000)));
    // A JSON value re-scanned at many '#' (fluentd's comment test) hits the budget.
    let e = p(&format!("k [1 1 {}\n", "#{'a'}".repeat(150_000))).unwrap_err().to_string();
    assert!(e.contains("too complex") || e.contains("longer than"), "{e}");
    // Many '#' at the top level of a JSON array.
    let _ = p(&format!("k [1 {}\n", "#{x}".repeat(50_000)));
    let _ = p(&format!("k [{}\n", "1,\n#c\n".repeat(20_000)));
    // Deep JSON.
    let _ = p(&format!("k {}\n", "[".repeat(100_000)));
    let _ = p(&format!("k {}{}\n", "[".repeat(1000), "]".repeat(1000)));
    // A very long JSON value.
    assert!(p(&format!("k [\"{}\"]\n", "x".repeat(2 << 20))).unwrap_err().to_string().contains("longer than"));
    assert!(t.elapsed() < std::time::Duration::from_secs(20), "{:?}", t.elapsed());
}
