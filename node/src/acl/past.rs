//! The ACL states events in the history were written under. A watch or long poll that resumes
//! from an old revision reads events written before the latest ACL changes; an event is shown
//! only to a token that may read its key both now and where the event sits in the log, so
//! widening a policy does not reveal what was written while it was narrow, and narrowing it
//! hides what was written before.
//!
//! ACL changes do not move the revision: a change applied at revision `r` sits after mutation
//! `r` and before `r + 1`. So the state that governed mutation `e` is the one before the first
//! change at a revision `>= e`, or the current state when no change came after it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::AclState;

/// The most past states kept, and the most bytes of them (by [`AclState::bytes`]: in memory they
/// share what did not change, but a snapshot writes each whole). Past that, the oldest are
/// forgotten, and the events they governed are shown to no limited token (nothing says they
/// were allowed).
pub const ERAS_MAX: usize = 64;
pub const ERAS_BYTES_MAX: usize = 2 * super::state::ACL_BYTES_MAX;

/// The ACL state that governed a mutation.
#[derive(Debug)]
pub enum Governed<'a> {
    /// The current state: no change came after the mutation.
    Current,
    /// A state that was replaced later; `era` numbers it, so callers can resolve a credential once
    /// per era.
    Past { era: u64, state: &'a AclState },
    /// Forgotten: the mutation is older than the oldest state kept.
    Unknown,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclPast {
    /// `(through, state)`, oldest first: `state` governed the mutations up to revision `through`
    /// that came after the previous entry's. `through` increases: only the first change after a
    /// mutation is recorded.
    eras: VecDeque<(u64, AclState)>,
    /// Mutations below this revision were governed by states no longer kept.
    known_from: u64,
    /// How many eras were forgotten: numbers eras across trims. Only told apart within one read,
    /// so it wraps rather than trusting a decoded value to leave room.
    forgotten: u64,
}

impl AclPast {
    /// A past that starts at `revision + 1`: what a state restored without its ACL past knows.
    pub fn known_after(revision: u64) -> AclPast {
        AclPast { eras: VecDeque::new(), known_from: revision.saturating_add(1), forgotten: 0 }
    }

    /// Records that `replaced` governed every mutation through `revision` since the previous
    /// change: called when an ACL change applies after mutation `revision`.
    pub fn record(&mut self, revision: u64, replaced: AclState) {
        // A second change after the same mutation replaces a state that governed no mutation;
        // one before `known_from` replaces a state whose mutations already count as unknown.
        if revision < self.known_from || self.eras.back().is_some_and(|(through, _)| *through == revision) {
            return;
        }
        debug_assert!(self.eras.back().is_none_or(|(through, _)| *through < revision), "eras are in log order");
        self.eras.push_back((revision, replaced));
        while self.eras.len() > ERAS_MAX || self.bytes() > ERAS_BYTES_MAX {
            self.forget_oldest();
        }
    }

    /// Drops the eras that governed only mutations below `oldest`, the oldest event still kept.
    pub fn trim(&mut self, oldest: u64) {
        while self.eras.front().is_some_and(|(through, _)| *through < oldest) {
            self.forget_oldest();
        }
    }

    fn bytes(&self) -> usize {
        self.eras.iter().map(|(_, state)| state.bytes()).sum()
    }

    fn forget_oldest(&mut self) {
        if let Some((through, _)) = self.eras.pop_front() {
            self.known_from = self.known_from.max(through.saturating_add(1));
            self.forgotten = self.forgotten.wrapping_add(1);
        }
    }

    /// The state that governed mutation `revision`.
    pub fn governing(&self, revision: u64) -> Governed<'_> {
        if revision < self.known_from {
            return Governed::Unknown;
        }
        let first_after = self.eras.partition_point(|(through, _)| *through < revision);
        match self.eras.get(first_after) {
            Some((_, state)) => Governed::Past { era: self.forgotten.wrapping_add(first_after as u64), state },
            None => Governed::Current,
        }
    }

    /// Why this past could not have been built by [`AclPast::record`] and [`AclPast::trim`] up to
    /// `revision`, if it could not.
    pub fn inconsistency(&self, revision: u64) -> Option<&'static str> {
        if self.eras.len() > ERAS_MAX || self.bytes() > ERAS_BYTES_MAX {
            return Some("more past ACL states than are kept");
        }
        let ordered = self.eras.iter().zip(self.eras.iter().skip(1)).all(|((a, _), (b, _))| a < b);
        let bounded = self.eras.iter().all(|(through, _)| *through <= revision && *through >= self.known_from);
        if !ordered || !bounded {
            return Some("the past ACL states are not in log order up to the store's revision");
        }
        self.eras.iter().find_map(|(_, state)| state.inconsistency())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{AclCommand, SecretHash};

    fn bootstrapped() -> AclState {
        let mut state = AclState::default();
        state.apply(&AclCommand::Bootstrap { accessor: "root".into(), secret: SecretHash::of("root") });
        state
    }

    fn era(governed: Governed<'_>) -> Option<u64> {
        match governed {
            Governed::Past { era, .. } => Some(era),
            Governed::Current => None,
            Governed::Unknown => Some(u64::MAX),
        }
    }

    #[test]
    fn a_mutation_is_governed_by_the_state_before_the_first_change_after_it() {
        let mut past = AclPast::default();
        past.record(3, AclState::default());
        past.record(3, bootstrapped());
        past.record(7, bootstrapped());
        assert_eq!(era(past.governing(1)), Some(0));
        assert_eq!(era(past.governing(3)), Some(0), "changes at 3 come after mutation 3");
        assert_eq!(era(past.governing(4)), Some(1), "the state the change at 7 replaced");
        assert_eq!(era(past.governing(7)), Some(1));
        assert_eq!(era(past.governing(8)), None, "no change after mutation 8");
    }

    /// Goal: many ACL changes with no write between them (an operator creating tokens) take one
    /// place in the past and leave it consistent, so the snapshot holding it loads. Method: more
    /// changes than states are kept, all after the same mutation.
    #[test]
    fn many_changes_between_two_writes_leave_a_consistent_past() {
        let mut past = AclPast::default();
        for _ in 0..ERAS_MAX + 5 {
            past.record(3, AclState::default());
        }
        assert_eq!(past.inconsistency(3), None);
        assert_eq!(era(past.governing(3)), Some(0), "the state before the first change is kept");
        assert_eq!(era(past.governing(4)), None);
        past.record(5, AclState::default());
        assert_eq!(past.inconsistency(5), None);
        assert_eq!(era(past.governing(4)), Some(1));
    }

    #[test]
    fn forgotten_eras_leave_their_mutations_unknown() {
        let mut past = AclPast::default();
        for revision in 1..=(ERAS_MAX as u64 + 2) {
            past.record(revision * 10, AclState::default());
        }
        assert_eq!(era(past.governing(15)), Some(u64::MAX), "eras through 20 were forgotten");
        assert_eq!(era(past.governing(25)), Some(2), "eras keep their numbers across trims");
        past.trim(45);
        assert_eq!(era(past.governing(35)), Some(u64::MAX));
        assert_eq!(era(past.governing(45)), Some(4));
        assert_eq!(past.inconsistency(10 * (ERAS_MAX as u64 + 2)), None);
        assert!(past.inconsistency(100).is_some(), "eras beyond the store's revision");
        let restored = AclPast::known_after(9);
        assert_eq!(era(restored.governing(9)), Some(u64::MAX));
        assert_eq!(era(restored.governing(10)), None);
    }
}
