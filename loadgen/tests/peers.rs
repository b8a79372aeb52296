//! Generator -> a real peer (Ruby fluentd, fluent-bit) -> sink with exact counts, when
//! the peer is installed (`$FLUENTD` / `$FLUENT_BIT` or on PATH); otherwise the test
//! prints why it was skipped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spate_loadgen::generator::{run, RunConfig};
use spate_loadgen::records::SendMode;
use spate_loadgen::sink::{self, SinkConfig};

fn find(env: &str, bin: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(bin)).find(|p| p.is_file())
}

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        unsafe { libc_kill(self.0.id() as i32, 15) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn wait_listen(p: u16, child: &mut Child) -> bool {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", p)).is_ok() {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn through(name: &str, cmd: PathBuf, conf_name: &str, conf: impl Fn(u16, u16) -> String) {
    let s = sink::start(SinkConfig::default()).unwrap();
    let p = port();
    let dir = std::env::temp_dir().join(format!("lg-peer-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cf = dir.join(conf_name);
    std::fs::write(&cf, conf(p, s.addr().port())).unwrap();
    let child = Command::new(&cmd).arg("-c").arg(&cf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut k = Kill(child);
    assert!(wait_listen(p, &mut k.0), "{name} did not start listening on {p}");
    // fluentd's worker may still be starting after the port opens.
    std::thread::sleep(Duration::from_secs(2));
    // Count our tag only: fluentd also routes its own log events (fluent.*) to `**`.
    let ours = |s: &sink::SinkHandle| s.report().by_tag.get("spate.loadgen").map_or(0, |t| t.events);
    for mode in [SendMode::Message, SendMode::Forward, SendMode::Packed, SendMode::Compressed] {
        let before = ours(&s);
        let batch = if mode == SendMode::Message { 10 } else { 100 };
        let cfg = RunConfig {
            targets: vec![format!("127.0.0.1:{p}").parse().unwrap()],
            connections: 2,
            mode,
            batch,
            ack: true,
            events: Some(2000),
            quiet: true,
            ..Default::default()
        };
        let r = run(cfg).unwrap();
        assert_eq!((r.events_sent, r.events_acked, r.errors), (2000, 2000, 0), "{name} {mode:?}");
        let end = Instant::now() + Duration::from_secs(30);
        while ours(&s) < before + 2000 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(ours(&s), before + 2000, "{name} {mode:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ours(&s), 8000, "{name}: exact count, no duplicates");
    drop(k);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generator_through_ruby_fluentd_to_sink() {
    let Some(cmd) = find("FLUENTD", "fluentd") else {
        eprintln!("skipped: fluentd not found on PATH or $FLUENTD");
        return;
    };
    through("fluentd", cmd, "fluent.conf", |p, sp| {
        format!("<source>\n  @type forward\n  bind 127.0.0.1\n  port {p}\n</source>\n<match **>\n  @type forward\n  <server>\n    host 127.0.0.1\n    port {sp}\n  </server>\n  <buffer>\n    flush_interval 0.1\n  </buffer>\n</match>\n")
    });
}

#[test]
fn generator_through_fluent_bit_to_sink() {
    let Some(cmd) = find("FLUENT_BIT", "fluent-bit") else {
        eprintln!("skipped: fluent-bit not found on PATH or $FLUENT_BIT");
        return;
    };
    through("fluent-bit", cmd, "fluent-bit.conf", |p, sp| {
        format!("[SERVICE]\n    Flush 1\n    Log_Level warn\n\n[INPUT]\n    Name forward\n    Listen 127.0.0.1\n    Port {p}\n\n[OUTPUT]\n    Name forward\n    Match *\n    Host 127.0.0.1\n    Port {sp}\n")
    });
}
