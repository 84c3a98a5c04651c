//! [`ProcessCluster`]: the chaos crate's [`Cluster`] over real `cairn serve` processes. Faults
//! are signals (SIGKILL, SIGSTOP/SIGCONT, SIGTERM), iptables rules in the nodes' namespaces, and
//! membership changes through the public API. Dropping it kills every node, then deletes the
//! network: the teardown for normal ends, errors, panics and interrupts alike.

use cairn_node::tls::ClientTls;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cairn_chaos::nemesis::Cluster;
use cairn_http::client::{CairnClient, ClientOptions, Route};
use cairn_node::api::Role;
use cairn_node::rt::{self, Instant};

use super::network::Network;
use super::process::{Bootstrap, Launch, Slot};

/// How long a node may take to exit after SIGTERM before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// `futures_util`'s `BoxFuture<'static, ()>`, spelled out: the trait's type, without the crate.
type ClientTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A running cluster of real processes.
pub(super) struct ProcessCluster {
    /// Where the nodes live. Fields drop after [`Drop::drop`] has killed the nodes, so no node
    /// outlives its namespace.
    network: Network,
    launch: Launch,
    /// Every slot. A std mutex: each use is a short synchronous step, never held across `.await`.
    slots: Mutex<Vec<Slot>>,
    /// How many slots: fixed for the run.
    nodes: usize,
    /// The id the next fresh node gets; ids are never reused (a removed one is retired).
    next_id: AtomicU64,
    /// What went wrong on the cluster's side during the run (a node that exited on its own, a
    /// rule that could not be added), for the verdict.
    problems: Mutex<Vec<String>>,
    /// Asks the nodes who leads.
    status: CairnClient,
    /// How clients reach the nodes with `--tls`.
    client_tls: Option<ClientTls>,
    started: Instant,
}

impl ProcessCluster {
    /// Starts `nodes` nodes, ids 1..=nodes, from a static membership.
    pub(super) fn start(
        network: Network,
        launch: Launch,
        nodes: usize,
        client_tls: Option<ClientTls>,
    ) -> Result<ProcessCluster, String> {
        let members: Vec<String> =
            (0..nodes).map(|slot| format!("{}={}@{}", slot + 1, network.peer(slot), network.http(slot))).collect();
        let bootstrap = Bootstrap::Initial(members.join(","));
        let slots = (0..nodes).map(|slot| Slot::new(slot, slot as u64 + 1, bootstrap.clone())).collect();
        let endpoints = (0..nodes).map(|slot| network.http(slot)).collect();
        let status = CairnClient::with_tls(
            endpoints,
            ClientOptions { attempt_timeout: Duration::from_millis(500), call_timeout: Duration::from_secs(1) },
            client_tls.clone(),
        );
        let cluster = ProcessCluster {
            network,
            launch,
            slots: Mutex::new(slots),
            nodes,
            next_id: AtomicU64::new(nodes as u64 + 1),
            problems: Mutex::new(Vec::new()),
            status,
            client_tls,
            started: Instant::now(),
        };
        for slot in 0..nodes {
            cluster.start_slot(slot)?;
        }
        Ok(cluster)
    }

