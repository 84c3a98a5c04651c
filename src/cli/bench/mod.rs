//! `cairn bench put|get|mixed|watch`: a closed-loop load generator modelled on etcd's
//! `tools/benchmark`. With `--target etcd` it drives etcd's v3 JSON gateway instead, so that both
//! systems are measured by the same client over the same kind of connection (HTTP/1.1, JSON).
//! `cairn bench chart` draws the reports of such runs, saved with `--json`, as SVG charts.
//!
//! # Layout
//! - [`workload`]: keys, values and the read/write mix; pure and seeded.
//! - [`target`]: the request each operation becomes on each system, and how answers are judged;
//!   [`etcd`] encodes the gateway's bodies.
//! - [`driver`]: clients, connections, the live progress line.
//! - [`report`]: HDR latency histograms and the final report, as text or JSON.
//! - [`watch`]: watch event latency over `/v1/watch` (cairn only).
//! - [`chart`]: charts of saved reports; [`svg`] draws them.
//!
//! Exit codes: 0 when every request was answered (and, for watch, every event delivered), 1 when
//! some were not, 2 for bad flags or an endpoint that is not the asked system. `chart` exits with
//! 2 when a report cannot be read or charted or a chart cannot be written.

mod chart;
mod driver;
mod etcd;
mod report;
mod svg;
mod target;
mod watch;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cairn_http::wire::TOKEN_HEADER;
use cairn_node::storage::FsDisk;
use cairn_node::tls::ClientTls;
use clap::{Args, Subcommand};
use hyper::header::{HeaderName, HeaderValue};

use self::chart::ChartArgs;
use self::driver::{Load, Stop};
use self::report::{Events, LATENCY_MAX, Report, Setup};
use self::target::{Consistency, Requests, System};
use self::workload::{KeyOrder, KeySpace, Mix};
use super::duration;

/// Requests sent when neither `--total` nor `--duration` is given (etcd's default too).
const TOTAL_DEFAULT: u64 = 10_000;
/// More clients than this is a typo rather than a benchmark on one machine.
const CLIENTS_MAX: u32 = 10_000;
/// Values above this are refused before they are built (cairn's own default limit is 1 MiB).
const VALUE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Each watcher is a connection and a task on the server; more than this is a typo.
const WATCHERS_MAX: u32 = 1000;

/// `cairn bench`: a load to measure, or charts of the reports of earlier runs.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Writes.
    Put(LoadArgs),
    /// Reads at --consistency; the key space is written once first, untimed.
    Get(LoadArgs),
    /// Reads (share: --read-ratio) and writes; the key space is written once first, untimed.
    Mixed(LoadArgs),
    /// Watch event latency: writers put under --key-prefix while --watchers streams of
    /// /v1/watch on that prefix report each event; the latency runs from the put sent to the event
    /// received (cairn only).
    Watch(LoadArgs),
    /// SVG charts of put reports saved with --json: throughput against clients, and a latency
    /// CDF, one line per system.
    Chart(ChartArgs),
}

/// What a load measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Put,
    Get,
    Mixed,
    Watch,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Put => "put",
            Mode::Get => "get",
            Mode::Mixed => "mixed",
            Mode::Watch => "watch",
        }
    }
}

