//! The binary as CI uses it: the issue's exact-count command with `sink --expect`,
//! `--slo` passing and failing (exit status and one line per failed objective),
//! `merge` of two generators' reports (summed counts, merged histograms), and the
//! `--report-svg` chart's series.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use spate_loadgen::report::{hist_from_str, Latency, RunReport};
use spate_loadgen::sink::{self, SinkConfig};

const BIN: &str = env!("CARGO_BIN_EXE_spate-loadgen");

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lg-ci-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lg(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn read_report(p: &Path) -> RunReport {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn the_issues_command_sends_and_acks_exactly_20000() {
    let port = spate_testkit::free_port();
    let target = format!("127.0.0.1:{port}");
    let mut sink = Command::new(BIN)
        .args(["sink", "--bind", &target, "--expect", "20000", "--timeout", "30s", "--quiet"])
        .spawn()
        .unwrap();
    spate_testkit::net::wait_listening(port, &mut sink, Duration::from_secs(20)).expect("the sink listens");
    let out = lg(&[
        "run",
        "--target",
        &target,
        "--mode",
        "message",
        "--batch",
        "500",
        "--connections",
        "2",
        "--ack",
        "--events",
        "20000",
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("events sent              20000"), "{err}");
    assert!(err.contains("events acked             20000"), "{err}");
    assert!(sink.wait().unwrap().success(), "the sink saw all 20000 events before its timeout");
}

#[test]
fn slo_pass_and_fail() {
    let s = sink::start(SinkConfig::default()).unwrap();
    let t = s.addr().to_string();
    let base = ["run", "--target", &t, "--batch", "100", "--ack", "--events", "3000", "--quiet"];
    let pass = lg(&[&base[..], &["--slo", "errors==0,events_acked>=3000,ack_p99<=10s"]].concat());
    assert!(pass.status.success(), "{}", String::from_utf8_lossy(&pass.stderr));
    let fail = lg(&[&base[..], &["--slo", "errors==0,ack_p50<=0us,events_per_sec>=1G"]].concat());
    assert_eq!(fail.status.code(), Some(3));
    let err = String::from_utf8_lossy(&fail.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("SLO failed:")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("SLO failed: ack_p50<=0us (measured "), "{err}");
    assert!(lines[1].starts_with("SLO failed: events_per_sec>=1G (measured "), "{err}");
    // A typo is refused before the run.
    let bad = lg(&[&base[..], &["--slo", "ack_p98<=5ms"]].concat());
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown metric \"ack_p98\""));
}

#[test]
fn merged_reports_sum_counts_and_merge_histograms() {
    let dir = tmpdir("merge");
    let s = sink::start(SinkConfig::default()).unwrap();
    let t = s.addr().to_string();
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    // Two generator processes at once against the same target.
    let run = |p: &Path, conns: &str, events: &str| {
        Command::new(BIN)
            .args(["run", "--target", &t, "--connections", conns, "--batch", "50", "--ack", "--rate", "4000"])
            .args(["--events", events, "--quiet", "--report", p.to_str().unwrap()])
            .spawn()
            .unwrap()
    };
    let (mut ga, mut gb) = (run(&a, "2", "3000"), run(&b, "3", "5000"));
    assert!(ga.wait().unwrap().success() && gb.wait().unwrap().success());
    let out = lg(&["merge", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: RunReport = serde_json::from_slice(&out.stdout).unwrap();
    let (ra, rb) = (read_report(&a), read_report(&b));
    assert_eq!((m.events_sent, m.events_acked, m.errors), (8000, 8000, 0));
    assert_eq!((m.connections, m.generators, m.connects), (5, 2, ra.connects + rb.connects));
    assert!((m.events_per_sec - ra.events_per_sec - rb.events_per_sec).abs() < 1e-6);
    // The merged histogram is the two histograms added: exact percentiles, not averages.
    let mut h = hist_from_str(&ra.ack_latency_hdr).unwrap();
    h.add(hist_from_str(&rb.ack_latency_hdr).unwrap()).unwrap();
    assert_eq!(m.ack_latency_us, Latency::from_hist(&h));
    assert_eq!(m.ack_latency_us.count, ra.ack_latency_us.count + rb.ack_latency_us.count);
    assert_eq!(m.fairness.connections, 5);
    let per_sec: u64 = m.per_second.iter().map(|s| s.events_sent).sum();
    assert_eq!(per_sec, 8000, "every event is in a per-second row");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_svg_has_the_series() {
    let dir = tmpdir("svg");
    let s = sink::start(SinkConfig::default()).unwrap();
    let svg = dir.join("run.svg");
    let out = lg(&[
        "run",
        "--target",
        &s.addr().to_string(),
        "--batch",
        "100",
        "--ack",
        "--rate",
        "20000",
        "--duration",
        "2500ms",
        "--quiet",
        "--report-svg",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    for id in ["events_sent", "events_acked", "ack_p50", "ack_p99", "ack_max"] {
        let at = text.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no {id} series"));
        let line = text[at..].lines().next().unwrap();
        // Two full seconds and the last half: three points.
        assert_eq!(line.matches(',').count(), 3, "{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
