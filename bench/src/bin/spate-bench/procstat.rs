//! CPU time and memory of a whole process tree, read from `/proc` (fluentd runs as a
//! supervisor plus workers, so a system's cost is the sum over its tree).

use std::collections::HashMap;

/// Clock ticks per second for `/proc/PID/stat` times.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (ppid, utime + stime in ticks) of one process.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// `pid` and all its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some((pp, _)) = stat(p) {
                    parent.insert(p, pp);
                }
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        for (&c, &p) in &parent {
            if p == cur && !out.contains(&c) {
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

/// Total CPU seconds (user + system) of the tree.
pub fn cpu_seconds(pid: u32) -> f64 {
    let t: u64 = tree(pid).iter().filter_map(|&p| stat(p).map(|s| s.1)).sum();
    t as f64 / ticks_per_sec()
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Sum of VmRSS over the tree (kB).
pub fn rss_kb(pid: u32) -> u64 {
    tree(pid).iter().map(|&p| status_kb(p, "VmRSS:")).sum()
}

/// Sum of VmHWM (peak RSS) over the tree (kB).
pub fn hwm_kb(pid: u32) -> u64 {
    tree(pid).iter().map(|&p| status_kb(p, "VmHWM:")).sum()
}

/// Machine facts for the results file.
pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    // SAFETY: sysconf has no preconditions. Online CPUs, not this thread's affinity.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    // TCP's congestion control decides what a loopback send costs: BBR paces each
    // segment with a timer when the device has no fq qdisc (loopback has none), and on
    // a VM every timer and wakeup is an exit. Relays (S4, S5) send through it.
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/{name}")).map(|s| s.trim().to_string()).unwrap_or_default()
    };
    serde_json::json!({
        "cpu": cpu,
        "cores": cores,
        "kernel": kernel,
        "mem_kb": mem_kb,
        "tcp_congestion_control": sysctl("ipv4/tcp_congestion_control"),
        "default_qdisc": sysctl("core/default_qdisc"),
    })
}