/// Flags of `cairn bench put|get|mixed|watch`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The system under test: cairn's API, or etcd's v3 JSON gateway.
    #[arg(long, value_enum, default_value_t = System::Cairn)]
    target: System,
    /// HTTP addresses (host:port), comma-separated; connections go to them in turn. Default:
    /// 127.0.0.1:7700 for cairn, 127.0.0.1:2379 for etcd.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Concurrent clients; each sends its next request when the previous one is answered.
    #[arg(long, default_value_t = 1)]
    clients: u32,
    /// Keep-alive connections the clients share (default: one per client). HTTP/1.1 carries one
    /// request at a time, so with fewer connections than clients, clients wait their turn.
    #[arg(long)]
    conns: Option<u32>,
    /// Requests to send in all [default: 10000 unless --duration is given].
    #[arg(long, conflicts_with = "duration")]
    total: Option<u64>,
    /// Send requests for this long instead of a fixed number: 30s, 2m.
    #[arg(long, value_parser = duration::parse)]
    duration: Option<Duration>,
    /// Distinct keys; each request picks one at random (or in order, --sequential-keys).
    #[arg(long, default_value_t = 1)]
    key_space: u64,
    /// Key length in bytes: the prefix, then the key's number zero-padded.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Start of every key: ASCII letters, digits and / - _ .
    #[arg(long, default_value = "")]
    key_prefix: String,
    /// Pick keys in order (request number modulo the key space) instead of at random.
    #[arg(long)]
    sequential_keys: bool,
    /// Value length in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Reads for get and mixed: linearizable, lease (cairn only) or stale (etcd calls it
    /// serializable; either name works) [default: linearizable].
    #[arg(long, value_enum)]
    consistency: Option<Consistency>,
    /// Share of reads in mixed, from 0 to 1 [default: 0.5].
    #[arg(long)]
    read_ratio: Option<f64>,
    /// Watch streams for watch, spread over the endpoints like connections [default: 1].
    #[arg(long)]
    watchers: Option<u32>,
    /// How long one request may take before it counts as failed.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    timeout: Duration,
    /// Seed for key choice and the read/write mix; the same seed sends the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON on stdout (the progress line still goes to stderr).
    #[arg(long)]
    json: bool,
    /// For https:// endpoints: the CA certificate (PEM) the nodes' certificates chain to.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// For nodes that require client certificates: this client's certificate, with --key.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The private key of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// An ACL token's secret, sent with every request (cairn only).
    #[arg(long)]
    token: Option<String>,
}

/// A validated run: the load, what the report says about it, whether to write the key space
/// first, and for watch how many streams to open.
struct Plan {
    load: Load,
    setup: Setup,
    populate: bool,
    watchers: Option<u32>,
}

impl LoadArgs {
    fn plan(&self, mode: Mode) -> Result<Plan, String> {
        let watchers = self.watchers(mode)?;
        let (endpoints, tls) = self.endpoints()?;
        let headers = self.headers()?;
        let clients = self.clients()?;
        let conns = self.conns.unwrap_or(clients);
        if conns == 0 || conns > clients {
            return Err(format!("--conns must be from 1 to --clients ({clients}); it is {conns}"));
        }
        let stop = self.stop()?;
        let keys = KeySpace::new(&self.key_prefix, self.key_space, self.key_size)?;
        if self.value_size > VALUE_BYTES_MAX {
            return Err(format!("--value-size {} is over the limit of {VALUE_BYTES_MAX} bytes", self.value_size));
        }
        let (mix, consistency) = self.mix(mode)?;
        if self.timeout.is_zero() || self.timeout > LATENCY_MAX {
            return Err(format!("--timeout must be more than 0 and at most {}s", LATENCY_MAX.as_secs()));
        }
        let setup = Setup {
            mode: mode.name().to_string(),
            target: self.target.name().to_string(),
            endpoints: endpoints.clone(),
            clients,
            conns,
            key_space: self.key_space,
            key_size: self.key_size,
            value_size: self.value_size,
            consistency: matches!(mode, Mode::Get | Mode::Mixed).then(|| consistency.name(self.target).to_string()),
            read_ratio: match mix {
                Mix::Mixed { read_ratio } => Some(read_ratio),
                _ => None,
            },
            watchers,
        };
        let load = Load {
            endpoints,
            clients,
            conns,
            stop,
            keys,
            order: if self.sequential_keys { KeyOrder::Sequential } else { KeyOrder::Random },
            mix,
            requests: Requests::new(self.target, consistency, workload::value(self.value_size)),
            timeout: self.timeout,
            seed: self.seed,
            progress: true,
            keep_revisions: watchers.is_some(),
            tls,
            headers,
        };
        Ok(Plan { load, setup, populate: matches!(mode, Mode::Get | Mode::Mixed), watchers })
    }

