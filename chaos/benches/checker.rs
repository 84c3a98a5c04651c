//! Checker throughput on the two benchmark shapes, valid and with a planted stale read:
//! `Workload::wide` (20 keys, 20 clients, 20,000 operations) and `Workload::dense` (one key,
//! 24 clients, 2,000 operations with cas, deletes and timeouts).

use std::hint::black_box;
use std::time::Duration;

use cairn_chaos::generate::{Anomaly, Workload, generate, inject};
use cairn_chaos::{CheckOptions, History, Overall, check_history};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn history(workload: &Workload, anomaly: Option<Anomaly>) -> History {
    let mut events = generate(workload);
    if let Some(anomaly) = anomaly {
        inject(&mut events, anomaly, workload.seed).expect("the workload has a spot for the anomaly");
    }
    History::from_events(events).expect("generated histories are well-formed")
}

fn bench(c: &mut Criterion) {
    // The prefix refinement is measured separately from the verdict: it is a second search
    // that only runs on violations.
    let options = CheckOptions { prefix_budget: Duration::ZERO, ..CheckOptions::default() };
    let mut group = c.benchmark_group("check_history");
    group.sample_size(10);
    let cases = [
        ("wide/valid", Workload::wide(1), None, Overall::Valid),
        ("wide/stale-read", Workload::wide(1), Some(Anomaly::StaleRead), Overall::Violation),
        ("dense/valid", Workload::dense(1), None, Overall::Valid),
        ("dense/stale-read", Workload::dense(1), Some(Anomaly::StaleRead), Overall::Violation),
    ];
    for (name, workload, anomaly, expected) in cases {
        let history = history(&workload, anomaly);
        assert_eq!(check_history(&history, &options).overall(), expected, "{name}");
        group.throughput(Throughput::Elements(history.operations.len() as u64));
        group.bench_function(name, |b| b.iter(|| check_history(black_box(&history), &options)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
