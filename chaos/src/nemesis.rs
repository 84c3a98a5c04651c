//! The nemesis: a seeded schedule of faults, each started, held for a while and undone, and
//! recorded in the history so the report can draw it. It works on any [`Cluster`]: the
//! simulator's, or real processes.

use cairn_node::rt::{self, Duration, Instant};
use cairn_node::tls::ClientTls;
use futures_util::future::BoxFuture;

use crate::generate::Rng;
use crate::history::FaultPhase;
use crate::metrics::LEADER_VICTIM;
use crate::recorder::Recorder;

/// What a run needs from a cluster. Nodes are numbered by slot, `0..endpoints().len()`; a slot
/// keeps its HTTP address for the whole run even when the node in it is replaced.
// The futures are awaited by the run's own task, never sent elsewhere, so no Send bound.
#[allow(async_fn_in_trait)]
pub trait Cluster {
    /// Every slot's HTTP address, in slot order.
    fn endpoints(&self) -> Vec<String>;
    /// How clients reach the nodes over HTTPS, when the cluster speaks only HTTPS.
    fn client_tls(&self) -> Option<ClientTls>;
    /// Runs `task` on the clients' side of the network; the returned future completes with it.
    fn spawn_client(&self, task: BoxFuture<'static, ()>) -> BoxFuture<'static, ()>;
    /// The slot whose node says it leads, if any.
    async fn leader(&self) -> Option<usize>;
    /// Kills a node's process; it stays down until [`Cluster::start`].
    async fn kill(&self, slot: usize);
    /// Starts a killed, shut down or crashed node again from its disk.
    async fn start(&self, slot: usize);
    /// Shuts a node down cleanly (SIGTERM: it finishes what it can and exits); it stays down
    /// until [`Cluster::start`]. A cluster that cannot tell a clean shutdown from a kill (the
    /// simulator) kills it.
    async fn shut_down(&self, slot: usize) {
        self.kill(slot).await;
    }
    /// Cuts power to these nodes at once: they die and lose or tear what they had not synced.
    /// Returns how many unsynced bytes were lost, when the cluster can tell.
    async fn crash(&self, slots: &[usize]) -> Option<u64>;
    /// Freezes a node (SIGSTOP).
    async fn pause(&self, slot: usize);
    /// Thaws a paused node.
    async fn resume(&self, slot: usize);
    /// Cuts these links, both ways.
    async fn cut(&self, links: &[(usize, usize)]);
    /// Cuts the link from `from` to `to` only.
    async fn cut_one_way(&self, from: usize, to: usize);
    /// Drops this fraction of packets everywhere.
    async fn set_packet_loss(&self, rate: f64);
    /// Delays every packet by a uniform draw from `range`.
    async fn set_latency(&self, range: std::ops::Range<Duration>);
    /// Restores every link, clears packet loss and restores the normal latency.
    async fn heal_network(&self);
    /// Removes the node in `slot` from the cluster through the API and starts a fresh node (new
    /// id, empty disk) in the slot, which joins; returns a description.
    async fn replace(&self, slot: usize) -> Result<String, String>;
    /// Makes a node's disk full (`full`) or failing with I/O errors until
    /// [`Cluster::heal_disk`]; false if this cluster cannot (real processes).
    async fn fail_disk(&self, _slot: usize, _full: bool) -> bool {
        false
    }
    /// Ends a [`Cluster::fail_disk`] fault.
    async fn heal_disk(&self, _slot: usize) {}
    /// An operator's mistake: starts another process on the data directory of the node in
    /// `slot`, with the node id of the node in `as_slot` (the same slot: a second incarnation).
    /// It must refuse to start: returns its refusal, or an error if it started. `None` when the
    /// cluster cannot do this.
    async fn intrude(&self, slot: usize, as_slot: usize) -> Option<Result<String, String>> {
        let _ = (slot, as_slot);
        None
    }
}

/// The kinds of fault the nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Random halves: a majority and a minority that cannot talk.
    Partition,
    /// The leader alone on one side.
    IsolateLeader,
    /// Two majorities sharing one node, which alone talks to both (five nodes or more).
    Bridge,
    /// One link cut in one direction.
    OneWay,
    /// The leader's process killed, restarted later.
    KillLeader,
    /// A random node's process killed, restarted later.
    Kill,
    /// A random node frozen, thawed later.
    Pause,
    /// A random node shut down cleanly, restarted later.
    Restart,
    /// Power loss on one random node: unsynced writes lost or torn; restarted later.
    Crash,
    /// Power loss on every node at once.
    PowerOutage,
    /// A random member removed and replaced by a fresh node.
    Replace,
    /// A burst of packet loss everywhere.
    PacketLoss,
    /// A slow network: every packet delayed by tens to hundreds of milliseconds.
    Latency,
    /// A random node's disk full (ENOSPC) for a while; the node must refuse writes and
    /// resume by itself.
    DiskFull,
    /// A random node's disk failing (EIO, failed fsyncs) for a while.
    DiskFailure,
    /// Another process started on a node's data directory: a second incarnation while the node
    /// runs, or another node's id while it is down (then restarted later). It must be refused.
    Intrude,
}

