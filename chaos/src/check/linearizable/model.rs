//! One key's history, read-mapped into register steps for the search.
//!
//! Every operation becomes a *step*: a precondition on the register's value and an optional new
//! value. Because the workload writes unique values, a value names the one operation that wrote
//! it (read-mapping, Gibbons & Korach 1997 §2), which lets this module decide up front:
//! - which timed-out (`info`) operations must have taken effect, and by when: a value that a
//!   completed operation observed was written before that observer returned, so its writer gets
//!   that return as a deadline (and the operations it in turn depends on get the same);
//! - which timed-out operations are interchangeable: writes of values nobody mentions, deletes,
//!   and creations of values nobody mentions differ only in when they were invoked, so the
//!   search counts them instead of tracking each one (a *pool*);
//! - which values nobody will ever mention again, so that they collapse into one [`JUNK`] state.

use std::collections::BTreeMap;

use crate::history::{Function, Operation, Outcome};

/// A register value after interning: [`ABSENT`], [`JUNK`], or a mentioned value.
pub(super) type ValueId = u32;
/// The key does not exist.
pub(super) const ABSENT: ValueId = 0;
/// Some value that no operation left to linearize can tell apart from any other such value.
pub(super) const JUNK: ValueId = 1;

/// What a step requires of the register before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pre {
    /// Nothing.
    Any,
    /// The register holds this value.
    Eq(ValueId),
    /// The register holds anything but this value.
    Ne(ValueId),
}

impl Pre {
    pub(super) fn holds(self, state: ValueId) -> bool {
        match self {
            Pre::Any => true,
            Pre::Eq(value) => state == value,
            Pre::Ne(value) => state != value,
        }
    }

    fn mentions(self) -> Option<ValueId> {
        match self {
            Pre::Any => None,
            Pre::Eq(value) | Pre::Ne(value) => Some(value),
        }
    }
}

/// A class of interchangeable optional operations: same precondition, same resulting state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pool {
    /// Timed-out writes of values no operation mentions.
    WriteJunk = 0,
    /// Timed-out deletes.
    Delete = 1,
    /// Timed-out compare-and-sets from absent to a value no operation mentions.
    CreateJunk = 2,
}

/// The number of [`Pool`] classes.
pub(super) const POOLS: usize = 3;

impl Pool {
    /// Every pool, in index order.
    pub(super) const ALL: [Pool; POOLS] = [Pool::WriteJunk, Pool::Delete, Pool::CreateJunk];

    /// The precondition its members share.
    pub(super) fn pre(self) -> Pre {
        match self {
            Pool::WriteJunk | Pool::Delete => Pre::Any,
            Pool::CreateJunk => Pre::Eq(ABSENT),
        }
    }

    /// The state its members leave.
    pub(super) fn post(self) -> ValueId {
        match self {
            Pool::WriteJunk | Pool::CreateJunk => JUNK,
            Pool::Delete => ABSENT,
        }
    }
}

/// Whether a step that changes the register overwrites whatever was there, needing at most
/// that the key exists: a hideable step placed just before it is invisible.
pub(super) fn overwrites(pre: Pre, post: Option<ValueId>) -> bool {
    post.is_some() && matches!(pre, Pre::Any | Pre::Ne(ABSENT))
}

/// One operation as a register step.
#[derive(Clone, Debug)]
pub(super) struct Step {
    /// The operation in the history.
    pub(super) op: usize,
    /// Its precondition.
    pub(super) pre: Pre,
    /// The value it leaves, or `None` for an observation that changes nothing.
    pub(super) post: Option<ValueId>,
    /// Position of its invoke in [`KeyModel::events`].
    pub(super) invoke_seq: u32,
    /// Position of its return (or deadline) in [`KeyModel::events`]; `u32::MAX` for an optional
    /// step, which may be linearized at any time after its invoke, or never.
    pub(super) return_seq: u32,
    /// Whether it may be retroactively hidden: it needs nothing and leaves a present value
    /// nobody needs to see, so placing it just before an [`overwrites`] step is invisible.
    pub(super) hideable: bool,
}

impl Step {
    /// Whether the search may leave it out (a timed-out operation without a deadline).
    pub(super) fn optional(&self) -> bool {
        self.return_seq == u32::MAX
    }
}

/// Something that happens to the key, in history order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyEvent {
    /// A step is invoked.
    Invoke(usize),
    /// A step returns (or reaches its deadline) and must be linearized by now.
    Return(usize),
    /// One more operation of a pool is invoked.
    PoolInvoke(Pool),
}

