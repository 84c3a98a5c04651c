//! `cairn jepsen`: a Jepsen-style run against real `cairn serve` processes. It starts 3 or 5
//! nodes (this binary, each with its own data directory under `--out` and its log in
//! `node-<id>.log`), runs the simulator's workload, watchers and nemesis on them through
//! `cairn_chaos::run` over real HTTP, heals, requires recovery, reads every key back, and checks
//! the history with `cairn check`'s checkers. The exit code is the verdict.
//!
//! # Layout
//! - [`nemesis`]: the `--nemesis` names and the chaos fault kinds behind them.
//! - [`network`]: loopback, or a network namespace per node where links can be cut.
//! - [`process`]: one slot's `cairn serve` process.
//! - [`cluster`]: [`cluster::ProcessCluster`], the chaos `Cluster` over those processes; dropping
//!   it stops the nodes and deletes the network.
//! - [`figures`]: operations per second, `info` outcomes and unavailability after leader kills.
//! - [`output`]: the output directory, the nemesis timeline and the verdict files.
//! - [`command`]: running `ip`, `iptables` and `kill`.
//!
//! Cleanup: the whole run is one future raced against SIGINT and SIGTERM. An interrupt drops it,
//! and dropping the cluster kills every node and deletes the namespaces (with their links and
//! rules), as it does on errors and panics.

mod cluster;
mod command;
mod figures;
mod nemesis;
mod network;
mod output;
mod process;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cairn_chaos::acl::AclCounts;
use cairn_chaos::check::{CheckOptions, CheckReport, Overall, check_history};
use cairn_chaos::history::parse_history;
use cairn_chaos::nemesis::{FaultKind, NemesisOptions};
use cairn_chaos::report;
use cairn_chaos::run::{RunOptions, RunOutcome};
use cairn_chaos::workload::WorkloadOptions;
use cairn_http::client::ClientOptions;
use cairn_node::storage::FsDisk;
use cairn_node::tls::ClientTls;
use clap::Args;

use self::cluster::ProcessCluster;
use self::figures::Figures;
use self::nemesis::Nemesis;
use self::network::Network;
use self::output::{OutputDir, Setup, Verdicts};
use self::process::Launch;
use super::duration;

/// Exit code 1: a checker found a violation (as `cairn check`).
const EXIT_VIOLATION: u8 = 1;
/// Exit code 3: the recorded history is malformed, a bug in the harness (as `cairn check`).
const EXIT_MALFORMED: u8 = 3;
/// Exit code 4: the cluster did not recover after healing, or misbehaved on its side.
const EXIT_NOT_RECOVERED: u8 = 4;
/// Exit code 5: the run could not be set up (bad flags, no binary, no leader at the start) or
/// its results could not be written.
const EXIT_SETUP: u8 = 5;

/// The exit codes, for `--help`.
const EXIT_CODES: &str = "Exit codes: 0 every checker passed and the cluster recovered, 1 violation, 2 unknown \
    (the linearizability search ran out of budget), 3 malformed history (a harness bug), 4 the cluster did not \
    recover or misbehaved (a node exited on its own, a fault could not be applied), 5 the run could not be set up \
    or its results not written, 130 interrupted (SIGINT), 143 terminated (SIGTERM).";

/// How long the fresh cluster may take to elect its first leader.
const FIRST_LEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How soon after healing a write and a linearizable read must succeed, as in the simulator.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// The shortest and longest `--time`.
const TIME_MIN: Duration = Duration::from_secs(1);
const TIME_MAX: Duration = Duration::from_secs(24 * 3600);

