//! Real stores for the Kafka and S3 tests: tansu (a Kafka-protocol broker, crates.io
//! `tansu`) and s3s-fs (an S3-compatible server, crates.io `s3s-fs`), found through
//! `SPATE_TANSU` / `SPATE_S3S_FS` or on PATH (.ci/run installs both into its cache and
//! sets the variables). Without the binary a test is skipped with a reason, or fails
//! when `SPATE_REQUIRE_KAFKA=1` / `SPATE_REQUIRE_S3=1`. Each server runs on a free
//! loopback port with its data in a temporary directory, and is killed on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn find(env: &str, bin: &str, require: &str, what: &str) -> Option<PathBuf> {
    let found = std::env::var_os(env).map(PathBuf::from).filter(|p| p.is_file()).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|d| d.join(bin)).find(|p| p.is_file())
    });
    if found.is_none() {
        let why = format!("{bin} not found (set {env} or put it on PATH; {what})");
        if std::env::var(require).as_deref() == Ok("1") {
            panic!("{why}, and {require}=1");
        }
        eprintln!("skipped: {why}");
    }
    found
}

pub fn tansu_bin() -> Option<PathBuf> {
    find(
        "SPATE_TANSU",
        "tansu",
        "SPATE_REQUIRE_KAFKA",
        "cargo install --locked tansu --version '^0.6' --features dynostore,libsql",
    )
}

pub fn s3s_fs_bin() -> Option<PathBuf> {
    find("SPATE_S3S_FS", "s3s-fs", "SPATE_REQUIRE_S3", "cargo install --locked s3s-fs@0.14.1 --features binary")
}

/// moto's server (PyPI `moto[server]`): AWS APIs (CloudWatch Logs, STS) on one port.
pub fn moto_server_bin() -> Option<PathBuf> {
    find("SPATE_MOTO_SERVER", "moto_server", "SPATE_REQUIRE_MOTO", "pip install 'moto[server]==5.1.22'")
}

/// moto_server on `port`.
pub fn start_moto(bin: &Path, port: u16) -> Server {
    let mut child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    wait_port(port, &mut child, "moto_server");
    Server { child, port }
}

/// Python with the given modules (a skip, or a failure under `require`=1, otherwise).
pub fn python_with(modules: &[&str], require: &str) -> Option<String> {
    let script = modules.iter().map(|m| format!("import {m}")).collect::<Vec<_>>().join("; ");
    let ok = Command::new("python3")
        .args(["-c", &script])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Some("python3".into());
    }
    let why = format!("python3 with {modules:?} not available (pip install confluent-kafka boto3)");
    if std::env::var(require).as_deref() == Ok("1") || std::env::var("SPATE_REQUIRE_PY").as_deref() == Ok("1") {
        panic!("{why}, and a SPATE_REQUIRE_* variable is set");
    }
    eprintln!("skipped: {why}");
    None
}

/// Runs a Python script with arguments; returns its stdout (panics with stderr on failure).
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3").arg("-c").arg(script).args(args).output().expect("python3");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn wait_port(port: u16, child: &mut Child, what: &str) {
    let end = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "{what} did not start listening on {port}");
        assert!(child.try_wait().unwrap().is_none(), "{what} exited at start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server process killed (SIGKILL) on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// s3s-fs serving `root` on `port` with the given keys.
pub fn start_s3s(bin: &Path, root: &Path, port: u16, access: &str, secret: &str) -> Server {
    let mut child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", access, "--secret-key", secret])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    wait_port(port, &mut child, "s3s-fs");
    Server { child, port }
}

/// tansu on `port` with a sqlite store in `dir` (its memory engine loses messages).
pub fn start_tansu(bin: &Path, dir: &Path, port: u16) -> Server {
    start_tansu_with(bin, dir, port, &[])
}

/// [`start_tansu`] with more broker arguments (`--authentication`).
pub fn start_tansu_with(bin: &Path, dir: &Path, port: u16, extra: &[&str]) -> Server {
    let url = format!("tcp://127.0.0.1:{port}");
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("tansu-{port}.log"))).expect("log");
    // tansu 0.6 takes the sqlite path relative to its working directory.
    let mut child = Command::new(bin)
        .current_dir(dir)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start tansu");
    wait_port(port, &mut child, "tansu");
    Server { child, port }
}

/// Creates a topic with `partitions` partitions on the tansu at `port`.
pub fn create_topic(bin: &Path, port: u16, topic: &str, partitions: u32) {
    let out = Command::new(bin)
        .args(["topic", "create", topic, "--broker", &format!("tcp://127.0.0.1:{port}")])
        .args(["--partitions", &partitions.to_string()])
        .output()
        .expect("tansu topic create");
    assert!(out.status.success(), "tansu topic create {topic}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Creates a SCRAM-SHA-512 user on the tansu at `port` (before it requires
/// authentication: its CLI does not authenticate).
pub fn create_user(bin: &Path, port: u16, user: &str, password: &str) {
    let out = Command::new(bin)
        .args(["user", "create", user, password, "--mechanism", "scram512"])
        .args(["--broker", &format!("tcp://127.0.0.1:{port}")])
        .output()
        .expect("tansu user create");
    assert!(out.status.success(), "tansu user create {user}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A blocking HTTP/1.1 request (one connection per request; for tests only). Returns
/// the status and the body (Content-Length or chunked; at most 64 MiB).
pub fn http(
    host: &str,
    port: u16,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect((host, port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut buf = Vec::new();
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed in the response head"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 1 << 20 {
            return Err(bad("response head too long"));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("status"))?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let mut rest = buf[head_end..].to_vec();
    if method == "HEAD" || status == 204 || status == 304 {
        return Ok((status, Vec::new()));
    }
    if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if n > 64 << 20 {
            return Err(bad("body too large"));
        }
        while rest.len() < n {
            let mut chunk = vec![0u8; (n - rest.len()).min(1 << 16)];
            let r = s.read(&mut chunk)?;
            if r == 0 {
                return Err(bad("connection closed in the body"));
            }
            rest.extend_from_slice(&chunk[..r]);
        }
        rest.truncate(n);
        return Ok((status, rest));
    }
    s.read_to_end(&mut rest)?;
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        let mut p = &rest[..];
        loop {
            let i = p.windows(2).position(|w| w == b"\r\n").ok_or_else(|| bad("chunk size"))?;
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&p[..i]).split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| bad("chunk size"))?;
            p = &p[i + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(p.get(..size).ok_or_else(|| bad("short chunk"))?);
            p = p.get(size + 2..).ok_or_else(|| bad("short chunk"))?;
        }
        return Ok((status, out));
    }
    Ok((status, rest))
}