/// What the search needs to know about one interned value.
#[derive(Clone, Debug, Default)]
pub(super) struct ValueInfo {
    /// How many operations that may take effect write it; read-mapping needs exactly one.
    pub(super) writers: u32,
    /// The step that writes it, when there is exactly one writer.
    pub(super) writer: Option<usize>,
    /// Required steps that need the register to hold it (`Pre::Eq`), by return position.
    pub(super) needers: Vec<(u32, usize)>,
    /// Every step whose precondition names it, by return position.
    pub(super) mentioners: Vec<(u32, usize)>,
}

/// One key's history as steps and events.
#[derive(Clone, Debug, Default)]
pub(super) struct KeyModel {
    /// Steps (required and optional ones tracked individually).
    pub(super) steps: Vec<Step>,
    /// Events in history order; a deadline sorts just before the return it comes from.
    pub(super) events: Vec<KeyEvent>,
    /// The history event index of each entry of `events`.
    pub(super) event_indices: Vec<u64>,
    /// Indexed by [`ValueId`].
    pub(super) values: Vec<ValueInfo>,
    /// Operations in pools, for reporting.
    pub(super) pooled: Vec<usize>,
}

/// How a history operation enters the model, before positions are known.
#[derive(Clone, Copy, Debug)]
enum Role {
    /// Must be linearized before it returns (event index).
    Required(u64),
    /// Timed out; must be linearized before this deadline if it is known, else optional.
    Uncertain,
    /// Interchangeable with the other members of a pool.
    Pooled(Pool),
}

/// Builds the model from one key's operations (in invoke order).
pub(super) fn build(ops: &[&Operation]) -> KeyModel {
    let mut interner = Interner::default();
    for op in ops {
        interner.mention(op);
    }
    let mut drafts: Vec<(usize, Pre, Option<ValueId>, Role)> = Vec::new();
    let mut pooled = Vec::new();
    for op in ops {
        let Some((pre, post, role)) = classify(op, &mut interner) else { continue };
        if let Role::Pooled(_) = role {
            pooled.push(op.id);
        }
        drafts.push((op.id, pre, post, role));
    }
    let mut values = vec![ValueInfo::default(); interner.ids.len() + 2];
    for (_, _, post, role) in &drafts {
        if let (Some(value), false) = (post, matches!(role, Role::Pooled(_))) {
            values[*value as usize].writers += 1;
        }
    }
    let by_id: BTreeMap<usize, &Operation> = ops.iter().map(|op| (op.id, *op)).collect();
    let deadlines = deadlines(&drafts, &values);
    assemble(&drafts, &deadlines, &by_id, values, pooled)
}

/// Interns the values that some operation's precondition mentions; unmentioned written values
/// all become [`JUNK`].
#[derive(Default)]
struct Interner {
    ids: BTreeMap<String, ValueId>,
}

impl Interner {
    fn intern(&mut self, value: &str) -> ValueId {
        let next = self.ids.len() as ValueId + 2;
        *self.ids.entry(value.to_owned()).or_insert(next)
    }

    fn mention(&mut self, op: &Operation) {
        if let Some(Some(value)) = op.read_value() {
            self.intern(value);
        }
        if let Some(Some(expected)) = op.cas_expected() {
            self.intern(expected);
        }
    }

    fn optional(&self, value: Option<&str>) -> ValueId {
        value.map_or(ABSENT, |value| self.ids.get(value).copied().unwrap_or(JUNK))
    }
}

/// The step an operation contributes, or `None` when it cannot affect the register: failed
/// operations other than mismatches, reads that did not complete, and stale reads.
fn classify(op: &Operation, interner: &mut Interner) -> Option<(Pre, Option<ValueId>, Role)> {
    let end = op.end_index();
    let required = Role::Required(end);
    match (op.f, op.outcome) {
        (Function::Read, Outcome::Ok) if !super::is_checked_read(op) => None,
        (Function::Read, Outcome::Ok) => Some((Pre::Eq(interner.optional(op.read_value()?)), None, required)),
        (Function::Cas, Outcome::Fail) if op.is_mismatch() => {
            Some((Pre::Ne(interner.optional(op.cas_expected()?)), None, required))
        }
        (_, Outcome::Fail) | (Function::Read, Outcome::Info) => None,
        (Function::Write, outcome) => {
            let post = interner.optional(op.written_value());
            let role = match outcome {
                Outcome::Info if post == JUNK => Role::Pooled(Pool::WriteJunk),
                Outcome::Info => Role::Uncertain,
                _ => required,
            };
            Some((Pre::Any, Some(post), role))
        }
        (Function::Cas, outcome) => {
            let pre = Pre::Eq(interner.optional(op.cas_expected()?));
            let post = interner.optional(op.written_value());
            let role = match outcome {
                Outcome::Info if pre == Pool::CreateJunk.pre() && post == JUNK => Role::Pooled(Pool::CreateJunk),
                Outcome::Info => Role::Uncertain,
                _ => required,
            };
            Some((pre, Some(post), role))
        }
        (Function::Delete, Outcome::Info) => Some((Pre::Any, Some(ABSENT), Role::Pooled(Pool::Delete))),
        (Function::Delete, _) => match op.deleted() {
            Some(true) => Some((Pre::Ne(ABSENT), Some(ABSENT), required)),
            Some(false) => Some((Pre::Eq(ABSENT), None, required)),
            None => Some((Pre::Any, Some(ABSENT), required)),
        },
    }
}

