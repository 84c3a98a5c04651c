//! `cairn bench chart`: SVG charts of put runs from the reports `cairn bench put --json` printed
//! (as `bench/compare.sh` saves them), one line per system: throughput against clients, and the
//! latency distribution of the runs with `--cdf-clients` clients as a CDF.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Deserialize;

use super::report::Percentile;
use super::svg::{Axis, LineChart, Scale, Series};

/// Where the throughput chart goes, in `--out`.
const THROUGHPUT_FILE: &str = "put-throughput.svg";

/// Flags of `cairn bench chart`.
#[derive(Debug, Args)]
pub struct ChartArgs {
    /// Reports of put runs, as `cairn bench put --json` printed them; at most one per system and
    /// client count.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Directory to write put-throughput.svg and put-latency-<N>-clients.svg to.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// The client count whose runs the latency CDF shows.
    #[arg(long, default_value_t = 64)]
    cdf_clients: u32,
}

/// What the charts need of a saved report; other fields are ignored.
#[derive(Debug, Deserialize)]
struct SavedReport {
    mode: String,
    target: String,
    clients: u32,
    ops_per_s: f64,
    latency: BTreeMap<String, SavedLatency>,
}

#[derive(Debug, Deserialize)]
struct SavedLatency {
    /// Missing in reports of a `cairn bench` older than the distribution.
    #[serde(default)]
    distribution: Vec<Percentile>,
}

/// One put run, from one report.
#[derive(Debug)]
struct PutRun {
    path: PathBuf,
    system: String,
    clients: u32,
    ops_per_s: f64,
    distribution: Vec<Percentile>,
}

pub fn run(args: &ChartArgs) -> ExitCode {
    match draw(args) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cairn bench chart: {error}");
            ExitCode::from(2)
        }
    }
}

