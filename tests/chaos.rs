//! Seeded chaos runs in the simulator (`cargo sim --test chaos`): clients and a nemesis on a
//! simulated cluster, then every history checked for linearizability, stale reads, revisions
//! and durability, and the healed cluster checked for recovery, and the nodes' Prometheus counters
//! against the history (`cairn_chaos::metrics`). Every failing seed prints the one
//! command that replays it; its history and HTML report are kept under `target/sim/tmp/chaos/`.
//!
//! `CAIRN_SIM_SEEDS=N` runs N seeds per scenario (a soak: `CAIRN_SIM_SEEDS=10000`);
//! `MADSIM_TEST_SEED=S` replays one seed; `MADSIM_TEST_CHECK_DETERMINISM=1` also has madsim check
//! that each seed replays its random draws exactly.

#![cfg(madsim)]

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use cairn_chaos::check::{CheckOptions, CheckReport, Checker, Overall, Verdict, check_history};
use cairn_chaos::history::parse_history;
use cairn_chaos::metrics::{self, MetricsCounts};
use cairn_chaos::nemesis::{FaultKind, NemesisOptions};
use cairn_chaos::report;
use cairn_chaos::run::{RunOptions, RunOutcome, run};
use cairn_chaos::workload::WorkloadOptions;
use cairn_http::client::ClientOptions;
use cairn_node::bugs::InjectedBugs;
use cairn_node::store::events::HistoryLimits;
use cairn_sim::{ClusterOptions, Replay, SimCluster, run_seed, seeds};

/// Virtual time a run may take before madsim stops it.
const TIME_LIMIT: Duration = Duration::from_secs(900);

/// One kind of run.
struct Scenario {
    name: &'static str,
    nodes: usize,
    faults: &'static [FaultKind],
    bugs: InjectedBugs,
    /// How much event history the nodes keep for watches.
    history: HistoryLimits,
    /// First seed; scenarios use disjoint seed ranges.
    seed_base: u64,
    /// HTTPS only, with client certificates, on every node.
    tls: bool,
    /// ACLs bootstrapped, with restricted clients and policy changes (see `cairn_chaos::acl`).
    acl: bool,
}

/// As in production.
const FULL_HISTORY: HistoryLimits = HistoryLimits { events_max: 100_000, bytes_max: 64 * 1024 * 1024 };
/// Short enough that watchers resuming after a hop fall behind it and are refused.
const SHORT_HISTORY: HistoryLimits = HistoryLimits { events_max: 64, bytes_max: 64 * 1024 * 1024 };

const NO_BUGS: InjectedBugs = InjectedBugs {
    local_linearizable_reads: false,
    ack_before_fsync: false,
    skip_dedup: false,
    drop_watch_events: false,
    unproven_leader_contact: false,
    ignore_tag_reuse: false,
    stale_acl_cache: false,
    current_acl_events: false,
    optional_client_certificates: false,
    backup_from_raft_snapshot: false,
    uncounted_proposals: false,
};

