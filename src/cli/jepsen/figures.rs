//! What a run achieved, measured from its history alone: operations per second under faults, how
//! many ended `info` (outcome unknown), and how long no write succeeded after each leader kill.

use std::time::Duration;

use cairn_chaos::history::{Fault, History, Outcome};
use cairn_chaos::nemesis::FaultKind;

/// The figures of one run's chaos phase (the final reads after healing are left out).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Figures {
    /// Client operations invoked.
    pub(super) operations: usize,
    pub(super) ok: usize,
    pub(super) fail: usize,
    /// Outcome unknown, including any still pending when the history ends.
    pub(super) info: usize,
    /// From the first invoke to the last invoke or completion.
    pub(super) span: Duration,
    /// One per leader kill, in history order.
    pub(super) leader_kills: Vec<Outage>,
}

/// How long the cluster accepted no write after a fault started.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Outage {
    /// When the fault started, since the history's time zero.
    pub(super) start: Duration,
    /// The fault's description (the node killed).
    pub(super) description: String,
    /// Until the first write, compare-and-swap or delete that completed `ok` after the start; or
    /// until the history's end when none did ([`Outage::ended`] false).
    pub(super) length: Duration,
    pub(super) ended: bool,
}

impl Figures {
    pub(super) fn measure(history: &History) -> Figures {
        let chaos: Vec<_> = history.operations.iter().filter(|op| !op.is_final).collect();
        let count = |outcome: Outcome| chaos.iter().filter(|op| op.outcome == outcome).count();
        let first = chaos.iter().map(|op| op.start_time).min().unwrap_or(0);
        let last = chaos.iter().map(|op| op.end_time.unwrap_or(op.start_time)).max().unwrap_or(0);
        let mut writes: Vec<u64> = chaos
            .iter()
            .filter(|op| op.is_mutation() && op.outcome == Outcome::Ok)
            .filter_map(|op| op.end_time)
            .collect();
        writes.sort_unstable();
        let end = history.events.last().map_or(0, |event| event.time);
        let leader_kills = history
            .faults
            .iter()
            .filter(|fault| fault.fault == FaultKind::KillLeader.name())
            .map(|fault| outage(fault, &writes, end))
            .collect();
        Figures {
            operations: chaos.len(),
            ok: count(Outcome::Ok),
            fail: count(Outcome::Fail),
            info: count(Outcome::Info),
            span: Duration::from_nanos(last.saturating_sub(first)),
            leader_kills,
        }
    }

    pub(super) fn per_second(&self) -> f64 {
        self.operations as f64 / self.span.as_secs_f64().max(1e-9)
    }

    /// The longest of [`Figures::leader_kills`].
    pub(super) fn longest_outage(&self) -> Option<&Outage> {
        self.leader_kills.iter().max_by_key(|outage| outage.length)
    }
}

/// `writes`: completion times of successful writes, sorted.
fn outage(fault: &Fault, writes: &[u64], end: u64) -> Outage {
    let next = writes.get(writes.partition_point(|time| *time <= fault.start_time)).copied();
    Outage {
        start: Duration::from_nanos(fault.start_time),
        description: fault.value.clone().unwrap_or_default(),
        length: Duration::from_nanos(next.unwrap_or(end).saturating_sub(fault.start_time)),
        ended: next.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use cairn_chaos::history::parse_history;

    use super::*;

    fn history(lines: &[&str]) -> History {
        parse_history(lines.join("\n").as_bytes()).expect("a well-formed history")
    }

    /// Goal: the outage after a leader kill runs from the kill to the next successful write, not
    /// to a read or a failed write, and one with no write after it runs to the end. Method: a
    /// hand-written history with two kills.
    #[test]
    fn an_outage_lasts_until_the_next_successful_write() {
        let h = history(&[
            r#"{"index":0,"time":1000000000,"process":0,"type":"invoke","f":"write","key":"k0","value":"0.1"}"#,
            r#"{"index":1,"time":1100000000,"process":0,"type":"ok","f":"write","key":"k0","value":"0.1","revision":1}"#,
            r#"{"index":2,"time":2000000000,"process":"nemesis","type":"info","f":"start","fault":"kill-leader","value":"2"}"#,
            r#"{"index":3,"time":2100000000,"process":1,"type":"invoke","f":"write","key":"k0","value":"1.1"}"#,
            r#"{"index":4,"time":2200000000,"process":2,"type":"invoke","f":"read","key":"k0"}"#,
            r#"{"index":5,"time":2300000000,"process":2,"type":"ok","f":"read","key":"k0","value":"0.1","revision":1}"#,
            r#"{"index":6,"time":2900000000,"process":1,"type":"info","f":"write","key":"k0","value":"1.1"}"#,
            r#"{"index":7,"time":3000000000,"process":0,"type":"invoke","f":"write","key":"k1","value":"0.2"}"#,
            r#"{"index":8,"time":3500000000,"process":0,"type":"ok","f":"write","key":"k1","value":"0.2","revision":3}"#,
            r#"{"index":9,"time":4000000000,"process":"nemesis","type":"info","f":"stop","fault":"kill-leader","value":"2"}"#,
            r#"{"index":10,"time":5000000000,"process":"nemesis","type":"info","f":"start","fault":"kill-leader","value":"1"}"#,
            r#"{"index":11,"time":6000000000,"process":"nemesis","type":"info","f":"stop","fault":"kill-leader","value":"1"}"#,
        ]);
        let figures = Figures::measure(&h);
        assert_eq!((figures.operations, figures.ok, figures.fail, figures.info), (4, 3, 0, 1));
        assert_eq!(figures.span, Duration::from_millis(2500));
        let first = &figures.leader_kills[0];
        assert_eq!((first.length, first.ended, first.description.as_str()), (Duration::from_millis(1500), true, "2"));
        let second = &figures.leader_kills[1];
        assert_eq!((second.length, second.ended), (Duration::from_secs(1), false));
        assert_eq!(figures.longest_outage(), Some(first));
    }
}
