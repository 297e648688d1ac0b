//! The admin page's plots: each member's sync lag and git requests per minute over the last
//! hour, drawn by the node as inline SVG (no script, no library), each with its numbers in
//! words for screen readers.

use std::fmt::Write;

use mirrorfarm_common::farm::series::SeriesPoint;

use super::html::esc;

/// One member's points.
#[derive(Debug, Clone)]
pub struct MemberSeries {
    /// Its node ID.
    pub node_id: String,
    /// Its points, oldest first (empty: it did not answer).
    pub points: Vec<SeriesPoint>,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];
const W: f64 = 640.0;
const H: f64 = 170.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// The section: both plots for `series` at `now_ms`, over the last `window_ms` (60 points).
pub fn section(series: &[MemberSeries], now_ms: i64, window_ms: i64) -> String {
    let empty = series.iter().all(|m| m.points.is_empty());
    let body = if empty {
        format!(
            "<p>A point is taken every {} s (<code>mirror.admin.plotInterval</code>): the first \
             comes that long after a member starts.</p>",
            window_ms / 60_000
        )
    } else {
        let mut legend = String::from("<p class=legend>");
        for (i, m) in series.iter().enumerate() {
            let _ = write!(
                legend,
                "<span><svg width=12 height=12 aria-hidden=true><rect width=12 height=12 fill=\"{}\"/></svg> <code>{}</code>{}</span> ",
                COLORS[i % COLORS.len()],
                esc(short(&m.node_id)),
                if m.points.is_empty() { " (no answer)" } else { "" }
            );
        }
        legend.push_str("</p>");
        legend
            + &chart(
                "Sync lag (seconds since the oldest repository's last successful sync)",
                "lag",
                series,
                (now_ms, window_ms),
                |p| p.lag_seconds,
            )
            + &chart(
                "Git requests served per point",
                "requests",
                series,
                (now_ms, window_ms),
                |p| p.requests,
            )
    };
    format!(
        "<section id=plots aria-labelledby=plots-h><h2 id=plots-h>The last {}</h2>{body}</section>",
        span(window_ms)
    )
}

/// A window in words: `hour`, `60 min`, `5 min`, `60 s`.
fn span(window_ms: i64) -> String {
    match window_ms {
        3_600_000 => "hour".into(),
        w if w >= 120_000 => format!("{} min", w / 60_000),
        w => format!("{} s", w / 1000),
    }
}

fn short(node_id: &str) -> &str {
    node_id.get(..8).unwrap_or(node_id)
}

fn chart(
    title: &str,
    id: &str,
    series: &[MemberSeries],
    (now_ms, window_ms): (i64, i64),
    value: fn(&SeriesPoint) -> u64,
) -> String {
    let max = series
        .iter()
        .flat_map(|m| m.points.iter().map(value))
        .max()
        .unwrap_or(0)
        .max(1);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let window = window_ms.max(1) as f64;
    let x = |at: i64| LEFT + (1.0 - ((now_ms - at) as f64 / window).clamp(0.0, 1.0)) * pw;
    let y = |v: u64| TOP + ph - (v as f64 / max as f64) * ph;
    let mut lines = String::new();
    let mut words = Vec::new();
    for (i, m) in series.iter().enumerate() {
        if m.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = m
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.at_ms), y(value(p))))
            .collect();
        let _ = write!(
            lines,
            "<polyline fill=none stroke-width=2 stroke=\"{}\" points=\"{}\"/>",
            COLORS[i % COLORS.len()],
            pts.join(" ")
        );
        let last = m.points.last().map(value).unwrap_or(0);
        let top = m.points.iter().map(value).max().unwrap_or(0);
        words.push(format!("{}: now {last}, at most {top}", short(&m.node_id)));
    }
    let label = format!("{title}. {}", words.join("; "));
    format!(
        "<h3 id=plot-{id}-h>{title}</h3><svg id=plot-{id} role=img aria-label=\"{label}\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\">\
<title>{label}</title>\
<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{yb}\" stroke=\"#999\"/>\
<line x1=\"{LEFT}\" y1=\"{yb}\" x2=\"{xr}\" y2=\"{yb}\" stroke=\"#999\"/>\
<text x=\"{tx}\" y=\"{ty}\" font-size=11 text-anchor=end>{max}</text>\
<text x=\"{tx}\" y=\"{yb}\" font-size=11 text-anchor=end>0</text>\
<text x=\"{LEFT}\" y=\"{yl}\" font-size=11>{ago} ago</text>\
<text x=\"{xr}\" y=\"{yl}\" font-size=11 text-anchor=end>now</text>{lines}</svg>",
        title = esc(title),
        label = esc(&label),
        yb = TOP + ph,
        xr = LEFT + pw,
        tx = LEFT - 4.0,
        ty = TOP + 10.0,
        yl = H - 6.0,
        ago = span(window_ms).replace("hour", "an hour"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_ms: i64, lag_seconds: u64, requests: u64) -> SeriesPoint {
        SeriesPoint {
            at_ms,
            lag_seconds,
            requests,
        }
    }

    #[test]
    fn one_line_per_member_that_answered_and_its_numbers_in_words() {
        let now = 10 * 3_600_000;
        let series = vec![
            MemberSeries {
                node_id: "aaaaaaaa-1".into(),
                points: vec![point(now - 120_000, 30, 4), point(now - 60_000, 90, 12)],
            },
            MemberSeries {
                node_id: "bbbbbbbb-2".into(),
                points: Vec::new(),
            },
        ];
        let html = section(&series, now, 3_600_000);
        assert_eq!(
            html.matches("<polyline").count(),
            2,
            "one line per plot: {html}"
        );
        assert!(html.contains("aaaaaaaa: now 90, at most 90"), "{html}");
        assert!(html.contains("aaaaaaaa: now 12, at most 12"), "{html}");
        assert!(html.contains("(no answer)"), "{html}");
        // The newest point sits a minute left of "now": x = LEFT + (59/60) * width.
        let x = LEFT + (59.0 / 60.0) * (W - LEFT - RIGHT);
        assert!(html.contains(&format!("{x:.1},")), "{html}");
        assert!(section(&[], now, 3_600_000).contains("every 60 s"));
        assert!(html.contains("The last hour") && html.contains("an hour ago"));
        assert!(section(&series, now, 60_000).contains("The last 60 s"));
    }
}
