//! The system tools a run drives (`ip`, `iptables`, `kill`), run to completion with their
//! failures reported together with what they printed.
//!
//! They run synchronously, on the run's single runtime thread: each takes milliseconds, and an
//! interrupt (which cancels the run at its next `.await`) can then never fall between creating
//! something and recording it for the teardown.

use std::process::Command;

/// Runs `program args…`; its standard output, or an error naming the command and what it said.
pub(super) fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program).args(args).output().map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(format!(
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`, `KILL`) to a process. The `kill` command rather than
/// `libc::kill`: the workspace forbids unsafe code.
pub(super) fn signal(pid: u32, signal: &str) -> Result<(), String> {
    run("kill", &["-s", signal, &pid.to_string()]).map(drop)
}
