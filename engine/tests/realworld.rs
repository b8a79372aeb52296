//! The real-world ratchet: `spate --dry-run` over every config of
//! ../shared/fixtures/realworld (720 configurations from public repositories; MANIFEST.tsv
//! gives each one's role), as ../shared/tools/realworld.sh runs it (from the config's own
//! directory, a clean environment, 10 s each). It fails when a config crashes or times
//! out, or when fewer configs of a role are accepted than `realworld_counts.txt` records
//! (raise those counts as plugins land; never lower one without saying why).
//!
//! A config counts as accepted when spate exits 0, prints "configuration OK" and the
//! plan has a `<source>` or a `<match>` (as realworld.sh counts it). The corpus is
//! looked up at `$SPATE_REALWORLD`, else `../shared/fixtures/realworld` next to the
//! workspace; without it the test prints why and passes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);
const COUNTS: &str = include_str!("realworld_counts.txt");

fn corpus() -> Option<PathBuf> {
    let dir = match std::env::var_os("SPATE_REALWORLD") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/realworld"),
    };
    dir.join("MANIFEST.tsv").is_file().then_some(dir)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Rejected,
    Empty,
    Crashed(String),
}

fn run_one(corpus: &Path, rel: &str) -> Outcome {
    let full = corpus.join(rel);
    let (Some(dir), Some(name)) = (full.parent(), full.file_name()) else {
        return Outcome::Crashed("bad manifest path".into());
    };
    let mut child = match Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["--dry-run", "-c"])
        .arg(name)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
        .env("LANG", "C.UTF-8")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Crashed(format!("spawn: {e}")),
    };
    // Drain the pipes on threads so a chatty config cannot block the child.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    let Some(status) = status else { return Outcome::Crashed(format!("timed out after {TIMEOUT:?}")) };
    if stdout.contains("panicked at") || stderr.contains("panicked at") {
        return Outcome::Crashed(stderr.lines().find(|l| l.contains("panicked")).unwrap_or("panic").to_string());
    }
    match status.code() {
        Some(0) if stdout.contains("configuration OK") => {
            let has = stdout.lines().any(|l| l.starts_with("source ")) || stdout.contains("<match");
            if has {
                Outcome::Accepted
            } else {
                Outcome::Empty
            }
        }
        Some(0) | Some(1) => Outcome::Rejected,
        other => Outcome::Crashed(format!("exit {other:?}: {}", stderr.lines().last().unwrap_or(""))),
    }
}

fn recorded() -> BTreeMap<String, usize> {
    COUNTS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (role, n) = l.split_once(char::is_whitespace)?;
            Some((role.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn realworld_configs_are_accepted_at_least_as_recorded() {
    let Some(dir) = corpus() else {
        eprintln!("skipped: no realworld corpus (set SPATE_REALWORLD or check out ../shared/fixtures/realworld)");
        return;
    };
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect("MANIFEST.tsv column");
    let (fc, rc) = (col("file"), col("role"));
    let rows: Vec<(String, String)> = lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let (file, role) = (f.get(fc)?.to_string(), f.get(rc)?.to_string());
            (role != "skipped" && !file.is_empty() && file != "-").then_some((file, role))
        })
        .collect();
    assert!(!rows.is_empty(), "MANIFEST.tsv lists no configs");
    let queue = Arc::new(Mutex::new(rows.clone()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (queue, results, dir) = (queue.clone(), results.clone(), dir.clone());
            std::thread::spawn(move || loop {
                let Some((file, role)) = queue.lock().unwrap().pop() else { break };
                let o = run_one(&dir, &file);
                results.lock().unwrap().push((file, role, o));
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let results = results.lock().unwrap().clone();
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    let mut total: BTreeMap<String, usize> = BTreeMap::new();
    let mut crashed = Vec::new();
    for (file, role, o) in &results {
        *total.entry(role.clone()).or_default() += 1;
        match o {
            Outcome::Accepted => *accepted.entry(role.clone()).or_default() += 1,
            Outcome::Crashed(why) => crashed.push(format!("{file}: {why}")),
            Outcome::Rejected | Outcome::Empty => {}
        }
    }
    for (role, n) in &total {
        eprintln!("{role}: {} of {n} accepted", accepted.get(role).copied().unwrap_or(0));
    }
    assert!(crashed.is_empty(), "configs that crashed or timed out:\n{}", crashed.join("\n"));
    let want = recorded();
    assert!(!want.is_empty(), "realworld_counts.txt records no counts");
    let mut fewer = Vec::new();
    for (role, n) in &want {
        let got = accepted.get(role).copied().unwrap_or(0);
        if got < *n {
            fewer.push(format!("{role}: {got} accepted, {n} recorded"));
        } else if got > *n {
            eprintln!(
                "{role}: {got} accepted, more than the {n} recorded: raise it in engine/tests/realworld_counts.txt"
            );
        }
    }
    assert!(fewer.is_empty(), "fewer real-world configs accepted than recorded:\n{}", fewer.join("\n"));
}
