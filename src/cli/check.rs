//! `cairn check HISTORY.jsonl [--report DIR]`: checks a client history (from the simulator, a
//! real cluster, or a hand-written case) and exits with the verdict.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cairn_chaos::check::{CheckOptions, check_file};
use clap::Args;

use super::duration;

/// Exit codes: 0 valid, 1 violation, 2 unknown (the search budget ran out), 3 malformed file.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The history, JSON Lines in Jepsen's shape (see chaos/README.md).
    history: PathBuf,
    /// Write a self-contained HTML report (report.html) here on a violation or unknown verdict.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Wall-clock budget for the linearizability search; when it runs out the verdict is unknown.
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    budget: Duration,
    /// Write the HTML report even when the history is valid.
    #[arg(long)]
    always_report: bool,
}

pub fn run(args: CheckArgs) -> ExitCode {
    let options = CheckOptions { budget: args.budget, report_always: args.always_report, ..CheckOptions::default() };
    match check_file(&args.history, args.report.as_deref(), &options) {
        Ok(report) => {
            println!("{report}");
            ExitCode::from(u8::try_from(report.overall().exit_code()).expect("exit codes are small"))
        }
        Err(malformed) => {
            eprintln!("cairn check: {}: {malformed}", args.history.display());
            ExitCode::from(3)
        }
    }
}
