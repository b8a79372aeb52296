//! label_router's tests: the cases of the plugin's test/plugin/test_out_label_router.rb
//! (expected values from that file) and routing through a shard's router.

use crate::router::Router;
use crate::test_support::{batch, match_output, null_counts, plan_err, shard, Collect};

const LABELS: &str = "<label @a>\n  <match **>\n    @type null\n    @id a\n  </match>\n</label>\n<label @b>\n  <match **>\n    @type null\n    @id b\n  </match>\n</label>\n<label @default>\n  <match **>\n    @type null\n    @id default\n  </match>\n</label>\n";

fn conf(body: &str) -> String {
    format!("<match **>\n  @type label_router\n{body}</match>\n{LABELS}")
}

fn k8s(labels: &str, ns: &str) -> String {
    format!(r#"{{"kubernetes":{{"labels":{labels},"namespace_name":"{ns}"}}}}"#)
}

/// Which routes (by label index) an event with these labels/namespace goes to.
fn routes_of(body: &str, rec: &str) -> Vec<usize> {
    let out = match_output(&conf(body), 0);
    let c = Collect::default();
    out.emit(&batch("t", &[rec]), &c).unwrap();
    c.shape().into_iter().map(|(l, _, _)| l).collect()
}

#[test]
fn basic_configuration_selectors() {
    // Route 1 of the plugin's "basic configuration": app:app1 yes, app2:app2 excluded.
    let r1 = "  <route>\n    @label @a\n    <match>\n      labels app:app1\n    </match>\n    <match>\n      labels app2:app2\n      negate true\n    </match>\n    tag new_app_tag\n  </route>\n";
    assert_eq!(routes_of(r1, &k8s(r#"{"app":"app1"}"#, "")), [1]);
    assert_eq!(routes_of(r1, &k8s(r#"{"app2":"app2"}"#, "")), Vec::<usize>::new());
    assert_eq!(routes_of(r1, &k8s(r#"{"app3":"app2"}"#, "")), Vec::<usize>::new());
    let r2 = "  <route>\n    @label @a\n    <match>\n      labels app:app1\n      namespaces default,test\n    </match>\n    <match>\n      labels app:app2\n      namespaces system\n      negate true\n    </match>\n  </route>\n";
    assert_eq!(routes_of(r2, &k8s(r#"{"app":"app1"}"#, "test")), [1]);
    assert_eq!(routes_of(r2, &k8s(r#"{"app":"app2"}"#, "system")), Vec::<usize>::new());
    assert_eq!(routes_of(r2, &k8s(r#"{"app3":"app"}"#, "system")), Vec::<usize>::new());
    let r3 = "  <route>\n    @label @a\n    <match>\n      labels app:app3\n      namespaces_regex .*-system$,^kube-.*\n    </match>\n  </route>\n";
    for (ns, want) in [
        ("logging-system", true),
        ("logging-system1", false),
        ("system", false),
        ("1system", false),
        ("kube-ns", true),
        ("1kube-ns", false),
        ("kube", false),
        ("kube1", false),
    ] {
        assert_eq!(routes_of(r3, &k8s(r#"{"app":"app3"}"#, ns)).len() == 1, want, "{ns}");
    }
    let r5 = "  <route>\n    @label @a\n    <match>\n      labels app:nginx\n      namespaces dev,sandbox\n      container_names mycontainer\n    </match>\n  </route>\n";
    let with_container = |labels: &str, ns: &str, c: Option<&str>| {
        let c = c.map_or(String::new(), |c| format!(r#","container_name":"{c}""#));
        format!(r#"{{"kubernetes":{{"labels":{labels},"namespace_name":"{ns}"{c}}}}}"#)
    };
    assert_eq!(routes_of(r5, &with_container(r#"{"app":"nginx"}"#, "dev", Some("mycontainer"))), [1]);
    assert!(routes_of(r5, &with_container(r#"{"app":"nginx"}"#, "sandbox", None)).is_empty());
    assert!(routes_of(r5, &with_container(r#"{"app":"nginx"}"#, "dev", Some("mycontainer2"))).is_empty());
    let hosts = "  <route>\n    @label @b\n    <match>\n      hosts node-1\n    </match>\n  </route>\n";
    assert_eq!(routes_of(hosts, r#"{"kubernetes":{"host":"node-1"}}"#), [2]);
    assert!(routes_of(hosts, r#"{"kubernetes":{"host":"node-2"}}"#).is_empty());
}

#[test]
fn tags_namespace_labels_default_and_empty_routes() {
    // test_tag: the matching event gets the new tag; the other goes nowhere.
    let body =
        "  <route>\n    @label @a\n    <match>\n      labels app:app1\n    </match>\n    tag new_app_tag\n  </route>\n";
    let out = match_output(&conf(body), 0);
    let c = Collect::default();
    out.emit(&batch("test", &[&k8s(r#"{"app":"app1"}"#, "")]), &c).unwrap();
    out.emit(&batch("test2", &[&k8s(r#"{"app":"app2"}"#, "")]), &c).unwrap();
    assert_eq!(c.shape(), [(1, "new_app_tag".to_string(), 1)]);
    // test_namespaces_labels.
    let body = "  <route>\n    @label @a\n    <match>\n      namespace_labels matching:yes\n    </match>\n    tag matching\n  </route>\n";
    let out = match_output(&conf(body), 0);
    let c = Collect::default();
    out.emit(&batch("test", &[r#"{"kubernetes_namespace":{"labels":{"matching":"no"}}}"#]), &c).unwrap();
    out.emit(&batch("test2", &[r#"{"kubernetes_namespace":{"labels":{"matching":"yes"}}}"#]), &c).unwrap();
    assert_eq!(c.shape(), [(1, "matching".to_string(), 1)]);
    // test_multiple_events_batched: an empty <match> takes everything, in one batch.
    let out = match_output(&conf("  <route>\n    @label @a\n    <match>\n    </match>\n  </route>\n"), 0);
    let c = Collect::default();
    out.emit(&batch("test", &[r#"{"kubernetes":{}}"#, r#"{"kubernetes":{}}"#]), &c).unwrap();
    assert_eq!(c.shape(), [(1, "test".to_string(), 2)]);
    // test_default_router.
    let body = "  <route>\n    @label @a\n    <match>\n      labels app:app1\n    </match>\n    tag new_app_tag\n  </route>\n  default_route @default\n  default_tag \"new_tag\"\n";
    let out = match_output(&conf(body), 0);
    let c = Collect::default();
    out.emit(&batch("test", &[&k8s(r#"{"app":"app1"}"#, ""), &k8s(r#"{"app":"app2"}"#, "")]), &c).unwrap();
    assert_eq!(c.shape(), [(1, "new_app_tag".to_string(), 1), (3, "new_tag".to_string(), 1)]);
    // test_empty_router: empty selectors take every event.
    let body = "  <route>\n    @label @a\n    tag new_app_tag\n    <match>\n      labels\n      namespaces\n      namespaces_regex\n    </match>\n  </route>\n";
    let out = match_output(&conf(body), 0);
    let c = Collect::default();
    out.emit(&batch("test", &[&k8s(r#"{"app":"app1"}"#, "")]), &c).unwrap();
    out.emit(&batch("test2", &[&k8s(r#"{"app":"app2"}"#, "")]), &c).unwrap();
    assert_eq!(c.tags(), ["new_app_tag", "new_app_tag"]);
    // A route with no <match> takes nothing.
    assert!(routes_of("  <route>\n    @label @a\n  </route>\n", &k8s("{}", "")).is_empty());
}

#[test]
fn sticky_tags_and_record_mode() {
    // sticky_tags (default): the routes of a tag's first events hold for later events.
    let body = "  <route>\n    @label @a\n    <match>\n      labels app:x\n    </match>\n  </route>\n";
    let out = match_output(&conf(body), 0);
    let c = Collect::default();
    out.emit(&batch("pod.1", &[&k8s(r#"{"app":"x"}"#, "")]), &c).unwrap();
    out.emit(&batch("pod.1", &[&k8s(r#"{"app":"other"}"#, ""), &k8s("{}", "")]), &c).unwrap();
    assert_eq!(c.shape(), [(1, "pod.1".to_string(), 1), (1, "pod.1".to_string(), 2)]);
    let out = match_output(&conf(&format!("  sticky_tags false\n{body}")), 0);
    let c = Collect::default();
    out.emit(&batch("pod.1", &[&k8s(r#"{"app":"x"}"#, "")]), &c).unwrap();
    out.emit(&batch("pod.1", &[&k8s(r#"{"app":"other"}"#, "")]), &c).unwrap();
    assert_eq!(c.shape(), [(1, "pod.1".to_string(), 1)]);
    // A tag that went nowhere is looked at again.
    let out = match_output(&conf(body), 0);
    let c = Collect::default();
    out.emit(&batch("pod.2", &[&k8s("{}", "")]), &c).unwrap();
    out.emit(&batch("pod.2", &[&k8s(r#"{"app":"x"}"#, "")]), &c).unwrap();
    assert_eq!(c.shape(), [(1, "pod.2".to_string(), 1)]);
    // emit_mode record: one event at a time, in order, to every matching route.
    let two = "  emit_mode record\n  <route>\n    @label @a\n    <match>\n      namespaces n1\n    </match>\n  </route>\n  <route>\n    @label @b\n    <match>\n    </match>\n  </route>\n";
    let out = match_output(&conf(two), 0);
    let c = Collect::default();
    out.emit(&batch("t", &[&k8s("{}", "n1"), &k8s("{}", "n2")]), &c).unwrap();
    assert_eq!(c.shape(), [(1, "t".to_string(), 1), (2, "t".to_string(), 1), (2, "t".to_string(), 1)]);
}

#[test]
fn config_errors() {
    let e = plan_err(&conf("  metrics true\n  <route>\n    @label @a\n  </route>\n"));
    assert!(e.contains("metrics true: its prometheus counters are not supported"), "{e}");
    let e = plan_err(&conf("  <route>\n    @label @nope\n  </route>\n"));
    assert!(e.contains("@label \"@nope\" refers to no <label @nope> section"), "{e}");
    let e = plan_err(&conf("  default_tag x\n  <route>\n    @label @a\n  </route>\n"));
    assert!(e.contains("default_route \"\" refers to no <label"), "{e}");
    let e =
        plan_err(&conf("  <route>\n    @label @a\n    <match>\n      namespaces_regex (x\n    </match>\n  </route>\n"));
    assert!(e.contains("namespaces_regex \"(x\""), "{e}");
}

#[test]
fn through_the_router_like_fluent_operator() {
    // fluent-operator's rendered config (realworld fluent-operator/*.conf), with null
    // outputs in place of opensearch.
    let g = shard(
        "<match **>\n  @id main\n  @type label_router\n  <route>\n    @label @a\n    <match>\n      namespaces default,kube-system\n    </match>\n  </route>\n  <route>\n    @label @ROOT\n    tag rerouted\n    <match>\n      namespaces other\n    </match>\n  </route>\n</match>\n<label @a>\n  <match **>\n    @type null\n    @id a\n  </match>\n</label>\n",
    );
    let recs = [k8s("{}", "default"), k8s("{}", "kube-system"), k8s("{}", "other"), k8s("{}", "nope")];
    let recs: Vec<&str> = recs.iter().map(String::as_str).collect();
    Router::emit(&g.router, 0, batch("kube.var.log.containers.x", &recs)).unwrap();
    // `@ROOT`: the "other" event re-enters the top level as "rerouted", where it takes
    // the second route again: a loop, which the router cuts with an error line. "nope"
    // goes nowhere. Only @a counts.
    assert_eq!(null_counts(&g), [("a".to_string(), 2)]);
}
