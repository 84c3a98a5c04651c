//! The just-in-time linearization search over one key (Lowe 2017, §3–4, breadth first).
//!
//! The search walks the key's events in order and keeps the *frontier*: every distinct
//! configuration a valid linearization of the history so far can be in. A configuration is
//! the register's value plus which operations in flight are already linearized; everything that
//! returned earlier is linearized by definition, so the memo key is "all operations before this
//! position" plus a set of at most [`SLOTS`] in-flight ones (a `u128`), never a bitset over the
//! whole history. This is Wing & Gong's (1993) memoized search with Lowe's just-in-time rule:
//! an operation is linearized only when some return forces it, and the frontier, deduplicated,
//! plays the role of the memo table.
//!
//! On top of that, these reductions keep dense single-key histories tractable:
//! - **Eager observations.** A read or mismatch observation that the current value satisfies is
//!   linearized at once. Proof: it does not change the value, so moving it earlier (to any point
//!   after its invoke, which it has passed) leaves every other step's input unchanged; real-time
//!   order still holds because everything that must precede it returned before its invoke and is
//!   already linearized. So a linearization exists iff one with the observation here exists.
//! - **Abandoned values.** A value with a single writer that a required step still needs can
//!   never come back once overwritten, so such a move is pruned immediately.
//! - **Junk.** A value no remaining step mentions is indistinguishable from any other such value
//!   and collapses into [`JUNK`], so the order of overwritten writes stops mattering.
//! - **Retroactive hiding.** A write placed directly before a step that overwrites anything
//!   present (a write or a delete) is invisible. Instead of branching on "hide it now", the
//!   search remembers when the last such step was linearized (`mark`) and, when a hideable
//!   write returns, lets it have been hidden at that point if it was already invoked then.
//! - **Pools and dominance.** Timed-out operations that differ only in their invoke (deletes,
//!   writes and creations of unmentioned values) are counted, not tracked; having more of them
//!   left, or more hideable steps, is never worse, so the frontier keeps only configurations
//!   that are not dominated on those counts.
//! - **Expiry.** A timed-out compare-and-set whose expected value can never come back is
//!   forgotten, so it stops doubling the frontier and frees its slot.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use super::model::{ABSENT, JUNK, KeyEvent, KeyModel, POOLS, Pool, Pre, ValueId, overwrites};

/// The most operations that can be in flight on one key at once (bits in a configuration).
pub(super) const SLOTS: u32 = 128;

const NO_SLOT: u8 = u8::MAX;