impl FaultKind {
    /// Every kind the simulator's scenarios draw from. [`FaultKind::Restart`] is left out: a
    /// simulated node cannot shut down cleanly, so there it would be another [`FaultKind::Kill`].
    /// [`FaultKind::Intrude`] is drawn only by scenarios that name it: it changes no state of a
    /// correct cluster, and leaving it out keeps the other scenarios' seeded schedules.
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Partition,
        FaultKind::IsolateLeader,
        FaultKind::Bridge,
        FaultKind::OneWay,
        FaultKind::KillLeader,
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Crash,
        FaultKind::PowerOutage,
        FaultKind::Replace,
        FaultKind::PacketLoss,
        FaultKind::Latency,
    ];

    /// The name recorded in the history's `fault` field.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::Bridge => "bridge",
            FaultKind::OneWay => "one-way",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Restart => "restart",
            FaultKind::Crash => "crash",
            FaultKind::PowerOutage => "power-outage",
            FaultKind::Replace => "replace-member",
            FaultKind::PacketLoss => "packet-loss",
            FaultKind::Latency => "latency",
            FaultKind::DiskFull => "disk-full",
            FaultKind::DiskFailure => "disk-failure",
            FaultKind::Intrude => "intrude",
        }
    }
}

/// Which faults, how often, for how long.
#[derive(Clone, Debug)]
pub struct NemesisOptions {
    /// Kinds to draw from; those that need more nodes than the cluster has are skipped.
    pub kinds: Vec<FaultKind>,
    /// Time between one fault's end and the next fault's start (drawn uniformly).
    pub quiet: (Duration, Duration),
    /// How long a fault lasts (drawn uniformly).
    pub active: (Duration, Duration),
}

impl Default for NemesisOptions {
    fn default() -> Self {
        NemesisOptions {
            kinds: FaultKind::ALL.to_vec(),
            quiet: (Duration::from_millis(500), Duration::from_secs(3)),
            active: (Duration::from_secs(1), Duration::from_secs(6)),
        }
    }
}

/// How to end a fault.
enum Undo {
    Heal,
    Start(Vec<usize>),
    Resume(usize),
    HealDisk(usize),
    Nothing,
}

