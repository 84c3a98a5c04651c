//! Faults the harness injects, and the chaos [`Cluster`] interface over them. Every fault is
//! deterministic under the simulation seed.

use cairn_chaos::nemesis::Cluster;
use cairn_http::client::{ClientOptions, Route};
use cairn_node::api::MemberKind;
use cairn_node::command::NodeId;
use cairn_node::config::Bootstrap;
use cairn_node::metrics::Metrics;
use cairn_node::rt::Duration;
use cairn_node::storage::DiskFault;
use cairn_node::tls::ClientTls;
use futures_util::future::BoxFuture;
use madsim::net::NetSim;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::cluster::{Incarnation, SimCluster, fresh_disk, slot_ip};

/// How long a power cut may wait for writes in flight on every victim.
const WRITES_IN_FLIGHT_WAIT_MAX: Duration = Duration::from_millis(200);

impl SimCluster {
    /// Kills a node's process: its tasks and sockets vanish; its disk keeps everything written
    /// (a process crash loses nothing the kernel already has). It stays down until started.
    pub fn kill(&self, slot: usize) {
        self.runtime.kill(self.slots[slot].handle.id());
        // The kernel frees a dead process's flock at once; madsim drops its tasks only lazily.
        self.slots[slot].disk().release_locks();
    }

    /// (Re)starts a node from its disk. madsim requires a kill first, so this kills it too.
    pub fn restart(&self, slot: usize) {
        let id = self.slots[slot].handle.id();
        self.kill(slot);
        self.runtime.restart(id);
    }

    /// Power loss on these nodes at once: they die and drop or tear their unsynced writes. They
    /// stay down until restarted. Returns how many unsynced bytes were lost.
    pub fn crash(&self, slots: &[usize]) -> u64 {
        for &slot in slots {
            self.kill(slot);
        }
        slots.iter().map(|&slot| self.slots[slot].disk().crash().bytes_lost).sum()
    }

    /// Freezes a node's tasks without killing them, like SIGSTOP.
    pub fn pause(&self, slot: usize) {
        self.runtime.pause(self.slots[slot].handle.id());
    }

    pub fn resume(&self, slot: usize) {
        self.runtime.resume(self.slots[slot].handle.id());
    }

    /// Cuts every link between nodes in different groups (both ways); a node in no group is cut
    /// off from all others. Clients still reach every node.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let group_of = |slot: usize| groups.iter().position(|group| group.contains(&slot));
        let links: Vec<(usize, usize)> = (0..self.slots.len())
            .flat_map(|a| (0..self.slots.len()).map(move |b| (a, b)))
            .filter(|&(a, b)| a < b && (group_of(a).is_none() || group_of(a) != group_of(b)))
            .collect();
        self.cut_links(&links);
    }

    /// Cuts these links, both ways.
    pub fn cut_links(&self, links: &[(usize, usize)]) {
        let net = NetSim::current();
        for &(a, b) in links {
            net.clog_link(self.slots[a].handle.id(), self.slots[b].handle.id());
            net.clog_link(self.slots[b].handle.id(), self.slots[a].handle.id());
        }
    }

    /// Cuts the link from `from` to `to` only.
    pub fn clog_one_way(&self, from: usize, to: usize) {
        NetSim::current().clog_link(self.slots[from].handle.id(), self.slots[to].handle.id());
    }

    /// Sets the probability that a packet is lost (UDP datagrams; TCP stalls and retries).
    pub fn set_packet_loss(&self, rate: f64) {
        NetSim::current().update_config(|config| config.packet_loss_rate = rate);
    }

    /// Cuts a node off from every other node (clients still reach it).
    pub fn isolate(&self, slot: usize) {
        let links: Vec<(usize, usize)> =
            (0..self.slots.len()).filter(|other| *other != slot).map(|other| (slot, other)).collect();
        self.cut_links(&links);
    }

    /// Sets the one-way delay of every packet to a uniform draw from `range`.
    pub fn set_latency(&self, range: std::ops::Range<Duration>) {
        NetSim::current().update_config(|config| config.send_latency = range);
    }

    /// Restores every link and the healthy latency, and clears packet loss.
    pub fn heal(&self) {
        let net = NetSim::current();
        for a in &self.slots {
            net.unclog_node(a.handle.id());
            for b in &self.slots {
                net.unclog_link(a.handle.id(), b.handle.id());
            }
        }
        net.update_config(|config| {
            config.packet_loss_rate = 0.0;
            config.send_latency = crate::cluster::NETWORK_LATENCY;
        });
    }

    /// Removes the node in `slot` from the cluster through the public API
    /// (`DELETE /v1/cluster/members/{id}`); the node stays up, refusing requests.
    pub async fn remove_member(&self, slot: usize) -> Result<(), String> {
        let id = self.slots[slot].id();
        let options = ClientOptions { attempt_timeout: Duration::from_secs(3), call_timeout: Duration::from_secs(10) };
        let removed =
            self.with_client(options, move |client| async move { client.remove_member(Route::Any, id).await }).await;
        removed.map(|_| ()).map_err(|error| format!("removing node {id}: {error}"))
    }

    /// Puts a fresh node (new id, empty disk) in `slot`, which joins through the other slots
    /// with `--join` semantics (`POST /v1/cluster/members`) as a voter. Returns the new id.
    pub fn join_fresh(&self, slot: usize) -> NodeId {
        self.join_fresh_as(slot, MemberKind::Voter)
    }

    /// [`SimCluster::join_fresh`], joining as `kind` (`--join --learner` for a learner).
    pub fn join_fresh_as(&self, slot: usize, kind: MemberKind) -> NodeId {
        let id = self.fresh_id();
        let seeds: Vec<String> =
            self.http_endpoints().into_iter().enumerate().filter(|(s, _)| *s != slot).map(|(_, e)| e).collect();
        let config = self.config(id, slot, Bootstrap::Join { seeds, kind, cluster_id: None, token: None });
        self.kill(slot);
        let metrics = self.slots[slot].incarnation().metrics;
        *self.slots[slot].incarnation.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Incarnation { config, disk: Arc::new(fresh_disk()), metrics };
        self.restart(slot);
        id
    }

    /// An operator's mistake: starts another process, as node `id` (the slot's own id for a
    /// second incarnation) on a spare machine, on the data directory of `slot`'s node, and
    /// returns why it refused to start. A start that succeeds is the mistake going unnoticed:
    /// it is reported as an `Err` and the intruder is killed at once.
    pub async fn start_on_directory_of(&self, slot: usize, id: NodeId) -> Result<String, String> {
        let spare = self.slots.len() + usize::from(self.intruders.fetch_add(1, Ordering::Relaxed) % 100);
        let mut config = self.config(id, spare, Bootstrap::Single);
        let Incarnation { config: owner, disk, .. } = self.slots[slot].incarnation();
        config.data_dir = owner.data_dir;
        let machine = self.runtime.create_node().name(format!("intruder-{spare}")).ip(slot_ip(spare)).build();
        let started = machine
            .spawn(async move {
                match cairn_http::launch(config, disk, Arc::new(Metrics::new())).await {
                    Ok(_launched) => Ok(()),
                    Err(error) => Err(error.to_string()),
                }
            })
            .await
            .expect("the intruder's start completes");
        self.runtime.kill(machine.id());
        match started {
            Ok(()) => Err(format!("node {id} started on the data directory of slot {}", slot + 1)),
            Err(refusal) => Ok(refusal),
        }
    }

    /// Removes the slot's member and puts a fresh node in its place.
    pub async fn replace_member(&self, slot: usize) -> Result<String, String> {
        let old = self.slots[slot].id();
        self.remove_member(slot).await?;
        let id = self.join_fresh(slot);
        Ok(format!("slot {}: node {old} removed, node {id} joins", slot + 1))
    }
}

