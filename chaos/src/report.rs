//! A self-contained HTML report: one timeline per key, in the spirit of Porcupine's
//! `history.html`.
//!
//! Each key gets an SVG with one lane per process; operations are bars from invoke to
//! completion (to the right edge for `info`), green for ok, red for fail, orange for info, and
//! labelled with their function and value. Nemesis faults are grey bands. On a linearizability
//! violation, operations inside the longest linearizable prefix are outlined in blue, the end of
//! that prefix is a blue line, and the window's culprit is outlined in red. Everything is inline
//! (CSS, a few lines of JS for zoom, SVG), so the file opens offline.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::check::{CheckReport, Verdict, Violation};
use crate::history::{Fault, Function, History, Operation, Outcome, Value};

/// Keys with more operations than this show only the part around their violation (or their
/// first operations), so the file stays small enough for a browser.
const OPERATIONS_SHOWN_MAX: usize = 3_000;
/// Width of a timeline at zoom 1, in pixels.
const WIDTH: f64 = 1_400.0;
/// Height of one process lane, in pixels.
const LANE: f64 = 18.0;
/// Room on the left for lane labels.
const GUTTER: f64 = 60.0;

/// Renders the report for `history` and its check results.
pub fn render(history: &History, report: &CheckReport) -> String {
    let violations: Vec<&Violation> = report
        .checkers
        .iter()
        .filter_map(|checker| match &checker.verdict {
            Verdict::Violation(violations) => Some(violations.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &history.operations {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let violated: BTreeSet<&str> = violations.iter().filter_map(|violation| violation.key.as_deref()).collect();
    let mut keys: Vec<&str> = violated.iter().copied().filter(|key| by_key.contains_key(key)).collect();
    keys.extend(by_key.keys().filter(|key| !violated.contains(*key)));
    let mut html = String::with_capacity(64 * history.operations.len() + 4_096);
    html.push_str(HEAD);
    let _ = writeln!(html, "<h1>cairn history check</h1><pre class=\"summary\">{}</pre>", escape(&report.to_string()));
    for key in keys {
        let key_violations: Vec<&Violation> =
            violations.iter().copied().filter(|violation| violation.key.as_deref() == Some(key)).collect();
        render_key(&mut html, key, &by_key[key], &key_violations, &history.faults);
    }
    html.push_str(TAIL);
    html
}

/// What to highlight on one key.
struct Marks {
    culprits: BTreeSet<usize>,
    window: BTreeSet<usize>,
    prefix_end: Option<u64>,
}

fn render_key(html: &mut String, key: &str, ops: &[&Operation], violations: &[&Violation], faults: &[Fault]) {
    let marks = Marks {
        culprits: violations.iter().flat_map(|violation| violation.culprits.iter().copied()).collect(),
        window: violations.iter().flat_map(|violation| violation.window.iter().map(|op| op.id)).collect(),
        prefix_end: violations.iter().filter_map(|violation| violation.prefix_end).min(),
    };
    let shown = shown_operations(ops, &marks);
    let status = if violations.is_empty() { "" } else { " <span class=\"bad\">violation</span>" };
    let _ = writeln!(html, "<h2>key {}{status}</h2>", escape(&format!("{key:?}")));
    for violation in violations {
        let _ = writeln!(html, "<p class=\"bad\">{}</p>", escape(&violation.summary));
    }
    if shown.len() < ops.len() {
        let _ = writeln!(html, "<p>showing {} of {} operations</p>", shown.len(), ops.len());
    }
    let Some(first) = shown.first() else { return };
    let start = first.start_time;
    let end = shown.iter().map(|op| op.end_time.unwrap_or(op.start_time)).max().unwrap_or(start).max(start + 1);
    let lanes: BTreeMap<u64, usize> = shown
        .iter()
        .map(|op| op.process)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(lane, process)| (process, lane))
        .collect();
    let timeline = Timeline { start, end, height: LANE * lanes.len() as f64 + 20.0 };
    let _ = writeln!(
        html,
        "<div class=\"scroll\"><svg class=\"timeline\" data-width=\"{}\" width=\"{}\" height=\"{}\">",
        WIDTH + GUTTER,
        WIDTH + GUTTER,
        timeline.height
    );
    for (process, lane) in &lanes {
        let y = LANE * *lane as f64 + LANE * 0.7;
        let _ = writeln!(html, "<text class=\"lane\" x=\"2\" y=\"{y:.1}\">p{process}</text>");
    }
    render_faults(html, &timeline, faults);
    for op in &shown {
        render_operation(html, &timeline, op, lanes[&op.process], &marks);
    }
    if let Some(prefix_end) = marks.prefix_end {
        let time = ops.iter().find(|op| op.complete_index == Some(prefix_end)).and_then(|op| op.end_time);
        if let Some(time) = time {
            let x = timeline.x(time);
            let _ = writeln!(
                html,
                "<line class=\"prefix\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"0\" y2=\"{}\"><title>end of the longest linearizable prefix</title></line>",
                timeline.height
            );
        }
    }
    html.push_str("</svg></div>\n");
}

/// Maps nanoseconds to pixels for one key.
struct Timeline {
    start: u64,
    end: u64,
    height: f64,
}

impl Timeline {
    fn x(&self, time: u64) -> f64 {
        let span = (self.end - self.start) as f64;
        GUTTER + WIDTH * (time.saturating_sub(self.start)) as f64 / span
    }
}

/// The operations to draw: all of them, or those around the violation when there are too many.
fn shown_operations<'h>(ops: &[&'h Operation], marks: &Marks) -> Vec<&'h Operation> {
    if ops.len() <= OPERATIONS_SHOWN_MAX {
        return ops.to_vec();
    }
    let center = ops.iter().position(|op| marks.culprits.contains(&op.id)).unwrap_or(0);
    let first = center.saturating_sub(OPERATIONS_SHOWN_MAX / 2);
    let last = (first + OPERATIONS_SHOWN_MAX).min(ops.len());
    ops[first..last].to_vec()
}