/// Injects faults until `until`, one at a time, each undone before the next; the cluster is
/// healed when this returns.
pub async fn run_nemesis<C: Cluster>(
    cluster: &C,
    recorder: &Recorder,
    options: &NemesisOptions,
    rng: &mut Rng,
    until: Instant,
) {
    let nodes = cluster.endpoints().len();
    let kinds: Vec<FaultKind> =
        options.kinds.iter().copied().filter(|kind| *kind != FaultKind::Bridge || nodes >= 5).collect();
    assert!(!kinds.is_empty(), "the nemesis needs at least one fault kind that fits the cluster");
    loop {
        let quiet = draw(rng, options.quiet);
        let active = draw(rng, options.active);
        if Instant::now() + quiet + active >= until {
            return;
        }
        rt::sleep(quiet).await;
        let kind = kinds[rng.range(0, kinds.len() as u64 - 1) as usize];
        let (description, undo) = start(cluster, kind, rng, nodes).await;
        recorder.nemesis(FaultPhase::Start, kind.name(), description.clone());
        tracing::info!(fault = kind.name(), %description, "nemesis: fault starts");
        rt::sleep(active).await;
        stop(cluster, undo).await;
        recorder.nemesis(FaultPhase::Stop, kind.name(), description);
    }
}

async fn start<C: Cluster>(cluster: &C, kind: FaultKind, rng: &mut Rng, nodes: usize) -> (String, Undo) {
    let random = |rng: &mut Rng| rng.range(0, nodes as u64 - 1) as usize;
    match kind {
        FaultKind::Partition => {
            let mut order: Vec<usize> = (0..nodes).collect();
            shuffle(&mut order, rng);
            let split = rng.range(1, nodes as u64 - 1) as usize;
            let (left, right) = order.split_at(split);
            cluster.cut(&links_between(left, right)).await;
            (format!("{} | {}", group(left), group(right)), Undo::Heal)
        }
        FaultKind::IsolateLeader => {
            let leader = cluster.leader().await.unwrap_or_else(|| random(rng));
            let others: Vec<usize> = (0..nodes).filter(|n| *n != leader).collect();
            cluster.cut(&links_between(&[leader], &others)).await;
            (format!("{} | {}", group(&[leader]), group(&others)), Undo::Heal)
        }
        FaultKind::Bridge => {
            let mut order: Vec<usize> = (0..nodes).collect();
            shuffle(&mut order, rng);
            let middle = nodes / 2;
            let (left, right) = (&order[..middle], &order[middle + 1..]);
            cluster.cut(&links_between(left, right)).await;
            (format!("{} <- {} -> {}", group(left), order[middle] + 1, group(right)), Undo::Heal)
        }
        FaultKind::OneWay => {
            let from = random(rng);
            let to = (from + 1 + rng.range(0, nodes as u64 - 2) as usize) % nodes;
            cluster.cut_one_way(from, to).await;
            (format!("{} -/-> {}", from + 1, to + 1), Undo::Heal)
        }
        FaultKind::KillLeader | FaultKind::Kill => {
            let leader = match kind {
                FaultKind::KillLeader => cluster.leader().await,
                _ => None,
            };
            let victim = leader.unwrap_or_else(|| random(rng));
            cluster.kill(victim).await;
            let description = match leader {
                Some(_) => format!("{} {LEADER_VICTIM}", victim + 1),
                None => format!("{}", victim + 1),
            };
            (description, Undo::Start(vec![victim]))
        }
        FaultKind::Pause => {
            let victim = random(rng);
            cluster.pause(victim).await;
            (format!("{}", victim + 1), Undo::Resume(victim))
        }
        FaultKind::Restart => {
            let victim = random(rng);
            cluster.shut_down(victim).await;
            (format!("{}", victim + 1), Undo::Start(vec![victim]))
        }
        FaultKind::Crash => {
            let victim = random(rng);
            let lost = cluster.crash(&[victim]).await;
            (format!("{}{}", victim + 1, bytes_lost(lost)), Undo::Start(vec![victim]))
        }
        FaultKind::PowerOutage => {
            let all: Vec<usize> = (0..nodes).collect();
            let lost = cluster.crash(&all).await;
            (format!("{}{}", group(&all), bytes_lost(lost)), Undo::Start(all))
        }
        FaultKind::Replace => {
            let victim = random(rng);
            let description =
                cluster.replace(victim).await.unwrap_or_else(|error| format!("{}: failed: {error}", victim + 1));
            (description, Undo::Nothing)
        }
        FaultKind::PacketLoss => {
            let percent = rng.range(5, 25);
            cluster.set_packet_loss(percent as f64 / 100.0).await;
            (format!("{percent}%"), Undo::Heal)
        }
        FaultKind::DiskFull | FaultKind::DiskFailure => {
            let victim = random(rng);
            if cluster.fail_disk(victim, kind == FaultKind::DiskFull).await {
                (format!("{}", victim + 1), Undo::HealDisk(victim))
            } else {
                (format!("{}: not supported here", victim + 1), Undo::Nothing)
            }
        }
        FaultKind::Intrude => intrude(cluster, rng, nodes).await,
        FaultKind::Latency => {
            let low = rng.range(20, 100);
            let high = low + rng.range(10, 200);
            cluster.set_latency(Duration::from_millis(low)..Duration::from_millis(high)).await;
            (format!("{low}..{high}ms"), Undo::Heal)
        }
    }
}

