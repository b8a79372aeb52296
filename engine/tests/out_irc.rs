//! out_irc against a real IRC server, Debian's ngIRCd (installed by `.ci/run`; found as
//! `$SPATE_NGIRCD`, on PATH or in /usr/sbin, else the test is skipped with the reason,
//! or fails under SPATE_REQUIRE_TOOLS=1). A client of the test's own joins the channels
//! and reads what spate sends; another holds the nickname spate asks for first.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn ngircd() -> Option<PathBuf> {
    let found = std::env::var_os("SPATE_NGIRCD")
        .map(PathBuf::from)
        .or_else(|| {
            let out = Command::new("sh").args(["-c", "command -v ngircd"]).output().ok()?;
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!p.is_empty()).then(|| PathBuf::from(p))
        })
        .or_else(|| Some(PathBuf::from("/usr/sbin/ngircd")).filter(|p| p.is_file()));
    if found.is_none() {
        assert!(std::env::var_os("SPATE_REQUIRE_TOOLS").is_none(), "ngircd is required (SPATE_REQUIRE_TOOLS)");
        eprintln!("skipped: no ngircd (apt-get install ngircd, or set SPATE_NGIRCD)");
    }
    found
}

/// A registered IRC client of the test.
struct Irc {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Irc {
    fn connect(port: u16, nick: &str) -> Irc {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Irc { w: s.try_clone().unwrap(), r: BufReader::new(s) };
        write!(c.w, "NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").unwrap();
        c.until(|l| l.contains(" 001 "));
        c
    }

    fn join(&mut self, channel: &str) {
        write!(self.w, "JOIN {channel}\r\n").unwrap();
        self.until(|l| l.contains(" 366 "));
    }

    /// Reads lines (answering PING) until `f` accepts one; returns it.
    fn until(&mut self, f: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < end, "timed out waiting for a line");
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap() == 0 {
                panic!("the IRC server closed the connection");
            }
            if let Some(t) = line.strip_prefix("PING ") {
                write!(self.w, "PONG {t}").unwrap();
                continue;
            }
            if std::env::var_os("IRC_DEBUG").is_some() {
                eprint!("irc< {line}");
            }
            if f(&line) {
                return line.trim_end().to_string();
            }
        }
    }
}