    /// Waits until some node leads.
    pub(super) async fn await_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(leader) = self.leader().await {
                return Some(leader);
            }
            rt::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Stops every node and deletes the network; what went wrong on the cluster's side, including
    /// nodes that had exited on their own by now.
    pub(super) fn finish(self) -> Vec<String> {
        for slot in self.slots().iter_mut() {
            if let Some(status) = slot.exited() {
                self.problem(format!("node {} had exited on its own by the end ({status})", slot.id));
            }
        }
        let problems = std::mem::take(&mut *self.problems.lock().unwrap_or_else(PoisonError::into_inner));
        drop(self);
        problems
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a problem with the time it happened, and says it at once.
    fn problem(&self, problem: String) {
        let problem = format!("+{:.3}s: {problem}", self.started.elapsed().as_secs_f64());
        eprintln!("cairn jepsen: {problem}");
        self.problems.lock().unwrap_or_else(PoisonError::into_inner).push(problem);
    }

    fn start_slot(&self, slot: usize) -> Result<(), String> {
        self.slots()[slot].start(&self.network, &self.launch)
    }

    fn kill_slot(&self, slot: usize) {
        let mut slots = self.slots();
        if let Some(status) = slots[slot].kill() {
            let id = slots[slot].id;
            drop(slots);
            self.problem(format!("node {id} had exited on its own before it was stopped ({status})"));
        }
    }

    fn signal_slot(&self, slot: usize, signal: &str) {
        let signalled = self.slots()[slot].signal(signal);
        if let Err(error) = signalled {
            self.problem(format!("SIG{signal} to slot {}: {error}", slot + 1));
        }
    }

    fn report(&self, what: &str, result: Result<(), String>) {
        if let Err(error) = result {
            self.problem(format!("{what}: {error}"));
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for slot in self.slots().iter_mut() {
            slot.kill();
        }
    }
}

impl Cluster for ProcessCluster {
    fn client_tls(&self) -> Option<ClientTls> {
        self.client_tls.clone()
    }

    fn endpoints(&self) -> Vec<String> {
        (0..self.nodes).map(|slot| self.network.http(slot)).collect()
    }

    fn spawn_client(&self, task: ClientTask) -> ClientTask {
        let handle = rt::spawn(task);
        Box::pin(async move {
            let _ = handle.await;
        })
    }

    async fn leader(&self) -> Option<usize> {
        for slot in 0..self.nodes {
            if let Ok(status) = self.status.status(Route::Only(slot)).await
                && status.value.role == Role::Leader
            {
                return Some(slot);
            }
        }
        None
    }

    async fn kill(&self, slot: usize) {
        self.kill_slot(slot);
    }

    async fn start(&self, slot: usize) {
        let started = self.start_slot(slot);
        self.report(&format!("starting slot {}", slot + 1), started);
    }

    /// SIGTERM, then waits for the node to exit; SIGKILL if it takes longer than
    /// [`SHUTDOWN_GRACE`].
    async fn shut_down(&self, slot: usize) {
        self.signal_slot(slot, "TERM");
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while Instant::now() < deadline {
            let gone = {
                let mut slots = self.slots();
                slots[slot].exited().is_some() || slots[slot].pid().is_none()
            };
            if gone {
                return;
            }
            rt::sleep(Duration::from_millis(20)).await;
        }
        self.problem(format!("slot {} did not exit within {SHUTDOWN_GRACE:?} of SIGTERM; killed", slot + 1));
        self.kill_slot(slot);
    }

    /// Real processes lose nothing the kernel already has, so this is a kill, and the nemesis is
    /// never given the faults that call it.
    async fn crash(&self, slots: &[usize]) -> Option<u64> {
        for &slot in slots {
            self.kill_slot(slot);
        }
        None
    }

    async fn pause(&self, slot: usize) {
        self.signal_slot(slot, "STOP");
    }

    async fn resume(&self, slot: usize) {
        self.signal_slot(slot, "CONT");
    }

    async fn cut(&self, links: &[(usize, usize)]) {
        for &(a, b) in links {
            let cut = self.network.cut_one_way(a, b).and_then(|()| self.network.cut_one_way(b, a));
            self.report(&format!("cutting {} <-> {}", a + 1, b + 1), cut);
        }
    }

    async fn cut_one_way(&self, from: usize, to: usize) {
        let cut = self.network.cut_one_way(from, to);
        self.report(&format!("cutting {} -> {}", from + 1, to + 1), cut);
    }

    /// Not offered: `--nemesis` has no name for it (see `nemesis::parse`). Says so if it were
    /// ever asked for.
    async fn set_packet_loss(&self, rate: f64) {
        self.problem(format!("packet loss of {rate} asked for, but real processes do not get it"));
    }

    /// Not offered, like packet loss.
    async fn set_latency(&self, range: std::ops::Range<Duration>) {
        self.problem(format!("latency of {range:?} asked for, but real processes do not get it"));
    }

    async fn heal_network(&self) {
        let healed = self.network.heal();
        self.report("healing the network", healed);
    }

    /// Removes the slot's member through `DELETE /v1/cluster/members/{id}`, kills its process and
    /// starts a fresh node (new id, empty data directory) in the slot, which joins through the
    /// other slots with `--join`.
    async fn replace(&self, slot: usize) -> Result<String, String> {
        let old = self.slots()[slot].id;
        let client = CairnClient::with_tls(
            self.endpoints(),
            ClientOptions { attempt_timeout: Duration::from_secs(3), call_timeout: Duration::from_secs(10) },
            self.client_tls.clone(),
        );
        client.remove_member(Route::Any, old).await.map_err(|error| format!("removing node {old}: {error}"))?;
        // A removed node stops serving and may exit by itself; either way it is gone now.
        self.slots()[slot].kill();
        let seeds: Vec<String> = (0..self.nodes).filter(|s| *s != slot).map(|s| self.network.http(s)).collect();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.slots()[slot] = Slot::new(slot, id, Bootstrap::Join(seeds.join(",")));
        if let Err(error) = self.start_slot(slot) {
            let error = format!("node {old} removed, but {error}");
            self.problem(error.clone());
            return Err(error);
        }
        Ok(format!("slot {}: node {old} removed, node {id} joins", slot + 1))
    }
}