fn render_faults(html: &mut String, timeline: &Timeline, faults: &[Fault]) {
    for fault in faults {
        let from = fault.start_time.max(timeline.start);
        let to = fault.stop_time.unwrap_or(timeline.end).min(timeline.end);
        if to <= from {
            continue;
        }
        let (x, width) = (timeline.x(from), timeline.x(to) - timeline.x(from));
        let what = format!("{} {}", fault.fault, fault.value.as_deref().unwrap_or(""));
        let _ = writeln!(
            html,
            "<rect class=\"fault\" x=\"{x:.1}\" y=\"0\" width=\"{width:.1}\" height=\"{}\"><title>{}</title></rect>",
            timeline.height,
            escape(&what)
        );
    }
}

fn render_operation(html: &mut String, timeline: &Timeline, op: &Operation, lane: usize, marks: &Marks) {
    let x = timeline.x(op.start_time);
    let x_end = op.end_time.map_or(GUTTER + WIDTH, |end| timeline.x(end));
    let width = (x_end - x).max(2.0);
    let y = LANE * lane as f64 + 2.0;
    let mut class = match op.outcome {
        Outcome::Ok => "op ok".to_owned(),
        Outcome::Fail => "op fail".to_owned(),
        Outcome::Info => "op info".to_owned(),
    };
    if marks.culprits.contains(&op.id) {
        class.push_str(" culprit");
    } else if marks.window.contains(&op.id) {
        class.push_str(" window");
    } else if marks.prefix_end.is_some_and(|end| op.end_index() < end) {
        class.push_str(" prefix");
    }
    let _ = writeln!(
        html,
        "<g class=\"{class}\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text><title>line {}: {}</title></g>",
        LANE - 4.0,
        x + 2.0,
        y + LANE * 0.6,
        escape(&label(op)),
        op.invoke_line,
        escape(&op.to_string())
    );
}

/// A short bar label: `w v7`, `r v7`, `cas v1→v2`, `del true`.
fn label(op: &Operation) -> String {
    let show = |value: Option<&str>| value.unwrap_or("∅").to_owned();
    match (op.f, &op.input, &op.output) {
        (Function::Read, _, _) if op.outcome == Outcome::Ok => format!("r {}", show(op.read_value().flatten())),
        (Function::Read, _, _) => "r".to_owned(),
        (Function::Write, Value::Str(value), _) => format!("w {value}"),
        (Function::Cas, Value::Cas { expected, new }, _) => format!("cas {}→{new}", show(expected.as_deref())),
        (Function::Delete, _, Value::Deleted(deleted)) => format!("del {deleted}"),
        (f, _, _) => f.to_string(),
    }
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            c => escaped.push(c),
        }
    }
    escaped
}

const HEAD: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>cairn history check</title>
<style>
body { font: 13px system-ui, sans-serif; margin: 1em; }
pre.summary { background: #f6f6f6; padding: 0.5em; overflow-x: auto; }
.scroll { overflow-x: auto; border: 1px solid #ddd; margin-bottom: 1.5em; }
.bad { color: #b71c1c; font-weight: bold; }
.controls { position: sticky; top: 0; background: #fff; padding: 0.3em 0; }
svg text { font: 10px monospace; pointer-events: none; }
text.lane { fill: #555; }
.op rect { stroke: #333; stroke-width: 0.5; }
.op.ok rect { fill: #a5d6a7; }
.op.fail rect { fill: #ef9a9a; }
.op.info rect { fill: #ffcc80; }
.op.prefix rect { stroke: #1565c0; stroke-width: 1; }
.op.window rect { stroke: #e65100; stroke-width: 1.5; }
.op.culprit rect { stroke: #b71c1c; stroke-width: 3; }
.fault { fill: #9e9e9e; opacity: 0.18; }
line.prefix { stroke: #1565c0; stroke-width: 2; stroke-dasharray: 4 2; }
</style></head><body>
<div class="controls">zoom: <button onclick="zoom(2)">+</button> <button onclick="zoom(0.5)">−</button>
<button onclick="zoom(0)">reset</button> · hover a bar for the operation · blue: longest linearizable prefix · red: culprit · orange: its window</div>
"#;

const TAIL: &str = r#"<script>
let scale = 1;
function zoom(factor) {
  scale = factor === 0 ? 1 : Math.max(0.25, scale * factor);
  for (const svg of document.querySelectorAll("svg.timeline")) {
    const width = Number(svg.dataset.width);
    svg.setAttribute("width", width * scale);
    svg.setAttribute("viewBox", "0 0 " + width + " " + svg.getAttribute("height"));
    svg.setAttribute("preserveAspectRatio", "none");
  }
}
</script></body></html>
"#;
