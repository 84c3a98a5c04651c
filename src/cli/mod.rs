//! Command line: `cairn [serve] [FLAGS]` runs a node; other subcommands are tools.

mod bench;
mod check;
mod client;
mod duration;
mod jepsen;
mod log;
mod serve;
mod snapshot;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cairn: a strongly consistent, Raft-replicated key-value and configuration store.
///
/// Without a subcommand, cairn runs a node (`cairn serve`): by default a single-node cluster
/// with HTTP on 127.0.0.1:7700, peers on 127.0.0.1:7701 and data under ./data.
///
/// Client commands exit with 0 when done, 1 when the cluster refused the request, 3 when the
/// key or member does not exist, 4 on a compare-and-swap mismatch, 5 when no node or leader was
/// reachable (nothing changed) and 6 when a write's outcome is unknown.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: serve::ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (the default when no subcommand is given).
    Serve(serve::ServeArgs),
    /// Check a client history for linearizability, stale reads, revisions and durability.
    Check(check::CheckArgs),
    /// Measure throughput and latency of a cairn cluster, or of etcd for comparison; chart the
    /// saved reports.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run a Jepsen-style test against real cairn processes: faults, then the history checked.
    Jepsen(jepsen::JepsenArgs),
    /// Backups: save a cluster's snapshot, verify a file, restore a new cluster from one.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Certificates for trying TLS on a local cluster.
    #[command(subcommand)]
    Tls(tls::TlsCommand),
    #[command(flatten)]
    Client(client::ClientCommand),
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Check(args)) => check::run(args),
        Some(Command::Bench(command)) => bench::run(command),
        Some(Command::Jepsen(args)) => jepsen::run(args),
        Some(Command::Snapshot(command)) => snapshot::run(command),
        Some(Command::Tls(command)) => tls::run(command),
        Some(Command::Client(command)) => client::run(command),
        None => serve::run(cli.serve),
    }
}
