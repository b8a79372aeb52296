//! Tests of the Ruby subset: expected values are what Ruby 3.4 gives for the same
//! expression (Ruby is not installed here; each case is standard Ruby behaviour, and the
//! real-world expressions come from the configs in ../shared/fixtures/realworld).

use std::collections::HashMap;

use spate_protocol::{EventTime, RecordRef};

use super::*;

const TIME: EventTime = EventTime::new(1_272_942_121, 123_456_789);

fn cx_env() -> HashMap<String, String> {
    HashMap::from([("NODE_NAME".to_string(), "node-1".to_string()), ("EMPTY".to_string(), String::new())])
}

fn compile(code: &str) -> Result<Program, ExprError> {
    let env = cx_env();
    let get = move |k: &str| env.get(k).cloned();
    Program::compile(code, &CompileCx { locals: &Local::ALL, env: &get, hostname: "myhost" })
}

/// Evaluates `code` against `record` (JSON), tag `prefix.test.tag.suffix`; returns
/// `inspect` of the result, or `!` + the error.
fn ev(code: &str, record: &str) -> String {
    let p = compile(code).unwrap_or_else(|e| panic!("{code}: {e}"));
    let rec = spate_protocol::json::to_msgpack(record.as_bytes()).unwrap();
    let tag = b"prefix.test.tag.suffix";
    let parts: Vec<&[u8]> = tag.split(|&b| b == b'.').collect();
    let scope = Scope { record: RecordRef::new(&rec).unwrap(), tag, tag_parts: &parts, time: TIME };
    match p.eval(&scope) {
        Ok(v) => {
            let mut o = Vec::new();
            v.write_inspect(&mut o);
            String::from_utf8_lossy(&o).into_owned()
        }
        Err(e) => format!("!{e}"),
    }
}

fn e(code: &str) -> String {
    ev(code, "{}")
}

#[test]
fn literals_and_operators() {
    assert_eq!(e("1 + 2 * 3"), "7");
    assert_eq!(e("(1 + 2) * 3"), "9");
    assert_eq!(e("7 / 2"), "3");
    assert_eq!(e("-7 / 2"), "-4");
    assert_eq!(e("7 % -3"), "-2");
    assert_eq!(e("-7 % 3"), "2");
    assert_eq!(e("7.0 / 2"), "3.5");
    assert_eq!(e("1 / 0"), "!divided by 0");
    assert_eq!(e("2 ** 10"), "1024");
    assert_eq!(e("'a' + \"b\""), "\"ab\"");
    assert_eq!(e("'ab' * 3"), "\"ababab\"");
    assert_eq!(e("'a' + 1"), "!no implicit conversion of Integer into String");
    assert_eq!(e("nil + 1"), "!undefined method '+' for nil");
    assert_eq!(e("1 + 'a'"), "!String can't be coerced into Integer");
    assert_eq!(e("1 == 1.0"), "true");
    assert_eq!(e("'a' != 'b'"), "true");
    assert_eq!(e("'b' > 'a'"), "true");
    assert_eq!(e("1 < 'a'"), "!comparison of Integer with String failed");
    assert_eq!(e("nil || 'x'"), "\"x\"");
    assert_eq!(e("'' || 'x'"), "\"\"", "\"\" is truthy in Ruby");
    assert_eq!(e("1 && 2"), "2");
    assert_eq!(e("!nil"), "true");
    assert_eq!(e("not true"), "false");
    assert_eq!(e("true ? 'y' : 'n'"), "\"y\"");
    assert_eq!(e("nil ? 'y' : 'n'"), "\"n\"");
    assert_eq!(e("[1, 'a', nil, 2.5, true]"), "[1, \"a\", nil, 2.5, true]");
    assert_eq!(e("{\"a\" => 1, b: 2, \"c\": 3}"), "{\"a\" => 1, b: 2, c: 3}");
    assert_eq!(e("%w[a b c][1]"), "\"b\"");
    assert_eq!(e("\"t=#{1 + 1}\\n\""), "\"t=2\\n\"");
    assert_eq!(e("'it''s'"), "\"its\"");
    assert_eq!(e("\"\\1\""), "\"\\u0001\"");
    assert_eq!(e("1_000 + 0x10"), "1016");
    assert_eq!(e("if nil; 1; elsif 2 > 1 then 2; else 3; end"), "2");
    assert_eq!(e("unless true; 1; else 2; end"), "2");
    assert_eq!(e("'x' if false"), "nil");
    assert_eq!(e("begin; nil.upcase; rescue; 'fallback'; end"), "\"fallback\"");
    assert_eq!(e("nil.upcase rescue 'r'"), "\"r\"");
    assert_eq!(e("nil&.upcase"), "nil");
    assert_eq!(e("1; 2; 3"), "3");
}