/// Starts an intruder on a random node's directory: itself while it runs (the lock must refuse
/// it), or another node's id while it is down (the identity stamp must). An intruder that starts
/// is a bug no history checker would see, so it stops the run here.
async fn intrude<C: Cluster>(cluster: &C, rng: &mut Rng, nodes: usize) -> (String, Undo) {
    let victim = rng.range(0, nodes as u64 - 1) as usize;
    let (as_slot, undo) = if nodes > 1 && rng.range(0, 1) == 1 {
        cluster.kill(victim).await;
        ((victim + 1 + rng.range(0, nodes as u64 - 2) as usize) % nodes, Undo::Start(vec![victim]))
    } else {
        (victim, Undo::Nothing)
    };
    let description = match cluster.intrude(victim, as_slot).await {
        None => format!("{}'s directory as {}: not supported by this cluster", victim + 1, as_slot + 1),
        Some(Ok(refusal)) => format!("{}'s directory as {}: refused: {refusal}", victim + 1, as_slot + 1),
        Some(Err(started)) => panic!("an intruder on a data directory was not refused: {started}"),
    };
    (description, undo)
}

async fn stop<C: Cluster>(cluster: &C, undo: Undo) {
    match undo {
        Undo::Heal => cluster.heal_network().await,
        Undo::Start(nodes) => {
            for node in nodes {
                cluster.start(node).await;
            }
        }
        Undo::Resume(node) => cluster.resume(node).await,
        Undo::HealDisk(node) => cluster.heal_disk(node).await,
        Undo::Nothing => {}
    }
}

fn draw(rng: &mut Rng, (low, high): (Duration, Duration)) -> Duration {
    let (low, high) = (low.as_millis() as u64, high.as_millis() as u64);
    Duration::from_millis(rng.range(low, high.max(low)))
}

fn shuffle(items: &mut [usize], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.range(0, i as u64) as usize;
        items.swap(i, j);
    }
}

fn links_between(left: &[usize], right: &[usize]) -> Vec<(usize, usize)> {
    left.iter().flat_map(|a| right.iter().map(move |b| (*a, *b))).collect()
}

/// `{1,2}`: slots shown 1-based, as nodes are named.
/// How a crash's loss reads in the history: `"; 512 unsynced bytes lost"`, or nothing if unknown.
fn bytes_lost(lost: Option<u64>) -> String {
    lost.map(|bytes| format!("; {bytes} unsynced bytes lost")).unwrap_or_default()
}

fn group(slots: &[usize]) -> String {
    let mut sorted = slots.to_vec();
    sorted.sort_unstable();
    let names: Vec<String> = sorted.iter().map(|slot| (slot + 1).to_string()).collect();
    format!("{{{}}}", names.join(","))
}