/// Flags of `cairn jepsen`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct JepsenArgs {
    /// Cluster size: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    nodes: usize,
    /// How long clients and faults run together (e.g. 30s, 2m); healing, recovery and the final
    /// reads come after.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    time: Duration,
    /// Faults, comma-separated. kill: SIGKILL the leader or a random node, started again later.
    /// pause: SIGSTOP a random node, SIGCONT later. partition: random halves, an isolated
    /// leader, a one-way link and, with 5 nodes, two majorities bridged by one node, cut with
    /// iptables between per-node network namespaces (needs root; without namespaces the nodes run
    /// on loopback and partitions are skipped, saying so). restart: shut a random node down with
    /// SIGTERM, or SIGKILL it, and start it again later. member: remove a random member through
    /// the API and start a fresh node (new id, empty disk) in its place, which joins. The
    /// simulator's power loss (crash, power-outage), packet loss and latency are not offered: a
    /// killed process loses nothing the kernel has, and the others would need tc netem.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kill,pause,partition,restart,member",
        value_parser = nemesis::parse
    )]
    nemesis: Vec<Nemesis>,
    /// Seeds the fault schedule and the clients' choices [default: random, printed]. Real
    /// processes are not deterministic: a seed repeats the schedule, not the history.
    #[arg(long)]
    seed: Option<u64>,
    /// Directory for everything the run leaves (history.jsonl, node-N.log, nemesis.txt,
    /// verdict.txt, verdict.json, report.html, data/); created if absent, else it must be empty.
    #[arg(long)]
    out: PathBuf,
    /// Run the cluster as `cairn tls init` sets it up: HTTPS with client certificates on every
    /// node and mutual TLS between peers, from a CA and certificates written to OUT/tls.
    #[arg(long)]
    tls: bool,
    /// Bootstrap ACLs before the clients start, and add clients with a restricted token whose
    /// policy is narrowed and widened under the faults; a checker proves that no restricted
    /// read or write was served beyond what the policy allowed where it was served.
    #[arg(long)]
    acl: bool,
    /// Deliberate bugs for the servers, as `cairn serve --inject-bugs` (debug builds only).
    #[cfg(debug_assertions)]
    #[arg(long, hide = true)]
    inject_bugs: Option<String>,
}

fn parse_nodes(text: &str) -> Result<usize, String> {
    match text {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err(format!("{text:?}: a jepsen cluster has 3 or 5 nodes")),
    }
}

/// A validated run.
struct Settings {
    nodes: usize,
    time: Duration,
    /// Without repeats, in the order given.
    nemeses: Vec<Nemesis>,
    seed: u64,
    out: OutputDir,
    bugs: Option<String>,
    tls: bool,
    acl: bool,
}

impl Settings {
    fn new(args: JepsenArgs) -> Result<Settings, String> {
        if !(TIME_MIN..=TIME_MAX).contains(&args.time) {
            return Err(format!("--time must be from {}s to {}h", TIME_MIN.as_secs(), TIME_MAX.as_secs() / 3600));
        }
        let mut nemeses = Vec::new();
        for nemesis in args.nemesis {
            if !nemeses.contains(&nemesis) {
                nemeses.push(nemesis);
            }
        }
        // Checked here so that a typo fails at once, not as three servers that will not start.
        #[cfg(debug_assertions)]
        if let Some(list) = &args.inject_bugs {
            cairn_node::bugs::InjectedBugs::parse(list).map_err(|error| format!("--inject-bugs: {error}"))?;
        }
        #[cfg(debug_assertions)]
        let bugs = args.inject_bugs;
        #[cfg(not(debug_assertions))]
        let bugs = None;
        let out = OutputDir::create(&args.out)?;
        let seed = args.seed.unwrap_or_else(cairn_node::rt::random_u64);
        Ok(Settings { nodes: args.nodes, time: args.time, nemeses, seed, out, bugs, tls: args.tls, acl: args.acl })
    }

    fn launch(&self, tls: Option<PathBuf>) -> Result<Launch, String> {
        let binary = std::env::current_exe().map_err(|error| format!("finding the cairn binary: {error}"))?;
        Ok(Launch { binary, out: self.out.path().to_path_buf(), bugs: self.bugs.clone(), tls })
    }

    /// With `--tls`: writes the CA and certificates (each node's valid for every slot's address)
    /// to OUT/tls; the directory, and how clients reach the nodes.
    fn certificates(&self, network: &Network) -> Result<Option<(PathBuf, ClientTls)>, String> {
        if !self.tls {
            return Ok(None);
        }
        let dir = self.out.path().join("tls");
        let mut hosts: Vec<String> = (0..self.nodes)
            .map(|slot| network.http(slot).rsplit_once(':').map_or_else(String::new, |(host, _)| host.to_string()))
            .collect();
        hosts.extend(["127.0.0.1".to_string(), "localhost".to_string()]);
        hosts.sort();
        hosts.dedup();
        let nodes = u32::try_from(self.nodes).expect("3 or 5 nodes");
        super::tls::write_dev_certificates(&dir, nodes, &hosts)?;
        let client = Some((dir.join("client.crt"), dir.join("client.key")));
        let identity = client.as_ref().map(|(cert, key)| (cert.as_path(), key.as_path()));
        let tls = ClientTls::from_files(&FsDisk::new(), &dir.join("ca.crt"), identity).map_err(|e| e.to_string())?;
        Ok(Some((dir, tls)))
    }