/// A fast hasher with no random seed (the Fx multiply-rotate hash from rustc), so that
/// exploration order, and with it every output, is the same on every run. Keys are small
/// integers, not attacker-controlled input, so a keyed hash buys nothing here.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }

    fn write_u128(&mut self, value: u128) {
        self.write_u64(value as u64);
        self.write_u64((value >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Fixed = BuildHasherDefault<FxHasher>;

/// A point of a partial linearization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Config {
    /// The register's value.
    state: ValueId,
    /// In-flight steps already linearized, by slot.
    linearized: u128,
    /// Members of each pool already used.
    pool_used: [u32; POOLS],
    /// One past the invoke position of the latest in-flight hideable step that can still be
    /// retroactively hidden (0: none).
    mark: u32,
}

/// The part of a configuration the frontier compares for dominance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extra {
    /// Linearized in-flight hideable steps.
    hidden: u128,
    /// As in [`Config`].
    pool_used: [u32; POOLS],
    /// As in [`Config`].
    mark: u32,
}

/// What the frontier needs to know about the slots to compare configurations.
struct SlotTable {
    /// Slots holding hideable steps.
    hideable: u128,
    /// Per slot, the invoke position of its step.
    invoke: [u32; SLOTS as usize],
}

impl SlotTable {
    /// Whether `a` can do everything `b` can: it used no more of any pool, can hide at least
    /// as much, and every hideable step `b` linearized but `a` did not, `a` can still hide
    /// retroactively when it returns (so `a` reaches whatever `b` reaches).
    fn dominates(&self, a: &Extra, b: &Extra) -> bool {
        if a.hidden & !b.hidden != 0 || a.mark < b.mark {
            return false;
        }
        if a.pool_used.iter().zip(&b.pool_used).any(|(x, y)| x > y) {
            return false;
        }
        let mut only_b = b.hidden & !a.hidden;
        while only_b != 0 {
            let slot = only_b.trailing_zeros();
            only_b &= only_b - 1;
            if self.invoke[slot as usize] >= a.mark {
                return false;
            }
        }
        true
    }
}

/// Configurations at one position, grouped on the value and the linearized steps other than
/// hideable ones, keeping only configurations no other one dominates.
#[derive(Default)]
struct Frontier {
    groups: HashMap<(ValueId, u128), Vec<Extra>, Fixed>,
    len: usize,
}

impl Frontier {
    fn insert(&mut self, config: Config, table: &SlotTable) {
        let extra =
            Extra { hidden: config.linearized & table.hideable, pool_used: config.pool_used, mark: config.mark };
        let group = self.groups.entry((config.state, config.linearized & !table.hideable)).or_default();
        if group.iter().any(|kept| table.dominates(kept, &extra)) {
            return;
        }
        let before = group.len();
        group.retain(|kept| !table.dominates(&extra, kept));
        group.push(extra);
        self.len = self.len + group.len() - before;
    }

    fn configs(&self) -> impl Iterator<Item = Config> + '_ {
        self.groups.iter().flat_map(|(&(state, core), extras)| {
            extras.iter().map(move |extra| Config {
                state,
                linearized: core | extra.hidden,
                pool_used: extra.pool_used,
                mark: extra.mark,
            })
        })
    }
}

/// How the search ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SearchOutcome {
    /// Some linearization explains the whole key.
    Linearizable,
    /// No configuration survives this event (position in `KeyModel::events`): everything before
    /// it is linearizable, nothing including it is.
    Stuck(usize),
    /// The budget ran out; nothing is claimed.
    GaveUp(String),
}

/// What the search found and what it cost.
#[derive(Clone, Debug)]
pub(super) struct SearchResult {
    /// The verdict.
    pub(super) outcome: SearchOutcome,
    /// Configurations generated, a machine-independent measure of work.
    pub(super) configurations: u64,
    /// The largest frontier.
    pub(super) frontier_max: usize,
    /// When stuck with `prune_future`: the not-yet-invoked steps whose needs pruned the last
    /// configurations, which belong in the explanation.
    pub(super) blamed: Vec<usize>,
}

/// Bounds on one search.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Give up after this instant.
    pub(super) deadline: Instant,
    /// Give up when a frontier grows past this many configurations.
    pub(super) configurations_max: usize,
    /// Prune with operations not invoked yet (a value a later read returns cannot be
    /// overwritten first). Much faster, but the search may then get stuck before the event
    /// where the longest linearizable prefix really ends; without it, it stops exactly there.
    pub(super) prune_future: bool,
}

/// A step the search may linearize next.
#[derive(Clone, Copy, Debug)]
enum Move {
    /// An in-flight step, by index in `KeyModel::steps`.
    Step(usize),
    /// One unused member of a pool.
    Pool(Pool),
}

struct Search<'m> {
    model: &'m KeyModel,
    /// The event being processed.
    seq: u32,
    /// Per step, its slot while in flight.
    slot_of: Vec<u8>,
    /// Per slot, the step in it.
    slots: [usize; SLOTS as usize],
    /// Slots in use.
    occupied: u128,
    /// Hideable slots and invoke positions, for dominance.
    table: SlotTable,
    /// Pool members invoked so far.
    pool_invoked: [u32; POOLS],
    /// Configurations generated.
    generated: u64,
    limits: Limits,
    /// Future steps whose needs pruned a move during the current event.
    blamed: Vec<usize>,
}

