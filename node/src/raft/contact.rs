//! Leader contact that bounds the staleness of a `stale` read.
//!
//! A follower may answer with `last contact = t` only if its state holds every write any leader
//! acknowledged before `t`. Hearing an AppendEntries is not enough for that: a deposed leader on
//! the minority side of a partition keeps sending them, a follower that catches up after a
//! partition hears heartbeats long before it has applied the backlog, and a message delayed in
//! the network carries an old commit. So contact is proven, not assumed:
//!
//! 1. Every AppendEntries answer carries the follower's [`ContactStamp`], a time on its own clock.
//! 2. The leader sends the latest stamp back with its next AppendEntries as a [`LeaseProof`], but
//!    only while it holds its leader lease (a quorum acknowledged it recently enough that no other
//!    leader can exist yet) and has applied an entry of its own term. The proof carries the
//!    leader's applied index at sending time, which covers every write it acknowledged before then,
//!    and those of earlier leaders.
//! 3. The follower counts contact at the stamp's time once it has applied up to that index. The
//!    stamp predates the proof, so a write acknowledged before the stamp is in the follower's state.
//!
//! Times on one node's clock never cross to another node, so clock offsets do not matter.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock, PoisonError};

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::type_config::alias::WatchReceiverOf;
use serde::{Deserialize, Serialize};

use super::{RaftMetrics, TypeConfig, Vote};
use crate::rt::{self, Duration, Instant};
use crate::store::StoreHandle;

/// A time on one node's clock, meaningful only to that node in that incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactStamp {
    /// Random per start, so a stamp from before a restart is recognised and ignored.
    pub incarnation: u64,
    /// Since that incarnation's epoch.
    pub nanos: u64,
}

/// Attached by a leader to an AppendEntries: "I held my lease after your `echo`, and had then
/// applied up to `applied_index`".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseProof {
    pub echo: ContactStamp,
    pub applied_index: u64,
}

/// The leader's side: decides whether an outgoing AppendEntries may carry a proof.
pub struct LeaseWitness {
    /// Shorter than openraft's leader lease (`election_timeout_max`), by a margin for clock
    /// rates and the time between openraft's measurement and ours.
    lease: Duration,
    sources: OnceLock<Sources>,
}

struct Sources {
    metrics: WatchReceiverOf<TypeConfig, RaftMetrics>,
    store: StoreHandle,
}

impl LeaseWitness {
    pub fn new(lease: Duration) -> LeaseWitness {
        LeaseWitness { lease, sources: OnceLock::new() }
    }

    /// Connects the witness to raft's metrics and the store, once both exist.
    pub fn attach(&self, metrics: WatchReceiverOf<TypeConfig, RaftMetrics>, store: StoreHandle) {
        if self.sources.set(Sources { metrics, store }).is_err() {
            tracing::warn!("the lease witness was attached twice; keeping the first");
        }
    }

    /// The proof for an AppendEntries of `vote` answering `echo`, if this node is that leader,
    /// holds its lease and has applied an entry of its term right now.
    pub fn proof(&self, vote: &Vote, echo: Option<ContactStamp>) -> Option<LeaseProof> {
        let echo = echo?;
        let sources = self.sources.get()?;
        let metrics = sources.metrics.borrow_watched();
        if metrics.state != ServerState::Leader || metrics.vote != *vote || !applied_own_term(&metrics) {
            return None;
        }
        let acked = metrics.last_quorum_acked?;
        if std::time::Instant::now().saturating_duration_since(*acked) >= self.lease {
            return None;
        }
        Some(LeaseProof { echo, applied_index: sources.store.progress().applied_index })
    }
}

/// Whether the leader has applied an entry of its own term, and so every entry earlier leaders
/// committed.
fn applied_own_term(metrics: &RaftMetrics) -> bool {
    metrics.last_applied.as_ref().is_some_and(|applied| applied.committed_leader_id().term == metrics.current_term)
}

/// Whether this node is the only voter: then no other leader can exist, lease or not. (openraft
/// refreshes an only voter's quorum acknowledgement only while it has followers or learners.)
fn is_only_voter(metrics: &RaftMetrics) -> bool {
    let mut voters = metrics.membership_config.membership().voter_ids();
    voters.next() == Some(metrics.id) && voters.next().is_none()
}

