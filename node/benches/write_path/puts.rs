//! Puts on the leader of one cluster, started once: one writer (the latency of a put) and 16
//! concurrent writers (the time per put at full load, and so the throughput). Each writer is a
//! task on the runtime the nodes run on, as an HTTP request's task would be.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_node::Node;
use cairn_node::acl::Credential;
use cairn_node::command::{Command, Precondition, Response};
use criterion::{Criterion, Throughput, criterion_group};
use tokio::runtime::Runtime;

use crate::cluster::Cluster;

const VALUE_BYTES: usize = 256;
const KEYS: u64 = 100;
const WRITERS: u64 = 16;

/// The fewest puts one sample with concurrent writers runs, its time scaled back to the puts
/// criterion asked for: the first samples of the warm-up and of `--quick` ask for one or two,
/// which would leave most writers idle and measure latency instead of throughput.
const CONCURRENT_PUTS_MIN: u64 = WRITERS * 8;

fn write_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let cluster = runtime.block_on(Cluster::start());
    let leader = runtime.block_on(cluster.leader());
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let mut group = c.benchmark_group("write_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("put/1-writer", |b| b.iter_custom(|puts| run(&runtime, &leader, &value, 1, puts)));
    group.bench_function(format!("put/{WRITERS}-writers"), |b| {
        b.iter_custom(|puts| {
            let run_puts = puts.max(CONCURRENT_PUTS_MIN);
            run(&runtime, &leader, &value, WRITERS, run_puts).mul_f64(puts as f64 / run_puts as f64)
        })
    });
    group.finish();
    runtime.block_on(cluster.shutdown());
}

/// The time `writers` take to make `puts` puts between them, each writer starting its next put
/// when its last one is answered.
fn run(runtime: &Runtime, leader: &Node, value: &Bytes, writers: u64, puts: u64) -> Duration {
    let claimed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> =
        (0..writers).map(|_| runtime.spawn(write(leader.clone(), value.clone(), claimed.clone(), puts))).collect();
    runtime.block_on(async {
        for task in tasks {
            task.await.expect("a writer finished");
        }
    });
    started.elapsed()
}

/// Puts until `puts` have been claimed by all writers; the claim's number picks the key.
async fn write(leader: Node, value: Bytes, claimed: Arc<AtomicU64>, puts: u64) {
    loop {
        let serial = claimed.fetch_add(1, Ordering::Relaxed);
        if serial >= puts {
            return;
        }
        let key = format!("bench/{:02}", serial % KEYS).into();
        let command = Command::Put { key, value: value.clone(), labels: None, expect: Precondition::Always };
        match leader.write(command, None, Credential::Anonymous).await {
            Ok(Response::Put { .. }) => {}
            other => panic!("a put was answered with {other:?}"),
        }
    }
}

criterion_group!(benches, write_path);