const SCENARIOS: [Scenario; 14] = [
    Scenario {
        name: "three_nodes_partitions",
        nodes: 3,
        faults: &[
            FaultKind::Partition,
            FaultKind::IsolateLeader,
            FaultKind::OneWay,
            FaultKind::PacketLoss,
            FaultKind::Latency,
        ],
        bugs: NO_BUGS,
        history: SHORT_HISTORY,
        seed_base: 1_000,
        tls: true,
        acl: true,
    },
    Scenario {
        name: "three_nodes_crashes",
        nodes: 3,
        faults: &[
            FaultKind::KillLeader,
            FaultKind::Kill,
            FaultKind::Pause,
            FaultKind::Crash,
            FaultKind::PowerOutage,
            FaultKind::DiskFull,
            FaultKind::DiskFailure,
        ],
        bugs: NO_BUGS,
        history: FULL_HISTORY,
        seed_base: 2_000,
        tls: false,
        acl: false,
    },
    Scenario {
        name: "three_nodes_intruders",
        nodes: 3,
        faults: &[FaultKind::Intrude, FaultKind::Kill, FaultKind::Crash],
        bugs: NO_BUGS,
        history: FULL_HISTORY,
        seed_base: 10_000,
        tls: false,
        acl: false,
    },
    Scenario {
        name: "three_nodes_membership",
        nodes: 3,
        faults: &[FaultKind::Replace, FaultKind::IsolateLeader, FaultKind::KillLeader, FaultKind::Crash],
        bugs: NO_BUGS,
        history: FULL_HISTORY,
        seed_base: 3_000,
        tls: false,
        acl: false,
    },
    Scenario {
        name: "five_nodes_everything",
        nodes: 5,
        faults: &FaultKind::ALL,
        bugs: NO_BUGS,
        history: SHORT_HISTORY,
        seed_base: 4_000,
        tls: false,
        acl: false,
    },
    Scenario {
        name: "bug_local_linearizable_reads",
        nodes: 3,
        faults: &[FaultKind::Partition, FaultKind::IsolateLeader],
        bugs: InjectedBugs { local_linearizable_reads: true, ..NO_BUGS },
        history: FULL_HISTORY,
        seed_base: 5_000,
        tls: false,
        acl: false,
    },
    Scenario {
        name: "bug_ack_before_fsync",
        nodes: 3,
        faults: &[FaultKind::PowerOutage, FaultKind::Crash],
        bugs: InjectedBugs { ack_before_fsync: true, ..NO_BUGS },
        history: FULL_HISTORY,
        seed_base: 6_000,
        tls: false,
        acl: false,
    },
    Scenario {
        name: "bug_skip_dedup",
        nodes: 3,
        faults: &[FaultKind::IsolateLeader, FaultKind::Partition, FaultKind::KillLeader, FaultKind::PacketLoss],
        bugs: InjectedBugs { skip_dedup: true, ..NO_BUGS },
        history: FULL_HISTORY,
        seed_base: 7_000,
        tls: false,
        acl: false,
    },
    Scenario {
        name: "bug_drop_watch_events",
        nodes: 3,
        faults: &[FaultKind::Partition, FaultKind::KillLeader],
        bugs: InjectedBugs { drop_watch_events: true, ..NO_BUGS },
        history: FULL_HISTORY,
        seed_base: 8_000,
        tls: false,
        acl: false,
    },
    Scenario {
        name: "bug_unproven_leader_contact",
        nodes: 3,
        faults: &[FaultKind::Partition, FaultKind::IsolateLeader],
        bugs: InjectedBugs { unproven_leader_contact: true, ..NO_BUGS },
        history: FULL_HISTORY,
        seed_base: 9_000,
        tls: false,
        acl: false,
    },
    Scenario {
        name: "bug_ignore_tag_reuse",
        nodes: 3,
        faults: &[FaultKind::Partition, FaultKind::KillLeader],
        bugs: InjectedBugs { ignore_tag_reuse: true, ..NO_BUGS },
        history: FULL_HISTORY,
        seed_base: 11_000,
        tls: false,
        acl: false,
    },
    Scenario {
        name: "bug_stale_acl_cache",
        nodes: 3,
        faults: &[FaultKind::Partition, FaultKind::KillLeader],
        bugs: InjectedBugs { stale_acl_cache: true, ..NO_BUGS },
        history: FULL_HISTORY,
        seed_base: 12_000,
        tls: false,
        acl: true,
    },
    Scenario {
        name: "bug_current_acl_events",
        nodes: 3,
        faults: &[FaultKind::Partition, FaultKind::KillLeader],
        bugs: InjectedBugs { current_acl_events: true, ..NO_BUGS },
        history: FULL_HISTORY,
        seed_base: 13_000,
        tls: false,
        acl: true,
    },
    Scenario {
        name: "bug_uncounted_proposals",
        nodes: 3,
        faults: &[FaultKind::KillLeader, FaultKind::Kill, FaultKind::Crash],
        bugs: InjectedBugs { uncounted_proposals: true, ..NO_BUGS },
        history: FULL_HISTORY,
        seed_base: 14_000,
        tls: false,
        acl: false,
    },
];

