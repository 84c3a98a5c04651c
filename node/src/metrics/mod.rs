//! The node's Prometheus metrics (`GET /metrics`), named after etcd's where the meaning is the
//! same, with the `cairn_` prefix.
//!
//! Each node owns one [`Metrics`] with its own registry: several nodes run in one process in
//! tests and in the simulator, so nothing here is global. The layers that count events (the
//! node, the WAL writer, the state machine, the peer clients, the HTTP actor) hold clones of
//! the metric handles they update; gauges that describe the node's state (leader, keys,
//! revision, gossip counters, the process) are set from that state when a scrape renders.

#[cfg(not(madsim))]
mod process;

use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::command::NodeId;
use crate::gossip::GossipCounters;

/// The content type of [`Metrics::render`]'s text (Prometheus reads OpenMetrics).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `route` for a request no route matched: the raw path would let any client mint label values.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// One HTTP request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route template (`/v1/kv/{*key}`), or [`UNMATCHED_ROUTE`].
    pub route: String,
    pub method: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub to: NodeId,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What the WAL writer counts.
#[derive(Clone, Debug)]
pub struct WalMetrics {
    pub fsync_seconds: Histogram,
    pub write_bytes: Counter,
}

impl Default for WalMetrics {
    /// Handles no registry reads, for a WAL opened outside a node (tests, tools).
    fn default() -> WalMetrics {
        WalMetrics { fsync_seconds: disk_histogram(), write_bytes: Counter::default() }
    }
}

/// What one peer client counts.
#[derive(Clone, Debug)]
pub struct PeerMetrics {
    pub sent_bytes: Counter,
    pub round_trip_seconds: Histogram,
}

impl Default for PeerMetrics {
    /// Handles no registry reads, for a client made outside a node (tests, tools).
    fn default() -> PeerMetrics {
        PeerMetrics { sent_bytes: Counter::default(), round_trip_seconds: round_trip_histogram() }
    }
}

/// Counts requests in flight while it lives (a watch stream, a long poll, a proposal).
pub struct InFlight(Gauge);

