//! out_file through a live spate: events sent over Forward come out as fluentd's
//! out_file lines (time, tag, JSON), in files named per time slice as fluentd names
//! them, checked line by line; also `append`, `<format json>` with `<inject>`, and
//! `compress gzip`.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use spate_protocol::encode::TimeFormat;
use spate_protocol::EventTime;

/// 2016-04-25 12:00:00 UTC and the next day.
const DAY1: u32 = 1_461_585_600;
const DAY2: u32 = DAY1 + 86_400;

fn send(spate: &Spate, tag: &str, times: &[u32], id: &str) {
    let events = times
        .iter()
        .enumerate()
        .map(|(i, t)| (EventTime::new(*t, 500_000_000), TimeFormat::EventTime, kv_record(i as u64)));
    let f = acked_frame(tag.as_bytes(), &wire::entries(events), times.len() as u64, id);
    let mut c = Client::connect(spate.addr());
    c.send(&f).unwrap();
    assert_eq!(c.read_ack().unwrap(), id.as_bytes());
}

fn wait_files(pattern: &str, n: usize) -> Vec<std::path::PathBuf> {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let mut v: Vec<_> = glob::glob(pattern).unwrap().flatten().collect();
        v.sort();
        if v.len() >= n || Instant::now() > end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn out_file_lines_and_names_as_fluentd_writes_them() {
    let dir = tempdir::Dir::new("outfile");
    let d = dir.path().display().to_string();
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n\
         <match plain.**>\n  @type file\n  path {d}/plain/${{tag}}\n  utc true\n\
         <buffer tag,time>\n    timekey 1d\n    timekey_use_utc true\n    flush_mode interval\n    flush_interval 100ms\n  </buffer>\n</match>\n\
         <match json.**>\n  @type file\n  path {d}/json/out.*.txt\n  append true\n  compress gzip\n\
         <format>\n    @type json\n  </format>\n  <inject>\n    tag_key tag\n    time_key time\n    time_type unixtime\n  </inject>\n\
         <buffer time>\n    timekey 1d\n    timekey_use_utc true\n    flush_mode interval\n    flush_interval 100ms\n  </buffer>\n</match>\n"
    );
    let spate = Spate::start("outfile", &conf, Stdio::null());
    send(&spate, "plain.app", &[DAY1, DAY1 + 1, DAY2], "p1");
    send(&spate, "json.app", &[DAY1, DAY2], "j1");
    send(&spate, "json.app", &[DAY1 + 5], "j2");

    let plain = wait_files(&format!("{d}/plain/plain.app.*.log"), 2);
    assert_eq!(
        plain.iter().map(|p| p.file_name().unwrap().to_string_lossy().to_string()).collect::<Vec<_>>(),
        vec!["plain.app.20160425_0.log", "plain.app.20160426_0.log"]
    );
    let day1 = std::fs::read_to_string(&plain[0]).unwrap();
    assert_eq!(
        day1,
        "2016-04-25T12:00:00Z\tplain.app\t{\"k\":0,\"msg\":\"event 0\"}\n2016-04-25T12:00:01Z\tplain.app\t{\"k\":1,\"msg\":\"event 1\"}\n"
    );
    assert_eq!(
        std::fs::read_to_string(&plain[1]).unwrap(),
        "2016-04-26T12:00:00Z\tplain.app\t{\"k\":2,\"msg\":\"event 2\"}\n"
    );

    // Both json chunks of day 1 append to one gzip file (one member each).
    let end = Instant::now() + Duration::from_secs(15);
    let lines = loop {
        let files = wait_files(&format!("{d}/json/out.*.txt.gz"), 2);
        let mut all = Vec::new();
        for f in &files {
            let raw = std::fs::read(f).unwrap();
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&raw[..]), &mut s);
            all.push((f.file_name().unwrap().to_string_lossy().to_string(), s));
        }
        if all.iter().map(|(_, s)| s.lines().count()).sum::<usize>() >= 3 || Instant::now() > end {
            break all;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_, _, log) = spate.stop();
    assert_eq!(lines.len(), 2, "{lines:?}\n{log}");
    assert_eq!(lines[0].0, "out.20160425.txt.gz");
    let mut day1: Vec<&str> = lines[0].1.lines().collect();
    day1.sort();
    assert_eq!(
        day1,
        vec![
            format!("{{\"k\":0,\"msg\":\"event 0\",\"tag\":\"json.app\",\"time\":{DAY1}}}"),
            format!("{{\"k\":0,\"msg\":\"event 0\",\"tag\":\"json.app\",\"time\":{}}}", DAY1 + 5),
        ]
    );
    assert_eq!(
        lines[1],
        (
            "out.20160426.txt.gz".to_string(),
            format!("{{\"k\":1,\"msg\":\"event 1\",\"tag\":\"json.app\",\"time\":{DAY2}}}\n")
        )
    );
}

/// Record-field chunk keys: one file per value, named with `${key}`, through a file
/// buffer.
#[test]
fn record_field_chunk_keys_name_the_files() {
    let dir = tempdir::Dir::new("outfile-vars");
    let d = dir.path().display().to_string();
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n\
         <match **>\n  @type file\n  path {d}/by-msg/${{msg}}/out\n  append true\n  <format>\n    @type single_value\n    message_key k\n  </format>\n\
         <buffer msg>\n    @type file\n    path {d}/buf\n    flush_mode interval\n    flush_interval 100ms\n  </buffer>\n</match>\n"
    );
    let spate = Spate::start("outfile-vars", &conf, Stdio::null());
    // kv_record(i) is {"k": i, "msg": "event i"}: three values, three files.
    send(&spate, "v", &[DAY1, DAY1, DAY1], "v1");
    let files = wait_files(&format!("{d}/by-msg/*/out.log"), 3);
    let (_, _, log) = spate.stop();
    let mut got: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            (
                f.parent().unwrap().file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read_to_string(f).unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("event 0".to_string(), "0\n".to_string()),
            ("event 1".to_string(), "1\n".to_string()),
            ("event 2".to_string(), "2\n".to_string())
        ],
        "{log}"
    );
}