#[test]
fn record_access() {
    let r = r#"{"a":"x","n":5,"f":1.5,"h":{"k":[10,20,{"z":"deep"}]},"nil":null,"b":true}"#;
    assert_eq!(ev("record[\"a\"]", r), "\"x\"");
    assert_eq!(ev("record['n'] + 1", r), "6");
    assert_eq!(ev("record[\"missing\"]", r), "nil");
    assert_eq!(ev("record[\"h\"][\"k\"][1]", r), "20");
    assert_eq!(ev("record[\"h\"][\"k\"][-1][\"z\"]", r), "\"deep\"");
    assert_eq!(ev("record.dig(\"h\", \"k\", 2, \"z\")", r), "\"deep\"");
    assert_eq!(ev("record.dig(\"h\", \"nope\", 2)", r), "nil");
    assert_eq!(ev("record.dig(\"a\", \"b\")", r), "!String does not have #dig method");
    assert_eq!(ev("record[\"missing\"][\"key\"]", r), "!undefined method '[]' for nil");
    assert_eq!(ev("record.key?(\"nil\")", r), "true");
    assert_eq!(ev("record.fetch(\"missing\", 'd')", r), "\"d\"");
    assert_eq!(ev("record.fetch(\"missing\")", r), "!key not found: \"missing\"");
    assert_eq!(ev("record[\"h\"].keys", r), "[\"k\"]");
    assert_eq!(ev("record.size", r), "6");
    assert_eq!(ev("record[:a]", r), "nil", "symbol keys never match string keys");
    assert_eq!(ev("record[\"h\"].merge({\"x\" => 1})", r), "{\"k\" => [10, 20, {\"z\" => \"deep\"}], \"x\" => 1}");
    assert_eq!(ev("record.to_json", r#"{"a":"x","n":[1,null]}"#), "\"{\\\"a\\\":\\\"x\\\",\\\"n\\\":[1,null]}\"");
    assert_eq!(ev("record.to_s", r#"{"a":"x","n":[1,null]}"#), "\"{\\\"a\\\" => \\\"x\\\", \\\"n\\\" => [1, nil]}\"");
    assert_eq!(ev("record.to_s.length", r#"{"a":1}"#), "10");
    assert_eq!(
        ev("record[\"request_end\"] - record[\"request_start\"]", r#"{"request_start":100,"request_end":250}"#),
        "150"
    );
    assert_eq!(ev("record[\"total\"] / record[\"count\"]", r#"{"total":100,"count":10}"#), "10");
    assert_eq!(ev("record[\"f\"].round", r), "2");
    assert_eq!(ev("record[\"b\"] ? 1 : 0", r), "1");
    assert_eq!(ev("record[\"n\"].is_a?(Integer)", r), "true");
    assert_eq!(ev("record[\"h\"].is_a?(Hash)", r), "true");
}

#[test]
fn tag_time_and_host() {
    assert_eq!(e("tag"), "\"prefix.test.tag.suffix\"");
    assert_eq!(e("tag_parts[0]"), "\"prefix\"");
    assert_eq!(e("tag_parts[-1]"), "\"suffix\"");
    assert_eq!(e("tag_parts[9]"), "nil");
    assert_eq!(e("tag_parts.last"), "\"suffix\"");
    assert_eq!(e("tag_parts.length"), "4");
    assert_eq!(e("tag_prefix[1]"), "\"prefix.test\"");
    assert_eq!(e("tag_prefix[-2]"), "\"prefix.test.tag\"");
    assert_eq!(e("tag_suffix[2]"), "\"tag.suffix\"");
    assert_eq!(e("tag_suffix[-3]"), "\"test.tag.suffix\"");
    assert_eq!(e("hostname"), "\"myhost\"");
    assert_eq!(e("Socket.gethostname"), "\"myhost\"");
    assert_eq!(e("ENV[\"NODE_NAME\"]"), "\"node-1\"");
    assert_eq!(e("ENV['UNSET']"), "nil");
    assert_eq!(e("ENV.fetch('UNSET', 'd')"), "\"d\"");
    assert_eq!(e("time.to_i"), "1272942121");
    assert_eq!(e("time.usec"), "123456");
    assert_eq!(e("time.nsec"), "123456789");
    assert_eq!(e("time.to_i.to_s + time.usec.to_s"), "\"1272942121123456\"");
    assert_eq!(e("time.utc.strftime('%Y-%m-%dT%H:%M:%S.%3NZ')"), "\"2010-05-04T03:02:01.123Z\"");
    assert_eq!(e("Time.at(time).utc.to_s"), "\"2010-05-04 03:02:01 UTC\"");
    assert_eq!(e("time.utc.iso8601(3)"), "\"2010-05-04T03:02:01.123Z\"");
    assert_eq!(e("Time.at(1500000000.5).utc.usec"), "500000");
    // github/234.conf: milliseconds in a record field.
    assert_eq!(
        ev(
            "Time.at(record['timeStamp'].to_i/1000, record['timeStamp'].to_i%1000*1000).utc.strftime('%Y-%m-%dT%H:%M:%S.%LZ')",
            r#"{"timeStamp":"1600000000123"}"#
        ),
        "\"2020-09-13T12:26:40.123Z\""
    );
    assert!(e("Time.now.to_i").parse::<i64>().unwrap() > 1_700_000_000);
    assert_eq!(e("(time - 1).to_i"), "1272942120");
}

#[test]
fn string_methods() {
    assert_eq!(e("'Hello World'.downcase"), "\"hello world\"");
    assert_eq!(e("'héllo'.upcase"), "\"HÉLLO\"");
    assert_eq!(e("'hello wORLD'.capitalize"), "\"Hello world\"");
    assert_eq!(e("\"\\t x \\n\".strip"), "\"x\"");
    assert_eq!(e("\"x\\r\\n\".chomp"), "\"x\"");
    assert_eq!(e("'abc'.length"), "3");
    assert_eq!(e("'héllo'.length"), "5");
    assert_eq!(e("'abcdef'[0..2]"), "\"abc\"");
    assert_eq!(e("'abcdef'[0...2]"), "\"ab\"");
    assert_eq!(e("'abcdef'[-2..]"), "\"ef\"");
    assert_eq!(e("'abcdef'[1, 3]"), "\"bcd\"");
    assert_eq!(e("'abcdef'[10]"), "nil");
    assert_eq!(e("'abcdef'[6..]"), "\"\"");
    assert_eq!(e("'abcdef'[7..]"), "nil");
    assert_eq!(e("'2024-01-02T03:04'[0..9]"), "\"2024-01-02\"");
    assert_eq!(e("'abc'.start_with?('x', 'ab')"), "true");
    assert_eq!(e("'abc'.end_with?('bc')"), "true");
    assert_eq!(e("'abc'.include?('d')"), "false");
    assert_eq!(e("''.empty?"), "true");
    assert_eq!(e("' 42abc'.to_i"), "42");
    assert_eq!(e("'abc'.to_i"), "0");
    assert_eq!(e("'-1_000'.to_i"), "-1000");
    assert_eq!(e("'1.5e3'.to_f"), "1500.0");
    assert_eq!(e("'a-b_c'.tr('-_', '  ')"), "\"a b c\"");
    assert_eq!(e("'hello'.delete('l')"), "\"heo\"");
    assert_eq!(e("'aaabbb'.squeeze"), "\"ab\"");
    assert_eq!(e("'abc'.reverse"), "\"cba\"");
    assert_eq!(e("'abc'.index('c')"), "2");
    assert_eq!(e("'abc'.nil?"), "false");
    assert_eq!(e("123.to_s + 'x'"), "\"123x\"");
    assert_eq!(e("1.5.to_s"), "\"1.5\"");
    assert_eq!(e("nil.to_s"), "\"\"");
    assert_eq!(e("nil.to_a"), "[]");
    assert_eq!(e("'x'.upcase.downcase.upcase"), "\"X\"");
    assert_eq!(e("String(12)"), "\"12\"");
    assert_eq!(e("Integer('0x1A')"), "26");
    assert_eq!(e("Integer('12abc')"), "!invalid value for Integer(): \"12abc\"");
    assert_eq!(e("Float('1.5')"), "1.5");
    assert_eq!(
        e("CGI.escape('http://example.com/?q=ruby & cgi')"),
        "\"http%3A%2F%2Fexample.com%2F%3Fq%3Druby+%26+cgi\""
    );
    assert_eq!(e("CGI.unescape('hello%21+x')"), "\"hello! x\"");
    assert_eq!(e("'x'.to_sym"), ":x");
}

#[test]
fn split_like_ruby() {
    assert_eq!(e("'a,b,,c,,'.split(',')"), "[\"a\", \"b\", \"\", \"c\"]");
    assert_eq!(e("'a,b,,c,,'.split(',', -1)"), "[\"a\", \"b\", \"\", \"c\", \"\", \"\"]");
    assert_eq!(e("'a,b,c'.split(',', 2)"), "[\"a\", \"b,c\"]");
    assert_eq!(e("' a  b c '.split"), "[\"a\", \"b\", \"c\"]");
    assert_eq!(e("' a  b c '.split(' ')"), "[\"a\", \"b\", \"c\"]");
    assert_eq!(e("' a  b c '.split(' ', 2)"), "[\"a\", \"b c \"]");
    assert_eq!(e("'a b '.split(' ', -1)"), "[\"a\", \"b\", \"\"]");
    assert_eq!(e("'abc'.split('')"), "[\"a\", \"b\", \"c\"]");
    assert_eq!(e("'abc'.split(//)"), "[\"a\", \"b\", \"c\"]");
    assert_eq!(e("'a1b22c'.split(/\\d+/)"), "[\"a\", \"b\", \"c\"]");
    assert_eq!(e("'a1b2c'.split(/(\\d)/)"), "[\"a\", \"1\", \"b\", \"2\", \"c\"]");
    assert_eq!(e("'abc'.split(/(?=c)/)"), "[\"ab\", \"c\"]");
    assert_eq!(e("'ab'.split(/x*/)"), "[\"a\", \"b\"]");
    assert_eq!(e("''.split(',')"), "[]");
    assert_eq!(e("',a'.split(',')"), "[\"\", \"a\"]");
    assert_eq!(e("'abc'.split(',', 1)"), "[\"abc\"]");
    // github/214/containerd.conf: the service name from a tailed path.
    assert_eq!(
        ev(
            "record[\"tailed_path\"].split(\"/\")[4].split(\"_\")[2].split(/\\-(?=[^\\-]+$)/)[0]",
            r#"{"tailed_path":"/var/log/containers/pod_ns_my-service-abc123.log"}"#
        ),
        "\"my-service\""
    );
}

#[test]
fn regexps_like_ruby() {
    assert_eq!(e("'aaa'.gsub('a', 'b')"), "\"bbb\"");
    assert_eq!(e("'aaa'.sub('a', 'b')"), "\"baa\"");
    assert_eq!(e("'abc'.gsub(/b/, '[\\0]')"), "\"a[b]c\"");
    assert_eq!(e("'john smith'.gsub(/(\\w+) (\\w+)/, '\\2 \\1')"), "\"smith john\"");
    assert_eq!(e("'a-b'.gsub(/(?<x>-)/, '<\\k<x>>')"), "\"a<->b\"");
    assert_eq!(e("'abc'.gsub(//, '-')"), "\"-a-b-c-\"");
    assert_eq!(e("'abc'.gsub(/x*/, '-')"), "\"-a-b-c-\"");
    assert_eq!(e("'hello'.gsub(/l/, 'L')"), "\"heLLo\"");
    assert_eq!(e("'a.b'.gsub('.', '\\\\')"), "\"a\\\\b\"");
    assert_eq!(e("'Thread 1-2 x'.gsub(/\\s+\\d+-\\d+/, '')"), "\"Thread x\"");
    assert_eq!(
        e("'x apiKey=secret&y'.gsub(/(?i)api_?key(?-i)=[^\\s&]+/, 'apiKey=********')"),
        "\"x apiKey=********&y\""
    );
    assert_eq!(e("'abc' =~ /c/"), "2");
    assert_eq!(e("'abc' =~ /z/"), "nil");
    assert_eq!(e("'abc' !~ /z/"), "true");
    assert_eq!(e("'abc'.match(/(b)(c)/)[2]"), "\"c\"");
    assert_eq!(e("'abc'.match(/(?<l>b)/)[:l]"), "\"b\"");
    assert_eq!(e("'abc'.match(/(?<l>b)/)['l']"), "\"b\"");
    assert_eq!(e("'abc'.match(/z/)"), "nil");
    assert_eq!(e("'abc'.match(/b/).to_s"), "\"b\"");
    assert_eq!(e("'abc'.match?(/B/i)"), "true");
    assert_eq!(e("'a1b2'.scan(/\\d/)"), "[\"1\", \"2\"]");
    assert_eq!(e("'a1b2'.scan(/([a-z])(\\d)/)"), "[[\"a\", \"1\"], [\"b\", \"2\"]]");
    assert_eq!(e("'abc'[/b./]"), "\"bc\"");
    assert_eq!(e("'key=val'[/(\\w+)=(\\w+)/, 2]"), "\"val\"");
    assert_eq!(e("/a/.to_s"), "\"(?-mix:a)\"");
    // github/214/containerd.conf: fields out of a JSON-ish log line.
    let r = r#"{"log":"{\"msg\":\"hello there\",\"transaction_id\":\"t-1\"}"}"#;
    assert_eq!(
        ev("record[\"log\"].match(/\\\"msg\\\":\\\".*?\"/).to_s.split(\":\", 2)[1] || \"\"", r),
        "\"\\\"hello there\\\"\""
    );
    assert_eq!(
        ev(
            "record[\"log\"].match(/\\\"transaction_id\\\":\\\".*?\"/).to_s.split(\":\")[1] || record[\"log\"].match(/transaction_id=([^\\s]+)/).to_s.split(\"=\")[1] || \"\"",
            r
        ),
        "\"\\\"t-1\\\"\""
    );
    assert_eq!(ev("record[\"log\"].match(/\\\"uuid\\\":\\\".*?\"/).to_s.split(\":\")[1] || \"\"", r), "\"\"");
}

#[test]
fn real_world_expressions() {
    let r = r#"{"CONTAINER_NAME":"k8s_web_pod-1.abc_ns","MESSAGE":"GET /?api_key=s3cret&x=1","priority":"3","kubernetes":{"namespace_name":"default","pod_name":"p-1","labels":{"app":"web"}},"log":"line","level":"info","attrs":{"tag":"stack_svc.x;cont"}}"#;
    assert_eq!(
        ev(
            "record[\"CONTAINER_NAME\"] != nil && record[\"CONTAINER_NAME\"].split(\"_\").length >= 2 ? record[\"CONTAINER_NAME\"].split(\"_\")[1].split(\".\")[0] : \"\" ",
            r
        ),
        "\"web\""
    );
    assert_eq!(
        ev("record[\"MESSAGE\"] != nil ? record[\"MESSAGE\"].gsub(/(?i)api_?key(?-i)=[^\\s&]+/, 'apiKey=********') : record[\"MESSAGE\"] ", r),
        "\"GET /?apiKey=********&x=1\""
    );
    assert_eq!(
        ev("record['err'] || record['msg'] || record['MESSAGE'] || record['log']", r),
        "\"GET /?api_key=s3cret&x=1\""
    );
    assert_eq!(ev("record[\"systemd_unit\"] || record[\"syslog_identifier\"] || \"unknown\"", r), "\"unknown\"");
    assert_eq!(ev(" record[\"@time\"] != nil ? record[\"@time\"] : \"\" ", r), "\"\"");
    assert_eq!(ev("record.dig(\"attrs\", \"tag\").split(\";\")[0].split(\".\")[0].split(\"_\")[1]", r), "\"svc\"");
    assert_eq!(ev("record.dig(\"attrs\", \"tag\").split(\";\")[1]", r), "\"cont\"");
    assert_eq!(
        ev(
            "if record['host']; record['host']; elsif tag_parts[1]; \"#{tag_parts[1]}.herokuapp.com\"; else 'herokuapp.com'; end",
            r
        ),
        "\"test.herokuapp.com\""
    );
    assert_eq!(
        ev(
            "record[\"priority\"] ? (begin; %w[emerg alert crit err warning notice info debug][record[\"priority\"].to_i]; rescue; record[\"priority\"] || \"unknown\"; end) : \"unknown\"",
            r
        ),
        "\"err\""
    );
    assert_eq!(ev("record[\"status\"] == \"OK\" ? true : false", r#"{"status":"OK"}"#), "true");
    assert_eq!(ev("!record['kubernetes'].nil?", r), "true");
    assert_eq!(ev("(record['kubernetes']['labels']||{}).keys", r), "[\"app\"]");
    assert_eq!(ev("record[\"kubernetes\"][\"namespace_name\"]", r), "\"default\"");
}

#[test]
fn outside_the_subset_is_a_config_error() {
    for (code, want) in [
        ("record.each_with_index{|k| k}", "a block"),
        ("record.map(&:to_s)", "splat and block arguments"),
        ("`id`", "unexpected character"),
        ("system('ls')", "method `system`"),
        ("File.read('/etc/passwd')", "`File.read`"),
        ("record['a'] = 1", "assignment"),
        ("Time.parse(record['t'], 1)", "`Time.parse` with 2 arguments"),
        ("require 'net/http'", "require \"net/http\""),
        ("record['a'].encode('UTF-8', invalid: :replace)", "keyword arguments"),
        ("record['a'].encode('UTF-8')", "method `encode`"),
        ("record['a'].frobnicate", "method `frobnicate`"),
        ("sASN", "v0.12 style `${sASN}` for a record field is `${record[\"sASN\"]}`"),
        ("'a'.split(',', 1, 2)", "`split` with 3 argument(s)"),
        ("(1", "expected `)`"),
        ("1 +", "expected a value"),
        ("/(unclosed/", "invalid regexp"),
        ("ENV.fetch('UNSET')", "UNSET is not set"),
        ("ENV[record['k']]", "ENV[] with a computed name"),
        ("while true; end", "`while`"),
        ("1 while true", "a loop"),
        ("begin; 1; rescue NameError; 2; end", "`rescue` of a given exception class"),
        ("def f; end", "`def`"),
    ] {
        let err = compile(code).unwrap_err().to_string();
        assert!(err.contains(want), "{code}: {err}");
        assert!(err.contains(&format!("`{}`", shorten(code))) || err.contains("Ruby expression"), "{err}");
    }
}

#[test]
fn blocks_locals_and_named_captures() {
    let r = r#"{"kubernetes":{"labels":{"app":"web","tier":"fe"},"pod":"p"},"a":[3,1,2],"MESSAGE":"x transaction_id=ab-1 y"}"#;
    // From ../shared/fixtures/realworld (github/053.conf and others).
    assert_eq!(
        ev(
            "!record['kubernetes'].nil? ? record['kubernetes'].merge({\"flat_labels\": (record['kubernetes']['labels']||{}).map{|k,v| \"#{k}=#{v}\"}}) : {}",
            r
        ),
        "{\"labels\" => {\"app\" => \"web\", \"tier\" => \"fe\"}, \"pod\" => \"p\", flat_labels: [\"app=web\", \"tier=fe\"]}"
    );
    assert_eq!(
        ev(
            "/\\btransaction_id=(?<transaction_id>[A-Za-z0-9\\-_:]+)/ =~ record[\"MESSAGE\"] && transaction_id != nil ? transaction_id : \"\"",
            r
        ),
        "\"ab-1\""
    );
    assert_eq!(ev("/(?<tid>z+)/ =~ record['MESSAGE']; tid", r), "nil");
    assert_eq!(ev("record['a'].map { |x| x * 2 }", r), "[6, 2, 4]");
    assert_eq!(ev("record['a'].map do |x| x + 1 end", r), "[4, 2, 3]");
    assert_eq!(ev("record['a'].select { |x| x > 1 }", r), "[3, 2]");
    assert_eq!(ev("record['a'].reject { |x| x > 1 }", r), "[1]");
    assert_eq!(ev("record['a'].find { |x| x < 3 }", r), "1");
    assert_eq!(ev("record['a'].any? { |x| x > 2 }", r), "true");
    assert_eq!(ev("record['a'].all? { |x| x > 2 }", r), "false");
    assert_eq!(ev("record['a'].count { |x| x > 1 }", r), "2");
    assert_eq!(ev("record['a'].sort_by { |x| -x }", r), "[3, 2, 1]");
    assert_eq!(ev("record['a'].max_by { |x| x }", r), "3");
    assert_eq!(ev("record['kubernetes']['labels'].select { |k, v| k == 'app' }", r), "{\"app\" => \"web\"}");
    assert_eq!(ev("record['kubernetes']['labels'].map { |k, v| k }.join(',')", r), "\"app,tier\"");
    assert_eq!(ev("x = record['a'].first; y = x + 1; y * 2", r), "8");
    assert_eq!(ev("s = 'a'; record['a'].each { |x| s = s + x.to_s }; s", r), "\"a312\"");
    assert_eq!(ev("require 'time'; 1", r), "1");
    assert_eq!(ev("k = 1; record['a'].map { |k| k }; k", r), "1");
}

#[test]
fn time_parse_and_strptime() {
    // From ../shared/fixtures/realworld (github/188.conf, 189.conf, 191.conf, 226.conf).
    assert_eq!(ev("Time.strptime(record[\"ts\"].to_s, '%s').to_i", r#"{"ts":1700000000}"#), "1700000000");
    assert_eq!(
        ev(
            "Time.strptime(record[\"timestamp\"], '%Y-%m-%dT%H:%M:%S.%N%z').iso8601",
            r#"{"timestamp":"2024-03-05T10:20:30.123+0200"}"#
        ),
        "\"2024-03-05T10:20:30+02:00\""
    );
    assert_eq!(
        ev(
            "Time.strptime(record['t'], '%d/%b/%Y:%H:%M:%S.%N %z').utc.iso8601",
            r#"{"t":"05/Mar/2024:10:20:30.5 +0100"}"#
        ),
        "\"2024-03-05T09:20:30Z\""
    );
    assert_eq!(
        ev("Time.parse(record[\"time\"]).utc.strftime('%Y-%m-%d %H:%M:%S')", r#"{"time":"2024-03-05T10:20:30-05:00"}"#),
        "\"2024-03-05 15:20:30\""
    );
    assert_eq!(ev("Time.parse('2024-03-05 10:20:30 UTC').to_i", "{}"), "1709634030");
    assert!(ev("Time.strptime('x', '%Y')", "{}").starts_with("!invalid date or strptime format"));
    assert!(ev("Time.parse('no date here')", "{}").starts_with("!no time information"));
}

#[test]
fn limits_hold() {
    let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    assert!(compile(&deep).unwrap_err().to_string().contains("nested too deeply"));
    let chain = format!("'a'{}", ".to_s".repeat(200));
    assert!(compile(&chain).unwrap_err().to_string().contains("nested too deeply"));
    // Long operator chains are flat (no recursion per operand).
    let sum = vec!["1"; 3000].join(" + ");
    assert_eq!(e(&sum), "3000");
    assert!(compile(&"1+".repeat(20000)).unwrap_err().to_string().contains("longer than"));
    assert_eq!(e("'ab' * 100000000"), "!string longer than 16777216 bytes");
}

#[test]
fn interpolation_is_percent_q() {
    let env = cx_env();
    let get = move |k: &str| env.get(k).cloned();
    let cx = CompileCx { locals: &Local::ALL, env: &get, hostname: "h" };
    let segs = compile_interpolation("a #{tag_parts[0]} [b] \\t#{1+1}", &cx).unwrap();
    assert_eq!(segs.len(), 4);
    assert!(matches!(&segs[0], Segment::Lit(l) if l == b"a "));
    assert!(matches!(&segs[2], Segment::Lit(l) if l == b" [b] \t"));
    let err = compile_interpolation("a ] b", &cx).unwrap_err().to_string();
    assert!(err.contains("unbalanced ']'"), "{err}");
}

#[test]
fn random_code_never_panics() {
    let atoms = [
        "record",
        "[",
        "]",
        "\"k\"",
        "'v'",
        ".",
        "split",
        "(",
        ")",
        ",",
        "||",
        "&&",
        "?",
        ":",
        "nil",
        "1",
        "-",
        "+",
        "/x/",
        "gsub",
        "#{",
        "}",
        "{",
        "=>",
        "if",
        "end",
        ";",
        "tag_parts",
        "0",
        "..",
        "to_s",
        "time",
        "!",
        "%w[a]",
        "\\",
        " ",
        "Time",
        "at",
        "dig",
        "=~",
        "{|k,v|",
        "|",
        "map",
        "do",
        "x = ",
        "x",
        "(?<n>a)",
    ];
    let rec = spate_protocol::json::to_msgpack(br#"{"k":"a,b","v":[1,{"x":2}]}"#).unwrap();
    let parts: Vec<&[u8]> = vec![b"a", b"b"];
    let scope = Scope { record: RecordRef::new(&rec).unwrap(), tag: b"a.b", tag_parts: &parts, time: TIME };
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..30000 {
        let mut code = String::new();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for k in 0..(x % 14) {
            code.push_str(atoms[((x >> (k * 4)) % atoms.len() as u64) as usize]);
        }
        if let Ok(p) = compile(&code) {
            let _ = p.eval(&scope);
        }
    }
}
