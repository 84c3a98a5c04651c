//! One slot's `cairn serve` process: how it is started (the same binary, its own data directory,
//! its output appended to `node-<id>.log`), signalled, killed and reaped.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};

use super::command;
use super::network::Network;

/// The server's request timeout: a write that takes longer ends `outcome_unknown`. Shorter than
/// the clients' attempt timeout, as in the simulator, so that the server's answer arrives first.
const REQUEST_TIMEOUT: &str = "2s";
/// Log entries between snapshots: small, so that restarted and fresh nodes catch up through
/// snapshot installs too, as in the simulator.
const SNAPSHOT_EVERY: &str = "200";

/// What every node of a run is started with.
pub(super) struct Launch {
    /// The `cairn` binary: this one.
    pub(super) binary: PathBuf,
    /// The output directory: logs in it, data directories under `data/`.
    pub(super) out: PathBuf,
    /// `--inject-bugs` for the servers (debug builds only).
    pub(super) bugs: Option<String>,
    /// With `--tls`: the directory of `cairn tls init`'s files. Slot N serves with
    /// `node-N.crt`, whichever node is in it, and requires client certificates.
    pub(super) tls: Option<PathBuf>,
}

/// How a node first becomes a member: listed in the static bootstrap, or joining later.
#[derive(Clone, Debug)]
pub(super) enum Bootstrap {
    /// `--initial-cluster ID=PEER@HTTP,…`.
    Initial(String),
    /// `--join HTTP,…`: the other slots.
    Join(String),
}

/// A node position. Its addresses never change; the node in it does when its member is replaced.
pub(super) struct Slot {
    index: usize,
    /// The id of the node in this slot now.
    pub(super) id: u64,
    /// How that node becomes a member; ignored by `cairn serve` once its data directory has state.
    bootstrap: Bootstrap,
    /// The running process, if any.
    child: Option<Child>,
}

impl Slot {
    pub(super) fn new(index: usize, id: u64, bootstrap: Bootstrap) -> Slot {
        Slot { index, id, bootstrap, child: None }
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the slot's node from its data directory.
    pub(super) fn start(&mut self, network: &Network, launch: &Launch) -> Result<(), String> {
        if let Some(pid) = self.pid() {
            return Err(format!("node {} is already running (pid {pid})", self.id));
        }
        let (http, peer) = (network.http(self.index), network.peer(self.index));
        let data = launch.out.join("data").join(format!("node-{}", self.id));
        let log_path = launch.out.join(format!("node-{}.log", self.id));
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|error| format!("{}: {error}", log_path.display()))?;
        let output = |log: &std::fs::File| log.try_clone().map_err(|error| format!("{}: {error}", log_path.display()));
        let mut command = network.command(self.index, &launch.binary);
        command.args(["serve", "--id", &self.id.to_string(), "--http", &http, "--peer", &peer]);
        command.arg("--data").arg(&data);
        command.args(["--request-timeout", REQUEST_TIMEOUT, "--snapshot-every", SNAPSHOT_EVERY]);
        match &self.bootstrap {
            Bootstrap::Initial(list) => command.args(["--initial-cluster", list]),
            Bootstrap::Join(seeds) => command.args(["--join", seeds]),
        };
        if let Some(dir) = &launch.tls {
            let (cert, key) =
                (dir.join(format!("node-{}.crt", self.index + 1)), dir.join(format!("node-{}.key", self.index + 1)));
            let ca = dir.join("ca.crt");
            command.arg("--cert-file").arg(&cert).arg("--key-file").arg(&key).arg("--trusted-ca-file").arg(&ca);
            command.arg("--client-cert-auth");
            command.arg("--peer-cert-file").arg(&cert).arg("--peer-key-file").arg(&key);
            command.arg("--peer-trusted-ca-file").arg(&ca);
        }
        if let Some(bugs) = &launch.bugs {
            command.args(["--inject-bugs", bugs]);
        }
        // The caller's CAIRN_* variables would reach `cairn serve` as flags; only ours count.
        for (name, _) in std::env::vars_os().filter(|(name, _)| name.to_string_lossy().starts_with("CAIRN_")) {
            command.env_remove(name);
        }
        // Text without colour: node logs are read by people after a run.
        command
            .env("CAIRN_LOG", "info")
            .env("CAIRN_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(output(&log)?)
            .stderr(output(&log)?);
        let child = command.spawn().map_err(|error| format!("starting node {}: {error}", self.id))?;
        // Best effort: the marker only helps a reader of the log.
        let _ = writeln!(
            log,
            "---- cairn jepsen: node {} started in slot {} (pid {})",
            self.id,
            self.index + 1,
            child.id()
        );
        self.child = Some(child);
        Ok(())
    }

    /// Sends a signal to the running node; an error if none runs.
    pub(super) fn signal(&self, signal: &str) -> Result<(), String> {
        let pid = self.pid().ok_or_else(|| format!("node {} is not running", self.id))?;
        command::signal(pid, signal)
    }

    /// How the node ended, if it has exited; reaps it.
    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// SIGKILL (it works on a stopped process too) and reap. Returns how the node had ended if
    /// it had already exited on its own.
    pub(super) fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // Errors mean it is already gone; the wait below then returns at once.
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}
