//! Criterion: each `<parse>` plugin on 1000 realistic lines (times moving one second
//! every 10 lines), in lines/s (`parse_lines`) and bytes/s (`parse_bytes`), plus
//! filter_parser over a 1000-event batch. The records are written into one reused
//! buffer, as an input does.

use std::path::Path;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use spate_engine::config::{parse_str, EvalContext};
use spate_engine::filter::parser::FilterParserConf;
use spate_engine::parser::{ParseError, ParserConf, Sink};
use spate_protocol::{encode, EntriesFormat, EventBatch, EventTime, Mode, Options};

fn ctx() -> EvalContext {
    EvalContext { hostname: "bench".into(), worker_id: None, env: Box::new(|_| None) }
}

fn parse_conf(body: &str) -> ParserConf {
    let root = parse_str(&format!("<parse>\n{body}\n</parse>\n"), "bench.conf", Path::new("."), &ctx()).unwrap();
    ParserConf::from_element(&root.elements[0]).unwrap()
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const PATHS: [&str; 4] = ["/", "/api/v1/items/12345", "/static/app.js?v=3", "/login"];

fn hms(i: usize) -> (usize, usize, usize) {
    let s = i / 10;
    (10 + s / 3600 % 10, s / 60 % 60, s % 60)
}

/// (name, <parse> body, lines)
fn cases() -> Vec<(&'static str, &'static str, Vec<String>)> {
    let n = 1000;
    let combined = |i: usize, xff: bool| {
        let (h, m, s) = hms(i);
        format!(
            "192.168.0.{} - - [28/{}/2013:{h:02}:{m:02}:{s:02} +0900] \"GET {} HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\"{}",
            i % 250,
            MONTHS[i % 12],
            PATHS[i % 4],
            700 + i,
            if xff { " \"10.0.0.1\"" } else { "" }
        )
    };
    // nginx's combined format with $http_x_forwarded_for appended.
    let nginx = |i: usize| combined(i, true);
    vec![
        ("none", "@type none", (0..n).map(|i| format!("plain text log line number {i} with some words in it")).collect()),
        (
            "json",
            "@type json",
            (0..n)
                .map(|i| format!(r#"{{"time":{},"host":"192.168.0.{}","method":"GET","path":"{}","code":200,"size":{},"agent":"Mozilla/5.0"}}"#, 1362020400 + i / 10, i % 250, PATHS[i % 4], 700 + i))
                .collect(),
        ),
        (
            "ltsv",
            "@type ltsv\ntime_format %d/%b/%Y:%H:%M:%S %z",
            (0..n)
                .map(|i| {
                    let (h, m, s) = hms(i);
                    format!("host:192.168.0.{}\tuser:-\ttime:28/Feb/2013:{h:02}:{m:02}:{s:02} +0900\treq:GET {} HTTP/1.1\tstatus:200\tsize:{}\treferer:-\tua:Mozilla/5.0", i % 250, PATHS[i % 4], 700 + i)
                })
                .collect(),
        ),
        (
            "csv",
            "@type csv\nkeys time,host,method,path,code,size\ntime_key time\ntime_format %Y-%m-%d %H:%M:%S",
            (0..n)
                .map(|i| {
                    let (h, m, s) = hms(i);
                    format!("2013-02-28 {h:02}:{m:02}:{s:02},192.168.0.{},GET,\"{}\",200,{}", i % 250, PATHS[i % 4], 700 + i)
                })
                .collect(),
        ),
        (
            "tsv",
            "@type tsv\nkeys time,host,method,path,code,size\ntime_key time\ntime_format %Y-%m-%d %H:%M:%S",
            (0..n)
                .map(|i| {
                    let (h, m, s) = hms(i);
                    format!("2013-02-28 {h:02}:{m:02}:{s:02}\t192.168.0.{}\tGET\t{}\t200\t{}", i % 250, PATHS[i % 4], 700 + i)
                })
                .collect(),
        ),
        (
            "regexp",
            "@type regexp\nexpression /^(?<time>[^ ]+ [^ ]+) \\[(?<level>\\w+)\\] (?<component>[^:]+): (?<message>.*)$/\ntime_format %Y-%m-%d %H:%M:%S.%N",
            (0..n)
                .map(|i| {
                    let (h, m, s) = hms(i);
                    format!("2013-02-28 {h:02}:{m:02}:{s:02}.{:03} [{}] worker.{}: request {i} finished in {} ms", i % 1000, ["info", "warn", "error"][i % 3], i % 8, i % 97)
                })
                .collect(),
        ),
        ("apache2", "@type apache2", (0..n).map(|i| combined(i, false)).collect()),
        ("nginx", "@type nginx", (0..n).map(nginx).collect()),
        (
            "syslog_rfc3164",
            "@type syslog\nwith_priority true",
            (0..n)
                .map(|i| {
                    let (h, m, s) = hms(i);
                    format!("<{}>{} {:2} {h:02}:{m:02}:{s:02} host{} sshd[{}]: Accepted publickey for user{} from 10.0.0.{} port {} ssh2", 8 + i % 100, MONTHS[i % 12], 1 + i % 28, i % 10, 1000 + i, i % 50, i % 250, 40000 + i)
                })
                .collect(),
        ),
        (
            "syslog_rfc3164_string",
            "@type syslog\nwith_priority true\nparser_engine string",
            (0..n)
                .map(|i| {
                    let (h, m, s) = hms(i);
                    format!("<{}>{} {:2} {h:02}:{m:02}:{s:02} host{} sshd[{}]: Accepted publickey for user{} from 10.0.0.{} port {} ssh2", 8 + i % 100, MONTHS[i % 12], 1 + i % 28, i % 10, 1000 + i, i % 50, i % 250, 40000 + i)
                })
                .collect(),
        ),
        (
            "syslog_rfc5424",
            "@type syslog\nwith_priority true\nmessage_format rfc5424",
            (0..n)
                .map(|i| {
                    let (h, m, s) = hms(i);
                    format!("<{}>1 2013-02-28T{h:02}:{m:02}:{s:02}.{:03}Z host{} app{} {} ID{} [exampleSDID@32473 iut=\"3\" eventSource=\"Application\"] request {i} done", 8 + i % 100, i % 1000, i % 10, i % 5, 1000 + i, i % 40)
                })
                .collect(),
        ),
    ]
}

/// Counts records, keeps the buffer from growing without bound.
struct Count(u64);

impl Sink for Count {
    #[inline]
    fn record(&mut self, out: &mut Vec<u8>, _t: Option<EventTime>) {
        self.0 += 1;
        if out.len() > 1 << 20 {
            out.clear();
        }
    }
    fn error(&mut self, e: ParseError) {
        panic!("bench line did not parse: {e}");
    }
}

fn parsers(c: &mut Criterion) {
    for (group, bytes) in [("parse_lines", false), ("parse_bytes", true)] {
        let mut g = c.benchmark_group(group);
        g.measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
        for (name, body, lines) in cases() {
            let mut p = parse_conf(body).build();
            let total: usize = lines.iter().map(String::len).sum();
            g.throughput(if bytes {
                Throughput::Bytes(total as u64)
            } else {
                Throughput::Elements(lines.len() as u64)
            });
            let mut out = Vec::with_capacity(1 << 20);
            g.bench_function(name, |b| {
                b.iter(|| {
                    let mut sink = Count(0);
                    out.clear();
                    for l in &lines {
                        p.parse(black_box(l.as_bytes()), &mut out, &mut sink);
                    }
                    sink.0
                })
            });
        }
        // msgpack: maps as a forwarder would send them.
        let mut data = Vec::new();
        let mut lines = Vec::new();
        for (_, _, jl) in cases().into_iter().filter(|c| c.0 == "json") {
            for l in jl {
                let m = spate_protocol::json::to_msgpack(l.as_bytes()).unwrap();
                data.extend_from_slice(&m);
                lines.push(m);
            }
        }
        let mut p = parse_conf("@type msgpack\ntime_key time\ntime_type unixtime").build();
        g.throughput(if bytes {
            Throughput::Bytes(data.len() as u64)
        } else {
            Throughput::Elements(lines.len() as u64)
        });
        let mut out = Vec::with_capacity(1 << 20);
        g.bench_function("msgpack", |b| {
            b.iter(|| {
                let mut sink = Count(0);
                out.clear();
                for l in &lines {
                    p.parse(black_box(l), &mut out, &mut sink);
                }
                sink.0
            })
        });
        g.finish();
    }
}

fn filter_parser(c: &mut Criterion) {
    let root = parse_str(
        "<filter **>\n@type parser\nkey_name log\nreserve_data true\n<parse>\n@type json\n</parse>\n</filter>\n",
        "bench.conf",
        Path::new("."),
        &ctx(),
    )
    .unwrap();
    let mut f = FilterParserConf::from_element(&root.elements[0]).unwrap().build();
    let mut entries = Vec::new();
    for (_, _, lines) in cases().into_iter().filter(|c| c.0 == "json") {
        for l in lines {
            let mut rec = Vec::new();
            spate_protocol::encode::raw::map_header(&mut rec, 2);
            spate_protocol::encode::raw::str(&mut rec, b"log");
            spate_protocol::encode::raw::str(&mut rec, l.as_bytes());
            spate_protocol::encode::raw::str(&mut rec, b"stream");
            spate_protocol::encode::raw::str(&mut rec, b"stdout");
            encode::entry(&mut entries, EventTime::new(1362020400, 0), encode::TimeFormat::EventTime, &rec);
        }
    }
    let batch = EventBatch::from_entries(
        Bytes::from_static(b"docker.app"),
        Bytes::from(entries),
        EntriesFormat::Packed,
        Mode::PackedForward,
        Options::default(),
        100,
    )
    .unwrap();
    let mut g = c.benchmark_group("filter_parser");
    g.measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    g.throughput(Throughput::Elements(batch.count as u64));
    let mut out = Vec::with_capacity(1 << 20);
    let mut failures = Vec::new();
    g.bench_function("json_reserve_data_1000", |b| {
        b.iter(|| {
            out.clear();
            f.filter(black_box(&batch), &mut out, &mut failures)
        })
    });
    g.finish();
}

criterion_group!(benches, parsers, filter_parser);
criterion_main!(benches);
