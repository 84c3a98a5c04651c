//! Autopilot (off by default), Consul's idea: the leader removes a voter gossip has seen down for
//! longer than `dead_node_timeout`, but only while the voters left still hold a healthy majority
//! and number at least `min_voters`; and it promotes a learner that has been alive and caught up
//! for `stabilization`. The decision is a pure function of what the leader observed
//! ([`decide`]); the task around it observes, remembers since when each member is in its
//! current health, and carries out at most one removal per round.

use std::collections::BTreeMap;

use openraft::ServerState;

use crate::api::MemberKind;
use crate::command::NodeId;
use crate::gossip::PeerState;
use crate::rt::{self, Duration, Instant};

use super::Node;

/// Autopilot's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutopilotConfig {
    /// How long gossip must show a voter down before it is removed. Longer than gossip's own
    /// detection time (about 6–7 s with the default timings), or a slow node is removed for a
    /// blip.
    pub dead_node_timeout: Duration,
    /// Autopilot never removes a voter if fewer than this many would be left. At least 1.
    pub min_voters: usize,
    /// How long a learner must be alive and caught up before it is promoted.
    pub stabilization: Duration,
}

impl Default for AutopilotConfig {
    fn default() -> Self {
        AutopilotConfig {
            dead_node_timeout: Duration::from_secs(60),
            min_voters: 3,
            stabilization: Duration::from_secs(10),
        }
    }
}

/// How often the leader looks.
const ROUND: Duration = Duration::from_secs(1);
/// A learner at most this many entries behind the leader's commit index counts as caught up.
const CAUGHT_UP_ENTRIES_MAX: u64 = 64;

/// A member's health as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Gossip shows it alive or suspect (and, for a learner, it is caught up).
    Healthy,
    /// Gossip shows it down.
    Down,
    /// Neither: gossip does not know it yet, or a learner is behind. Never acted on.
    Unknown,
}

/// One member in a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    pub id: NodeId,
    pub voter: bool,
    pub health: Health,
    /// How long it has been in this health.
    pub since: Duration,
}

/// Why autopilot left a dead voter in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Without it, the healthy voters would not be a majority (of the old or the new voters).
    WouldBreakQuorum,
    /// Fewer than `min_voters` voters would be left.
    BelowMinVoters,
}

/// What autopilot does about one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Remove(NodeId),
    Promote(NodeId),
    Keep(NodeId, Refusal),
}

/// The round's decisions, removals first (at most one), then promotions. Pure.
pub fn decide(config: &AutopilotConfig, members: &[Observed]) -> Vec<Decision> {
    let voters = members.iter().filter(|m| m.voter).count();
    let healthy = members.iter().filter(|m| m.voter && m.health == Health::Healthy).count();
    let mut decisions = Vec::new();
    let dead = members.iter().filter(|m| m.voter && m.health == Health::Down && m.since >= config.dead_node_timeout);
    for member in dead {
        let left = voters - 1;
        let refusal = if left < config.min_voters {
            Some(Refusal::BelowMinVoters)
        } else if healthy * 2 <= voters || healthy * 2 <= left {
            Some(Refusal::WouldBreakQuorum)
        } else {
            None
        };
        match refusal {
            Some(refusal) => decisions.push(Decision::Keep(member.id, refusal)),
            None if !decisions.iter().any(|d| matches!(d, Decision::Remove(_))) => {
                decisions.push(Decision::Remove(member.id));
            }
            None => {}
        }
    }
    let ready = members.iter().filter(|m| !m.voter && m.health == Health::Healthy && m.since >= config.stabilization);
    decisions.extend(ready.map(|member| Decision::Promote(member.id)));
    decisions
}