impl InFlight {
    fn new(gauge: &Gauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What a scrape reads from the node's state.
pub struct NodeState {
    pub has_leader: bool,
    pub is_leader: bool,
    pub keys: u64,
    pub revision: u64,
    /// None when gossip is off or its actor does not answer.
    pub gossip: Option<GossipCounters>,
}

/// Every metric of one node.
pub struct Metrics {
    registry: Registry,
    has_leader: Gauge,
    is_leader: Gauge,
    pub leader_changes_seen: Counter,
    pub proposals_committed: Counter,
    pub proposals_applied: Counter,
    proposals_pending: Gauge,
    pub proposals_failed: Counter,
    pub wal: WalMetrics,
    pub snapshot_save_seconds: Histogram,
    store_keys: Gauge,
    store_revision: Gauge,
    http_requests: Family<RequestLabels, Counter>,
    http_request_seconds: HistogramFamily<RouteLabels>,
    watch_streams: Gauge,
    long_polls: Gauge,
    peer_sent_bytes: Family<PeerLabels, Counter>,
    peer_round_trip_seconds: HistogramFamily<PeerLabels>,
    gossip: GossipMetrics,
    #[cfg(not(madsim))]
    process: process::ProcessMetrics,
}

/// The gossip actor's counters (also in `GET /v1/cluster`), mirrored at each scrape.
#[derive(Default)]
struct GossipMetrics {
    received: Counter,
    sent: Counter,
    malformed: Counter,
    foreign_cluster: Counter,
    bad_tag: Counter,
    refused: Counter,
    members_down: Counter,
    rejoins: Counter,
    turn_undead_suppressed: Counter,
    suspicions_restored: Counter,
    restarts: Counter,
}

impl GossipMetrics {
    fn register(&self, registry: &mut Registry) {
        let counters: [(&str, &str, &Counter); 11] = [
            ("packets_received", "Gossip datagrams received", &self.received),
            ("packets_sent", "Gossip datagrams sent", &self.sent),
            ("malformed", "Gossip datagrams dropped as not cairn gossip", &self.malformed),
            ("foreign_cluster", "Gossip datagrams dropped as another cluster's", &self.foreign_cluster),
            ("bad_tag", "Gossip datagrams dropped for a tag that does not check", &self.bad_tag),
            ("refused", "Gossip datagrams opened but refused by foca", &self.refused),
            ("members_down", "Times a member was declared down", &self.members_down),
            ("rejoins", "Times this node rejoined after being declared down", &self.rejoins),
            (
                "turn_undead_suppressed",
                "foca's spurious 'you are down' messages not sent",
                &self.turn_undead_suppressed,
            ),
            ("suspicions_restored", "Suspicion timers handed back to foca", &self.suspicions_restored),
            ("restarts", "Times a fresh gossip actor took over (a bug if ever above 0)", &self.restarts),
        ];
        for (name, help, counter) in counters {
            registry.register(format!("cairn_gossip_{name}"), help, counter.clone());
        }
    }

    /// Mirrors the actor's counters. They restart from zero with a fresh actor, which Prometheus
    /// reads as a counter reset.
    fn set(&self, counters: &GossipCounters) {
        let pairs = [
            (&self.received, counters.received),
            (&self.sent, counters.sent),
            (&self.malformed, counters.malformed),
            (&self.foreign_cluster, counters.foreign_cluster),
            (&self.bad_tag, counters.bad_tag),
            (&self.refused, counters.refused),
            (&self.members_down, counters.members_down),
            (&self.rejoins, counters.rejoins),
            (&self.turn_undead_suppressed, counters.turn_undead_suppressed),
            (&self.suspicions_restored, counters.suspicions_restored),
            (&self.restarts, counters.restarts),
        ];
        for (counter, value) in pairs {
            counter.inner().store(value, Ordering::Relaxed);
        }
    }
}

/// etcd's WAL fsync buckets: 1 ms to about 8 s.
fn disk_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// etcd's snapshot save buckets: 10 ms to about 80 s.
fn snapshot_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// 0.5 ms to about 16 s: a stale read to a long poll's upper range.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// etcd's peer round-trip buckets: 0.1 ms to about 3 s.
fn round_trip_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::default(),
            has_leader: Gauge::default(),
            is_leader: Gauge::default(),
            leader_changes_seen: Counter::default(),
            proposals_committed: Counter::default(),
            proposals_applied: Counter::default(),
            proposals_pending: Gauge::default(),
            proposals_failed: Counter::default(),
            wal: WalMetrics::default(),
            snapshot_save_seconds: snapshot_histogram(),
            store_keys: Gauge::default(),
            store_revision: Gauge::default(),
            http_requests: Family::default(),
            http_request_seconds: Family::new_with_constructor(request_histogram),
            watch_streams: Gauge::default(),
            long_polls: Gauge::default(),
            peer_sent_bytes: Family::default(),
            peer_round_trip_seconds: Family::new_with_constructor(round_trip_histogram),
            gossip: GossipMetrics::default(),
            #[cfg(not(madsim))]
            process: process::ProcessMetrics::default(),
        };
        metrics.register();
        metrics
    }

    fn register(&mut self) {
        let registry = &mut self.registry;
        registry.register("cairn_server_has_leader", "1 if this node knows a leader", self.has_leader.clone());
        registry.register("cairn_server_is_leader", "1 if this node leads", self.is_leader.clone());
        registry.register(
            "cairn_server_leader_changes_seen",
            "Times this node saw the leader change (to another node, or a first leader since start)",
            self.leader_changes_seen.clone(),
        );
        registry.register(
            "cairn_server_proposals_committed",
            "Proposals (client writes and the node's own) this node made as leader that committed and applied",
            self.proposals_committed.clone(),
        );
        registry.register(
            "cairn_server_proposals_applied",
            "Log entries this node's state machine applied (replays after a restart included)",
            self.proposals_applied.clone(),
        );
        registry.register(
            "cairn_server_proposals_pending",
            "Proposals this node made as leader whose outcome it has not seen yet",
            self.proposals_pending.clone(),
        );
        registry.register(
            "cairn_server_proposals_failed",
            "Proposals this node made as leader that failed or whose outcome is unknown",
            self.proposals_failed.clone(),
        );
        registry.register(
            "cairn_disk_wal_fsync_duration_seconds",
            "Latency of the WAL's fdatasync, one per group-committed batch",
            self.wal.fsync_seconds.clone(),
        );
        registry.register("cairn_disk_wal_write_bytes", "Bytes written to the WAL", self.wal.write_bytes.clone());
        registry.register(
            "cairn_snapshot_save_duration_seconds",
            "Time to write and sync a snapshot built by this node",
            self.snapshot_save_seconds.clone(),
        );
        registry.register("cairn_store_keys", "Keys in this node's store", self.store_keys.clone());
        registry.register("cairn_store_revision", "This node's store revision", self.store_revision.clone());
        registry.register(
            "cairn_http_requests",
            "HTTP requests answered, by route template, method and status code",
            self.http_requests.clone(),
        );
        registry.register(
            "cairn_http_request_duration_seconds",
            "Time to answer an HTTP request (to its response head; a stream's body is not timed)",
            self.http_request_seconds.clone(),
        );
        registry.register("cairn_watch_streams", "Open watch streams", self.watch_streams.clone());
        registry.register("cairn_long_polls", "Long polls waiting for a change", self.long_polls.clone());
        registry.register("cairn_peer_sent_bytes", "Bytes of requests sent to each peer", self.peer_sent_bytes.clone());
        registry.register(
            "cairn_peer_round_trip_seconds",
            "Time from sending a request to a peer to its answer (AppendEntries includes the peer's fsync)",
            self.peer_round_trip_seconds.clone(),
        );
        self.gossip.register(registry);
        #[cfg(not(madsim))]
        self.process.register(registry);
    }

    /// Counts one answered HTTP request.
    pub fn observe_request(&self, labels: RequestLabels, seconds: f64) {
        let route = RouteLabels { route: labels.route.clone() };
        self.http_requests.get_or_create(&labels).inc();
        self.http_request_seconds.get_or_create(&route).observe(seconds);
    }

    /// The handles the client of peer `to` updates.
    pub fn peer(&self, to: NodeId) -> PeerMetrics {
        let labels = PeerLabels { to };
        PeerMetrics {
            sent_bytes: self.peer_sent_bytes.get_or_create_owned(&labels),
            round_trip_seconds: self.peer_round_trip_seconds.get_or_create_owned(&labels),
        }
    }

    pub fn watch_stream(&self) -> InFlight {
        InFlight::new(&self.watch_streams)
    }

    pub fn long_poll(&self) -> InFlight {
        InFlight::new(&self.long_polls)
    }

    pub fn proposal(&self) -> InFlight {
        InFlight::new(&self.proposals_pending)
    }

    /// The exposition text, with the state gauges set from `state` first.
    pub fn render(&self, state: &NodeState) -> String {
        self.has_leader.set(i64::from(state.has_leader));
        self.is_leader.set(i64::from(state.is_leader));
        self.store_keys.set(i64::try_from(state.keys).unwrap_or(i64::MAX));
        self.store_revision.set(i64::try_from(state.revision).unwrap_or(i64::MAX));
        if let Some(counters) = &state.gossip {
            self.gossip.set(counters);
        }
        #[cfg(not(madsim))]
        self.process.read();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Metrics").finish_non_exhaustive()
    }
}
