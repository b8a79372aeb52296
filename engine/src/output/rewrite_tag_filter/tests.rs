//! rewrite_tag_filter's tests: the cases of the plugin's
//! test/plugin/test_out_rewrite_tag_filter.rb (expected tags from that file), and
//! routing through a shard's router.

use crate::router::Router;
use crate::test_support::{batch, match_output, null_counts, plan_err, shard, Collect};

fn conf(body: &str) -> String {
    format!("<match input.** game.** prefix.**>\n  @type rewrite_tag_filter\n{body}</match>\n")
}

/// Tags of the re-emitted events.
fn run(body: &str, tag: &str, recs: &[&str]) -> Vec<String> {
    let out = match_output(&conf(body), 0);
    let c = Collect::default();
    out.emit(&batch(tag, recs), &c).unwrap();
    c.tags()
}

#[test]
fn configure_errors() {
    assert!(plan_err(&conf("")).contains("missing rewriterules"));
    assert!(
        plan_err(&conf("  rewriterule1 foo ^foo$ new_tag\n")).contains("\"rewriterule<num>\" support has been dropped")
    );
    let dup = "  <rule>\n    key a\n    pattern x\n    tag t\n  </rule>\n  <rule>\n    key a\n    pattern x\n    tag u\n  </rule>\n";
    assert!(plan_err(&conf(dup)).contains("duplicated rewriterules"));
    let e = plan_err(&conf(
        "  remove_tag_prefix prefix\n  remove_tag_regexp /^prefix\\./\n  <rule>\n    key message\n    pattern .+\n    tag ${tag}\n  </rule>\n",
    ));
    assert!(e.contains("remove_tag_prefix and remove_tag_regexp are exclusive"), "{e}");
    let e = plan_err(&conf("  hostname_command uname -n\n  <rule>\n    key a\n    pattern x\n    tag t\n  </rule>\n"));
    assert!(e.contains("spate runs no commands"), "{e}");
    let e = plan_err(&conf("  <rule>\n    key a\n    pattern (x\n    tag t\n  </rule>\n"));
    assert!(e.starts_with("t.conf:3:3: pattern \"(x\""), "{e}");
    let e = plan_err(&conf("  <rule>\n    key a\n    pattern x\n    tag t\n    label @NOPE\n  </rule>\n"));
    assert!(e.contains("label @NOPE refers to no <label @NOPE> section"), "{e}");
    // Patterns with and without slashes, character classes.
    for p in ["/[sv]d[a-z]+\\d*$/", ".+"] {
        let ok = conf(&format!("  <rule>\n    key $['email']['domain']\n    pattern {p}\n    tag $2.$1\n  </rule>\n"));
        assert!(crate::test_support::plan_of(&ok).is_ok(), "{p}");
    }
}

const SIMPLE: &str = "  <rule>\n    key domain\n    pattern ^www\\.google\\.com$\n    tag site.Google\n  </rule>\n  <rule>\n    key domain\n    pattern ^news\\.google\\.com$\n    tag site.GoogleNews\n  </rule>\n  <rule>\n    key agent\n    pattern .* Mac OS X .*\n    tag agent.MacOSX\n  </rule>\n  <rule>\n    key agent\n    pattern (Googlebot|CustomBot)-([a-zA-Z]+)\n    tag agent.$1-$2\n  </rule>\n  <rule>\n    key domain\n    pattern ^(tagtest)\\.google\\.com$\n    tag site.${tag}.$1\n  </rule>\n";

#[test]
fn simple() {
    let tags = run(
        SIMPLE,
        "input.access",
        &[
            r#"{"domain":"www.google.com","path":"/foo/bar?key=value","agent":"Googlebot","response_time":1000000}"#,
            r#"{"domain":"news.google.com","path":"/","agent":"Googlebot-Mobile","response_time":900000}"#,
            r#"{"domain":"map.google.com","path":"/","agent":"Macintosh; Intel Mac OS X 10_7_4","response_time":900000}"#,
            r#"{"domain":"labs.google.com","path":"/","agent":"Mozilla/5.0 Googlebot-FooBar/2.1","response_time":900000}"#,
            r#"{"domain":"tagtest.google.com","path":"/","agent":"Googlebot","response_time":900000}"#,
            r#"{"domain":"noop.example.com"}"#,
        ],
    );
    assert_eq!(
        tags,
        ["site.Google", "site.GoogleNews", "agent.MacOSX", "agent.Googlebot-FooBar", "site.input.access.tagtest"]
    );
}