/// Decides whether one key's steps are linearizable.
pub(super) fn search(model: &KeyModel, limits: Limits) -> SearchResult {
    let mut search = Search {
        model,
        seq: 0,
        slot_of: vec![NO_SLOT; model.steps.len()],
        slots: [usize::MAX; SLOTS as usize],
        occupied: 0,
        table: SlotTable { hideable: 0, invoke: [0; SLOTS as usize] },
        pool_invoked: [0; POOLS],
        generated: 0,
        limits,
        blamed: Vec::new(),
    };
    let mut frontier = Frontier::default();
    frontier.insert(Config { state: ABSENT, linearized: 0, pool_used: [0; POOLS], mark: 0 }, &search.table);
    let mut frontier_max = 1;
    let outcome = search.run(&mut frontier, &mut frontier_max);
    let blamed = if matches!(outcome, SearchOutcome::Stuck(_)) { search.blamed } else { Vec::new() };
    SearchResult { outcome, configurations: search.generated, frontier_max, blamed }
}

impl Search<'_> {
    fn run(&mut self, frontier: &mut Frontier, frontier_max: &mut usize) -> SearchOutcome {
        for (seq, event) in self.model.events.iter().enumerate() {
            self.seq = seq as u32;
            self.blamed.clear();
            let current = std::mem::take(frontier);
            let next = match *event {
                KeyEvent::Invoke(step) => self.invoke(step, current),
                KeyEvent::Return(step) => self.complete(step, current),
                KeyEvent::PoolInvoke(pool) => {
                    self.pool_invoked[pool as usize] += 1;
                    Ok(current)
                }
            };
            *frontier = match next {
                Ok(next) => next,
                Err(reason) => return SearchOutcome::GaveUp(reason),
            };
            if frontier.len == 0 {
                return SearchOutcome::Stuck(seq);
            }
            *frontier_max = (*frontier_max).max(frontier.len);
            if let Some(reason) = self.over_budget(frontier.len) {
                return SearchOutcome::GaveUp(reason);
            }
        }
        SearchOutcome::Linearizable
    }

    fn over_budget(&self, frontier: usize) -> Option<String> {
        if frontier > self.limits.configurations_max {
            let max = self.limits.configurations_max;
            return Some(format!("more than {max} configurations at event {}", self.seq));
        }
        if Instant::now() > self.limits.deadline {
            return Some(format!("time budget exhausted at event {} of {}", self.seq, self.model.events.len()));
        }
        None
    }

    fn bit(&self, step: usize) -> u128 {
        match self.slot_of[step] {
            NO_SLOT => 0,
            slot => 1 << slot,
        }
    }

    /// Whether `step` is linearized in `config` (returned steps always are).
    fn done(&self, config: &Config, return_seq: u32, step: usize) -> bool {
        return_seq < self.seq || config.linearized & self.bit(step) != 0
    }

    fn invoke(&mut self, step: usize, frontier: Frontier) -> Result<Frontier, String> {
        let slot = (!self.occupied).trailing_zeros();
        if slot >= SLOTS {
            return Err(format!("more than {SLOTS} operations in flight on one key"));
        }
        let spec = &self.model.steps[step];
        self.occupied |= 1 << slot;
        self.slots[slot as usize] = step;
        self.slot_of[step] = slot as u8;
        self.table.invoke[slot as usize] = spec.invoke_seq;
        if spec.hideable {
            self.table.hideable |= 1 << slot;
        }
        if spec.post.is_some() {
            return Ok(frontier);
        }
        let mut next = Frontier::default();
        for mut config in frontier.configs() {
            if spec.pre.holds(config.state) {
                config.linearized |= 1 << slot;
            }
            next.insert(config, &self.table);
        }
        Ok(next)
    }

    fn free(&mut self, step: usize) {
        let bit = self.bit(step);
        self.occupied &= !bit;
        self.table.hideable &= !bit;
        self.slot_of[step] = NO_SLOT;
    }

    fn complete(&mut self, step: usize, frontier: Frontier) -> Result<Frontier, String> {
        let mut next = Frontier::default();
        if self.slot_of[step] == NO_SLOT {
            // Its deadline comes before its invoke: it cannot have taken effect in time.
            return Ok(next);
        }
        let bit = self.bit(step);
        let mut successors = Vec::new();
        let mut seen = HashSet::default();
        for config in frontier.configs() {
            self.successors(config, step, &mut seen, &mut successors)?;
        }
        self.free(step);
        for successor in successors {
            next.insert(self.canonical(Config { linearized: successor.linearized & !bit, ..successor }), &self.table);
        }
        self.release_expired(&next);
        Ok(next)
    }

    /// Whether an optional step can never be linearized again: it needs a value whose only
    /// writer is linearized and that the register no longer holds. Linearized or not, such a
    /// step makes no difference any more.
    fn expired(&self, state: ValueId, linearized: u128, step: usize) -> bool {
        let Pre::Eq(value) = self.model.steps[step].pre else { return false };
        if value <= JUNK || state == value {
            return false;
        }
        let Some(writer) = self.model.values[value as usize].writer else { return false };
        let writer_spec = &self.model.steps[writer];
        writer_spec.return_seq < self.seq || linearized & self.bit(writer) != 0
    }

    /// Frees the slots of optional steps that have expired in every configuration, so that
    /// timed-out operations do not hold slots for the rest of the history.
    fn release_expired(&mut self, frontier: &Frontier) {
        let mut optional = self.occupied;
        while optional != 0 {
            let slot = optional.trailing_zeros();
            optional &= optional - 1;
            let step = self.slots[slot as usize];
            if !self.model.steps[step].optional() {
                continue;
            }
            if frontier.configs().all(|config| self.expired(config.state, config.linearized, step)) {
                self.free(step);
            }
        }
    }

    /// Adds to `found` every configuration in which `step` is linearized, reached from `config`
    /// by linearizing in-flight steps just in time (Lowe 2017, §4): a chain of other steps, then
    /// `step`. `seen` is shared by all configurations of one event: a configuration reached
    /// twice has the same successors.
    fn successors(
        &mut self,
        config: Config,
        step: usize,
        seen: &mut HashSet<(Config, Option<ValueId>), Fixed>,
        found: &mut Vec<Config>,
    ) -> Result<(), String> {
        let bit = self.bit(step);
        if config.linearized & bit != 0 {
            found.push(config);
            return Ok(());
        }
        let spec = &self.model.steps[step];
        if spec.hideable && spec.invoke_seq < config.mark {
            found.push(Config { linearized: config.linearized | bit, ..config });
        }
        let mut stack = vec![(config, None)];
        let mut moves = Vec::new();
        while let Some((current, hidden_from)) = stack.pop() {
            moves.clear();
            self.moves(&current, hidden_from, &mut moves);
            for &(next, hidden_from) in &moves {
                self.generated += 1;
                if self.generated.is_multiple_of(4096) && Instant::now() > self.limits.deadline {
                    return Err(format!("time budget exhausted at event {}", self.seq));
                }
                if next.linearized & bit != 0 {
                    found.push(next);
                } else if seen.insert((next, hidden_from)) {
                    stack.push((next, hidden_from));
                }
            }
        }
        Ok(())
    }

    /// The configurations one more step leads to. Each comes with `hidden_from`: when the step
    /// was hideable (or optional) and nothing observed the value it left, the value before it.
    /// After such a step, a step that [`overwrites`] and would also have applied to that earlier
    /// value is skipped: the pair is equivalent to retroactive hiding (or, for an optional
    /// step, to leaving it out), which the search covers anyway.
    fn moves(&mut self, config: &Config, hidden_from: Option<ValueId>, moves: &mut Vec<(Config, Option<ValueId>)>) {
        let redundant = |pre: Pre, post: Option<ValueId>| {
            hidden_from.is_some_and(|before| overwrites(pre, post) && pre.holds(before))
        };
        let mut candidates = self.occupied & !config.linearized;
        while candidates != 0 {
            let slot = candidates.trailing_zeros();
            candidates &= candidates - 1;
            let step = self.slots[slot as usize];
            let spec = &self.model.steps[step];
            if spec.post.is_none() || redundant(spec.pre, spec.post) {
                continue;
            }
            if let Some(next) = self.apply(config, Move::Step(step)) {
                let unobserved = next.linearized == config.linearized | self.bit(step);
                let hides = spec.hideable || spec.optional();
                moves.push((next, (hides && unobserved).then_some(config.state)));
            }
        }
        for pool in Pool::ALL {
            let available = self.pool_invoked[pool as usize] > config.pool_used[pool as usize];
            if !available || redundant(pool.pre(), Some(pool.post())) {
                continue;
            }
            if let Some(next) = self.apply(config, Move::Pool(pool)) {
                moves.push((next, (next.linearized == config.linearized).then_some(config.state)));
            }
        }
    }

    /// Linearizes one step, then every observation the new value satisfies.
    fn apply(&mut self, config: &Config, step: Move) -> Option<Config> {
        let (pre, post) = match step {
            Move::Step(step) => (self.model.steps[step].pre, self.model.steps[step].post),
            Move::Pool(pool) => (pool.pre(), Some(pool.post())),
        };
        if !pre.holds(config.state) {
            return None;
        }
        let mut next = *config;
        match step {
            Move::Step(step) => next.linearized |= self.bit(step),
            Move::Pool(pool) => next.pool_used[pool as usize] += 1,
        }
        let value = post.expect("only steps that change the value are moves");
        if value != config.state && self.abandons(config, step) {
            return None;
        }
        next.state = value;
        if overwrites(pre, post) {
            next.mark = self.seq;
        }
        let mut observers = self.occupied & !next.linearized;
        while observers != 0 {
            let slot = observers.trailing_zeros();
            observers &= observers - 1;
            let spec = &self.model.steps[self.slots[slot as usize]];
            if spec.post.is_none() && spec.pre.holds(value) {
                next.linearized |= 1 << slot;
            }
        }
        Some(next)
    }

    /// Whether overwriting the current value strands a required step that needs it. Only values
    /// with one writer count: they can never be current again.
    fn abandons(&mut self, config: &Config, step: Move) -> bool {
        let value = config.state;
        if value <= JUNK {
            return false;
        }
        let info = &self.model.values[value as usize];
        if info.writers != 1 {
            return false;
        }
        let first = info.needers.partition_point(|(return_seq, _)| *return_seq < self.seq);
        let stranded = info.needers[first..].iter().find(|&&(return_seq, needer)| {
            let visible = self.limits.prune_future || self.model.steps[needer].invoke_seq < self.seq;
            visible && !matches!(step, Move::Step(moving) if moving == needer) && !self.done(config, return_seq, needer)
        });
        let Some(&(_, needer)) = stranded else { return false };
        if self.model.steps[needer].invoke_seq > self.seq && self.blamed.last() != Some(&needer) {
            self.blamed.push(needer);
        }
        true
    }

    /// Collapses a value nobody will mention again into [`JUNK`], the mark to the smallest
    /// number that keeps the same in-flight steps hideable, and expired optional steps to "not
    /// linearized".
    fn canonical(&self, mut config: Config) -> Config {
        if config.state > JUNK {
            let mentioners = &self.model.values[config.state as usize].mentioners;
            let first = mentioners.partition_point(|(return_seq, _)| *return_seq <= self.seq);
            let mentioned = mentioners[first..].iter().any(|&(return_seq, step)| !self.done(&config, return_seq, step));
            if !mentioned {
                config.state = JUNK;
            }
        }
        let mut mark = 0;
        let mut pending = self.occupied & !config.linearized;
        while pending != 0 {
            let slot = pending.trailing_zeros();
            pending &= pending - 1;
            let step = self.slots[slot as usize];
            let spec = &self.model.steps[step];
            if spec.hideable && spec.invoke_seq < config.mark {
                mark = mark.max(spec.invoke_seq + 1);
            }
        }
        config.mark = mark;
        let mut optional = self.occupied & config.linearized;
        while optional != 0 {
            let slot = optional.trailing_zeros();
            optional &= optional - 1;
            let step = self.slots[slot as usize];
            if self.model.steps[step].optional() && self.expired(config.state, config.linearized, step) {
                config.linearized &= !(1 << slot);
            }
        }
        config
    }
}