    /// The endpoints as `host:port`, and the client TLS to reach them with when they are
    /// `https://` ones (which need --cacert). An `http://` in front is dropped, since etcd users
    /// write URLs; all endpoints share one scheme.
    fn endpoints(&self) -> Result<(Vec<String>, Option<ClientTls>), String> {
        if self.endpoints.is_empty() {
            return Ok((vec![self.target.default_endpoint().to_string()], self.tls(false)?));
        }
        let https = self.endpoints.iter().filter(|given| given.starts_with("https://")).count();
        if https != 0 && https != self.endpoints.len() {
            return Err("--endpoints mixes https:// and plain addresses".to_string());
        }
        let mut endpoints = Vec::new();
        for given in &self.endpoints {
            let address = given.strip_prefix("http://").or_else(|| given.strip_prefix("https://")).unwrap_or(given);
            let address = address.trim_end_matches('/');
            let port = address.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(port))) if !host.is_empty() && port != 0 => endpoints.push(address.to_string()),
                _ => return Err(format!("--endpoints {given:?} is not host:port, e.g. 127.0.0.1:7700")),
            }
        }
        Ok((endpoints, self.tls(https != 0)?))
    }

    /// The client TLS for https:// endpoints; the TLS flags are refused for plain ones.
    fn tls(&self, https: bool) -> Result<Option<ClientTls>, String> {
        if !https {
            if self.cacert.is_some() || self.cert.is_some() {
                return Err("--cacert, --cert and --key are for https:// endpoints".to_string());
            }
            return Ok(None);
        }
        let ca = self.cacert.as_deref().ok_or("https:// endpoints need --cacert")?;
        let identity = self.cert.as_deref().zip(self.key.as_deref());
        ClientTls::from_files(&FsDisk::new(), ca, identity).map(Some).map_err(|error| error.to_string())
    }

    /// `X-Cairn-Token` with --token (cairn only: etcd's gateway authenticates differently).
    fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let Some(token) = &self.token else { return Ok(Vec::new()) };
        if self.target != System::Cairn {
            return Err("--token is cairn's ACL token; etcd is not driven with one".to_string());
        }
        let value = HeaderValue::from_str(token).map_err(|_| "--token is not printable text".to_string())?;
        Ok(vec![(HeaderName::from_static(TOKEN_HEADER), value)])
    }

    fn clients(&self) -> Result<u32, String> {
        match self.clients {
            0 => Err("--clients must be at least 1".to_string()),
            clients if clients > CLIENTS_MAX => Err(format!("--clients {clients} is over the limit of {CLIENTS_MAX}")),
            clients => Ok(clients),
        }
    }

    /// The number of watch streams: given only for watch, which drives cairn only.
    fn watchers(&self, mode: Mode) -> Result<Option<u32>, String> {
        if mode != Mode::Watch {
            return match self.watchers {
                Some(_) => Err(format!("--watchers applies to watch, not {}", mode.name())),
                None => Ok(None),
            };
        }
        if self.target == System::Etcd {
            return Err("the watch benchmark drives cairn's /v1/watch only, not etcd".to_string());
        }
        match self.watchers.unwrap_or(1) {
            0 => Err("--watchers must be at least 1".to_string()),
            watchers if watchers > WATCHERS_MAX => {
                Err(format!("--watchers {watchers} is over the limit of {WATCHERS_MAX}"))
            }
            watchers => Ok(Some(watchers)),
        }
    }

    fn stop(&self) -> Result<Stop, String> {
        match (self.total, self.duration) {
            (Some(0), _) => Err("--total must be at least 1".to_string()),
            (Some(total), _) => Ok(Stop::Total(total)),
            (None, Some(duration)) if duration.is_zero() => Err("--duration must be more than 0".to_string()),
            (None, Some(duration)) => Ok(Stop::After(duration)),
            (None, None) => Ok(Stop::Total(TOTAL_DEFAULT)),
        }
    }

    /// Which operations the mode sends and how reads are served; flags that the mode would
    /// ignore are refused rather than silently dropped.
    fn mix(&self, mode: Mode) -> Result<(Mix, Consistency), String> {
        if matches!(mode, Mode::Put | Mode::Watch) && self.consistency.is_some() {
            return Err(format!("--consistency applies to get and mixed, not {}", mode.name()));
        }
        if mode != Mode::Mixed && self.read_ratio.is_some() {
            return Err(format!("--read-ratio applies to mixed, not {}", mode.name()));
        }
        let consistency = self.consistency.unwrap_or(Consistency::Linearizable);
        if self.target == System::Etcd && consistency == Consistency::Lease {
            return Err("etcd has no lease reads: use --consistency linearizable or serializable".to_string());
        }
        let mix = match mode {
            Mode::Put | Mode::Watch => Mix::Puts,
            Mode::Get => Mix::Gets,
            Mode::Mixed => {
                let read_ratio = self.read_ratio.unwrap_or(0.5);
                if !(0.0..=1.0).contains(&read_ratio) {
                    return Err(format!("--read-ratio must be from 0 to 1; it is {read_ratio}"));
                }
                Mix::Mixed { read_ratio }
            }
        };
        Ok((mix, consistency))
    }
}

