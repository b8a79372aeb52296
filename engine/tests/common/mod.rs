//! The engine's integration-test harness: starting the `spate` binary (its path,
//! `CARGO_BIN_EXE_spate`, exists only inside this crate's tests) on a config. Everything
//! generic — ports, temp dirs, peer processes, Forward clients and sinks, frame builders
//! — comes from `spate-testkit` and is re-exported here for the tests' `use common::*`.
#![allow(dead_code, unused_imports)]

pub mod http;

use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

pub use spate_testkit::forward::{
    loadgen_events, serve_acking, wait_loadgen_events, Client, FixedSink, Received, Sink,
};
pub use spate_testkit::net::loopback;
pub use spate_testkit::process::{find_peer, peer_or_skip, python, skip, skip_unless_required, Proc};
pub use spate_testkit::wire::{self, acked_frame, kv_events, kv_frame, kv_record, kv_time, packed_entries, Wire, T0};
pub use spate_testkit::{free_port, nanos, tempdir};

/// The `spate` binary under test.
pub fn spate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_spate")
}

/// `spate -c <conf> --workers <workers>`.
pub fn spate_cmd(conf: &std::path::Path, workers: u32) -> Command {
    let mut c = Command::new(spate_bin());
    c.arg("-c").arg(conf).args(["--workers", &workers.to_string()]);
    c
}

/// A running spate on a free port, with its config in its own temp dir. Dropping it
/// stops the process.
pub struct Spate {
    /// The process (dropped before `dir`, so the directory outlives it).
    pub proc: Proc,
    /// The in_forward port (`{PORT}` in the config).
    pub port: u16,
    /// Holds `fluent.conf`; removed on drop.
    pub dir: tempdir::Dir,
}

impl Spate {
    /// Starts spate with 2 workers on `config` (with `{PORT}` replaced by a free port)
    /// and waits until it accepts connections. stderr is piped (returned by `stop`).
    pub fn start(name: &str, config: &str, stdout: Stdio) -> Spate {
        let port = free_port();
        let dir = tempdir::Dir::new(name);
        let path = dir.path().join("fluent.conf");
        std::fs::write(&path, config.replace("{PORT}", &port.to_string())).expect("write fluent.conf");
        let mut proc = Proc::spawn("spate", spate_cmd(&path, 2).stdout(stdout).stderr(Stdio::piped()));
        proc.wait_listening(port, Duration::from_secs(20));
        Spate { proc, port, dir }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// SIGTERM, then waits (30 s) for the exit; returns (exit status, stdout, stderr).
    pub fn stop(mut self) -> (ExitStatus, String, String) {
        self.proc.stop(Duration::from_secs(30))
    }

    /// Sends a signal (SIGUSR1, SIGHUP, ...).
    pub fn signal(&self, sig: i32) {
        self.proc.signal(sig);
    }
}
