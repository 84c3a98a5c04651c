//! Generated histories: valid ones pass every checker, planted anomalies are caught by the
//! checker that owns them, and the two benchmark shapes are decided.

use std::time::{Duration, Instant};

use cairn_chaos::generate::{Anomaly, Workload, generate, inject};
use cairn_chaos::history::write_event;
use cairn_chaos::{CheckOptions, CheckReport, Checker, History, Overall, Verdict, check_history};

/// A budget no machine should need, so that these tests never depend on machine speed.
fn generous() -> CheckOptions {
    CheckOptions { budget: Duration::from_secs(600), ..CheckOptions::default() }
}

fn check(events: Vec<cairn_chaos::Event>) -> CheckReport {
    check_history(&History::from_events(events).expect("generated histories are well-formed"), &generous())
}

/// Goal: the generator's histories are linearizable by construction, so every checker passes.
/// Method: many seeds over several shapes (mixed, dense, write-heavy with many timeouts).
#[test]
fn generated_histories_pass_every_checker() {
    for seed in 0..24 {
        let mut workload = Workload::new(seed);
        match seed % 3 {
            0 => {}
            1 => (workload.keys, workload.clients, workload.operations) = (1, 12, 400),
            _ => (workload.mix, workload.timeouts_percent) = ([30, 40, 20, 10], 15),
        }
        let report = check(generate(&workload));
        assert_eq!(report.overall(), Overall::Valid, "seed {seed}:\n{report}");
    }
}

/// Goal: each planted anomaly is reported by the checker responsible for it.
/// Method: plant it in several seeds' histories and look at that checker's verdict.
#[test]
fn each_planted_anomaly_is_caught_by_its_checker() {
    let cases = [
        (Anomaly::StaleRead, Checker::Linearizable),
        (Anomaly::LostWrite, Checker::Linearizable),
        (Anomaly::LostWrite, Checker::Durability),
        (Anomaly::DuplicateApply, Checker::Linearizable),
        (Anomaly::InventedValue, Checker::Linearizable),
        (Anomaly::InventedStaleValue, Checker::Stale),
        (Anomaly::RevisionGoingBack, Checker::Revisions),
        (Anomaly::StaleRevisionGoingBack, Checker::Stale),
    ];
    for (anomaly, checker) in cases {
        for seed in 0..4 {
            let mut workload = Workload::new(100 + seed);
            workload.keys = 8;
            let mut events = generate(&workload);
            let planted = inject(&mut events, anomaly, seed);
            assert!(planted.is_some(), "{anomaly:?} found no spot in seed {seed}");
            let report = check(events);
            let verdict = &report.checker(checker).verdict;
            assert!(matches!(verdict, Verdict::Violation(_)), "{anomaly:?} seed {seed}: {planted:?}\n{report}");
        }
    }
}

/// Goal: one seed gives one history, byte for byte, as the simulator needs for replays, with
/// and without watchers.
#[test]
fn same_seed_gives_byte_identical_history() {
    let bytes = |watchers| {
        let mut out = Vec::new();
        for event in generate(&Workload { watchers, ..Workload::new(42) }) {
            write_event(&mut out, &event).unwrap();
        }
        out
    };
    assert_eq!(bytes(0), bytes(0));
    assert_eq!(bytes(3), bytes(3));
}

/// Goal: generated watchers see every change once, in revision order, as written, so every
/// checker passes; and they really reconnect. Method: several seeds and shapes (one key, many
/// keys so that the odd watchers' prefix `k1` also matches `k10`…, frequent reconnects).
#[test]
fn generated_watchers_pass_every_checker() {
    for seed in 0..12 {
        let mut workload = Workload { watchers: 4, ..Workload::new(200 + seed) };
        match seed % 3 {
            0 => {}
            1 => (workload.keys, workload.clients, workload.operations) = (1, 12, 400),
            _ => (workload.keys, workload.watch_reconnect_percent, workload.timeouts_percent) = (12, 40, 10),
        }
        let history = History::from_events(generate(&workload)).expect("generated histories are well-formed");
        let resumes = history.watch_lines.iter().filter(|line| line.to_string().contains(" resume ")).count();
        assert!(resumes > workload.watchers, "seed {seed}: only {resumes} resumes");
        let report = check_history(&history, &generous());
        assert_eq!(report.overall(), Overall::Valid, "seed {seed}:\n{report}");
    }
}

/// Goal: a dropped and a duplicated watcher delivery are both caught by the watch checker, and
/// by no other. Method: plant each in several seeds' histories with watchers.
#[test]
fn planted_watch_anomalies_are_caught_by_the_watch_checker() {
    for anomaly in [Anomaly::WatchDroppedEvent, Anomaly::WatchDuplicatedEvent] {
        for seed in 0..8 {
            let mut workload = Workload { watchers: 2 + seed as usize % 3, ..Workload::new(300 + seed) };
            workload.keys = 1 + seed as usize * 2;
            let mut events = generate(&workload);
            let planted = inject(&mut events, anomaly, seed);
            assert!(planted.is_some(), "{anomaly:?} found no spot in seed {seed}");
            let report = check(events);
            let verdict = &report.checker(Checker::Watch).verdict;
            assert!(matches!(verdict, Verdict::Violation(_)), "{anomaly:?} seed {seed}: {planted:?}\n{report}");
            let others = report.checkers.iter().filter(|checker| checker.checker != Checker::Watch);
            assert!(others.into_iter().all(|checker| checker.verdict == Verdict::Valid), "{report}");
        }
    }
}

fn decided(workload: &Workload, anomaly: Option<Anomaly>) {
    let mut events = generate(workload);
    if let Some(anomaly) = anomaly {
        assert!(inject(&mut events, anomaly, workload.seed).is_some());
    }
    let started = Instant::now();
    let report = check(events);
    let verdict = &report.checker(Checker::Linearizable).verdict;
    let expected = if anomaly.is_some() { Overall::Violation } else { Overall::Valid };
    assert_eq!(verdict.class(), expected, "{report}");
    eprintln!("{} operations decided in {:?}", report.operations, started.elapsed());
}

/// Goal: the 20-key, 20-client, 20,000-operation history is decided, valid and with a stale
/// read planted.
#[test]
fn wide_history_is_decided() {
    decided(&Workload::wide(1), None);
    decided(&Workload::wide(1), Some(Anomaly::StaleRead));
}

/// Goal: a dense single-key history (24 clients, cas, deletes, timeouts), where a plain WGL
/// search gives up, is decided both ways.
#[test]
fn dense_single_key_history_is_decided() {
    decided(&Workload::dense(1), None);
    decided(&Workload::dense(1), Some(Anomaly::StaleRead));
}
