//! A node's configuration, validated before anything starts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use thiserror::Error;

use crate::acl::TokenSecret;
use crate::api::MemberKind;
use crate::bugs::InjectedBugs;
use crate::command::{ClusterId, NodeId};
use crate::gossip::GossipConfig;
use crate::node::AutopilotConfig;
use crate::raft::Member;
use crate::rt::Duration;
use crate::store::events::HistoryLimits;
use crate::tls::TlsFiles;

/// How a node with an empty data directory becomes part of a cluster. Ignored when the data
/// directory already holds a raft log: the node simply rejoins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Start a new single-node cluster.
    Single,
    /// Ask a member (any of these HTTP addresses) to add this node as `kind`; done by the HTTP
    /// layer. `cluster_id` is the cluster the seeds said they are, when the HTTP layer asked
    /// before the start: a new node stamps it before it talks to any peer.
    /// `token` is the ACL token to ask with once the cluster enforces ACLs (it needs
    /// `cluster: write`).
    Join { seeds: Vec<String>, kind: MemberKind, cluster_id: Option<ClusterId>, token: Option<TokenSecret> },
    /// Every listed node starts with the same list and the cluster forms without joins.
    InitialCluster(BTreeMap<NodeId, Member>),
}

/// Raft's timing. Heartbeats must arrive well within the election timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTimings {
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(400),
            election_timeout_max: Duration::from_millis(800),
        }
    }
}

/// The largest `value_bytes_max` a node accepts: one entry must always fit one peer frame
/// (`transport::FRAME_BYTES_MAX`), or a follower could never catch up.
pub const VALUE_BYTES_MAX_LIMIT: usize = 8 * 1024 * 1024;
/// The largest `key_bytes_max` a node accepts (etcd allows 1.5 MiB requests in all).
pub const KEY_BYTES_MAX_LIMIT: usize = 64 * 1024;
/// One AppendEntries in flight per follower: on three nodes sharing two cores over loopback,
/// the entries that arrive during a round trip make the next request's batch, and every
/// deeper pipeline measured (2, 4, 64) did fewer puts per second at 16 and 64 clients.
pub const APPENDS_IN_FLIGHT_DEFAULT: usize = 1;
/// The most a node accepts: a follower closes a stream that has more requests waiting than
/// this, so a deeper pipeline would fail every stream it fills.
pub const APPENDS_IN_FLIGHT_LIMIT: usize = crate::transport::STREAM_REQUESTS_MAX;

/// Request size limits; the HTTP layer enforces them, the node re-checks what it stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Keys are 1..=this many bytes of UTF-8.
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { key_bytes_max: 4 * 1024, value_bytes_max: 1024 * 1024 }
    }
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// The addresses this node listens on and advertises to the cluster.
    pub member: Member,
    pub data_dir: PathBuf,
    pub bootstrap: Bootstrap,
    pub timings: RaftTimings,
    pub limits: Limits,
    /// How long a client request may take before it is answered with a timeout (or, for a
    /// write that may have been proposed, `outcome_unknown`).
    pub request_timeout: Duration,
    /// Log entries between snapshots; the log is purged behind each snapshot.
    pub snapshot_every: u64,
    /// AppendEntries requests the leader keeps in flight to each follower at most. More
    /// overlaps a follower's round trips (worth it when its network or disk is slow); fewer
    /// carries more entries per request, so less CPU per write (bench/README.md has the
    /// measurements behind the default).
    pub appends_in_flight: usize,
    /// Clients whose last request is remembered for deduplication.
    pub session_capacity: usize,
    /// How much event history watches and long polls can resume from.
    pub history: HistoryLimits,
    /// Gossip membership and metadata; off when none.
    pub gossip: Option<GossipConfig>,
    /// Dead-voter removal and learner promotion by the leader; off when none. Needs gossip.
    pub autopilot: Option<AutopilotConfig>,
    /// The secret peers prove knowledge of in the peer handshake. Without one, anyone who
    /// reaches the peer port is taken for the node it claims to be.
    pub cluster_secret: Option<Vec<u8>>,
    /// TLS on the HTTP port: only HTTPS is spoken when set.
    pub tls: Option<TlsFiles>,
    /// Mutual TLS on the peer port (the CA is required, and so are client certificates).
    pub peer_tls: Option<TlsFiles>,
    pub bugs: InjectedBugs,
}