#[test]
fn remove_tag_prefix_and_regexp() {
    let rule = "  <rule>\n    key domain\n    pattern ^www\\.google\\.com$\n    tag ${tag}\n  </rule>\n";
    let rec = [r#"{"domain":"www.google.com"}"#];
    assert_eq!(run(&format!("  remove_tag_prefix input\n{rule}"), "input.access", &rec), ["access"]);
    assert_eq!(run(&format!("  remove_tag_prefix input.\n{rule}"), "input.access", &rec), ["access"]);
    let rx = "  remove_tag_regexp /^input\\.(apache|nginx)\\./\n  <rule>\n    key domain\n    pattern ^www\\.google\\.com$\n    tag rewritten.${tag}\n  </rule>\n";
    assert_eq!(run(rx, "input.apache.access", &rec), ["rewritten.access"]);
    assert_eq!(run(rx, "input.nginx.access", &rec), ["rewritten.access"]);
    assert_eq!(run(rx, "input.tomcat.access", &rec), ["rewritten.input.tomcat.access"]);
}

#[test]
fn hostnames() {
    let rule =
        "  <rule>\n    key domain\n    pattern ^www\\.google\\.com$\n    tag ${hostname}.__HOSTNAME__\n  </rule>\n";
    let rec = [r#"{"domain":"www.google.com"}"#];
    assert_eq!(
        run(&format!("  remove_tag_prefix input\n{rule}"), "input.access", &rec),
        ["myhost.example.com.myhost.example.com"]
    );
    assert_eq!(run(&format!("  hostname_command hostname -s\n{rule}"), "input.access", &rec), ["myhost.myhost"]);
}

#[test]
fn non_matching_with_invert() {
    let body = "  <rule>\n    key domain\n    pattern ^www\\..+$\n    tag not_start_with_www\n    invert true\n  </rule>\n  <rule>\n    key domain\n    pattern ^www\\..+$\n    tag start_with_www\n  </rule>\n";
    let tags = run(
        body,
        "input.access",
        &[r#"{"domain":"www.google.com"}"#, r#"{"path":"/"}"#, r#"{"domain":"maps.google.com"}"#],
    );
    assert_eq!(tags, ["start_with_www", "not_start_with_www", "not_start_with_www"]);
}

#[test]
fn split_by_tag() {
    let body = "  <rule>\n    key user_name\n    pattern ^Lynn Minmay$\n    tag vip.${tag_parts[1]}.remember_love\n  </rule>\n  <rule>\n    key user_name\n    pattern ^Harlock$\n    tag ${tag_parts[2]}.${tag_parts[0]}.${tag_parts[1]}\n  </rule>\n  <rule>\n    key  world\n    pattern ^(alice|chaos)$\n    tag application.${tag_parts[0]}.$1_server\n  </rule>\n  <rule>\n    key world\n    pattern ^[a-z]+$\n    tag application.${tag_parts[1]}.future_server\n  </rule>\n";
    let out = match_output(&conf(body), 0);
    let c = Collect::default();
    out.emit(
        &batch(
            "game.production.api",
            &[
                r#"{"user_id":"10000","world":"chaos","user_name":"gamagoori"}"#,
                r#"{"user_id":"10001","world":"chaos","user_name":"sanageyama"}"#,
                r#"{"user_id":"10002","world":"nehan","user_name":"inumuta"}"#,
                r#"{"user_id":"77777","world":"space","user_name":"Lynn Minmay"}"#,
                r#"{"user_id":"99999","world":"space","user_name":"Harlock"}"#,
            ],
        ),
        &c,
    )
    .unwrap();
    // emit_mode batch: one batch per new tag, in order of first appearance.
    assert_eq!(
        c.shape(),
        [
            (0, "application.game.chaos_server".to_string(), 2),
            (0, "application.production.future_server".to_string(), 1),
            (0, "vip.production.remember_love".to_string(), 1),
            (0, "api.game.production".to_string(), 1),
        ]
    );
}

#[test]
fn invalid_utf8_is_matched_scrubbed_and_kept_in_the_record() {
    let body = "  <rule>\n    key client_name\n    pattern (.+)\n    tag app.$1\n  </rule>\n";
    let out = match_output(&conf(body), 0);
    let mut rec = Vec::new();
    spate_protocol::encode::raw::map_header(&mut rec, 1);
    spate_protocol::encode::raw::str(&mut rec, b"client_name");
    spate_protocol::encode::raw::str(&mut rec, b"\xff");
    let mut e = Vec::new();
    spate_protocol::encode::entry(&mut e, crate::test_support::T0, spate_protocol::encode::TimeFormat::EventTime, &rec);
    let b = spate_protocol::EventBatch::from_entries(
        bytes::Bytes::from_static(b"input.activity"),
        bytes::Bytes::from(e),
        spate_protocol::EntriesFormat::Packed,
        spate_protocol::Mode::PackedForward,
        Default::default(),
        100,
    )
    .unwrap();
    let c = Collect::default();
    out.emit(&b, &c).unwrap();
    assert_eq!(c.tags(), ["app.?"]);
}

#[test]
fn nested_keys_capitalize_and_unchanged_tags() {
    for key in ["$.email.domain", "$['email']['domain']"] {
        let body = format!("  <rule>\n    key {key}\n    pattern ^(example)\\.(com)$\n    tag $2.$1\n  </rule>\n");
        let tags = run(
            &body,
            "input",
            &[
                r#"{"email":{"localpart":"john","domain":"example.com"}}"#,
                r#"{"email":{"localpart":"doe","domain":"example.jp"}}"#,
            ],
        );
        assert_eq!(tags, ["com.example"], "{key}");
    }
    let body = "  capitalize_regex_backreference yes\n  <rule>\n    key domain\n    pattern ^(www)\\.(google)\\.com$\n    tag site.$2.$1.$3\n  </rule>\n";
    assert_eq!(run(body, "input.x", &[r#"{"domain":"www.google.com"}"#]), ["site.Google.Www."]);
    // A rewrite to the same tag without a label is dropped (it would loop).
    let body = "  <rule>\n    key k\n    pattern .\n    tag ${tag}\n  </rule>\n";
    assert_eq!(run(body, "input.same", &[r#"{"k":"v"}"#]), Vec::<String>::new());
    // Numbers match as their to_s.
    let body = "  <rule>\n    key status\n    pattern ^(5\\d\\d)$\n    tag error.$1\n  </rule>\n";
    assert_eq!(run(body, "input.x", &[r#"{"status":503}"#, r#"{"status":200}"#]), ["error.503"]);
}

#[test]
fn labels_and_record_mode_through_the_router() {
    // From the plugin's "relabel" test: odd -> @odd, even -> @even (same tag), the rest
    // re-enter the top level with their new tag.
    let g = shard(
        "<match input.**>\n  @type rewrite_tag_filter\n  emit_mode record\n  <rule>\n    key key\n    pattern /^(odd)$/\n    tag $1\n    label @odd_label\n  </rule>\n  <rule>\n    key key\n    pattern /^(even)$/\n    tag ${tag}\n    label @even_label\n  </rule>\n  <rule>\n    key key\n    pattern /^(.*)$/\n    tag $1\n  </rule>\n</match>\n<match other>\n  @type null\n  @id top_other\n</match>\n<label @odd_label>\n  <match odd>\n    @type null\n    @id odd\n  </match>\n</label>\n<label @even_label>\n  <match input.x>\n    @type null\n    @id even\n  </match>\n</label>\n",
    );
    let recs = [r#"{"key":"odd"}"#, r#"{"key":"even"}"#, r#"{"key":"other"}"#, r#"{"key":"odd"}"#, r#"{"key":"even"}"#];
    Router::emit(&g.router, 0, batch("input.x", &recs)).unwrap();
    let counts = null_counts(&g);
    assert_eq!(counts, [("top_other".to_string(), 1), ("odd".to_string(), 2), ("even".to_string(), 2)]);
}

#[test]
fn inside_a_label_events_go_back_to_that_label() {
    let g = shard(
        "<match **>\n  @type null\n  @id top\n</match>\n<label @IN>\n  <match raw.**>\n    @type rewrite_tag_filter\n    <rule>\n      key level\n      pattern ^(\\w+)$\n      tag level.$1\n    </rule>\n  </match>\n  <match level.error>\n    @type null\n    @id errors\n  </match>\n  <match level.**>\n    @type null\n    @id others\n  </match>\n</label>\n",
    );
    Router::emit(
        &g.router,
        1,
        batch("raw.app", &[r#"{"level":"error"}"#, r#"{"level":"info"}"#, r#"{"level":"error"}"#]),
    )
    .unwrap();
    assert_eq!(null_counts(&g), [("top".to_string(), 0), ("errors".to_string(), 2), ("others".to_string(), 1)]);
}

#[test]
fn loops_are_bounded() {
    // Every event gets a new tag that matches the same rule again: the router stops it.
    let g = shard("<match **>\n  @type rewrite_tag_filter\n  <rule>\n    key k\n    pattern .\n    tag x.${tag}\n  </rule>\n</match>\n");
    Router::emit(&g.router, 0, batch("a", &[r#"{"k":"v"}"#])).unwrap();
}