    /// The simulator's chaos settings (tests/chaos.rs), on real time.
    fn run_options(&self, kinds: Vec<FaultKind>) -> RunOptions {
        RunOptions {
            seed: self.seed,
            chaos: self.time,
            workload: WorkloadOptions { clients: 2 * self.nodes as u64 + 2, ..WorkloadOptions::default() },
            nemesis: NemesisOptions { kinds, ..NemesisOptions::default() },
            recovery_bound: RECOVERY_BOUND,
            client: ClientOptions { attempt_timeout: Duration::from_secs(3), call_timeout: Duration::from_secs(4) },
            hostile: false,
            acl: self.acl,
        }
    }
}

pub fn run(args: JepsenArgs) -> ExitCode {
    let settings = match Settings::new(args) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("cairn jepsen: {error}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    // The nemesis logs each fault as it starts: live progress on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("cairn_chaos=info,warn"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // One thread: the clients are light, the nodes need the cores; and every step between two
    // `.await`s runs to completion, so an interrupt never lands inside one (see `command`).
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cairn jepsen: starting a runtime: {error}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let code = runtime.block_on(interruptible(&settings));
    // A checker still running on the blocking pool after an interrupt is abandoned, not awaited.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// Runs the session until it ends or a signal comes; on a signal the session is dropped, which
/// stops the nodes and deletes the network before this returns.
async fn interruptible(settings: &Settings) -> u8 {
    let ended = tokio::select! {
        biased;
        signal = interrupted() => Err(signal),
        code = session(settings) => Ok(code),
    };
    match ended {
        Ok(code) => code,
        Err((name, code)) => {
            eprintln!(
                "cairn jepsen: interrupted by {name}; the nodes are stopped and the network removed; what was \
                 written so far is in {}",
                settings.out.path().display()
            );
            code
        }
    }
}

/// The first SIGINT or SIGTERM, with the exit code it calls for.
async fn interrupted() -> (&'static str, u8) {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM can be handled");
    tokio::select! {
        biased;
        Ok(()) = tokio::signal::ctrl_c() => ("SIGINT", 130),
        _ = terminate.recv() => ("SIGTERM", 143),
    }
}

async fn session(settings: &Settings) -> u8 {
    match drive(settings).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cairn jepsen: {error}");
            EXIT_SETUP
        }
    }
}

/// Sets up, runs, tears down, then judges.
async fn drive(settings: &Settings) -> Result<u8, String> {
    let (network, skipped) = Network::choose(settings.nodes, settings.nemeses.contains(&Nemesis::Partition))?;
    if let Some(reason) = &skipped {
        println!("cairn jepsen: PARTITIONS SKIPPED: {reason}");
        println!("cairn jepsen: the nodes run on loopback; the other faults go ahead");
    }
    let kinds = nemesis::fault_kinds(&settings.nemeses, settings.nodes, network.can_partition());
    if kinds.is_empty() {
        return Err("no fault is left to inject without partitions".to_string());
    }
    let setup = Setup {
        nodes: settings.nodes,
        seed: settings.seed,
        time: settings.time,
        nemeses: settings.nemeses.iter().map(|nemesis| nemesis.name()).collect(),
        network: network.describe(),
        skipped,
        tls: settings.tls,
        acl: settings.acl,
    };
    println!(
        "cairn jepsen: {} nodes on {}; seed {}; {}s of {}; TLS {}, ACL {}; output in {}",
        setup.nodes,
        setup.network,
        setup.seed,
        setup.time.as_secs(),
        setup.nemeses.join(","),
        if setup.tls { "on" } else { "off" },
        if setup.acl { "on" } else { "off" },
        settings.out.path().display()
    );
    let (tls_dir, client_tls) = settings.certificates(&network)?.unzip();
    let cluster = ProcessCluster::start(network, settings.launch(tls_dir)?, settings.nodes, client_tls)?;
    if cluster.await_leader(FIRST_LEADER_TIMEOUT).await.is_none() {
        return Err(format!(
            "no leader within {}s of starting; see the node logs in {}",
            FIRST_LEADER_TIMEOUT.as_secs(),
            settings.out.path().display()
        ));
    }
    let outcome = cairn_chaos::run::run(&cluster, &settings.run_options(kinds)).await;
    let problems = cluster.finish();
    settings.out.write("history.jsonl", &outcome.history)?;
    judge(settings, &setup, outcome, problems).await
}

