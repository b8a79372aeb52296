//! Peer processes: finding a peer that cannot come from a registry (Ruby fluentd,
//! fluent-bit) via `$ENV` or `PATH`, saying why a test is skipped when it is missing,
//! and child processes that are signalled, stopped and — when a test panics half-way —
//! never left running ([`Proc`] stops its child on drop).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::net::{wait_listening, NotListening};

/// `bin` in a directory of `PATH`.
pub fn on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(bin)).find(|p| p.is_file())
}

/// A peer command: `$env` when set, otherwise `bin` on `PATH`.
pub fn find_peer(env: &str, bin: &str) -> Option<PathBuf> {
    match std::env::var_os(env) {
        Some(p) => Some(PathBuf::from(p)),
        None => on_path(bin),
    }
}

/// [`find_peer`], printing the skip reason when the peer is missing: tests call
/// `let Some(cmd) = peer_or_skip("FLUENTD", "fluentd") else { return };`.
pub fn peer_or_skip(env: &str, bin: &str) -> Option<PathBuf> {
    let found = find_peer(env, bin);
    if found.is_none() {
        skip(&format!("{bin} not found (${env} unset and no `{bin}` on PATH)"));
    }
    found
}

/// Prints `skipped: <why>` (shown by `cargo test -- --nocapture` and in failed runs'
/// output), for a test that returns without checking anything.
pub fn skip(why: &str) {
    println!("skipped: {why}");
}

/// True when the environment variable `var` asks for a dependency to be present (set,
/// and neither empty nor `0`): CI sets `SPATE_REQUIRE_PY=1` / `SPATE_REQUIRE_NODE=1`
/// after installing the clients, so a missing one fails instead of skipping.
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Skips with `why`, or panics with it when [`required`]`(require_var)`.
pub fn skip_unless_required(require_var: &str, why: &str) {
    assert!(!required(require_var), "{why}, and {require_var} is set");
    skip(why);
}

/// True if `python3` imports every module. Otherwise prints the skip reason and returns
/// false; fails instead when `required` and `SPATE_REQUIRE_PY` is set.
pub fn python(modules: &[&str], required: bool) -> bool {
    let script = modules.iter().map(|m| format!("import {m}")).collect::<Vec<_>>().join("; ");
    let ok = Command::new("python3").args(["-c", &script]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok {
        let why = format!("python3 with {modules:?} is not available (pip install fluent-logger msgpack zstandard)");
        if required {
            skip_unless_required("SPATE_REQUIRE_PY", &why);
        } else {
            skip(&why);
        }
    }
    ok
}

/// Sends `sig` to `pid` (a child of this test).
pub fn signal(pid: u32, sig: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) takes plain integers; the pid is our own child's.
    unsafe { libc::kill(pid, sig) };
}

/// SIGTERM, then waits up to `grace` for `child` to exit. Returns its exit status, or
/// `None` when it had to be killed (SIGKILL) after `grace`; either way it is reaped.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    signal(child.id(), libc::SIGTERM);
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Reads what is left of a piped stdout and stderr (after the child exited).
pub fn drain_output(child: &mut Child) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (out, err)
}

/// A child process owned by a test. Dropping it stops the process (SIGTERM, SIGKILL
/// after 10 s), so a failing assertion never leaves a server running.
pub struct Proc {
    name: String,
    child: Option<Child>,
}

