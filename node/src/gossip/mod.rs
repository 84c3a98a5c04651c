//! The gossip-notifier actor: SWIM membership (foca 2.0) over UDP, and small facts spread
//! between members — each node's raft metadata and the leader's change notices — from which the
//! cluster view and the staleness figures of stale reads are computed. Raft stays the only source
//! of truth for data; gossip only observes.
//!
//! ```text
//!   UDP socket ──▶ reader task ──datagrams──▶ ┌──────────────┐ ──send_to──▶ UDP socket
//!   GossipHandle ─────── Input::View ───────▶ │ gossip actor │
//!   timer heap (deadline, sequence) ─due────▶ │ (owns foca)  │ ──facts──▶ FactTable
//!   tick: node's LocalState ────────────────▶ └──────────────┘
//! ```
//!
//! # Layout
//! - `identity`: [`GossipIdentity`] and the generation persisted in the data directory.
//! - `codec`: foca's bincode codec and the envelope (cluster id, HMAC tag) of every packet.
//! - `hmac`: HMAC-SHA256.
//! - `facts`: the custom broadcasts ([`NodeMeta`], [`ChangeNotice`]), newest wins.
//! - `driver`: the actor: foca, its timers, the reader task, the local-state tick, and the
//!   supervisor that replaces a failed actor or a stopped reader.

mod codec;
mod driver;
mod facts;
pub(crate) mod hmac;
mod identity;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::api::Role;
use crate::command::NodeId;
use crate::rt::Duration;

pub use self::driver::spawn;
pub use self::facts::{ChangeNotice, NodeMeta};
pub use self::identity::{GossipIdentity, next_generation};

/// Gossip settings of one node.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// The UDP address gossip binds and advertises.
    pub address: SocketAddr,
    /// Gossip addresses to announce to until they are members; raft members' derived addresses
    /// (see [`derived_address`]) are tried as well.
    pub seeds: Vec<SocketAddr>,
    /// Packets carry an id derived from this name; other clusters' packets are dropped.
    pub cluster_name: String,
    /// When set, every packet carries an HMAC-SHA256 tag under it; untagged or badly tagged
    /// packets are dropped.
    pub secret: Option<Vec<u8>>,
    pub timings: GossipTimings,
}

impl GossipConfig {
    /// Gossip on `address` with no secret, cluster name `cairn` and the default timings.
    pub fn new(address: SocketAddr) -> GossipConfig {
        GossipConfig {
            address,
            seeds: Vec::new(),
            cluster_name: "cairn".to_string(),
            secret: None,
            timings: GossipTimings::default(),
        }
    }
}

/// SWIM's timing. A member is suspected after a probe period without a direct or indirect ack,
/// and declared down when nobody heard its refutation within `suspect_to_down_after`; so a dead
/// member is shown down after about `probe_period + probe_rtt + suspect_to_down_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GossipTimings {
    /// How often each member probes another. Must be larger than `probe_rtt`.
    pub probe_period: Duration,
    /// How long a direct probe waits for its ack before asking others to probe indirectly.
    pub probe_rtt: Duration,
    /// How long a suspect has to refute before it is declared down. Longer means fewer false
    /// downs under packet loss, and slower detection of real ones.
    pub suspect_to_down_after: Duration,
    /// How often the actor refreshes this node's metadata and announces to unseen seeds.
    pub tick: Duration,
    /// How often down members are re-contacted, which is what heals a partition.
    pub announce_to_down: Duration,
}

impl Default for GossipTimings {
    fn default() -> Self {
        GossipTimings {
            probe_period: Duration::from_millis(1000),
            probe_rtt: Duration::from_millis(500),
            suspect_to_down_after: Duration::from_millis(4000),
            tick: Duration::from_millis(250),
            announce_to_down: Duration::from_secs(3),
        }
    }
}

/// The gossip address a node uses by default: its peer address's host with the port plus one.
pub fn derived_address(peer: &str) -> Option<SocketAddr> {
    let mut address: SocketAddr = peer.parse().ok()?;
    address.set_port(address.port().checked_add(1)?);
    Some(address)
}

/// What the actor reads from its node on every tick.
#[derive(Clone, Debug)]
pub struct LocalState {
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub revision: u64,
    pub leader_contact: Option<Duration>,
    /// The peer addresses of the raft members, whose derived gossip addresses are seeds.
    pub raft_peers: Vec<String>,
}

/// How the actor reads its node's state; called on the actor's task, so it must not block.
pub type LocalStateFn = Arc<dyn Fn() -> LocalState + Send + Sync>;

/// A member's liveness as SWIM sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    Alive,
    Suspect,
    Down,
}

/// One member in the gossip view.
#[derive(Clone, Debug)]
pub struct GossipMember {
    pub identity: GossipIdentity,
    pub state: PeerState,
    /// Since a packet from it last arrived (zero for this node), if one ever did.
    pub last_seen: Option<Duration>,
    /// Its newest metadata.
    pub meta: Option<NodeMeta>,
}

/// Datagrams seen, why some were dropped, and how often members were declared down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipCounters {
    pub received: u64,
    pub sent: u64,
    /// Not a cairn gossip packet (too short, wrong magic).
    pub malformed: u64,
    /// Another cluster's packet.
    pub foreign_cluster: u64,
    /// A tag that does not check under our secret.
    pub bad_tag: u64,
    /// Opened, but foca refused it (undecodable, from ourselves, stale).
    pub refused: u64,
    /// Times this node saw a member declared down (foca's `MemberDown`), false or not.
    pub members_down: u64,
    /// Times this node rejoined because the cluster had declared it down.
    pub rejoins: u64,
    /// foca's spurious "you are down" courtesy messages to members that refuted a suspicion,
    /// not sent (see the driver).
    pub turn_undead_suppressed: u64,
    /// Suspicion timers foca had dropped when it changed its timer token, handed back to it
    /// (see the driver).
    pub suspicions_restored: u64,
    /// Times the gossip actor failed or its datagram reader stopped, and a fresh actor took
    /// over (a bug: no input should cause either). The other counters restart from zero with
    /// each fresh actor.
    pub restarts: u64,
}

/// The actor's answer to a view query.
#[derive(Clone, Debug)]
pub struct GossipView {
    /// Every member foca knows, this node included, by node id.
    pub members: Vec<GossipMember>,
    pub counters: GossipCounters,
    /// The leader's newest change notice.
    pub change: Option<ChangeNotice>,
    /// The newest revision any member or notice announced.
    pub newest_revision: u64,
}

enum Input {
    View(oneshot::Sender<GossipView>),
}

/// Messages waiting for the actor before senders wait for room.
const INBOX_MAX: usize = 64;

/// The way to the gossip actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GossipHandle {
    inbox: mpsc::Sender<Input>,
}

impl GossipHandle {
    /// The actor's current view, or none once it has stopped.
    pub async fn view(&self) -> Option<GossipView> {
        let (reply, answer) = oneshot::channel();
        self.inbox.send(Input::View(reply)).await.ok()?;
        answer.await.ok()
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::View(_) => f.write_str("View"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_gossip_address_is_the_peer_port_plus_one() {
        assert_eq!(derived_address("127.0.0.1:7701"), Some("127.0.0.1:7702".parse().unwrap()));
        assert_eq!(derived_address("10.0.0.3:65535"), None);
        assert_eq!(derived_address("not an address"), None);
    }
}