fn scenario(name: &str) -> &'static Scenario {
    SCENARIOS.iter().find(|scenario| scenario.name == name).expect("a known scenario")
}

fn run_options(scenario: &Scenario, seed: u64) -> RunOptions {
    RunOptions {
        seed,
        chaos: Duration::from_secs(20),
        workload: WorkloadOptions { clients: 2 * scenario.nodes as u64 + 2, ..WorkloadOptions::default() },
        nemesis: NemesisOptions { kinds: scenario.faults.to_vec(), ..NemesisOptions::default() },
        recovery_bound: Duration::from_secs(30),
        client: ClientOptions { attempt_timeout: Duration::from_secs(3), call_timeout: Duration::from_secs(4) },
        // Every other seed of the scenarios without deliberate bugs also fights a hostile client,
        // and so does every seed of the bug it exists to catch.
        hostile: (seed.is_multiple_of(2) && scenario.bugs == NO_BUGS) || scenario.bugs.ignore_tag_reuse,
        acl: scenario.acl,
    }
}

/// What one simulated run left: its outcome, its virtual duration, and every node's metrics.
type Simulated = (RunOutcome, Duration, Vec<Result<String, String>>);

/// One whole simulated run of `scenario` under the current seed.
async fn simulate(scenario: &'static Scenario) -> Simulated {
    let started = cairn_node::rt::Instant::now();
    let cluster = SimCluster::start(ClusterOptions {
        nodes: scenario.nodes,
        bugs: scenario.bugs,
        history: scenario.history,
        tls: scenario.tls,
        ..ClusterOptions::default()
    })
    .await;
    cluster.await_leader(Duration::from_secs(60)).await.expect("the cluster elects a first leader");
    let options = run_options(scenario, madsim::runtime::Handle::current().seed());
    let outcome = run(&cluster, &options).await;
    let elapsed = started.elapsed();
    (outcome, elapsed, cluster.scrape_metrics().await)
}

/// The scenario of index `S`, as a plain function, for madsim's determinism check.
fn simulate_indexed<const S: usize>() -> Pin<Box<dyn Future<Output = Simulated>>> {
    Box::pin(simulate(&SCENARIOS[S]))
}

/// What one seed showed.
struct SeedResult {
    seed: u64,
    outcome: RunOutcome,
    report: CheckReport,
    /// The nodes' counters against the history.
    metrics: MetricsCounts,
    virtual_time: Duration,
    wall_time: Duration,
}

impl SeedResult {
    fn failed(&self) -> bool {
        self.report.overall() != Overall::Valid
            || self.outcome.recovery.is_err()
            || !self.outcome.hostile.broken.is_empty()
            || !self.outcome.acl.violations.is_empty()
            || !self.metrics.violations.is_empty()
    }

    /// Keeps the history and the HTML report for a look, and returns where.
    fn keep(&self, scenario: &Scenario) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("chaos")
            .join(scenario.name)
            .join(format!("seed-{}", self.seed));
        std::fs::create_dir_all(&dir).expect("the artifact directory can be made");
        std::fs::write(dir.join("history.jsonl"), &self.outcome.history).expect("the history is kept");
        let history = parse_history(self.outcome.history.as_slice()).expect("recorded histories are well formed");
        std::fs::write(dir.join("report.html"), report::render(&history, &self.report)).expect("the report is kept");
        dir
    }
}