/// Checks the history, writes the verdict files and the report, prints the summary; the exit
/// code.
async fn judge(settings: &Settings, setup: &Setup, outcome: RunOutcome, problems: Vec<String>) -> Result<u8, String> {
    let history = match parse_history(outcome.history.as_slice()) {
        Ok(history) => history,
        Err(malformed) => {
            eprintln!("cairn jepsen: the recorded history is malformed, a harness bug: {malformed}");
            return Ok(EXIT_MALFORMED);
        }
    };
    // On the blocking pool, so that an interrupt is still heard while the checkers work.
    let (history, report) = cairn_node::rt::run_blocking(move || {
        let report = check_history(&history, &CheckOptions::default());
        (history, report)
    })
    .await;
    let figures = Figures::measure(&history);
    let acl = settings.acl.then_some(&outcome.acl);
    let code = exit_code(&report, acl, &outcome.recovery, &problems);
    let out = &settings.out;
    out.write("report.html", report::render(&history, &report))?;
    out.write("nemesis.txt", output::timeline(setup, &history, &figures, &problems))?;
    let text = summary(&outcome, acl, &figures, &report, &problems, code);
    out.write("verdict.txt", &text)?;
    let verdicts = Verdicts {
        setup,
        report: &report,
        figures: &figures,
        recovery: &outcome.recovery,
        problems: &problems,
        acl,
        exit_code: code,
    };
    out.write("verdict.json", output::verdict_json(&verdicts))?;
    print!("{text}");
    Ok(code)
}

/// A violation first (as `cairn check`; the ACL checker's too), then a cluster that did not
/// recover, then the checkers.
fn exit_code(
    report: &CheckReport,
    acl: Option<&AclCounts>,
    recovery: &Result<Duration, String>,
    problems: &[String],
) -> u8 {
    let acl_violated = acl.is_some_and(|acl| !acl.violations.is_empty());
    match report.overall() {
        _ if acl_violated => EXIT_VIOLATION,
        Overall::Violation => EXIT_VIOLATION,
        _ if recovery.is_err() || !problems.is_empty() => EXIT_NOT_RECOVERED,
        overall => u8::try_from(overall.exit_code()).expect("exit codes are small"),
    }
}

/// What the run did and what the checkers said: printed, and kept as verdict.txt.
fn summary(
    outcome: &RunOutcome,
    acl: Option<&AclCounts>,
    figures: &Figures,
    report: &CheckReport,
    problems: &[String],
    code: u8,
) -> String {
    let mut lines = vec![format!(
        "{} operations in {:.1}s under faults: {:.1} ops/s; {} ok, {} fail, {} info; {} faults; {} watch events",
        figures.operations,
        figures.span.as_secs_f64(),
        figures.per_second(),
        figures.ok,
        figures.fail,
        figures.info,
        outcome.counts.faults,
        outcome.counts.watched,
    )];
    lines.push(match figures.longest_outage() {
        Some(outage) => format!(
            "longest unavailability after a leader kill: {} (node {} killed at {:.3}s; {} leader kills)",
            output::outage_length(outage),
            outage.description,
            outage.start.as_secs_f64(),
            figures.leader_kills.len()
        ),
        None => "longest unavailability after a leader kill: no leader was killed".to_string(),
    });
    lines.push(match &outcome.recovery {
        Ok(time) => format!("recovered {:.3}s after healing", time.as_secs_f64()),
        Err(error) => format!("DID NOT RECOVER: {error}"),
    });
    if let Some(acl) = acl {
        lines.push(format!(
            "ACL: {} policy changes, {} restricted answers and {} restricted watch events checked, {} refused, {} \
             violations",
            acl.changes,
            acl.checked,
            acl.watched,
            acl.refused,
            acl.violations.len()
        ));
        lines.extend(acl.violations.iter().map(|violation| format!("ACL VIOLATION: {violation}")));
    }
    lines.extend(problems.iter().map(|problem| format!("problem: {problem}")));
    let mut text = lines.join("\n") + "\n" + &report.to_string();
    text.push_str(&format!("exit code {code}\n"));
    text
}
