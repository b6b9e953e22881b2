//! `--plot out.svg`: two panels, throughput (req/s) and p99 latency (ms) against the load level,
//! written as plain SVG (no plotting crate).

use std::fmt::Write as _;

const PANEL_W: f64 = 440.0;
const PANEL_H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

/// A point of a series: the level (concurrency or rate) and its value (`None`: no data).
pub struct Series<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, Option<f64>)>,
}

/// Round tick steps (1, 2, 5 × 10^k) covering 0..=max with about `n` ticks.
fn nice_ticks(max: f64, n: usize) -> Vec<f64> {
    let max = if max > 0.0 && max.is_finite() {
        max
    } else {
        1.0
    };
    let raw = max / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let count = (max / step).ceil() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

fn label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}").trim_end_matches('0').to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The x mapping: log scale when the levels span a factor of 8 or more (1, 8, 32, 128), else
/// linear.
struct XScale {
    log: bool,
    lo: f64,
    hi: f64,
}

impl XScale {
    fn new(xs: &[f64]) -> XScale {
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log = lo > 0.0 && hi / lo >= 8.0;
        if !lo.is_finite() || !hi.is_finite() {
            return XScale {
                log: false,
                lo: 0.0,
                hi: 1.0,
            };
        }
        if log {
            XScale {
                log,
                lo: lo.ln(),
                hi: hi.ln(),
            }
        } else {
            XScale {
                log,
                lo: 0.0,
                hi: if hi > 0.0 { hi } else { 1.0 },
            }
        }
    }

    /// 0..=1 across the plot area (a single level sits in the middle).
    fn frac(&self, x: f64) -> f64 {
        let v = if self.log {
            x.max(f64::MIN_POSITIVE).ln()
        } else {
            x
        };
        if self.hi - self.lo <= 0.0 {
            0.5
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

fn panel(out: &mut String, s: &Series, x_label: &str, ox: f64) {
    let (x0, x1) = (ox + LEFT, ox + PANEL_W - RIGHT);
    let (y0, y1) = (PANEL_H - BOTTOM, TOP);
    let xs: Vec<f64> = s.points.iter().map(|p| p.0).collect();
    let scale = XScale::new(&xs);
    let ymax = s.points.iter().filter_map(|p| p.1).fold(0.0, f64::max);
    let yticks = nice_ticks(ymax * 1.05, 5);
    let ytop = yticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
    let px = |x: f64| x0 + scale.frac(x) * (x1 - x0);
    let py = |y: f64| y0 - y / ytop * (y0 - y1);

    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="20" text-anchor="middle" font-weight="bold">{}</text>"#,
        (x0 + x1) / 2.0,
        escape(s.title)
    );
    // Axes.
    let _ = writeln!(
        out,
        r##"<path d="M{x0:.1},{y1:.1} V{y0:.1} H{x1:.1}" fill="none" stroke="#333"/>"##
    );
    for t in &yticks {
        let y = py(*t);
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#eee"/><line x1="{:.1}" y1="{y:.1}" x2="{x0:.1}" y2="{y:.1}" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0,
            x0 - 5.0,
            x0 - 8.0,
            y + 4.0,
            label(*t)
        );
    }
    for x in &xs {
        let x = px(*x);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/>"##,
            y0 + 5.0
        );
    }
    for x in &xs {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            px(*x),
            y0 + 18.0,
            label(*x)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}{}</text>"#,
        (x0 + x1) / 2.0,
        PANEL_H - 10.0,
        escape(x_label),
        if scale.log { " (log scale)" } else { "" }
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        ox + 16.0,
        (y0 + y1) / 2.0,
        escape(s.y_label)
    );
    // The series: a polyline through the points that have data, and a dot on each.
    let pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter_map(|(x, y)| y.map(|y| (px(*x), py(y))))
        .collect();
    let coords: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        out,
        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
        coords.join(" "),
        s.color
    );
    for (x, y) in pts {
        let _ = writeln!(
            out,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{}"/>"#,
            s.color
        );
    }
}

/// The whole SVG document: the two series side by side.
pub fn svg(left: &Series, right: &Series, x_label: &str, caption: &str) -> String {
    let width = 2.0 * PANEL_W;
    let height = PANEL_H + 24.0;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    out.push('\n');
    out.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    out.push('\n');
    panel(&mut out, left, x_label, 0.0);
    panel(&mut out, right, x_label, PANEL_W);
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#666">{}</text>"##,
        width / 2.0,
        height - 6.0,
        escape(caption)
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(nice_ticks(9.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = nice_ticks(1234.0, 5);
        assert!(*t.last().unwrap() >= 1234.0 && t[1] == 500.0);
        let t = nice_ticks(0.0, 5);
        assert_eq!((t.len(), t[0], t[5]), (6, 0.0, 1.0));
    }

    #[test]
    fn the_svg_has_two_series_and_survives_missing_points() {
        let a = Series {
            title: "Throughput",
            y_label: "req/s",
            color: "#1f77b4",
            points: vec![(1.0, Some(10.0)), (8.0, Some(50.0)), (32.0, Some(60.0))],
        };
        let b = Series {
            title: "p99 <latency>",
            y_label: "ms",
            color: "#d62728",
            points: vec![(1.0, Some(2.0)), (8.0, None), (32.0, Some(9.0))],
        };
        let s = svg(&a, &b, "concurrency", "nlpd bench");
        assert!(s.starts_with("<svg"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("log scale") && s.contains("&lt;latency&gt;"));
        assert!(!s.contains("NaN") && !s.contains("inf"));
    }
}