impl Node {
    /// The autopilot task: one round per second while this node leads.
    pub(super) async fn run_autopilot(self, config: AutopilotConfig) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut seen: BTreeMap<NodeId, (Health, Instant)> = BTreeMap::new();
        let mut refused: BTreeMap<NodeId, Refusal> = BTreeMap::new();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                () = rt::sleep(ROUND) => {}
            }
            if self.is_removed() || self.metrics().state != ServerState::Leader {
                seen.clear();
                continue;
            }
            let observed = self.observe_health(&mut seen).await;
            for decision in decide(&config, &observed) {
                self.carry_out(decision, &mut refused).await;
            }
        }
    }

    /// Each member's health this round, and since when it has been so.
    async fn observe_health(&self, seen: &mut BTreeMap<NodeId, (Health, Instant)>) -> Vec<Observed> {
        let Some(view) = self.gossip_view().await else { return Vec::new() };
        let metrics = self.metrics();
        let committed = metrics.local_committed.as_ref().map_or(0, |id| id.index);
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let now = Instant::now();
        let mut observed = Vec::new();
        for (id, _) in membership.nodes() {
            let gossip = view.members.iter().filter(|m| m.identity.id == *id).max_by_key(|m| m.identity.generation);
            let voter = voters.contains(id);
            let matched = metrics.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map(|l| l.index);
            let caught_up = voter || matched.is_some_and(|m| m + CAUGHT_UP_ENTRIES_MAX >= committed);
            let health = match gossip.map(|member| member.state) {
                Some(PeerState::Down) => Health::Down,
                Some(PeerState::Alive | PeerState::Suspect) if caught_up => Health::Healthy,
                _ => Health::Unknown,
            };
            let entry = seen.entry(*id).or_insert((health, now));
            if entry.0 != health {
                *entry = (health, now);
            }
            observed.push(Observed { id: *id, voter, health, since: now.saturating_duration_since(entry.1) });
        }
        seen.retain(|id, _| observed.iter().any(|member| member.id == *id));
        observed
    }

    async fn carry_out(&self, decision: Decision, refused: &mut BTreeMap<NodeId, Refusal>) {
        match decision {
            Decision::Remove(id) => {
                tracing::warn!(id, "autopilot: removing a voter gossip has shown down too long");
                if let Err(error) = self.remove_member(id).await {
                    tracing::warn!(id, %error, "autopilot: the removal failed");
                }
            }
            Decision::Promote(id) => {
                let Some(member) = self.member(id) else { return };
                tracing::info!(id, "autopilot: promoting a stable learner");
                if let Err(error) = self.add_member(id, member, MemberKind::Voter).await {
                    tracing::warn!(id, %error, "autopilot: the promotion failed");
                }
            }
            Decision::Keep(id, refusal) => {
                if refused.insert(id, refusal) != Some(refusal) {
                    tracing::warn!(id, ?refusal, "autopilot: a dead voter stays, removing it would be unsafe");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: AutopilotConfig = AutopilotConfig {
        dead_node_timeout: Duration::from_secs(30),
        min_voters: 3,
        stabilization: Duration::from_secs(10),
    };

    fn voter(id: NodeId, health: Health, since_secs: u64) -> Observed {
        Observed { id, voter: true, health, since: Duration::from_secs(since_secs) }
    }

    fn learner(id: NodeId, health: Health, since_secs: u64) -> Observed {
        Observed { id, voter: false, health, since: Duration::from_secs(since_secs) }
    }

    #[test]
    fn a_voter_down_past_the_timeout_is_removed_while_a_healthy_majority_remains() {
        let members = [1, 2, 3, 4].map(|id| voter(id, Health::Healthy, 100));
        let mut members = members.to_vec();
        members.push(voter(5, Health::Down, 31));
        assert_eq!(decide(&CONFIG, &members), [Decision::Remove(5)]);
        members[4].since = Duration::from_secs(29);
        assert_eq!(decide(&CONFIG, &members), [], "not before the timeout");
    }

    #[test]
    fn only_one_voter_is_removed_per_round() {
        let mut members: Vec<Observed> = [1, 2, 3, 4, 5].map(|id| voter(id, Health::Healthy, 100)).to_vec();
        members.push(voter(6, Health::Down, 40));
        members.push(voter(7, Health::Down, 40));
        assert_eq!(decide(&CONFIG, &members), [Decision::Remove(6)]);
    }

    #[test]
    fn a_removal_that_would_leave_fewer_than_min_voters_is_refused() {
        let members = [voter(1, Health::Healthy, 100), voter(2, Health::Healthy, 100), voter(3, Health::Down, 100)];
        assert_eq!(decide(&CONFIG, &members), [Decision::Keep(3, Refusal::BelowMinVoters)]);
    }

    #[test]
    fn a_removal_without_a_healthy_majority_is_refused() {
        let members = [
            voter(1, Health::Healthy, 100),
            voter(2, Health::Healthy, 100),
            voter(3, Health::Down, 100),
            voter(4, Health::Down, 100),
            voter(5, Health::Unknown, 100),
        ];
        let decisions = decide(&CONFIG, &members);
        assert_eq!(
            decisions,
            [Decision::Keep(3, Refusal::WouldBreakQuorum), Decision::Keep(4, Refusal::WouldBreakQuorum)]
        );
    }

    #[test]
    fn a_learner_healthy_for_the_stabilization_time_is_promoted() {
        let mut members: Vec<Observed> = [1, 2, 3].map(|id| voter(id, Health::Healthy, 100)).to_vec();
        members.push(learner(4, Health::Healthy, 10));
        members.push(learner(5, Health::Healthy, 9));
        members.push(learner(6, Health::Unknown, 100));
        assert_eq!(decide(&CONFIG, &members), [Decision::Promote(4)]);
    }
}
