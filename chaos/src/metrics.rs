//! Checks the nodes' Prometheus counters against the history: the metrics must tell at least
//! what the clients saw. Every node's counters are read once after the run, each summed over
//! the node's restarts (the simulator keeps one registry per node slot).

use crate::history::{Function, History, Outcome};

/// How the kill faults record a victim that said it led when the nemesis asked.
pub const LEADER_VICTIM: &str = "(leader)";

/// One sample's value in the exposition `text`: the line that names `sample` without labels.
pub fn sample(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// What the check found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsCounts {
    /// Writes whose committed outcome clients were told: acknowledged, or refused by a
    /// compare-and-swap (a refusal is a committed proposal too).
    pub acknowledged_writes: u64,
    /// `cairn_server_proposals_committed_total`, summed over the nodes.
    pub proposals_committed: f64,
    /// Kills of a node that said it led.
    pub leader_kills: u64,
    /// `cairn_server_leader_changes_seen_total`, summed over the nodes.
    pub leader_changes_seen: f64,
    /// Each disagreement, in words.
    pub violations: Vec<String>,
}

/// Compares `scrapes` (one exposition text per node, or why it could not be read) with
/// `history`: every write answered after commit (an acknowledgement, or a compare-and-swap's
/// refusal) was a proposal some leader saw commit, and every kill of
/// a leader was followed by an election its winner saw (the first election counts too).
pub fn check(history: &History, scrapes: &[Result<String, String>]) -> MetricsCounts {
    let mut counts = MetricsCounts::default();
    let writes = [Function::Write, Function::Cas, Function::Delete];
    counts.acknowledged_writes = history
        .operations
        .iter()
        .filter(|op| writes.contains(&op.f))
        .filter(|op| op.outcome == Outcome::Ok || op.error.as_deref() == Some("revision_mismatch"))
        .count() as u64;
    counts.leader_kills = history
        .faults
        .iter()
        .filter(|fault| fault.value.as_deref().is_some_and(|value| value.ends_with(LEADER_VICTIM)))
        .count() as u64;
    for (slot, scrape) in scrapes.iter().enumerate() {
        let text = match scrape {
            Ok(text) => text,
            Err(why) => {
                counts.violations.push(format!("node slot {} gave no metrics: {why}", slot + 1));
                continue;
            }
        };
        for (name, total) in [
            ("cairn_server_proposals_committed_total", &mut counts.proposals_committed),
            ("cairn_server_leader_changes_seen_total", &mut counts.leader_changes_seen),
        ] {
            match sample(text, name) {
                Some(value) => *total += value,
                None => counts.violations.push(format!("node slot {} has no {name}", slot + 1)),
            }
        }
    }
    if counts.proposals_committed < counts.acknowledged_writes as f64 {
        counts.violations.push(format!(
            "the nodes counted {} committed proposals, fewer than the {} writes clients were answered after commit",
            counts.proposals_committed, counts.acknowledged_writes
        ));
    }
    let elections = counts.leader_kills + 1;
    if counts.leader_changes_seen < elections as f64 {
        counts.violations.push(format!(
            "the nodes saw {} leader changes, fewer than the first election and the {} leader kills",
            counts.leader_changes_seen, counts.leader_kills
        ));
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a sample is found by its exact name, not a longer one it prefixes. Method: read a
    /// counter from text that also holds a name it prefixes, and a labelled family.
    #[test]
    fn samples_are_read_by_their_exact_name() {
        let text = "# TYPE a counter\na_total 7\na_total_more 9\nb{to=\"2\"} 3\n# EOF\n";
        assert_eq!(sample(text, "a_total"), Some(7.0));
        assert_eq!(sample(text, "a_total_more"), Some(9.0));
        assert_eq!(sample(text, "b"), None);
    }
}