/// Reads every report before writing anything, so that bad input leaves no half set of charts.
fn draw(args: &ChartArgs) -> Result<Vec<PathBuf>, String> {
    let runs = args.reports.iter().map(|path| read_run(path)).collect::<Result<Vec<_>, _>>()?;
    refuse_repeats(&runs)?;
    let charts = [
        (args.out.join(THROUGHPUT_FILE), throughput_chart(&runs)?),
        (
            args.out.join(format!("put-latency-{}-clients.svg", args.cdf_clients)),
            latency_chart(&runs, args.cdf_clients)?,
        ),
    ];
    let mut written = Vec::new();
    for (path, chart) in charts {
        let svg = chart.svg()?;
        std::fs::write(&path, svg).map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn read_run(path: &Path) -> Result<PutRun, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let report: SavedReport = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not a report of `cairn bench --json`: {error}", path.display()))?;
    if report.mode != "put" {
        return Err(format!("{} is a {} report; the charts are of put runs", path.display(), report.mode));
    }
    let Some(all) = report.latency.into_iter().find_map(|(name, latency)| (name == "all").then_some(latency)) else {
        return Err(format!("{} has no latency of all requests (\"latency\": {{\"all\": …}})", path.display()));
    };
    Ok(PutRun {
        path: path.to_path_buf(),
        system: report.target,
        clients: report.clients,
        ops_per_s: report.ops_per_s,
        distribution: all.distribution,
    })
}

/// Two runs of one system with one client count would make a line double back on itself.
fn refuse_repeats(runs: &[PutRun]) -> Result<(), String> {
    for (index, run) in runs.iter().enumerate() {
        if let Some(earlier) =
            runs[..index].iter().find(|earlier| earlier.system == run.system && earlier.clients == run.clients)
        {
            return Err(format!(
                "{} and {} are both put runs on {} with {} clients; give one of them",
                earlier.path.display(),
                run.path.display(),
                run.system,
                run.clients
            ));
        }
    }
    Ok(())
}

/// The systems in the order their first report was given, so that colours follow the command
/// line.
fn systems(runs: &[PutRun]) -> Vec<&str> {
    let mut systems: Vec<&str> = Vec::new();
    for run in runs {
        if !systems.contains(&run.system.as_str()) {
            systems.push(&run.system);
        }
    }
    systems
}

fn throughput_chart(runs: &[PutRun]) -> Result<LineChart, String> {
    let series = systems(runs)
        .into_iter()
        .map(|system| {
            let mut points: Vec<(f64, f64)> = runs
                .iter()
                .filter(|run| run.system == system)
                .map(|run| (f64::from(run.clients), run.ops_per_s))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { name: system.to_string(), points }
        })
        .collect();
    let mut clients: Vec<u32> = runs.iter().map(|run| run.clients).collect();
    clients.sort_unstable();
    clients.dedup();
    if clients.contains(&0) {
        return Err("a report says 0 clients, which no run has".to_string());
    }
    Ok(LineChart {
        title: "put throughput against clients (cairn bench)".to_string(),
        x: Axis {
            label: "clients (log scale)".to_string(),
            scale: Scale::Log,
            ticks: clients.into_iter().map(f64::from).collect(),
        },
        y: Axis { label: "puts per second".to_string(), scale: Scale::Linear, ticks: Vec::new() },
        series,
        dots: true,
    })
}

fn latency_chart(runs: &[PutRun], clients: u32) -> Result<LineChart, String> {
    let chosen: Vec<&PutRun> = runs.iter().filter(|run| run.clients == clients).collect();
    if chosen.is_empty() {
        let mut counts: Vec<u32> = runs.iter().map(|run| run.clients).collect();
        counts.sort_unstable();
        counts.dedup();
        return Err(format!("no report is of a run with {clients} clients (--cdf-clients); they have {counts:?}"));
    }
    let mut series = Vec::new();
    for run in chosen {
        if run.distribution.is_empty() {
            return Err(format!(
                "{} has no latency distribution: no put was answered, or it was written by a cairn bench \
                 older than the distribution",
                run.path.display()
            ));
        }
        let points = run.distribution.iter().map(|point| (point.ms, point.percentile / 100.0)).collect();
        series.push(Series { name: run.system.clone(), points });
    }
    Ok(LineChart {
        title: format!("put latency CDF, {clients} clients (cairn bench)"),
        x: Axis { label: "latency, ms (log scale)".to_string(), scale: Scale::Log, ticks: Vec::new() },
        y: Axis { label: "fraction of puts answered within".to_string(), scale: Scale::Linear, ticks: Vec::new() },
        series,
        dots: false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::svg::check_well_formed;
    use super::*;

    /// A report as `cairn bench put --json` prints it, with a distribution rising from `fastest_ms`
    /// to ten times that.
    fn report(system: &str, clients: u32, ops_per_s: f64, fastest_ms: f64) -> serde_json::Value {
        let distribution: Vec<_> = (0..=100)
            .map(|percentile| json!({"percentile": f64::from(percentile), "ms": fastest_ms * (1.0 + f64::from(percentile) * 0.09)}))
            .collect();
        json!({
            "mode": "put", "target": system, "endpoints": ["127.0.0.1:7710"], "clients": clients,
            "conns": clients, "key_space": 1, "key_size": 8, "value_size": 256, "elapsed_s": 2.0,
            "ok": 100, "misses": 0, "failed": 0, "ops_per_s": ops_per_s,
            "latency": {"all": {"count": 100, "mean_ms": 1.0, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0,
                "p999_ms": 1.0, "max_ms": 1.0, "distribution": distribution}},
            "errors": {}
        })
    }

    struct Saved {
        directory: tempfile::TempDir,
        paths: Vec<PathBuf>,
    }

    fn save(reports: &[serde_json::Value]) -> Saved {
        let directory = tempfile::tempdir().unwrap();
        let paths = reports
            .iter()
            .enumerate()
            .map(|(index, report)| {
                let path = directory.path().join(format!("{index}.json"));
                std::fs::write(&path, serde_json::to_string_pretty(report).unwrap()).unwrap();
                path
            })
            .collect();
        Saved { directory, paths }
    }

    fn args(saved: &Saved) -> ChartArgs {
        ChartArgs { reports: saved.paths.clone(), out: saved.directory.path().to_path_buf(), cdf_clients: 64 }
    }

    fn both_systems() -> Vec<serde_json::Value> {
        let mut reports = Vec::new();
        for (clients, etcd, cairn) in [
            (1, 700.0, 1000.0),
            (4, 1800.0, 3000.0),
            (16, 3500.0, 7000.0),
            (64, 5000.0, 9800.0),
            (256, 5600.0, 12_000.0),
        ] {
            reports.push(report("etcd", clients, etcd, 1.0));
            reports.push(report("cairn", clients, cairn, 0.5));
        }
        reports
    }

    fn assert_contains_all(svg: &str, texts: &[&str]) {
        for text in texts {
            assert!(svg.contains(text), "{text} missing from {svg}");
        }
    }

    #[test]
    fn both_charts_are_written_with_a_line_per_system_and_their_axes() {
        let saved = save(&both_systems());
        let written = draw(&args(&saved)).unwrap();
        let directory = saved.directory.path();
        assert_eq!(written, [directory.join("put-throughput.svg"), directory.join("put-latency-64-clients.svg")]);

        let throughput = std::fs::read_to_string(&written[0]).unwrap();
        check_well_formed(&throughput).unwrap();
        assert_contains_all(
            &throughput,
            &[
                ">etcd</text>",
                ">cairn</text>",
                ">clients (log scale)</text>",
                ">puts per second</text>",
                ">256</text>",
                ">10,000</text>",
            ],
        );
        assert_eq!(throughput.matches("<polyline").count(), 2);
        assert_eq!(throughput.matches("<circle").count(), 10, "a dot per run");

        let latency = std::fs::read_to_string(&written[1]).unwrap();
        check_well_formed(&latency).unwrap();
        assert_contains_all(
            &latency,
            &[
                ">etcd</text>",
                ">cairn</text>",
                ">latency, ms (log scale)</text>",
                ">fraction of puts answered within</text>",
                "64 clients",
            ],
        );
        assert_eq!(latency.matches("<polyline").count(), 2);
        let points = latency.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 101, "every point of the distribution");
    }

    #[test]
    fn lines_follow_the_client_count_whatever_the_order_of_the_reports() {
        let runs: Vec<PutRun> = [(64, 3.0), (1, 1.0), (16, 2.0)]
            .into_iter()
            .map(|(clients, ops_per_s)| PutRun {
                path: PathBuf::from(format!("{clients}.json")),
                system: "cairn".to_string(),
                clients,
                ops_per_s,
                distribution: Vec::new(),
            })
            .collect();
        let chart = throughput_chart(&runs).unwrap();
        assert_eq!(chart.series[0].points, [(1.0, 1.0), (16.0, 2.0), (64.0, 3.0)]);
        assert_eq!(chart.x.ticks, [1.0, 16.0, 64.0]);
    }

    #[test]
    fn input_that_cannot_be_charted_is_refused_with_the_file_named_and_nothing_written() {
        let refusal = |reports: Vec<serde_json::Value>, cdf_clients: u32| {
            let saved = save(&reports);
            let error = draw(&ChartArgs { cdf_clients, ..args(&saved) }).unwrap_err();
            assert!(!saved.directory.path().join(THROUGHPUT_FILE).exists(), "{error}");
            error
        };
        let mut get = report("etcd", 64, 1.0, 1.0);
        get["mode"] = json!("get");
        assert!(refusal(vec![get], 64).contains("0.json is a get report; the charts are of put runs"));
        let twice = refusal(vec![report("etcd", 16, 1.0, 1.0), report("etcd", 16, 2.0, 1.0)], 16);
        assert!(
            twice.contains("0.json and") && twice.contains("1.json are both put runs on etcd with 16 clients"),
            "{twice}"
        );
        let missing = refusal(vec![report("etcd", 16, 1.0, 1.0)], 64);
        assert!(missing.contains("no report is of a run with 64 clients (--cdf-clients); they have [16]"), "{missing}");
        let mut old = report("etcd", 64, 1.0, 1.0);
        old["latency"]["all"].as_object_mut().unwrap().remove("distribution");
        assert!(refusal(vec![old], 64).contains("0.json has no latency distribution"));
        let mut no_clients = report("etcd", 64, 1.0, 1.0);
        no_clients.as_object_mut().unwrap().remove("clients");
        let error = refusal(vec![no_clients], 64);
        assert!(error.contains("0.json is not a report of `cairn bench --json`: missing field `clients`"), "{error}");
    }

    #[test]
    fn files_that_are_not_reports_are_refused_not_panicked_on() {
        let directory = tempfile::tempdir().unwrap();
        let text = directory.path().join("hey.txt");
        std::fs::write(&text, "Summary:\n  Requests/sec: 757.36\n").unwrap();
        let empty = directory.path().join("empty.json");
        std::fs::write(&empty, "").unwrap();
        let absent = directory.path().join("absent.json");
        let out = directory.path().to_path_buf();
        for (path, expected) in [(&text, "is not a report"), (&empty, "is not a report"), (&absent, "cannot read")] {
            let args = ChartArgs { reports: vec![path.clone()], out: out.clone(), cdf_clients: 64 };
            let error = draw(&args).unwrap_err();
            assert!(error.contains(&path.display().to_string()) && error.contains(expected), "{error}");
        }
        let saved = save(&both_systems());
        let elsewhere = ChartArgs { out: directory.path().join("no/such/directory"), ..args(&saved) };
        assert!(draw(&elsewhere).unwrap_err().contains("cannot write"));
    }
}
