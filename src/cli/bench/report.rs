//! What a run measured: per-client tallies with HDR latency histograms, merged at the end into
//! the report, printed as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::target::Outcome;
use super::workload::Op;

/// The largest latency a histogram tells apart; slower requests are recorded as this. `--timeout`
/// is capped at it, so in practice nothing is clamped.
pub const LATENCY_MAX: Duration = Duration::from_secs(600);

/// Latencies in microseconds, to three significant digits (an error of at most 0.1%).
#[derive(Clone, Debug)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        let highest = u64::try_from(LATENCY_MAX.as_micros()).expect("the bound fits in u64");
        Latencies { histogram: Histogram::new_with_bounds(1, highest, 3).expect("the bounds are valid") }
    }
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.histogram.add(&other.histogram).expect("histograms with the same bounds add up");
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let at = |quantile: f64| ms(self.histogram.value_at_quantile(quantile));
        LatencySummary {
            count: self.histogram.len(),
            mean_ms: self.histogram.mean() / 1000.0,
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(self.histogram.max()),
            distribution: self.distribution(),
        }
    }

    /// Empty when nothing was recorded: there is no distribution to describe.
    fn distribution(&self) -> Vec<Percentile> {
        if self.histogram.is_empty() {
            return Vec::new();
        }
        distribution_steps()
            .map(|hundredths| {
                let micros = self.histogram.value_at_quantile(f64::from(hundredths) / 10_000.0);
                Percentile { percentile: f64::from(hundredths) / 100.0, ms: micros as f64 / 1000.0 }
            })
            .collect()
    }
}

/// The percentiles of a distribution, in hundredths of a percent: every whole one up to 98, then
/// tenths up to 99.8, then hundredths from 99.9 to 100 (119 points), so that a CDF drawn from them
/// shows the tail as finely as the body. Integers, so that the JSON says 99.9, not 99.90000000000001.
fn distribution_steps() -> impl Iterator<Item = u32> {
    (0..9900).step_by(100).chain((9900..9990).step_by(10)).chain(9990..=10_000)
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Points of the cumulative distribution, from the fastest request (percentile 0) to the
    /// slowest (100); see [`distribution_steps`].
    pub distribution: Vec<Percentile>,
}

/// One point of a latency distribution: `percentile` percent of the requests took at most `ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentile {
    pub percentile: f64,
    pub ms: f64,
}

/// What one client (or, merged, the whole run) saw. Latencies are of answered requests only;
/// failures are counted by label.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub latencies: BTreeMap<Op, Latencies>,
    pub ok: u64,
    pub misses: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub fn record(&mut self, op: Op, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Miss => self.misses += 1,
            Outcome::Failed(label) => {
                self.failed += 1;
                *self.errors.entry(label).or_default() += 1;
                return;
            }
        }
        self.latencies.entry(op).or_default().record(latency);
    }

    pub fn merge(&mut self, other: Tally) {
        for (op, latencies) in &other.latencies {
            self.latencies.entry(*op).or_default().merge(latencies);
        }
        self.ok += other.ok;
        self.misses += other.misses;
        self.failed += other.failed;
        for (label, count) in other.errors {
            *self.errors.entry(label).or_default() += count;
        }
    }

    /// Every answered request's latency, whatever its operation.
    fn all_latencies(&self) -> Latencies {
        let mut all = Latencies::default();
        for latencies in self.latencies.values() {
            all.merge(latencies);
        }
        all
    }
}

/// How the run was set up, as the report states it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Setup {
    pub mode: String,
    pub target: String,
    pub endpoints: Vec<String>,
    pub clients: u32,
    pub conns: u32,
    pub key_space: u64,
    pub key_size: usize,
    pub value_size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchers: Option<u32>,
}

/// The final report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub setup: Setup,
    pub elapsed_s: f64,
    pub ok: u64,
    pub misses: u64,
    pub failed: u64,
    /// Answered requests (ok and misses) per second of the whole run.
    pub ops_per_s: f64,
    /// `all`, and one entry per operation when a run mixes them.
    pub latency: BTreeMap<String, LatencySummary>,
    pub errors: BTreeMap<String, u64>,
    /// For `watch`: what the watchers received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Events>,
}

/// What the watchers of a `watch` run received: each successful put is expected once by every
/// watcher. The latency runs from the put sent to the event received.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Events {
    pub delivered: u64,
    pub missing: u64,
    pub latency: LatencySummary,
}

impl Report {
    pub fn new(setup: Setup, tally: &Tally, elapsed: Duration) -> Report {
        let answered = tally.ok + tally.misses;
        let seconds = elapsed.as_secs_f64();
        let mut latency = BTreeMap::from([("all".to_string(), tally.all_latencies().summary())]);
        if tally.latencies.len() > 1 {
            for (op, latencies) in &tally.latencies {
                latency.insert(op.name().to_string(), latencies.summary());
            }
        }
        Report {
            setup,
            elapsed_s: seconds,
            ok: tally.ok,
            misses: tally.misses,
            failed: tally.failed,
            ops_per_s: if seconds > 0.0 { answered as f64 / seconds } else { 0.0 },
            latency,
            errors: tally.errors.clone(),
            events: None,
        }
    }

