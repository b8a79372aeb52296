//! `spate-bench compare BASELINE NEW --tolerance 10%`: fails (exit 1) when a headline
//! metric of spate regressed by more than the tolerance. Each metric is first divided by
//! the generator -> sink ceiling measured in the same run, so machine noise (a slower or
//! busier machine) cancels out.

use std::path::Path;

use serde_json::Value;

fn load(p: &Path) -> Result<Value, String> {
    let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&t).map_err(|e| format!("{}: {e}", p.display()))
}

/// spate's events/s per scenario, relative to the run's own ceiling.
fn normalised(doc: &Value) -> Vec<(String, f64)> {
    let ceil = doc["ceilings"]["gen_to_sink_events_per_sec"].as_f64().filter(|c| *c > 0.0);
    let mut out = Vec::new();
    for r in doc["results"].as_array().cloned().unwrap_or_default() {
        if r["system"] != "spate" || r["status"].as_str().is_none_or(|s| !s.starts_with("ok")) {
            continue;
        }
        if let (Some(sc), Some(eps), Some(c)) = (r["scenario"].as_str(), r["events_per_sec"].as_f64(), ceil) {
            out.push((sc.to_string(), eps / c));
        }
    }
    out
}

pub fn parse_tolerance(s: &str) -> Option<f64> {
    let t = s.trim();
    let v: f64 = t.strip_suffix('%').unwrap_or(t).trim().parse().ok()?;
    (0.0..100.0).contains(&v).then_some(v / 100.0)
}

pub fn compare(base: &Path, new: &Path, tolerance: &str) -> i32 {
    let Some(tol) = parse_tolerance(tolerance) else {
        eprintln!("spate-bench compare: --tolerance {tolerance:?}: expected a percentage like 10%");
        return 2;
    };
    let (b, n) = match (load(base), load(new)) {
        (Ok(b), Ok(n)) => (b, n),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("spate-bench compare: {e}");
            return 2;
        }
    };
    let bn = normalised(&b);
    let nn = normalised(&n);
    if nn.is_empty() {
        eprintln!("spate-bench compare: no comparable spate results (status ok, with a ceiling) in {}", new.display());
        return 2;
    }
    let mut failed = false;
    for (sc, v) in &nn {
        match bn.iter().find(|(s, _)| s == sc) {
            Some((_, bv)) => {
                let change = v / bv - 1.0;
                let bad = change < -tol;
                failed |= bad;
                println!(
                    "{sc}: {:.4} of ceiling vs baseline {:.4} ({:+.1}%){}",
                    v,
                    bv,
                    change * 100.0,
                    if bad { "  REGRESSION" } else { "" }
                );
            }
            None => println!("{sc}: {v:.4} of ceiling (no baseline)"),
        }
    }
    i32::from(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_parses_percentages() {
        assert_eq!(parse_tolerance("10%"), Some(0.1));
        assert_eq!(parse_tolerance("5"), Some(0.05));
        assert_eq!(parse_tolerance("abc"), None);
        assert_eq!(parse_tolerance("150%"), None);
    }

    #[test]
    fn regression_is_detected_relative_to_the_ceiling() {
        let dir = std::env::temp_dir().join(format!("spate-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = |eps: f64, ceil: f64| serde_json::json!({"ceilings": {"gen_to_sink_events_per_sec": ceil}, "results": [{"scenario": "S1", "system": "spate", "status": "ok", "events_per_sec": eps}]});
        let b = dir.join("b.json");
        let same_ratio = dir.join("n1.json");
        let worse = dir.join("n2.json");
        std::fs::write(&b, doc(1e6, 2e6).to_string()).unwrap();
        // A machine half as fast: both halve, the ratio holds: no regression.
        std::fs::write(&same_ratio, doc(0.5e6, 1e6).to_string()).unwrap();
        std::fs::write(&worse, doc(0.7e6, 2e6).to_string()).unwrap();
        assert_eq!(compare(&b, &same_ratio, "10%"), 0);
        assert_eq!(compare(&b, &worse, "10%"), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