impl NodeConfig {
    /// A configuration with defaults for everything but identity, addresses and data.
    pub fn new(id: NodeId, member: Member, data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            id,
            member,
            data_dir,
            bootstrap: Bootstrap::Single,
            timings: RaftTimings::default(),
            limits: Limits::default(),
            request_timeout: Duration::from_secs(5),
            snapshot_every: 100_000,
            appends_in_flight: APPENDS_IN_FLIGHT_DEFAULT,
            session_capacity: 100_000,
            history: HistoryLimits::default(),
            gossip: None,
            autopilot: None,
            cluster_secret: None,
            tls: None,
            peer_tls: None,
            bugs: InjectedBugs::default(),
        }
    }

    pub fn validate(self) -> Result<NodeConfig, ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        let t = self.timings;
        if t.heartbeat.is_zero() || t.heartbeat * 3 > t.election_timeout_min {
            return Err(ConfigError::Timings("the heartbeat must be at most a third of the minimum election timeout"));
        }
        if t.election_timeout_min >= t.election_timeout_max {
            return Err(ConfigError::Timings("the election timeout range must not be empty"));
        }
        if self.request_timeout < t.election_timeout_max {
            return Err(ConfigError::Timings("the request timeout must cover at least one election"));
        }
        if self.snapshot_every == 0
            || self.appends_in_flight == 0
            || self.session_capacity == 0
            || self.history.events_max == 0
        {
            return Err(ConfigError::Zero("snapshot_every, appends_in_flight, session_capacity and the watch history"));
        }
        if self.appends_in_flight > APPENDS_IN_FLIGHT_LIMIT {
            return Err(ConfigError::AppendsInFlight);
        }
        if self.limits.key_bytes_max == 0 || self.limits.value_bytes_max == 0 {
            return Err(ConfigError::Zero("key and value limits"));
        }
        if self.limits.value_bytes_max > VALUE_BYTES_MAX_LIMIT || self.limits.key_bytes_max > KEY_BYTES_MAX_LIMIT {
            return Err(ConfigError::Limits);
        }
        if let Some(autopilot) = &self.autopilot {
            if self.gossip.is_none() {
                return Err(ConfigError::Autopilot("it needs gossip to tell which nodes are down"));
            }
            if autopilot.min_voters == 0 {
                return Err(ConfigError::Autopilot("min_voters must be at least 1"));
            }
        }
        if let Bootstrap::InitialCluster(members) = &self.bootstrap {
            match members.get(&self.id) {
                Some(listed) if *listed == self.member => {}
                Some(_) => return Err(ConfigError::InitialCluster("this node is listed with other addresses")),
                None => return Err(ConfigError::InitialCluster("this node's id is not listed")),
            }
        }
        Ok(self)
    }
}

/// A configuration that cannot work; nothing was started.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("node id 0 is reserved; use 1 or more")]
    ZeroId,
    #[error("raft timings: {0}")]
    Timings(&'static str),
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("initial cluster: {0}")]
    InitialCluster(&'static str),
    #[error("autopilot: {0}")]
    Autopilot(&'static str),
    #[error(
        "the value limit may be at most {VALUE_BYTES_MAX_LIMIT} bytes and the key limit at most {KEY_BYTES_MAX_LIMIT}"
    )]
    Limits,
    #[error("appends_in_flight may be at most {APPENDS_IN_FLIGHT_LIMIT}, what a follower queues per stream")]
    AppendsInFlight,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        let member = Member { peer: "127.0.0.1:7701".into(), http: "127.0.0.1:7700".into() };
        NodeConfig::new(1, member, PathBuf::from("data"))
    }

    #[test]
    fn defaults_are_valid() {
        assert!(config().validate().is_ok());
    }

    #[test]
    fn a_heartbeat_too_close_to_the_election_timeout_is_refused() {
        let mut config = config();
        config.timings.heartbeat = Duration::from_millis(300);
        assert!(matches!(config.validate(), Err(ConfigError::Timings(_))));
    }

    #[test]
    fn replication_depth_is_at_least_one_and_at_most_what_a_follower_queues() {
        let mut config = config();
        config.appends_in_flight = 0;
        assert!(matches!(config.clone().validate(), Err(ConfigError::Zero(_))));
        config.appends_in_flight = APPENDS_IN_FLIGHT_LIMIT + 1;
        assert!(matches!(config.clone().validate(), Err(ConfigError::AppendsInFlight)));
        config.appends_in_flight = APPENDS_IN_FLIGHT_LIMIT;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn autopilot_needs_gossip_and_a_voter() {
        let mut config = config();
        config.autopilot = Some(AutopilotConfig::default());
        assert!(matches!(config.clone().validate(), Err(ConfigError::Autopilot(_))));
        config.gossip = Some(GossipConfig::new("127.0.0.1:7702".parse().unwrap()));
        assert!(config.clone().validate().is_ok());
        config.autopilot = Some(AutopilotConfig { min_voters: 0, ..AutopilotConfig::default() });
        assert!(matches!(config.validate(), Err(ConfigError::Autopilot(_))));
    }

    #[test]
    fn an_initial_cluster_must_list_this_node_with_its_addresses() {
        let mut config = config();
        let other = Member { peer: "127.0.0.1:1".into(), http: "127.0.0.1:2".into() };
        config.bootstrap = Bootstrap::InitialCluster(BTreeMap::from([(1, other)]));
        assert!(matches!(config.validate(), Err(ConfigError::InitialCluster(_))));
    }
}
