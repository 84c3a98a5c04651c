//! The `cairn` binary: a node (`cairn serve`, the default) and the tools around it. Only command
//! line parsing and wiring live here; everything else is in the workspace crates.

#![forbid(unsafe_code)]

#[cfg(not(madsim))]
mod cli;

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    cli::run(cli::Cli::parse())
}

/// Under `--cfg madsim` (`cargo sim`) the binary is only compiled, never run: simulated nodes
/// are started by the `cairn-sim` harness instead.
#[cfg(madsim)]
fn main() {
    eprintln!("cairn is built for the simulator here; run a real build (cargo run) to serve");
    std::process::exit(2);
}