impl Cluster for SimCluster {
    fn endpoints(&self) -> Vec<String> {
        self.http_endpoints()
    }

    fn client_tls(&self) -> Option<ClientTls> {
        SimCluster::client_tls(self)
    }

    fn spawn_client(&self, task: BoxFuture<'static, ()>) -> BoxFuture<'static, ()> {
        let handle = self.clients.spawn(task);
        Box::pin(async move {
            let _ = handle.await;
        })
    }

    async fn leader(&self) -> Option<usize> {
        SimCluster::leader(self).await
    }

    async fn kill(&self, slot: usize) {
        SimCluster::kill(self, slot);
    }

    async fn start(&self, slot: usize) {
        self.restart(slot);
    }

    /// Waits, for at most [`WRITES_IN_FLIGHT_WAIT_MAX`], for a moment when every victim has
    /// written something it has not synced yet: a power cut when every disk is clean can lose
    /// nothing and so tests nothing about durability.
    async fn intrude(&self, slot: usize, as_slot: usize) -> Option<Result<String, String>> {
        Some(self.start_on_directory_of(slot, self.slots[as_slot].id()).await)
    }

    async fn crash(&self, slots: &[usize]) -> Option<u64> {
        let deadline = cairn_node::rt::Instant::now() + WRITES_IN_FLIGHT_WAIT_MAX;
        while !slots.iter().all(|&slot| self.slots[slot].disk().unsynced_bytes() > 0)
            && cairn_node::rt::Instant::now() < deadline
        {
            cairn_node::rt::sleep(Duration::from_millis(1)).await;
        }
        Some(SimCluster::crash(self, slots))
    }

    async fn pause(&self, slot: usize) {
        SimCluster::pause(self, slot);
    }

    async fn resume(&self, slot: usize) {
        SimCluster::resume(self, slot);
    }

    async fn cut(&self, links: &[(usize, usize)]) {
        self.cut_links(links);
    }

    async fn cut_one_way(&self, from: usize, to: usize) {
        self.clog_one_way(from, to);
    }

    async fn set_packet_loss(&self, rate: f64) {
        SimCluster::set_packet_loss(self, rate);
    }

    async fn set_latency(&self, range: std::ops::Range<Duration>) {
        SimCluster::set_latency(self, range);
    }

    async fn heal_network(&self) {
        self.heal();
    }

    async fn replace(&self, slot: usize) -> Result<String, String> {
        self.replace_member(slot).await
    }

    async fn fail_disk(&self, slot: usize, full: bool) -> bool {
        let fault = if full { DiskFault::NoSpace } else { DiskFault::Io };
        self.slots[slot].disk().set_fault(Some(fault));
        true
    }

    async fn heal_disk(&self, slot: usize) {
        self.slots[slot].disk().set_fault(None);
    }
}