impl Proc {
    /// Spawns `cmd`; `name` is used in panic messages.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        Proc { name: name.to_string(), child: Some(child) }
    }

    /// `cmd -c conf` with its output discarded, waited for until it listens on `port`
    /// (up to 60 s), then given 2 s more: fluentd opens its port before its worker has
    /// finished booting.
    pub fn start_peer(name: &str, cmd: &Path, conf: &Path, port: u16) -> Proc {
        let mut p =
            Proc::spawn(name, Command::new(cmd).arg("-c").arg(conf).stdout(Stdio::null()).stderr(Stdio::null()));
        p.wait_listening(port, Duration::from_secs(60));
        std::thread::sleep(Duration::from_secs(2));
        p
    }

    /// Waits until the process accepts connections on `127.0.0.1:port`; panics (with the
    /// process's stderr when it was piped and the process exited) otherwise.
    pub fn wait_listening(&mut self, port: u16, within: Duration) {
        let child = self.child_mut();
        match wait_listening(port, child, within) {
            Ok(()) => {}
            Err(e @ NotListening::Exited(_)) => {
                let (_, err) = drain_output(child);
                panic!("{} {e}\n{err}", self.name)
            }
            Err(e) => panic!("{} {e}", self.name),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child (while it runs).
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the process was already stopped")
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            signal(c.id(), sig);
        }
    }

    /// SIGTERM, then waits up to `grace` for the exit; returns (exit status, piped
    /// stdout, piped stderr). Panics if the process had to be killed.
    pub fn stop(&mut self, grace: Duration) -> (ExitStatus, String, String) {
        let mut c = self.child.take().expect("the process was already stopped");
        let st = terminate(&mut c, grace);
        let (out, err) = drain_output(&mut c);
        match st {
            Some(st) => (st, out, err),
            None => panic!("{} did not exit within {grace:?} of SIGTERM; stderr:\n{err}", self.name),
        }
    }

    /// SIGKILL (no chance to clean up: a crash); returns what [`Proc::stop`] does.
    /// Nothing to do when the process was already stopped.
    pub fn kill(&mut self) -> Option<(ExitStatus, String, String)> {
        let mut c = self.child.take()?;
        let _ = c.kill();
        let st = c.wait().ok()?;
        let (out, err) = drain_output(&mut c);
        Some((st, out, err))
    }

    /// Whether the process is still running (not stopped, not exited).
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = terminate(&mut c, Duration::from_secs(10));
        }
    }
}

/// A binary of another workspace package, beside the running test's executable
/// (`target/<profile>/deps/test-xxxx` -> `target/<profile>/<bin>`), built with cargo
/// (same profile) when it is missing: the loadgen tests need the spate binary.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
    let path = dir.join(bin);
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut c = Command::new(cargo);
        c.args(["build", "-p", package, "--bin", bin]);
        if dir.ends_with("release") {
            c.arg("--release");
        }
        assert!(c.status().is_ok_and(|s| s.success()), "building {bin}");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::free_port;

    #[test]
    fn a_dropped_proc_stops_its_process() {
        let mut p = Proc::spawn("sleep", Command::new("sleep").arg("600"));
        let pid = p.pid();
        assert!(p.running());
        drop(p);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "stopped and reaped");
    }

    #[test]
    fn stop_returns_the_exit_status_and_the_output() {
        let script = r#"trap 'echo bye >&2; exit 3' TERM; echo hi; while :; do sleep 0.05; done"#;
        let mut p =
            Proc::spawn("sh", Command::new("sh").args(["-c", script]).stdout(Stdio::piped()).stderr(Stdio::piped()));
        std::thread::sleep(Duration::from_millis(300));
        let (st, out, err) = p.stop(Duration::from_secs(10));
        assert_eq!((st.code(), out.as_str(), err.as_str()), (Some(3), "hi\n", "bye\n"));
        assert!(!p.running());
        assert!(p.kill().is_none(), "already stopped");
    }

    #[test]
    fn waiting_for_a_listener_sees_it_or_the_early_exit() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut sleeper = Proc::spawn("sleep", Command::new("sleep").arg("600"));
        sleeper.wait_listening(port, Duration::from_secs(5));
        let mut quits = Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        match wait_listening(free_port(), &mut quits, Duration::from_secs(20)) {
            Err(NotListening::Exited(st)) => assert_eq!(st.code(), Some(7)),
            other => panic!("{other:?}"),
        }
        let mut c = Command::new("sleep").arg("600").spawn().unwrap();
        let r = wait_listening(free_port(), &mut c, Duration::from_millis(100));
        assert!(matches!(r, Err(NotListening::Timeout { .. })), "{r:?}");
        assert!(terminate(&mut c, Duration::from_secs(5)).is_some(), "sleep exits on SIGTERM");
    }

    #[test]
    fn peers_are_found_via_their_variable_first() {
        assert_eq!(find_peer("SPATE_TESTKIT_UNSET_VARIABLE", "sh"), on_path("sh"));
        assert!(on_path("sh").is_some());
        assert_eq!(on_path("no-such-command-anywhere"), None);
    }
}