/// Deadlines for uncertain writers of observed values (index of the observer's return).
///
/// A value with one writer that a required step needs must have been written before that step
/// was linearized, hence before it returned. A timed-out compare-and-set that gets a deadline
/// this way becomes required, so the writer of *its* expected value gets the same deadline;
/// the loop repeats until nothing changes (each round extends the chains by one step).
fn deadlines(drafts: &[(usize, Pre, Option<ValueId>, Role)], values: &[ValueInfo]) -> Vec<Option<u64>> {
    let mut deadline: Vec<Option<u64>> = drafts
        .iter()
        .map(|(_, _, _, role)| match role {
            Role::Required(end) => Some(*end),
            _ => None,
        })
        .collect();
    let mut writer_of: BTreeMap<ValueId, usize> = BTreeMap::new();
    for (position, (_, _, post, role)) in drafts.iter().enumerate() {
        if let (Some(value), Role::Uncertain) = (post, role)
            && *value > JUNK
            && values[*value as usize].writers == 1
        {
            writer_of.insert(*value, position);
        }
    }
    loop {
        let mut changed = false;
        for (position, (_, pre, _, _)) in drafts.iter().enumerate() {
            let (Pre::Eq(value), Some(due)) = (pre, deadline[position]) else { continue };
            let Some(&writer) = writer_of.get(value) else { continue };
            if deadline[writer].is_none_or(|current| due < current) {
                deadline[writer] = Some(due);
                changed = true;
            }
        }
        if !changed {
            return deadline;
        }
    }
}

/// Orders invokes, returns and deadlines, and fills in the per-value indexes.
fn assemble(
    drafts: &[(usize, Pre, Option<ValueId>, Role)],
    deadlines: &[Option<u64>],
    by_id: &BTreeMap<usize, &Operation>,
    mut values: Vec<ValueInfo>,
    pooled: Vec<usize>,
) -> KeyModel {
    // (event index, 0 for a deadline / 1 for a real event, tie-break, event).
    let mut timeline: Vec<(u64, u8, usize, KeyEvent)> = Vec::new();
    let mut steps = Vec::new();
    for (position, (op, pre, post, role)) in drafts.iter().enumerate() {
        let invoke = by_id[op].invoke_index;
        if let Role::Pooled(pool) = role {
            timeline.push((invoke, 1, position, KeyEvent::PoolInvoke(*pool)));
            continue;
        }
        let step = steps.len();
        timeline.push((invoke, 1, position, KeyEvent::Invoke(step)));
        if let Some(due) = deadlines[position] {
            let real = matches!(role, Role::Required(_));
            timeline.push((due, u8::from(real), position, KeyEvent::Return(step)));
        }
        steps.push(Step { op: *op, pre: *pre, post: *post, invoke_seq: 0, return_seq: u32::MAX, hideable: false });
    }
    timeline.sort_unstable_by_key(|(index, order, position, _)| (*index, *order, *position));
    let mut model = KeyModel { steps, pooled, ..KeyModel::default() };
    for (seq, (index, _, _, event)) in timeline.into_iter().enumerate() {
        match event {
            KeyEvent::Invoke(step) => model.steps[step].invoke_seq = seq as u32,
            KeyEvent::Return(step) => model.steps[step].return_seq = seq as u32,
            KeyEvent::PoolInvoke(_) => {}
        }
        model.events.push(event);
        model.event_indices.push(index);
    }
    for (position, step) in model.steps.iter().enumerate() {
        if let Some(value) = step.post.filter(|value| *value > JUNK && values[*value as usize].writers == 1) {
            values[value as usize].writer = Some(position);
        }
        let Some(value) = step.pre.mentions() else { continue };
        let info = &mut values[value as usize];
        info.mentioners.push((step.return_seq, position));
        if matches!(step.pre, Pre::Eq(_)) && !step.optional() {
            info.needers.push((step.return_seq, position));
        }
    }
    for info in &mut values {
        info.mentioners.sort_unstable();
        info.needers.sort_unstable();
    }
    for step in &mut model.steps {
        step.hideable = step.pre == Pre::Any
            && step
                .post
                .is_some_and(|value| value == JUNK || (value > JUNK && values[value as usize].needers.is_empty()));
    }
    model.values = values;
    model
}