    /// Whether every request was answered and every expected event delivered.
    pub fn complete(&self) -> bool {
        self.failed == 0 && self.events.as_ref().is_none_or(|events| events.missing == 0)
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    pub fn text(&self) -> String {
        let setup = &self.setup;
        let mut text = format!("{} on {} ({})", setup.mode, setup.target, setup.endpoints.join(", "));
        if let Some(consistency) = &setup.consistency {
            let _ = write!(text, ", {consistency} reads");
        }
        if let Some(ratio) = setup.read_ratio {
            let _ = write!(text, ", {:.0}% reads", ratio * 100.0);
        }
        if let Some(watchers) = setup.watchers {
            let _ = write!(text, ", {}", counted(u64::from(watchers), "watcher"));
        }
        let _ = writeln!(
            text,
            "\n  {}, {}, {} of {} bytes, {}-byte values",
            counted(u64::from(setup.clients), "client"),
            counted(u64::from(setup.conns), "connection"),
            counted(setup.key_space, "key"),
            setup.key_size,
            setup.value_size
        );
        let _ = writeln!(
            text,
            "  {} ok, {} misses, {} failed in {:.2} s: {} ops/s",
            thousands(self.ok),
            thousands(self.misses),
            thousands(self.failed),
            self.elapsed_s,
            thousands(self.ops_per_s.round() as u64)
        );
        let _ = writeln!(
            text,
            "  {:<14}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "latency (ms)", "mean", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, summary) in &self.latency {
            let _ = writeln!(
                text,
                "  {name:<14}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
                summary.mean_ms, summary.p50_ms, summary.p90_ms, summary.p99_ms, summary.p999_ms, summary.max_ms
            );
        }
        if let Some(events) = &self.events {
            let summary = &events.latency;
            let _ = writeln!(
                text,
                "  {:<14}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
                "event",
                summary.mean_ms,
                summary.p50_ms,
                summary.p90_ms,
                summary.p99_ms,
                summary.p999_ms,
                summary.max_ms
            );
            let _ = writeln!(
                text,
                "  event: from put sent to event received; {} delivered, {} missing",
                thousands(events.delivered),
                thousands(events.missing)
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(text, "  errors");
            for (label, count) in &self.errors {
                let _ = writeln!(text, "  {:>12}  {label}", thousands(*count));
            }
        }
        text
    }
}

/// `1 key`, `1,000 keys`.
fn counted(number: u64, noun: &str) -> String {
    let plural = if number == 1 { "" } else { "s" };
    format!("{} {noun}{plural}", thousands(number))
}

/// `1234567` as `1,234,567`.
pub fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            mode: "put".into(),
            target: "cairn".into(),
            endpoints: vec!["127.0.0.1:7710".into()],
            clients: 16,
            conns: 16,
            key_space: 1,
            key_size: 8,
            value_size: 256,
            consistency: None,
            read_ratio: None,
            watchers: None,
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram_within_its_precision() {
        let mut latencies = Latencies::default();
        for millis in 1..=1000 {
            latencies.record(Duration::from_millis(millis));
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 1000);
        let close = |value: f64, expected: f64| (value - expected).abs() <= expected * 0.001;
        assert!(close(summary.p50_ms, 500.0), "{summary:?}");
        assert!(close(summary.p90_ms, 900.0), "{summary:?}");
        assert!(close(summary.p99_ms, 990.0), "{summary:?}");
        assert!(close(summary.p999_ms, 999.0), "{summary:?}");
        assert!(close(summary.max_ms, 1000.0), "{summary:?}");
        assert!(close(summary.mean_ms, 500.5), "{summary:?}");
    }

    #[test]
    fn the_distribution_runs_from_the_fastest_to_the_slowest_request_finer_in_the_tail() {
        let mut latencies = Latencies::default();
        for millis in 1..=10_000 {
            latencies.record(Duration::from_micros(millis * 100));
        }
        let summary = latencies.summary();
        let points = &summary.distribution;
        assert_eq!(points.len(), 119);
        assert_eq!((points[0].percentile, points[0].ms), (0.0, 0.1), "the fastest request");
        assert_eq!(points.last().unwrap().percentile, 100.0);
        assert_eq!(points.last().unwrap().ms, summary.max_ms);
        let percentiles: Vec<f64> = points.iter().map(|point| point.percentile).collect();
        assert!(percentiles.contains(&98.0) && percentiles.contains(&99.5) && percentiles.contains(&99.99));
        assert!(points.windows(2).all(|pair| pair[0].percentile < pair[1].percentile));
        assert!(points.windows(2).all(|pair| pair[0].ms <= pair[1].ms));
        let at = |percentile: f64| points.iter().find(|point| point.percentile == percentile).unwrap().ms;
        assert_eq!((at(50.0), at(99.0), at(99.9)), (summary.p50_ms, summary.p99_ms, summary.p999_ms));
        assert!(Latencies::default().summary().distribution.is_empty(), "nothing recorded, no points");
    }

    #[test]
    fn latencies_beyond_the_histogram_are_clamped_not_lost() {
        let mut latencies = Latencies::default();
        latencies.record(Duration::from_secs(3600));
        latencies.record(Duration::ZERO);
        assert_eq!(latencies.summary().count, 2);
        assert!(latencies.summary().max_ms >= 599_000.0);
    }

    #[test]
    fn tallies_merge_counts_errors_and_latencies() {
        let mut first = Tally::default();
        first.record(Op::Put, Outcome::Ok, Duration::from_millis(2));
        first.record(Op::Put, Outcome::Failed("503 no_leader".into()), Duration::from_millis(9));
        let mut second = Tally::default();
        second.record(Op::Get, Outcome::Miss, Duration::from_millis(1));
        second.record(Op::Put, Outcome::Failed("503 no_leader".into()), Duration::from_millis(9));
        first.merge(second);
        assert_eq!((first.ok, first.misses, first.failed), (1, 1, 2));
        assert_eq!(first.errors["503 no_leader"], 2);
        assert_eq!(first.all_latencies().summary().count, 2, "failures have no latency");
    }

    #[test]
    fn throughput_counts_answered_requests_over_the_whole_run() {
        let mut tally = Tally::default();
        for _ in 0..300 {
            tally.record(Op::Put, Outcome::Ok, Duration::from_millis(3));
        }
        tally.record(Op::Put, Outcome::Failed("timeout".into()), Duration::from_secs(1));
        let report = Report::new(setup(), &tally, Duration::from_secs(2));
        assert_eq!(report.ops_per_s, 150.0);
        assert_eq!(report.latency.keys().collect::<Vec<_>>(), ["all"], "one operation, one row");
    }

    #[test]
    fn a_mixed_run_reports_each_operation_apart() {
        let mut tally = Tally::default();
        tally.record(Op::Put, Outcome::Ok, Duration::from_millis(3));
        tally.record(Op::Get, Outcome::Ok, Duration::from_millis(1));
        let report = Report::new(setup(), &tally, Duration::from_secs(1));
        assert_eq!(report.latency.keys().collect::<Vec<_>>(), ["all", "get", "put"]);
    }

    #[test]
    fn the_text_report_states_the_setup_throughput_percentiles_and_errors() {
        let mut tally = Tally::default();
        tally.record(Op::Put, Outcome::Ok, Duration::from_micros(1930));
        tally.record(Op::Put, Outcome::Failed("503 no_leader".into()), Duration::ZERO);
        let text = Report::new(setup(), &tally, Duration::from_millis(500)).text();
        assert!(text.starts_with("put on cairn (127.0.0.1:7710)\n  16 clients, 16 connections, 1 key of 8 bytes"));
        assert!(text.contains("1 ok, 0 misses, 1 failed in 0.50 s: 2 ops/s"), "{text}");
        assert!(text.contains("p99.9"), "{text}");
        assert!(text.contains("1.93"), "{text}");
        assert!(text.contains("1  503 no_leader"), "{text}");
    }

    #[test]
    fn the_json_report_has_flat_setup_fields_and_latencies_in_milliseconds() {
        let mut tally = Tally::default();
        tally.record(Op::Put, Outcome::Ok, Duration::from_millis(1));
        let json: serde_json::Value =
            serde_json::from_str(&Report::new(setup(), &tally, Duration::from_secs(1)).json()).unwrap();
        assert_eq!(json["mode"], "put");
        assert_eq!(json["clients"], 16);
        assert_eq!(json["ops_per_s"], 1.0);
        assert!(json.get("consistency").is_none());
        assert_eq!(json["latency"]["all"]["p99_ms"], 1.0);
        assert_eq!(json["latency"]["all"]["distribution"][0], serde_json::json!({"percentile": 0.0, "ms": 1.0}));
    }

    #[test]
    fn a_watch_report_adds_the_event_row_and_missing_events_make_it_incomplete() {
        let mut tally = Tally::default();
        tally.record(Op::Put, Outcome::Ok, Duration::from_millis(1));
        let mut report = Report::new(Setup { watchers: Some(2), ..setup() }, &tally, Duration::from_secs(1));
        assert!(report.complete());
        let mut latencies = Latencies::default();
        latencies.record(Duration::from_millis(2));
        report.events = Some(Events { delivered: 1, missing: 1, latency: latencies.summary() });
        assert!(!report.complete());
        let text = report.text();
        assert!(text.starts_with("put on cairn (127.0.0.1:7710), 2 watchers"), "{text}");
        assert!(text.contains("1 delivered, 1 missing"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["events"]["missing"], 1);
        assert_eq!(json["watchers"], 2);
    }

    #[test]
    fn large_numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
