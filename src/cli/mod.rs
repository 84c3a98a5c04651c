//! Command line: `cairn [serve] [FLAGS]` runs a node; other subcommands are tools.

mod check;
mod duration;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cairn: a strongly consistent, Raft-replicated key-value and configuration store.
///
/// Without a subcommand, cairn runs a node (`cairn serve`): by default a single-node cluster
/// with HTTP on 127.0.0.1:7700, peers on 127.0.0.1:7701 and data under ./data.
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
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Check(args)) => check::run(args),
        None => serve::run(cli.serve),
    }
}