fn run_and_check(scenario: &'static Scenario, seed: u64) -> SeedResult {
    let replay = Replay { test_binary: "chaos", test_name: scenario.name };
    let started = Instant::now();
    let (outcome, virtual_time, scrapes) = run_seed(replay, seed, TIME_LIMIT, move || simulate(scenario));
    let wall_time = started.elapsed();
    let history = parse_history(outcome.history.as_slice()).unwrap_or_else(|malformed| {
        panic!("seed {seed} recorded a malformed history ({malformed}); replay: {}", replay.command(seed))
    });
    let options = CheckOptions { budget: Duration::from_secs(60), ..CheckOptions::default() };
    let report = check_history(&history, &options);
    let metrics = metrics::check(&history, &scrapes);
    if std::env::var_os("MADSIM_TEST_CHECK_DETERMINISM").is_some() {
        check_determinism(scenario, seed);
    }
    SeedResult { seed, outcome, report, metrics, virtual_time, wall_time }
}

fn check_determinism(scenario: &'static Scenario, seed: u64) {
    let index = SCENARIOS.iter().position(|s| s.name == scenario.name).expect("a known scenario");
    let check = [
        simulate_indexed::<0> as fn() -> _,
        simulate_indexed::<1>,
        simulate_indexed::<2>,
        simulate_indexed::<3>,
        simulate_indexed::<4>,
        simulate_indexed::<5>,
        simulate_indexed::<6>,
        simulate_indexed::<7>,
        simulate_indexed::<8>,
        simulate_indexed::<9>,
    ][index];
    std::thread::spawn(move || madsim::runtime::Runtime::check_determinism(seed, madsim::Config::default(), check))
        .join()
        .expect("madsim found the run non-deterministic");
}

fn progress(scenario: &Scenario, result: &SeedResult) {
    let counts = result.outcome.counts;
    let recovery = match &result.outcome.recovery {
        Ok(time) => format!("recovered in {:.1}s", time.as_secs_f64()),
        Err(error) => format!("DID NOT RECOVER: {error}"),
    };
    let hostile = &result.outcome.hostile;
    let hostile = match hostile.sent {
        0 => String::new(),
        sent => format!(
            "; hostile client: {sent} sent, {} refused, {} inconclusive, broken: {:?}",
            hostile.refused, hostile.inconclusive, hostile.broken
        ),
    };
    let acl = &result.outcome.acl;
    let acl = match acl.changes {
        0 => String::new(),
        changes => format!(
            "; ACL: {changes} policy changes, {} restricted answers and {} restricted watch events checked, {} \
             refused, violations: {:?}",
            acl.checked, acl.watched, acl.refused, acl.violations
        ),
    };
    let metrics = &result.metrics;
    let metrics = format!(
        "; metrics: {} committed proposals for {} answered writes, {} leader changes seen for {} leader kills{}",
        metrics.proposals_committed,
        metrics.acknowledged_writes,
        metrics.leader_changes_seen,
        metrics.leader_kills,
        match metrics.violations.is_empty() {
            true => String::new(),
            false => format!(", violations: {:?}", metrics.violations),
        }
    );
    eprintln!(
        "[{}] seed {}: {:?} — {} ops ({} ok, {} fail, {} info), {} faults, {recovery}{hostile}{acl}{metrics}; {:.0} virtual s in {:.1} s ({:.0}x)",
        scenario.name,
        result.seed,
        result.report.overall(),
        counts.invoked,
        counts.ok,
        counts.fail,
        counts.info,
        counts.faults,
        result.virtual_time.as_secs_f64(),
        result.wall_time.as_secs_f64(),
        result.virtual_time.as_secs_f64() / result.wall_time.as_secs_f64().max(1e-9),
    );
}

fn seed_count() -> u64 {
    std::env::var("CAIRN_SIM_SEEDS").ok().map_or(25, |count| count.parse().expect("CAIRN_SIM_SEEDS is an integer"))
}

