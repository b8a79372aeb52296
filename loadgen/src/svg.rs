//! `--report-svg FILE`: the run second by second as a chart a person reads at a glance,
//! in the plain hand-written SVG style of `results/` (no script, no external font):
//! events/s sent and acked on top, ack latency p50 / p99 / max below (log scale, since
//! a max is often a hundred times the median).

use std::fmt::Write as _;

use crate::report::{RunReport, Second};

const W: f64 = 720.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 150.0;
const PANEL_H: f64 = 160.0;

fn human(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.1} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn micros(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.0} s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0} ms", v / 1e3)
    } else {
        format!("{v:.0} µs")
    }
}

struct Panel {
    top: f64,
    /// Seconds the chart spans.
    span: f64,
}

impl Panel {
    /// x of the point `t` seconds into the run.
    fn x(&self, t: f64) -> f64 {
        LEFT + (W - LEFT - RIGHT) * t / self.span.max(1e-9)
    }
    fn bottom(&self) -> f64 {
        self.top + PANEL_H
    }
}

fn polyline(s: &mut String, id: &str, color: &str, pts: &[(f64, f64)]) {
    let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ =
        writeln!(s, r#"<polyline id="{id}" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, p.join(" "));
}

fn legend(s: &mut String, y: f64, color: &str, text: &str) {
    let x = W - RIGHT + 12.0;
    let _ = writeln!(s, r#"<rect x="{x}" y="{:.1}" width="14" height="4" fill="{color}"/>"#, y - 4.0);
    let _ = writeln!(s, r#"<text x="{:.1}" y="{y:.1}">{text}</text>"#, x + 20.0);
}

fn frame(s: &mut String, p: &Panel, title: &str) {
    let _ = writeln!(s, r#"<text x="10" y="{:.1}" font-weight="bold">{title}</text>"#, p.top - 10.0);
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{:.1}" width="{:.1}" height="{PANEL_H}" fill="none" stroke="#999"/>"##,
        p.top,
        W - LEFT - RIGHT
    );
}

/// A row's length in seconds (reports without it: one second).
fn secs(s: &Second) -> f64 {
    if s.secs > 0.0 {
        s.secs
    } else {
        1.0
    }
}

/// Renders the report's per-second rows: rates are events per second of each row, so
/// the run's last part-second shows its rate, not its few events; a last row shorter than
/// 50 ms is left out (its rate is noise).
pub fn render(r: &RunReport, title: &str) -> String {
    let mut all: Vec<&Second> = r.per_second.iter().collect();
    if all.len() > 1 && all.last().is_some_and(|s| secs(s) < 0.05) {
        all.pop();
    }
    let mut t = 0.0;
    let rows: Vec<(f64, &Second)> = all
        .into_iter()
        .map(|s| {
            // Each row is drawn at its middle.
            t += secs(s);
            (t - secs(s) / 2.0, s)
        })
        .collect();
    let total = t;
    let rate = |v: u64, s: &Second| v as f64 / secs(s);
    let mut s = String::new();
    let h = 60.0 + 2.0 * (PANEL_H + 60.0) + 20.0;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    s.push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let _ = writeln!(s, r#"<text x="10" y="20" font-size="15" font-weight="bold">{}</text>"#, xml(title));
    let _ = writeln!(
        s,
        r#"<text x="10" y="38">{} connections, {} mode, batch {}: {} events/s over {:.1} s, errors {}</text>"#,
        r.connections,
        xml(&r.mode),
        r.batch,
        human(r.events_per_sec),
        r.duration_s,
        r.errors
    );
    // Events per second.
    let p1 = Panel { top: 80.0, span: total };
    frame(&mut s, &p1, "events/s per second");
    let top = rows.iter().map(|(_, x)| rate(x.events_sent.max(x.events_acked), x)).fold(1.0, f64::max) * 1.1;
    for k in 0..=4 {
        let v = top * k as f64 / 4.0;
        let y = p1.bottom() - PANEL_H * k as f64 / 4.0;
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 6.0, y + 4.0, human(v));
    }
    let y1 = |v: f64| p1.bottom() - PANEL_H * v / top;
    polyline(
        &mut s,
        "events_sent",
        "#2b7bb9",
        &rows.iter().map(|(t, x)| (p1.x(*t), y1(rate(x.events_sent, x)))).collect::<Vec<_>>(),
    );
    legend(&mut s, p1.top + 14.0, "#2b7bb9", "sent");
    if r.ack {
        polyline(
            &mut s,
            "events_acked",
            "#5cb85c",
            &rows.iter().map(|(t, x)| (p1.x(*t), y1(rate(x.events_acked, x)))).collect::<Vec<_>>(),
        );
        legend(&mut s, p1.top + 32.0, "#5cb85c", "acked");
    }
    // Ack latency per second, log scale.
    let p2 = Panel { top: p1.bottom() + 60.0, span: total };
    frame(&mut s, &p2, "ack latency per second (log scale)");
    let vals = rows.iter().flat_map(|(_, x)| [x.ack_p50, x.ack_p99, x.ack_max]).filter(|v| *v > 0);
    let hi = vals.clone().max().unwrap_or(1000).max(10) as f64;
    let lo = vals.min().unwrap_or(1).max(1) as f64;
    let (d0, d1) = (lo.log10().floor(), hi.log10().ceil().max(lo.log10().floor() + 1.0));
    let y2 = |v: u64| {
        let l = (v.max(1) as f64).log10().clamp(d0, d1);
        p2.bottom() - PANEL_H * (l - d0) / (d1 - d0)
    };
    let mut d = d0;
    while d <= d1 {
        let y = p2.bottom() - PANEL_H * (d - d0) / (d1 - d0);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            micros(10f64.powf(d))
        );
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##, W - RIGHT);
        d += 1.0;
    }
    if r.ack {
        for (k, (id, color, label)) in
            [("ack_p50", "#2b7bb9", "p50"), ("ack_p99", "#f0ad4e", "p99"), ("ack_max", "#d9534f", "max")]
                .iter()
                .enumerate()
        {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .map(|(t, x)| {
                    let v = match *id {
                        "ack_p50" => x.ack_p50,
                        "ack_p99" => x.ack_p99,
                        _ => x.ack_max,
                    };
                    (p2.x(*t), y2(v))
                })
                .collect();
            polyline(&mut s, id, color, &pts);
            legend(&mut s, p2.top + 14.0 + 18.0 * k as f64, color, label);
        }
    } else {
        let _ =
            writeln!(s, r#"<text x="{:.1}" y="{:.1}">no acks requested (--ack)</text>"#, LEFT + 10.0, p2.top + 20.0);
    }
    let _ = writeln!(s, r#"<text x="{LEFT}" y="{:.1}">0 s</text>"#, p2.bottom() + 18.0);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{total:.1} s</text>"#,
        W - RIGHT,
        p2.bottom() + 18.0
    );
    s.push_str("</svg>\n");
    s
}

fn xml(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_every_series_with_a_point_per_second() {
        let rows = (0..5)
            .map(|i| Second {
                events_sent: 1000 + i,
                events_acked: 990 + i,
                ack_p50: 100,
                ack_p99: 900,
                ack_max: 20_000,
                ..Default::default()
            })
            .collect();
        let r = RunReport { per_second: rows, ack: true, connections: 3, mode: "packed".into(), ..Default::default() };
        let svg = render(&r, "a <run>");
        for id in ["events_sent", "events_acked", "ack_p50", "ack_p99", "ack_max"] {
            let at = svg.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("{id} missing"));
            let line = &svg[at..svg[at..].find('\n').map_or(svg.len(), |e| at + e)];
            assert_eq!(line.matches(',').count(), 5, "{line}");
        }
        assert!(svg.contains("a &lt;run&gt;"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }
}
