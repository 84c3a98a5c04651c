//! The fault names `--nemesis` takes, and the chaos crate's [`FaultKind`]s each one stands for.
//! Faults a real process cannot suffer are refused with the reason.

use cairn_chaos::nemesis::FaultKind;

/// One `--nemesis` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Nemesis {
    /// SIGKILL the leader or a random node; it is started again later.
    Kill,
    /// SIGSTOP a random node; SIGCONT later.
    Pause,
    /// Cut links between nodes with iptables in their network namespaces.
    Partition,
    /// Shut a random node down cleanly (SIGTERM) or kill it, and start it again later.
    Restart,
    /// Remove a random member through the API and put a fresh node in its place.
    Member,
}

/// Every name, in the order help and reports list them.
pub(super) const ALL: [Nemesis; 5] =
    [Nemesis::Kill, Nemesis::Pause, Nemesis::Partition, Nemesis::Restart, Nemesis::Member];

impl Nemesis {
    pub(super) fn name(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::Partition => "partition",
            Nemesis::Restart => "restart",
            Nemesis::Member => "member",
        }
    }

    /// The faults this name injects on a cluster of `nodes` nodes.
    pub(super) fn faults(self, nodes: usize) -> Vec<FaultKind> {
        match self {
            Nemesis::Kill => vec![FaultKind::Kill, FaultKind::KillLeader],
            Nemesis::Pause => vec![FaultKind::Pause],
            Nemesis::Partition if nodes >= 5 => {
                vec![FaultKind::Partition, FaultKind::IsolateLeader, FaultKind::OneWay, FaultKind::Bridge]
            }
            Nemesis::Partition => vec![FaultKind::Partition, FaultKind::IsolateLeader, FaultKind::OneWay],
            // The unclean restart is a kill: SIGKILL, started again later.
            Nemesis::Restart => vec![FaultKind::Restart, FaultKind::Kill],
            Nemesis::Member => vec![FaultKind::Replace],
        }
    }
}

/// Parses one name; the simulator's faults that real processes cannot suffer get the reason.
pub(super) fn parse(name: &str) -> Result<Nemesis, String> {
    if let Some(nemesis) = ALL.into_iter().find(|nemesis| nemesis.name() == name) {
        return Ok(nemesis);
    }
    let names: Vec<&str> = ALL.iter().map(|nemesis| nemesis.name()).collect();
    Err(match name {
        "crash" | "power-outage" => format!(
            "{name:?} is a simulator fault: a killed process loses nothing the kernel already has, so losing \
             unsynced writes needs the simulated disk (cargo sim --test chaos); use one of {}",
            names.join(", ")
        ),
        "packet-loss" | "latency" => format!(
            "{name:?} is a simulator fault: on real processes it would need tc netem, which this command does \
             not use; use one of {}",
            names.join(", ")
        ),
        _ => format!("unknown nemesis {name:?}; use one of {}", names.join(", ")),
    })
}

/// The fault kinds to draw from, without repeats; partitions only when the network can cut links.
pub(super) fn fault_kinds(nemeses: &[Nemesis], nodes: usize, partitions: bool) -> Vec<FaultKind> {
    let mut kinds: Vec<FaultKind> = nemeses
        .iter()
        .filter(|nemesis| partitions || **nemesis != Nemesis::Partition)
        .flat_map(|nemesis| nemesis.faults(nodes))
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_the_faults_a_real_process_can_suffer() {
        assert_eq!(parse("kill"), Ok(Nemesis::Kill));
        assert!(parse("crash").unwrap_err().contains("simulator fault"));
        assert!(parse("latency").unwrap_err().contains("netem"));
        assert!(parse("kil").unwrap_err().contains("unknown nemesis"));
        let kinds = fault_kinds(&[Nemesis::Kill, Nemesis::Restart], 3, true);
        assert_eq!(kinds, vec![FaultKind::KillLeader, FaultKind::Kill, FaultKind::Restart]);
        assert!(fault_kinds(&[Nemesis::Partition], 5, true).contains(&FaultKind::Bridge));
        assert!(!fault_kinds(&[Nemesis::Partition], 3, true).contains(&FaultKind::Bridge));
        assert!(fault_kinds(&[Nemesis::Partition], 3, false).is_empty());
    }
}