/// Runs every seed of a correct-system scenario; fails listing each failing seed's replay line.
fn sweep(name: &str) {
    let scenario = scenario(name);
    let replay = Replay { test_binary: "chaos", test_name: scenario.name };
    let started = Instant::now();
    let (mut failures, mut operations, mut virtual_time, mut done) = (Vec::new(), 0, Duration::ZERO, 0);
    for seed in seeds(scenario.seed_base..scenario.seed_base + seed_count()) {
        let result = run_and_check(scenario, seed);
        progress(scenario, &result);
        if result.failed() {
            let kept = result.keep(scenario);
            eprintln!("{}\nkept in {}\nreplay: {}", result.report, kept.display(), replay.command(seed));
            failures.push(replay.command(seed));
        }
        done += 1;
        operations += result.outcome.counts.invoked;
        virtual_time += result.virtual_time;
    }
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "[{}] {done} seeds, {} failed; {:.1} seeds/min, {:.0} virtual s per wall s, {:.0} operations checked per s",
        scenario.name,
        failures.len(),
        done as f64 * 60.0 / wall,
        virtual_time.as_secs_f64() / wall,
        operations as f64 / wall,
    );
    assert!(failures.is_empty(), "{} seeds failed; replay each with:\n{}", failures.len(), failures.join("\n"));
}

/// Runs seeds of a deliberately broken build until one of `checkers` reports a violation; fails
/// if the bug goes unnoticed by them for `budget` seeds.
fn expect_caught(name: &str, checkers: &[Checker], budget: u64) {
    let scenario = scenario(name);
    for seed in seeds(scenario.seed_base..scenario.seed_base + budget) {
        let result = run_and_check(scenario, seed);
        progress(scenario, &result);
        let caught = result
            .report
            .checkers
            .iter()
            .find(|report| checkers.contains(&report.checker) && matches!(report.verdict, Verdict::Violation(_)));
        if let Some(caught) = caught {
            eprintln!(
                "[{}] caught by the {} checker at seed {seed}:\n{}",
                scenario.name, caught.checker, result.report
            );
            return;
        }
    }
    panic!("the {name} bug went unnoticed by the {checkers:?} checkers for {budget} seeds: they cannot see it");
}

#[test]
fn three_nodes_partitions() {
    sweep("three_nodes_partitions");
}

#[test]
fn three_nodes_crashes() {
    sweep("three_nodes_crashes");
}

/// Processes started on a node's data directory (a second incarnation, another id) are
/// refused, among kills and crashes, and the histories stay valid.
#[test]
fn three_nodes_intruders() {
    sweep("three_nodes_intruders");
}

#[test]
fn three_nodes_membership() {
    sweep("three_nodes_membership");
}

#[test]
fn five_nodes_everything() {
    sweep("five_nodes_everything");
}

/// Linearizable reads served from the local state machine must be caught.
#[test]
fn bug_local_linearizable_reads() {
    expect_caught("bug_local_linearizable_reads", &[Checker::Linearizable], 20);
}

/// Appends acknowledged without an fsync must be caught (power outages lose them).
#[test]
fn bug_ack_before_fsync() {
    expect_caught("bug_ack_before_fsync", &[Checker::Durability, Checker::Revisions, Checker::Linearizable], 20);
}

/// A client tag reused for another write, answered with the first write's outcome, must be
/// caught by the hostile client (a refused write acknowledged is as bad as a lost one).
#[test]
fn bug_ignore_tag_reuse() {
    let scenario = scenario("bug_ignore_tag_reuse");
    for seed in seeds(scenario.seed_base..scenario.seed_base + 5) {
        let result = run_and_check(scenario, seed);
        progress(scenario, &result);
        if let Some(broken) = result.outcome.hostile.broken.first() {
            eprintln!("[{}] caught by the hostile client at seed {seed}: {broken}", scenario.name);
            return;
        }
    }
    panic!("the ignore-tag-reuse bug went unnoticed by the hostile client for 5 seeds");
}

/// A store that keeps serving a token what its policy allowed before a change must be caught
/// by the ACL checker: restricted reads answered while the policy was narrow.
#[test]
fn bug_stale_acl_cache() {
    expect_acl_caught("bug_stale_acl_cache", 5);
}

/// Watches that judge old events by the current policy only must be caught by the ACL checker:
/// a watcher shown, after the policy widened, what was written while it was narrow.
#[test]
fn bug_current_acl_events() {
    expect_acl_caught("bug_current_acl_events", 10);
}

