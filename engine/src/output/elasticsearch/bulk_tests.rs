//! Bulk bodies compared with what fluent-plugin-elasticsearch sends for the same
//! configuration and events. Expected bytes are derived from its source
//! (lib/fluent/plugin/out_elasticsearch.rb `process_message` /
//! `append_record_to_messages`, out_elasticsearch_data_stream.rb `write`; JSON written
//! by `JSON.generate`: compact, keys in insertion order) and the assertions of
//! test/plugin/test_out_elasticsearch.rb and test_out_elasticsearch_data_stream.rb
//! (uken/fluent-plugin-elasticsearch at 643578c); each test names the Ruby test it
//! follows.

use super::*;
use crate::config::{parse_str, EvalContext};
use crate::output::elasticsearch::conf::{DocConf, Flavor};
use spate_protocol::encode::raw;

fn conf_of(body: &str, flavor: Flavor, ds: bool) -> DocConf {
    let text = format!("<match x>\n{body}\n</match>\n");
    let root =
        parse_str(&text, "t.conf", std::path::Path::new("."), &EvalContext::with_env("h", None, Default::default()))
            .unwrap();
    DocConf::from_element(&root.elements[0], flavor, ds).unwrap()
}

fn es(body: &str) -> DocConf {
    conf_of(body, Flavor::Elasticsearch, false)
}

/// Packed entries from `(time, JSON record)` pairs.
fn entries(evs: &[(EventTime, &str)]) -> Vec<u8> {
    let mut d = Vec::new();
    for (t, j) in evs {
        raw::array_header(&mut d, 2);
        raw::event_time(&mut d, *t);
        d.extend_from_slice(&spate_protocol::json::to_msgpack(j.as_bytes()).unwrap());
    }
    d
}

const ID: [u8; 16] = [0xab; 16];
const SAMPLE: &str = r#"{"age":26,"request_id":"42","parent_id":"parent","routing_id":"routing"}"#;
const NESTED: &str = r#"{"nested":{"age":26,"parent_id":"parent","routing_id":"routing","request_id":"42"}}"#;

fn ctx(tag: &str) -> ChunkCtx<'_> {
    ChunkCtx { tag: tag.as_bytes(), timekey: None, timekey_zone: Zone::Utc, vars: &[], chunk_id: &ID }
}

fn run_ctx(c: &DocConf, major: u32, cx: &ChunkCtx<'_>, evs: &[(EventTime, &str)]) -> Encoded {
    let ops = Ops::new(c);
    let enc = Encoder { conf: c, ops: &ops, major };
    enc.encode(cx, &entries(evs), None, &mut Scratch::default())
}

fn run(c: &DocConf, major: u32, evs: &[(EventTime, &str)]) -> Encoded {
    run_ctx(c, major, &ctx("test"), evs)
}

fn body(e: &Encoded) -> String {
    assert_eq!(e.requests.len(), 1, "{:?}", e.requests);
    String::from_utf8(e.requests[0].body.clone()).unwrap()
}

const T0: EventTime = EventTime::new(1_461_587_696, 0); // 2016-04-25 12:34:56 UTC

/// `Time.at(t).iso8601(p)` in this process's local zone.
fn local_iso(t: EventTime, p: u32) -> String {
    let mut o = Vec::new();
    DateTime { sec: t.sec as i64, nsec: t.nsec, zone: Zone::Local }.write_iso8601(&mut o, p);
    String::from_utf8(o).unwrap()
}