#[test]
fn out_irc_notices_and_privmsgs_reach_a_real_irc_server() {
    let Some(bin) = ngircd() else { return };
    let dir = tempdir::Dir::new("ngircd");
    let port = free_port();
    let conf = dir.path().join("ngircd.conf");
    std::fs::write(
        &conf,
        format!(
            "[Global]\nName = irc.spate.test\nInfo = spate test\nListen = 127.0.0.1\nPorts = {port}\nPidFile = {}/ngircd.pid\nMotdPhrase = spate test\n[Limits]\nMaxConnectionsIP = 0\n[Options]\nPAM = no\nIdent = no\nDNS = no\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let start_server = || {
        let mut p = Proc::spawn(
            "ngircd",
            Command::new(&bin).arg("-n").arg("-f").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()),
        );
        p.wait_listening(port, Duration::from_secs(20));
        p
    };
    let mut server = start_server();
    let mut obs = Irc::connect(port, "observer");
    obs.join("#spate");
    obs.join("#room1");
    // Someone already has the nickname: spate takes fluentd_ (the plugin's rule).
    let _squatter = Irc::connect(port, "fluentd");

    let cfg = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n\
         <match alert.**>\n  @type irc\n  host 127.0.0.1\n  port {port}\n  channel spate\n  command notice\n  message notice: %s [%s] %s\n  out_keys tag,time,msg\n  time_key time\n  time_format %Y/%m/%d %H:%M:%S\n  tag_key tag\n  send_interval 0.2s\n</match>\n\
         <match room.**>\n  @type irc\n  host 127.0.0.1\n  port {port}\n  nick spatebot\n  channel %s\n  channel_keys room\n  message %s says %s\n  out_keys who,msg\n  send_interval 0.2s\n</match>\n\
         <match slow.**>\n  @type irc\n  host 127.0.0.1\n  port {port}\n  nick slowbot\n  channel spate\n  message %s\n  out_keys msg\n  send_interval 60s\n  send_queue_limit 2\n</match>\n"
    );
    let spate = Spate::start_workers("out-irc", &cfg, 1);
    let t0 = spate_protocol::EventTime::new(1362020400, 0);
    send_json(&spate, "alert.db", t0, &[r#"{"msg":"disk full"}"#, r#"{"msg":"line1\r\nQUIT :bye"}"#], "a1");
    send_json(
        &spate,
        "room.x",
        t0,
        &[r#"{"room":"room1","who":"alice","msg":"hi"}"#, r#"{"room":"room1","msg":"no who"}"#],
        "r1",
    );

    // The two outputs send in their own order: collect until all four arrived.
    let mut lines = Vec::new();
    while lines.iter().filter(|l: &&String| l.contains(" NOTICE #spate ") || l.contains(" PRIVMSG #room1 ")).count() < 4
    {
        lines.push(obs.until(|l| l.contains(" NOTICE ") || l.contains(" PRIVMSG ")));
    }
    let notices: Vec<&String> = lines.iter().filter(|l| l.contains(" NOTICE #spate ")).collect();
    let privmsgs: Vec<&String> = lines.iter().filter(|l| l.contains(" PRIVMSG #room1 ")).collect();
    let n1 = notices[0];
    assert!(n1.starts_with(":fluentd_!"), "{n1}");
    let text = n1.split_once(" :").map(|x| x.1).unwrap();
    let stamp = text.trim_start_matches("notice: alert.db [").split(']').next().unwrap();
    assert_eq!(stamp.len(), 19, "%Y/%m/%d %H:%M:%S: {n1}");
    assert!(stamp.starts_with("2013/02/2") && stamp.as_bytes()[4] == b'/' && stamp.as_bytes()[13] == b':', "{n1}");
    assert!(text.ends_with("] disk full"), "{n1}");
    // A record's CR/LF cannot start a command of its own: one line, sent as text.
    assert!(notices[1].ends_with("] line1  QUIT :bye"), "{}", notices[1]);
    // channel_keys: the channel from the record (spate joined #room1 for it), PRIVMSG by
    // default; a key the record lacks is ''.
    assert!(
        privmsgs[0].starts_with(":spatebot!") && privmsgs[0].ends_with("PRIVMSG #room1 :alice says hi"),
        "{lines:?}"
    );
    assert!(privmsgs[1].ends_with("PRIVMSG #room1 : says no who"), "{lines:?}");

    // The server goes away and comes back: spate reconnects (its queue kept) and the
    // event sent meanwhile arrives, with the channel joined again.
    let _ = server.kill();
    drop(obs);
    let server = start_server();
    let mut obs = Irc::connect(port, "observer");
    obs.join("#spate");
    send_json(&spate, "alert.db", t0, &[r#"{"msg":"after the restart"}"#], "a2");
    let back = obs.until(|l| l.contains("NOTICE #spate"));
    assert!(back.ends_with("] after the restart"), "{back}");

    // The slow output's queue holds 2: a batch that finds it full is not acked.
    send_json(&spate, "slow.x", t0, &[r#"{"msg":"one"}"#, r#"{"msg":"two"}"#], "s1");
    let mut c = Client::connect(spate.addr());
    c.send(&acked_frame(b"slow.x", &packed_entries(1, 0), 1, "s2")).unwrap();
    assert!(c.read_ack().is_err(), "a batch the full queue refused was acked");

    let (_, _, err) = spate.stop();
    assert!(err.contains("nickname \"fluentd\" is already in use"), "{err}");
    assert!(err.contains("the specified key 'who' not found in record"), "{err}");
    assert!(err.contains("the IRC send queue is full"), "{err}");
    assert!(err.contains("connection to IRC server 127.0.0.1"), "{err}");
    // At shutdown the slow output sent what it held, then QUIT.
    let q = obs.until(|l| l.contains("PRIVMSG #spate :two"));
    drop(server);
    assert!(q.starts_with(":slowbot!"), "{q}");
}