/// For a leader: since when its state holds every acknowledged write. That is when a quorum
/// last acknowledged it (the send time of that heartbeat), or now if it is the only voter.
pub fn leader_contact(metrics: &RaftMetrics) -> Option<Instant> {
    debug_assert_eq!(metrics.state, ServerState::Leader);
    if !applied_own_term(metrics) {
        return None;
    }
    if is_only_voter(metrics) {
        return Some(Instant::now());
    }
    let age = std::time::Instant::now().saturating_duration_since(*metrics.last_quorum_acked?);
    Instant::now().checked_sub(age)
}

/// Proofs waiting for this node to apply up to their index.
const PENDING_MAX: usize = 64;

/// The follower's side: stamps answers and turns proofs into contact.
pub struct ContactClock {
    epoch: Instant,
    incarnation: u64,
    state: Mutex<ClockState>,
}

#[derive(Default)]
struct ClockState {
    /// Proven contact times (nanos since the epoch) and the index to apply before each counts.
    pending: VecDeque<(u64, u64)>,
    /// The latest contact whose index this node has applied.
    fresh: Option<u64>,
}

impl Default for ContactClock {
    fn default() -> Self {
        ContactClock { epoch: Instant::now(), incarnation: rt::random_u64(), state: Mutex::default() }
    }
}

impl ContactClock {
    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Now, as a stamp for an AppendEntries answer.
    pub fn stamp(&self) -> ContactStamp {
        ContactStamp { incarnation: self.incarnation, nanos: self.nanos(Instant::now()) }
    }

    /// A leader proved contact at `proof.echo`, effective once `proof.applied_index` is applied.
    pub fn proven(&self, proof: LeaseProof) {
        if proof.echo.incarnation != self.incarnation {
            return;
        }
        debug_assert!(proof.echo.nanos <= self.nanos(Instant::now()), "a stamp from the future");
        let mut state = self.state();
        if state.fresh.is_some_and(|fresh| fresh >= proof.echo.nanos) {
            return;
        }
        if state.pending.len() == PENDING_MAX {
            state.pending.pop_front();
        }
        state.pending.push_back((proof.echo.nanos, proof.applied_index));
    }

    /// The injected `any-contact` bug: any AppendEntries counts as contact when it arrives.
    pub fn heard_unproven(&self) {
        let now = self.nanos(Instant::now());
        self.state().fresh = Some(now);
    }

    /// Since when this node's state, applied up to `applied_index`, is known to hold every
    /// acknowledged write.
    pub fn fresh(&self, applied_index: u64) -> Option<Instant> {
        let mut state = self.state();
        let mut fresh = state.fresh;
        state.pending.retain(|&(nanos, index)| {
            let due = index <= applied_index;
            if due {
                fresh = fresh.max(Some(nanos));
            }
            !due
        });
        state.fresh = fresh;
        fresh.map(|nanos| self.epoch + Duration::from_nanos(nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof(clock: &ContactClock, applied_index: u64) -> LeaseProof {
        LeaseProof { echo: clock.stamp(), applied_index }
    }

    #[tokio::test]
    async fn contact_counts_only_once_the_proven_index_is_applied() {
        let clock = ContactClock::default();
        let first = proof(&clock, 10);
        clock.proven(first);
        assert_eq!(clock.fresh(9), None);
        let at = clock.fresh(10).expect("applied up to the proof");
        assert_eq!(at, clock.epoch + Duration::from_nanos(first.echo.nanos));
        assert_eq!(clock.fresh(9), Some(at), "contact, once proven, stays");
    }

    #[tokio::test]
    async fn a_stamp_from_another_incarnation_proves_nothing() {
        let clock = ContactClock::default();
        let mut stale = proof(&clock, 0);
        stale.echo.incarnation = stale.echo.incarnation.wrapping_add(1);
        clock.proven(stale);
        assert_eq!(clock.fresh(u64::MAX), None);
    }

    #[tokio::test]
    async fn pending_proofs_are_bounded_and_keep_the_newest() {
        let clock = ContactClock::default();
        let proofs: Vec<LeaseProof> = (0..PENDING_MAX as u64 + 5).map(|index| proof(&clock, 100 + index)).collect();
        for &each in &proofs {
            clock.proven(each);
        }
        let last = proofs.last().expect("proofs");
        assert_eq!(clock.fresh(last.applied_index), Some(clock.epoch + Duration::from_nanos(last.echo.nanos)));
    }
}