// test_writes_with_record_metadata and test_writes_to_default_type: the action line per
// version (5/6: type_name "fluentd"; 7: "_doc"; 8: no _type).
#[test]
fn default_action_per_version_and_chunk_id() {
    let c = es("<metadata>\ninclude_chunk_id true\nchunk_id_key metadata_key\n</metadata>");
    let hex = "ab".repeat(16);
    let src =
        format!(r#"{{"age":26,"request_id":"42","parent_id":"parent","routing_id":"routing","metadata_key":"{hex}"}}"#);
    for (major, action) in [
        (8, r#"{"index":{"_index":"fluentd"}}"#),
        (7, r#"{"index":{"_index":"fluentd","_type":"_doc"}}"#),
        (6, r#"{"index":{"_index":"fluentd","_type":"fluentd"}}"#),
        (5, r#"{"index":{"_index":"fluentd","_type":"fluentd"}}"#),
    ] {
        assert_eq!(body(&run(&c, major, &[(T0, SAMPLE)])), format!("{action}\n{src}\n"));
    }
}

// test_writes_to_speficied_type*, test_writes_to_speficied_type_with_suppress_type_name.
#[test]
fn type_name_rules() {
    let c = es("type_name mytype.${tag}");
    assert!(body(&run(&c, 6, &[(T0, "{}")])).starts_with(r#"{"index":{"_index":"fluentd","_type":"mytype.test"}}"#));
    assert!(body(&run(&c, 7, &[(T0, "{}")])).starts_with(r#"{"index":{"_index":"fluentd","_type":"_doc"}}"#));
    assert!(body(&run(&c, 8, &[(T0, "{}")])).starts_with(r#"{"index":{"_index":"fluentd"}}"#));
    let c = es("type_name mytype.${tag}\nsuppress_type_name true");
    assert!(body(&run(&c, 6, &[(T0, "{}")])).starts_with(r#"{"index":{"_index":"fluentd","_type":"mytype.test"}}"#));
    // meta["_type"] = nil below version 8: JSON null.
    assert!(body(&run(&c, 7, &[(T0, "{}")])).starts_with(r#"{"index":{"_index":"fluentd","_type":null}}"#));
    // OpenSearch: "_doc" on 1.x unless suppressed, nothing from 2.x on.
    let c = conf_of("", Flavor::OpenSearch, false);
    assert!(body(&run(&c, 1, &[(T0, "{}")])).starts_with(r#"{"index":{"_index":"fluentd","_type":"_doc"}}"#));
    assert!(body(&run(&c, 2, &[(T0, "{}")])).starts_with(r#"{"index":{"_index":"fluentd"}}"#));
}

// test_writes_to_logstash_index: 2015-06-01 00:00:01 +01:00 goes to the UTC day before.
// test_adds_timestamp_when_logstash / test_uses_nanosecond_precision_by_default:
// @timestamp is Time.at(time).iso8601(9), appended to the record.
#[test]
fn logstash_format() {
    let t = EventTime::new(1_433_113_201, 123_456_789); // 2015-05-31T23:00:01Z
    let c = es("logstash_format true");
    let b = body(&run(&c, 8, &[(t, SAMPLE)]));
    let want_src = format!(
        r#"{{"age":26,"request_id":"42","parent_id":"parent","routing_id":"routing","@timestamp":"{}"}}"#,
        local_iso(t, 9)
    );
    assert_eq!(b, format!("{{\"index\":{{\"_index\":\"logstash-2015.05.31\"}}}}\n{want_src}\n"));
    // test_uses_subsecond_precision_when_configured.
    let c = es("logstash_format true\ntime_precision 3");
    assert!(body(&run(&c, 8, &[(t, "{}")])).contains(&format!("\"@timestamp\":\"{}\"", local_iso(t, 3))));
    // Prefix, separator, dateformat; upper case is lowered
    // (test_writes_to_logstash_index_with_specified_prefix_and_separator,
    // test_writes_to_logstash_index_with_specified_prefix_uppercase,
    // test_writes_to_logstash_index_with_specified_dateformat).
    let c =
        es("logstash_format true\nlogstash_prefix MyPrefix\nlogstash_prefix_separator _\nlogstash_dateformat %Y.%m");
    assert!(body(&run(&c, 8, &[(t, "{}")])).starts_with(r#"{"index":{"_index":"myprefix_2015.05"}}"#));
    // test_writes_to_logstash_index_with_specified_prefix_and_tag_placeholder.
    let c = es("logstash_format true\nlogstash_prefix myprefix-${tag}");
    assert!(body(&run(&c, 8, &[(t, "{}")])).starts_with(r#"{"index":{"_index":"myprefix-test-2015.05.31"}}"#));
    // A time placeholder in index_name with a time chunk key
    // (test_writes_to_speficied_index_with_time_placeholder_format).
    let c = es("index_name myindex.%Y.%m.%d");
    let cx = ChunkCtx { timekey: Some(1_433_116_800), ..ctx("test") }; // 2015-06-01 UTC
    assert!(body(&run_ctx(&c, 8, &cx, &[(t, "{}")])).starts_with(r#"{"index":{"_index":"myindex.2015.06.01"}}"#));
    // Two days in one chunk: one request each (fluentd's RequestInfo per index).
    let c = es("logstash_format true\nutc_index true");
    let e = run(&c, 8, &[(t, "{\"a\":1}"), (EventTime::new(t.sec + 3600, 0), "{\"a\":2}"), (t, "{\"a\":3}")]);
    assert_eq!(e.requests.len(), 2);
    assert_eq!(e.requests[0].items.len(), 2);
    assert!(String::from_utf8_lossy(&e.requests[1].body).starts_with(r#"{"index":{"_index":"logstash-2015.06.01"}}"#));
}

// test_uses_custom_timestamp_when_included_in_record, test_uses_custom_time_key,
// test_uses_custom_time_key_with_format, test_uses_custom_time_key_exclude_timekey,
// test_uses_custom_time_key_format_logs_an_error.
#[test]
fn time_keys() {
    let c = es("logstash_format true");
    let b = body(&run(&c, 8, &[(T0, r#"{"@timestamp":"2001-02-03T00:00:00+00:00","a":1}"#)]));
    assert_eq!(
        b,
        "{\"index\":{\"_index\":\"logstash-2001.02.03\"}}\n{\"@timestamp\":\"2001-02-03T00:00:00+00:00\",\"a\":1}\n"
    );
    let c = es("logstash_format true\ntime_key vtm");
    let b = body(&run(&c, 8, &[(T0, r#"{"vtm":"2001-02-03T00:00:00.000000000+00:00"}"#)]));
    assert_eq!(
        b,
        "{\"index\":{\"_index\":\"logstash-2001.02.03\"}}\n{\"vtm\":\"2001-02-03T00:00:00.000000000+00:00\",\"@timestamp\":\"2001-02-03T00:00:00.000000000+00:00\"}\n"
    );
    let c = es("logstash_format true\ntime_key_format %Y-%m-%d %H:%M:%S.%N%z\ntime_key vtm");
    let b = body(&run(&c, 8, &[(T0, r#"{"vtm":"2001-02-03 13:14:01.673+02:00"}"#)]));
    assert_eq!(
        b,
        "{\"index\":{\"_index\":\"logstash-2001.02.03\"}}\n{\"vtm\":\"2001-02-03 13:14:01.673+02:00\",\"@timestamp\":\"2001-02-03T13:14:01.673000000+02:00\"}\n"
    );
    let c = es("logstash_format true\ntime_key vtm\ntime_key_exclude_timestamp true");
    let b = body(&run(&c, 8, &[(T0, r#"{"vtm":"2001-02-03T00:00:00+00:00"}"#)]));
    assert_eq!(b, "{\"index\":{\"_index\":\"logstash-2001.02.03\"}}\n{\"vtm\":\"2001-02-03T00:00:00+00:00\"}\n");
    // An unparsable @timestamp: an error event on time_parse_error_tag, the event time
    // names the index, the record keeps its value.
    let c = es("logstash_format true\ntime_key_format %Y-%m-%dT%H:%M:%S.%N%z");
    let e = run(&c, 8, &[(T0, r#"{"@timestamp":"2001/02/03 13:14:01,673+02:00"}"#)]);
    assert_eq!(
        body(&e),
        "{\"index\":{\"_index\":\"logstash-2016.04.25\"}}\n{\"@timestamp\":\"2001/02/03 13:14:01,673+02:00\"}\n"
    );
    assert_eq!(e.reports.len(), 1);
    assert_eq!(e.reports[0].tag, b"Fluent::ElasticsearchOutput::TimeParser.error");
    assert!(e.error_entries.is_empty(), "a report, not a failed event");
    // include_timestamp without logstash_format: @timestamp but index_name.
    let c = es("include_timestamp true\nindex_name test");
    let b = body(&run(&c, 8, &[(T0, "{}")]));
    assert_eq!(b, format!("{{\"index\":{{\"_index\":\"test\"}}}}\n{{\"@timestamp\":\"{}\"}}\n", local_iso(T0, 9)));
}

// test_adds_id_key_when_configured, NestedIdKeyTest, test_adds_parent_key_when_configured,
// AddsRoutingKeyWhenConfiguredTest (es6: _routing, es7: routing),
// test_doesnt_add_id_key_if_missing_when_configured.
#[test]
fn meta_keys() {
    let c = es("id_key request_id\nparent_key parent_id\nrouting_key routing_id");
    let b = body(&run(&c, 7, &[(T0, SAMPLE)]));
    assert!(b.starts_with(
        r#"{"index":{"_index":"fluentd","_type":"_doc","_id":"42","_parent":"parent","routing":"routing"}}"#
    ));
    let b = body(&run(&c, 6, &[(T0, SAMPLE)]));
    assert!(b.contains(r#""_routing":"routing"}}"#), "{b}");
    for k in ["nested.request_id", "$.nested.request_id", "$['nested']['request_id']"] {
        let c = es(&format!("id_key {k}"));
        assert!(body(&run(&c, 8, &[(T0, NESTED)])).starts_with(r#"{"index":{"_index":"fluentd","_id":"42"}}"#), "{k}");
    }
    let c = es("id_key another_request_id");
    assert!(body(&run(&c, 8, &[(T0, SAMPLE)])).starts_with(r#"{"index":{"_index":"fluentd"}}"#));
    // Non-string ids are written as JSON values.
    let c = es("id_key id\npipeline p-${tag}");
    assert!(body(&run(&c, 8, &[(T0, r#"{"id":7}"#)]))
        .starts_with(r#"{"index":{"_index":"fluentd","pipeline":"p-test","_id":7}}"#));
}

// test_writes_to_target_index_key*, test_remove_one_key, test_remove_multi_keys,
// test_adds_tag_key_when_configured, test_include_index_in_url.
#[test]
fn target_index_remove_keys_tag_key() {
    let c = es("target_index_key @target_index");
    let b = body(&run(&c, 8, &[(T0, r#"{"a":1,"@target_index":"LOCAL-OVERRIDE","b":2}"#)]));
    assert_eq!(b, "{\"index\":{\"_index\":\"local-override\"}}\n{\"a\":1,\"b\":2}\n");
    let b = body(&run(&c, 8, &[(T0, r#"{"a":1}"#)]));
    assert_eq!(b, "{\"index\":{\"_index\":\"fluentd\"}}\n{\"a\":1}\n");
    let c = es("target_index_key kubernetes.idx");
    let b = body(&run(&c, 8, &[(T0, r#"{"kubernetes":{"idx":"k8s","ns":"x"},"m":1}"#)]));
    assert_eq!(b, "{\"index\":{\"_index\":\"k8s\"}}\n{\"kubernetes\":{\"ns\":\"x\"},\"m\":1}\n");
    let e = run(&c, 8, &[(T0, r#"{"kubernetes":{"idx":5}}"#)]);
    assert!(e.requests.is_empty());
    assert_eq!(e.error_entries.len(), 1);
    assert!(e.failed[0].reason.contains("not a string"), "{}", e.failed[0].reason);
    let c = es("remove_keys key1, key2\ninclude_tag_key true");
    let b = body(&run(&c, 8, &[(T0, r#"{"key1":"v1","key2":"v2","tag":"old","key3":3}"#)]));
    assert_eq!(b, "{\"index\":{\"_index\":\"fluentd\"}}\n{\"tag\":\"test\",\"key3\":3}\n");
    // Deleted and set again: tag_key also in remove_keys is removed last.
    let c = es("include_tag_key true\ntag_key t\nremove_keys t");
    assert_eq!(body(&run(&c, 8, &[(T0, r#"{"a":1}"#)])), "{\"index\":{\"_index\":\"fluentd\"}}\n{\"a\":1}\n");
    let c = es("index_name logstash-2018.01.01\ninclude_index_in_url true");
    let e = run(&c, 8, &[(T0, r#"{"a":1}"#)]);
    assert_eq!(e.requests[0].index.as_deref(), Some("logstash-2018.01.01"));
    assert_eq!(body(&e), "{\"index\":{}}\n{\"a\":1}\n");
}

// test_update_should_*, test_upsert_should_*, test_create_should_*, test_suppress_doc_wrap*.
#[test]
fn write_operations() {
    for op in ["create", "update", "upsert"] {
        let e = run(&es(&format!("write_operation {op}")), 8, &[(T0, SAMPLE)]);
        assert!(e.requests.is_empty() && e.missing_id == 1, "{op}: records without an id are dropped");
    }
    let e = run(&es("write_operation create\nemit_error_for_missing_id true"), 8, &[(T0, SAMPLE)]);
    assert_eq!(e.failed[0].reason, "Missing '_id' field. Write operation is create");
    let c = es("write_operation create\nid_key request_id");
    assert_eq!(
        body(&run(&c, 8, &[(T0, SAMPLE)])),
        format!("{{\"create\":{{\"_index\":\"fluentd\",\"_id\":\"42\"}}}}\n{SAMPLE}\n")
    );
    let c = es("write_operation update\nid_key request_id");
    assert_eq!(
        body(&run(&c, 8, &[(T0, SAMPLE)])),
        format!("{{\"update\":{{\"_index\":\"fluentd\",\"_id\":\"42\"}}}}\n{{\"doc\":{SAMPLE}}}\n")
    );
    let c = es("write_operation update\nid_key request_id\nremove_keys_on_update parent_id");
    assert_eq!(
        body(&run(&c, 8, &[(T0, SAMPLE)])),
        "{\"update\":{\"_index\":\"fluentd\",\"_id\":\"42\"}}\n{\"doc\":{\"age\":26,\"request_id\":\"42\",\"routing_id\":\"routing\"}}\n"
    );
    let c = es("write_operation upsert\nid_key request_id");
    assert_eq!(
        body(&run(&c, 8, &[(T0, SAMPLE)])),
        format!(
            "{{\"update\":{{\"_index\":\"fluentd\",\"_id\":\"42\"}}}}\n{{\"doc\":{SAMPLE},\"doc_as_upsert\":true}}\n"
        )
    );
    let c = es("write_operation upsert\nid_key id\nremove_keys_on_update foo,baz");
    assert_eq!(
        body(&run(&c, 8, &[(T0, r#"{"id":1,"foo":"bar","baz":"quix","zip":"zam"}"#)])),
        "{\"update\":{\"_index\":\"fluentd\",\"_id\":1}}\n{\"doc\":{\"id\":1,\"zip\":\"zam\"},\"upsert\":{\"id\":1,\"foo\":\"bar\",\"baz\":\"quix\",\"zip\":\"zam\"}}\n"
    );
    // The record's key list wins over the configuration and is removed from both.
    let c =
        es("write_operation upsert\nid_key id\nremove_keys_on_update foo,bar\nremove_keys_on_update_key keys_to_skip");
    assert_eq!(
        body(&run(&c, 8, &[(T0, r#"{"id":1,"foo":"bar","baz":"quix","keys_to_skip":["baz"]}"#)])),
        "{\"update\":{\"_index\":\"fluentd\",\"_id\":1}}\n{\"doc\":{\"id\":1,\"foo\":\"bar\"},\"upsert\":{\"id\":1,\"foo\":\"bar\",\"baz\":\"quix\"}}\n"
    );
    let c = es("write_operation upsert\nid_key id\nremove_keys id\nsuppress_doc_wrap true");
    assert_eq!(
        body(&run(&c, 8, &[(T0, r#"{"id":2,"script":{"source":"s"},"upsert":{"counter":1}}"#)])),
        "{\"update\":{\"_index\":\"fluentd\",\"_id\":2}}\n{\"script\":{\"source\":\"s\"},\"upsert\":{\"counter\":1}}\n"
    );
}

// test_nested_record_with_flattening_on.
#[test]
fn flatten_hashes() {
    let c = es("flatten_hashes true\nflatten_hashes_separator |");
    let b = body(&run(&c, 8, &[(T0, r#"{"foo":{"bar":"baz"},"people":[{"age":"25"},{"age":"30"}]}"#)]));
    assert_eq!(
        b,
        "{\"index\":{\"_index\":\"fluentd\"}}\n{\"foo|bar\":\"baz\",\"people\":[{\"age\":\"25\"},{\"age\":\"30\"}]}\n"
    );
}

// test_out_elasticsearch_data_stream.rb: `{"create":{}}` per record, POST
// /<data_stream_name>/_bulk, @timestamp from the event time unless present, tag_key,
// id_key (plain key), remove_keys.
#[test]
fn data_stream() {
    let c = conf_of(
        "data_stream_name foo-${tag}\ninclude_tag_key true\nid_key id\nremove_keys r",
        Flavor::Elasticsearch,
        true,
    );
    let e = run(&c, 8, &[(T0, r#"{"id":"x","r":1,"m":"hi"}"#), (T0, r#"{"@timestamp":"2001-02-03","m":2}"#)]);
    assert_eq!(e.requests[0].index.as_deref(), Some("foo-test"));
    assert_eq!(
        body(&e),
        format!(
            "{{\"create\":{{\"_id\":\"x\"}}}}\n{{\"id\":\"x\",\"m\":\"hi\",\"tag\":\"test\",\"@timestamp\":\"{}\"}}\n{{\"create\":{{}}}}\n{{\"@timestamp\":\"2001-02-03\",\"m\":2,\"tag\":\"test\"}}\n",
            local_iso(T0, 9)
        )
    );
    let root = parse_str(
        "<match x>\ndata_stream_name Foo\n</match>\n",
        "t.conf",
        std::path::Path::new("."),
        &EvalContext::with_env("h", None, Default::default()),
    )
    .unwrap();
    let e = DocConf::from_element(&root.elements[0], Flavor::Elasticsearch, true).unwrap_err();
    assert!(e.to_string().contains("'data_stream_name' must be lowercase only"), "{e}");
}

#[test]
fn subsets_and_splits() {
    let c = es("bulk_message_request_threshold 100");
    let evs: Vec<(EventTime, &str)> =
        (0..5).map(|_| (T0, r#"{"message":"0123456789012345678901234567890123456789"}"#)).collect();
    let data = entries(&evs);
    let ops = Ops::new(&c);
    let enc = Encoder { conf: &c, ops: &ops, major: 8 };
    let all = enc.encode(&ctx("t"), &data, None, &mut Scratch::default());
    // Each action+source is 30 + 53 bytes: a request is sent once it passes 100 bytes.
    assert_eq!(all.requests.iter().map(|r| r.items.len()).collect::<Vec<_>>(), vec![2, 2, 1]);
    let items: Vec<_> = all.requests.iter().flat_map(|r| r.items.clone()).collect();
    assert_eq!(items.len(), 5);
    // Re-encoding only items 1 and 4 (a partial retry) gives just those documents.
    let only = vec![items[1].clone(), items[4].clone()];
    let sub = enc.encode(&ctx("t"), &data, Some(&only), &mut Scratch::default());
    assert_eq!(sub.events, 2);
    assert_eq!(sub.requests.iter().flat_map(|r| r.items.clone()).collect::<Vec<_>>(), only);
}