pub fn run(command: BenchCommand) -> ExitCode {
    match command {
        BenchCommand::Put(args) => measure(Mode::Put, &args),
        BenchCommand::Get(args) => measure(Mode::Get, &args),
        BenchCommand::Mixed(args) => measure(Mode::Mixed, &args),
        BenchCommand::Watch(args) => measure(Mode::Watch, &args),
        BenchCommand::Chart(args) => chart::run(&args),
    }
}

fn measure(mode: Mode, args: &LoadArgs) -> ExitCode {
    let plan = match args.plan(mode) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("cairn bench: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts");
    let report = match runtime.block_on(bench(plan)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("cairn bench: {error}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    if report.complete() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

async fn bench(plan: Plan) -> Result<Report, String> {
    let Plan { load, setup, populate, watchers } = plan;
    driver::preflight(&load, &setup.target).await?;
    if populate {
        write_key_space(&load).await?;
    }
    let Some(watchers) = watchers else {
        let measured = driver::drive(Arc::new(load)).await;
        return Ok(Report::new(setup, &measured.tally, measured.elapsed));
    };
    let (measured, delivery) = watch::measure(load, watchers).await?;
    let mut report = Report::new(setup, &measured.tally, measured.elapsed);
    report.events = Some(Events {
        delivered: delivery.delivered,
        missing: delivery.missing,
        latency: delivery.latencies.summary(),
    });
    Ok(report)
}

/// Writes every key of the space once, untimed, so that reads find values of the run's size.
async fn write_key_space(load: &Load) -> Result<(), String> {
    let keys = load.keys.count();
    if keys > 1000 {
        eprintln!("cairn bench: writing {keys} keys before reading");
    }
    let writes = Load {
        endpoints: load.endpoints.clone(),
        clients: load.clients.min(u32::try_from(keys).unwrap_or(u32::MAX)),
        conns: load.conns.min(u32::try_from(keys).unwrap_or(u32::MAX)),
        stop: Stop::Total(keys),
        keys: load.keys.clone(),
        order: KeyOrder::Sequential,
        mix: Mix::Puts,
        requests: load.requests.clone(),
        timeout: load.timeout,
        seed: load.seed,
        progress: false,
        keep_revisions: false,
        tls: load.tls.clone(),
        headers: load.headers.clone(),
    };
    let measured = driver::drive(Arc::new(writes)).await;
    match measured.tally.errors.iter().next() {
        None => Ok(()),
        Some((first, _)) => {
            Err(format!("writing the key space failed for {} of {keys} keys, e.g. {first}", measured.tally.failed))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Line {
        #[command(subcommand)]
        command: BenchCommand,
    }

    fn plan(line: &str) -> Result<Plan, String> {
        let words = std::iter::once("bench").chain(line.split_whitespace());
        match Line::try_parse_from(words).map_err(|error| error.to_string())?.command {
            BenchCommand::Put(args) => args.plan(Mode::Put),
            BenchCommand::Get(args) => args.plan(Mode::Get),
            BenchCommand::Mixed(args) => args.plan(Mode::Mixed),
            BenchCommand::Watch(args) => args.plan(Mode::Watch),
            BenchCommand::Chart(_) => panic!("{line:?} is not a load"),
        }
    }

    fn refusal(line: &str) -> String {
        match plan(line) {
            Ok(_) => panic!("{line:?} was accepted"),
            Err(error) => error,
        }
    }

    #[test]
    fn defaults_send_ten_thousand_puts_from_one_client_to_the_local_node() {
        let plan = plan("put").unwrap();
        assert_eq!(plan.load.endpoints, ["127.0.0.1:7700"]);
        assert_eq!((plan.load.clients, plan.load.conns), (1, 1));
        assert_eq!(plan.load.stop, Stop::Total(10_000));
        assert_eq!(plan.load.mix, Mix::Puts);
        assert_eq!((plan.setup.key_size, plan.setup.value_size), (8, 256));
        assert!(!plan.populate, "puts need no data beforehand");
        assert_eq!(plan.setup.consistency, None);
    }

    #[test]
    fn etcd_defaults_to_its_client_port_and_accepts_urls_as_endpoints() {
        assert_eq!(plan("get --target etcd").unwrap().load.endpoints, ["127.0.0.1:2379"]);
        let plan = plan("get --target etcd --endpoints http://127.0.0.1:2379/,localhost:22379").unwrap();
        assert_eq!(plan.load.endpoints, ["127.0.0.1:2379", "localhost:22379"]);
    }

    #[test]
    fn connections_default_to_one_per_client_and_may_not_outnumber_them() {
        assert_eq!(plan("put --clients 16").unwrap().load.conns, 16);
        assert_eq!(plan("put --clients 16 --conns 4").unwrap().load.conns, 4);
        assert!(refusal("put --clients 2 --conns 3").contains("--conns must be from 1 to --clients (2)"));
        assert!(refusal("put --clients 2 --conns 0").contains("--conns"));
        assert!(refusal("put --clients 0").contains("--clients must be at least 1"));
        assert!(refusal("put --clients 1000000").contains("over the limit"));
    }

    #[test]
    fn a_run_is_bounded_by_a_total_or_a_duration_but_not_both() {
        assert_eq!(plan("put --total 5").unwrap().load.stop, Stop::Total(5));
        assert_eq!(plan("put --duration 2s").unwrap().load.stop, Stop::After(Duration::from_secs(2)));
        assert!(refusal("put --total 5 --duration 2s").contains("cannot be used with"));
        assert!(refusal("put --total 0").contains("--total must be at least 1"));
        assert!(refusal("put --duration 0s").contains("--duration must be more than 0"));
        assert!(refusal("put --duration 10").contains("no unit"));
    }

    #[test]
    fn reads_are_linearizable_unless_asked_and_serializable_means_stale() {
        let plan_get = plan("get").unwrap();
        assert_eq!(plan_get.setup.consistency.as_deref(), Some("linearizable"));
        assert!(plan_get.populate, "reads find the key space written");
        assert_eq!(plan("get --consistency serializable").unwrap().setup.consistency.as_deref(), Some("stale"));
        let etcd = plan("get --target etcd --consistency stale").unwrap();
        assert_eq!(etcd.setup.consistency.as_deref(), Some("serializable"));
        assert!(refusal("get --target etcd --consistency lease").contains("etcd has no lease reads"));
        assert!(refusal("get --consistency strong").contains("invalid value"));
    }

    #[test]
    fn flags_a_mode_would_ignore_are_refused() {
        assert!(refusal("put --consistency stale").contains("--consistency applies to get and mixed"));
        assert!(refusal("get --read-ratio 0.5").contains("--read-ratio applies to mixed, not get"));
    }

    #[test]
    fn the_read_ratio_is_a_share_from_zero_to_one_and_defaults_to_half() {
        assert_eq!(plan("mixed").unwrap().load.mix, Mix::Mixed { read_ratio: 0.5 });
        assert_eq!(plan("mixed --read-ratio 0.9").unwrap().setup.read_ratio, Some(0.9));
        assert!(refusal("mixed --read-ratio 1.5").contains("--read-ratio must be from 0 to 1"));
        assert!(refusal("mixed --read-ratio NaN").contains("--read-ratio must be from 0 to 1"));
        assert!(refusal("mixed --read-ratio lots").contains("invalid value"));
    }

    #[test]
    fn malformed_endpoints_and_sizes_are_refused_with_the_flag_named() {
        assert!(refusal("put --endpoints 127.0.0.1").contains("is not host:port"));
        assert!(refusal("put --endpoints :7700").contains("is not host:port"));
        assert!(refusal("put --endpoints 127.0.0.1:http").contains("is not host:port"));
        assert!(refusal("put --endpoints https://127.0.0.1:2379").contains("need --cacert"));
        assert!(refusal("put --endpoints https://127.0.0.1:7700,127.0.0.1:7701").contains("mixes"));
        assert!(refusal("put --cacert ca.crt").contains("for https:// endpoints"));
        assert!(refusal("put --target etcd --token t").contains("cairn's ACL token"));
        assert!(refusal("put --key-space 1000 --key-size 2").contains("--key-size 2 is too small"));
        assert!(refusal("put --value-size 100000000").contains("--value-size"));
        assert!(refusal("put --timeout 0s").contains("--timeout"));
        assert!(refusal("put --timeout 11m").contains("--timeout"));
        assert!(refusal("put --clients -1").contains("unexpected argument"));
    }

    #[test]
    fn a_watch_run_writes_under_the_prefix_with_one_watcher_unless_asked() {
        let watch = plan("watch --key-prefix w/ --key-size 10 --clients 4").unwrap();
        assert_eq!(watch.watchers, Some(1));
        assert_eq!(watch.load.mix, Mix::Puts);
        assert!(watch.load.keep_revisions, "event latency needs each put's revision");
        assert!(!watch.populate);
        assert_eq!(watch.load.keys.key(0), "w/00000000");
        assert_eq!(plan("watch --watchers 8").unwrap().setup.watchers, Some(8));
    }

    #[test]
    fn chart_is_a_subcommand_beside_the_loads_and_needs_reports() {
        let parse = |line: &str| Line::try_parse_from(std::iter::once("bench").chain(line.split_whitespace()));
        assert!(matches!(parse("chart --out charts a.json b.json").unwrap().command, BenchCommand::Chart(_)));
        assert!(parse("chart").unwrap_err().to_string().contains("<REPORTS>"));
        assert!(parse("plot a.json").unwrap_err().to_string().contains("unrecognized subcommand"));
    }

    #[test]
    fn watchers_are_for_cairn_watch_runs_only() {
        assert!(refusal("put --watchers 2").contains("--watchers applies to watch, not put"));
        assert!(refusal("watch --target etcd").contains("cairn's /v1/watch only"));
        assert!(refusal("watch --watchers 0").contains("--watchers must be at least 1"));
        assert!(refusal("watch --watchers 5000").contains("over the limit"));
        assert!(refusal("watch --consistency stale").contains("--consistency applies to get and mixed, not watch"));
    }
}
