//! Real `cairn serve` processes for integration tests: started on free loopback ports with
//! their own data directories, killed when the test ends.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_http::client::{CairnClient, ClientOptions, Route};
use cairn_node::api::Role;

/// One `cairn serve` process and how to start it again.
pub struct Process {
    pub id: u64,
    pub http: String,
    pub peer: String,
    pub data: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts node `id` with data under `root`, passing `extra` flags (e.g. `--join`).
    pub fn start(root: &Path, id: u64, extra: &[String]) -> Process {
        Process::start_at(root, id, &free_address(), &free_address(), extra)
    }

    /// Starts node `id` on the given addresses.
    pub fn start_at(root: &Path, id: u64, http: &str, peer: &str, extra: &[String]) -> Process {
        let mut process = Process {
            id,
            http: http.to_string(),
            peer: peer.to_string(),
            data: root.join(format!("node-{id}")),
            extra: extra.to_vec(),
            child: None,
            log: root.join(format!("node-{id}.log")),
        };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} is already running", self.id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("the log file opens");
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["serve", "--id", &self.id.to_string(), "--http", &self.http, "--peer", &self.peer])
            .arg("--data")
            .arg(&self.data)
            .args(["--heartbeat-interval", "50ms", "--election-timeout", "300ms"])
            .args(&self.extra)
            .env("CAIRN_LOG", "info")
            .stdout(log.try_clone().expect("the log file clones"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("the cairn binary starts");
        self.child = Some(child);
    }

    /// SIGKILL: the process dies at once, with no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("the process can be killed");
            child.wait().expect("the killed process is reaped");
        }
    }

    /// SIGTERM, then waits for the process to exit: a clean shutdown.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            assert!(status.is_ok_and(|status| status.success()), "SIGTERM is delivered");
            child.wait().expect("the stopped process is reaped");
        }
    }

    /// Sends the running process a signal (`HUP`, `TERM`, …) without waiting for anything.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("the process is running");
        let status = Command::new("kill").args([format!("-{name}"), child.id().to_string()]).status();
        assert!(status.is_ok_and(|status| status.success()), "SIG{name} is delivered");
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit status if it did.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().expect("the process can be polled") {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Starts the process again with the same flags and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The node's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port is available");
    listener.local_addr().expect("the listener has an address").to_string()
}

/// Three nodes started with the same `--initial-cluster` list (etcd's static bootstrap) and
/// `extra` flags, in slot order; slot `i` has node id `i + 1`.
pub fn start_static_cluster(root: &Path, extra: &[&str]) -> Vec<Process> {
    let addresses: Vec<(String, String)> = (0..3).map(|_| (free_address(), free_address())).collect();
    let list = addresses
        .iter()
        .enumerate()
        .map(|(i, (peer, http))| format!("{}={peer}@{http}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut flags = vec!["--initial-cluster".to_string(), list];
    flags.extend(extra.iter().map(|flag| flag.to_string()));
    addresses
        .iter()
        .enumerate()
        .map(|(i, (peer, http))| Process::start_at(root, i as u64 + 1, http, peer, &flags))
        .collect()
}

/// Waits until the cluster's membership has `count` voters. Joiners are added one at a time,
/// each caught up first, so on a loaded two-core machine this takes a while: once, in CI, two
/// joiners were not both voters after 30 s.
pub async fn wait_for_voters(cluster: &CairnClient, count: usize) {
    eventually(Duration::from_secs(60), &format!("{count} voters"), || async {
        let members = cluster.members(Route::Any).await.ok()?;
        (members.iter().filter(|m| m.voter).count() == count).then_some(())
    })
    .await;
}

pub fn client(endpoints: Vec<String>) -> CairnClient {
    CairnClient::new(
        endpoints,
        ClientOptions { attempt_timeout: Duration::from_secs(6), call_timeout: Duration::from_secs(20) },
    )
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The index (in `endpoints`) of the node that reports itself leader, once one does.
pub async fn leader_index(endpoints: &[String]) -> usize {
    let client = client(endpoints.to_vec());
    eventually(Duration::from_secs(30), "a leader", || async {
        for index in 0..endpoints.len() {
            if let Ok(status) = client.status(Route::Only(index)).await
                && status.value.role == Role::Leader
            {
                return Some(index);
            }
        }
        None
    })
    .await
}
