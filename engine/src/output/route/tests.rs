//! route's tests: the cases of the plugin's test/plugin/test_out_route.rb (expected
//! values from that file) and the README's examples through a shard's router.

use crate::router::Router;
use crate::test_support::{batch, match_output, null_counts, plan_err, shard, Collect};

const CONFIG: &str = "<match t.**>\n  @type route\n  remove_tag_prefix t\n  <route t1.*>\n    remove_tag_prefix t1\n    add_tag_prefix yay\n  </route>\n  <route t2.*>\n    remove_tag_prefix t2\n    add_tag_prefix foo\n  </route>\n  <route **>\n    @label @primary\n    copy\n  </route>\n  <route **>\n    @label @backup\n  </route>\n</match>\n<label @primary>\n  <match **>\n    @type null\n  </match>\n</label>\n<label @backup>\n  <match **>\n    @type null\n  </match>\n</label>\n";

fn run(tag: &str) -> Vec<(usize, String, usize)> {
    let out = match_output(CONFIG, 0);
    let c = Collect::default();
    out.emit(&batch(tag, &[r#"{"a":1}"#, r#"{"a":2}"#]), &c).unwrap();
    c.shape()
}

#[test]
fn plugin_test_cases() {
    assert_eq!(run("t.t1.test"), [(0, "yay.test".to_string(), 2)]);
    assert_eq!(run("t.t2.test"), [(0, "foo.test".to_string(), 2)]);
    // test_emit_others: copy to @primary, then @backup.
    assert_eq!(run("t.t3.test"), [(1, "t3.test".to_string(), 2), (2, "t3.test".to_string(), 2)]);
    // Cached routes give the same answer.
    let out = match_output(CONFIG, 0);
    let c = Collect::default();
    for _ in 0..3 {
        out.emit(&batch("t.t1.x", &[r#"{"a":1}"#]), &c).unwrap();
    }
    assert_eq!(c.tags(), ["yay.x", "yay.x", "yay.x"]);
}

#[test]
fn prefixes_are_the_plugins() {
    // add_tag_prefix also applies when the prefix to remove is absent.
    let conf = "<match **>\n  @type route\n  <route **>\n    remove_tag_prefix worker\n    add_tag_prefix metrics.event\n  </route>\n</match>\n";
    let out = match_output(conf, 0);
    let c = Collect::default();
    out.emit(&batch("worker.a", &[r#"{}"#]), &c).unwrap();
    out.emit(&batch("other.a", &[r#"{}"#]), &c).unwrap();
    out.emit(&batch("worker", &[r#"{}"#]), &c).unwrap();
    assert_eq!(c.tags(), ["metrics.event.a", "metrics.event.other.a", "metrics.event.worker"]);
}

#[test]
fn readme_example_through_the_router() {
    let g = shard(
        "<match worker.**>\n  @type route\n  remove_tag_prefix worker\n  <route **>\n    add_tag_prefix metrics.event\n    copy\n  </route>\n  <route **>\n    add_tag_prefix backup\n    copy\n  </route>\n</match>\n<match metrics.event.**>\n  @type null\n  @id metrics\n</match>\n<match backup.**>\n  @type null\n  @id backup\n</match>\n",
    );
    Router::emit(&g.router, 0, batch("worker.x", &[r#"{}"#, r#"{}"#])).unwrap();
    assert_eq!(null_counts(&g), [("metrics".to_string(), 2), ("backup".to_string(), 2)]);
}

#[test]
fn config_errors() {
    assert!(plan_err("<match **>\n  @type route\n  <store>\n  </store>\n</match>\n")
        .contains("<store> section is not available"));
    assert!(plan_err("<match **>\n  @type route\n</match>\n").contains("at least one <route"));
    assert!(plan_err("<match **>\n  @type route\n  <route **>\n    @label @x\n  </route>\n</match>\n")
        .contains("@label @x refers to no"));
    assert!(plan_err("<match **>\n  @type route\n  match_cache_size 0\n  <route **>\n  </route>\n</match>\n")
        .contains("match_cache_size must be at least 1"));
}