/// Runs the scenario's seeds until the ACL checker finds a violation; fails if none does.
fn expect_acl_caught(name: &str, count: u64) {
    let scenario = scenario(name);
    for seed in seeds(scenario.seed_base..scenario.seed_base + count) {
        let result = run_and_check(scenario, seed);
        progress(scenario, &result);
        if let Some(violation) = result.outcome.acl.violations.first() {
            eprintln!("[{}] caught by the ACL checker at seed {seed}: {violation}", scenario.name);
            return;
        }
    }
    panic!("the {name} bug went unnoticed by the ACL checker for {count} seeds");
}

/// Committed proposals a leader leaves out of its counter must be caught by the metrics check:
/// the nodes then count fewer commits than the clients were answered.
#[test]
fn bug_uncounted_proposals() {
    let scenario = scenario("bug_uncounted_proposals");
    let replay = Replay { test_binary: "chaos", test_name: scenario.name };
    for seed in seeds(scenario.seed_base..scenario.seed_base + 5) {
        let result = run_and_check(scenario, seed);
        progress(scenario, &result);
        if let Some(violation) = result.metrics.violations.first() {
            eprintln!("[{}] caught by the metrics check at seed {seed}: {violation}", scenario.name);
            return;
        }
        eprintln!("[{}] seed {seed} went uncaught; replay: {}", scenario.name, replay.command(seed));
    }
    panic!("the uncounted-proposals bug went unnoticed by the metrics check for 5 seeds");
}

/// Retried requests applied twice must be caught.
#[test]
fn bug_skip_dedup() {
    expect_caught("bug_skip_dedup", &[Checker::Linearizable, Checker::Revisions], 20);
}

/// Watch events lost on their way to the watcher must be caught.
#[test]
fn bug_drop_watch_events() {
    expect_caught("bug_drop_watch_events", &[Checker::Watch], 20);
}

/// Staleness figures that count any AppendEntries as leader contact must be caught: a follower
/// catching up after a partition hears heartbeats long before it has applied the backlog.
#[test]
fn bug_unproven_leader_contact() {
    expect_caught("bug_unproven_leader_contact", &[Checker::Stale], 20);
}

/// Goal: a seed replays byte for byte. Method: run one seed of the busiest scenario twice in this
/// process and compare the histories, and have madsim compare its random draws.
#[test]
fn the_same_seed_replays_the_same_history() {
    let scenario = scenario("five_nodes_everything");
    for seed in seeds([4_000, 4_001]) {
        let first = run_and_check(scenario, seed);
        let second = run_and_check(scenario, seed);
        assert!(first.outcome.history == second.outcome.history, "seed {seed} recorded two different histories");
        check_determinism(scenario, seed);
    }
}

/// Goal: two processes given the same seed write byte-identical histories. Method: run this test
/// binary twice as child processes replaying one seed, each writing its history to a file.
#[test]
fn two_processes_with_the_same_seed_write_the_same_history() {
    if let Ok(path) = std::env::var("CAIRN_CHAOS_HISTORY_OUT") {
        let seed = seeds([1_000])[0];
        let result = run_and_check(scenario("three_nodes_partitions"), seed);
        std::fs::write(path, &result.outcome.history).expect("the history is written");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos").join("two-processes");
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let histories: Vec<Vec<u8>> = ["first", "second"]
        .iter()
        .map(|name| {
            let path = dir.join(format!("{name}.jsonl"));
            let status = std::process::Command::new(std::env::current_exe().expect("the test binary"))
                .args(["two_processes_with_the_same_seed_write_the_same_history", "--exact", "--nocapture"])
                .env("CAIRN_CHAOS_HISTORY_OUT", &path)
                .env("MADSIM_TEST_SEED", "1003")
                .status()
                .expect("the child process runs");
            assert!(status.success(), "the child run failed");
            std::fs::read(&path).expect("the child wrote its history")
        })
        .collect();
    assert!(!histories[0].is_empty());
    assert!(histories[0] == histories[1], "the same seed wrote different histories in two processes");
}
