//! Synthetic histories for tests and benchmarks, and mutators that plant known anomalies.
//!
//! [`generate`] simulates concurrent clients against one atomic register per key, so its
//! histories are linearizable by construction: every operation takes effect at one instant
//! inside its interval (or, for a timed-out operation, maybe later or never). Latencies, timeouts
//! and failures are drawn from a seeded generator, so a seed always gives the same history.
//! [`inject`] then breaks a history in one specific way, for proving that checkers catch it.
//!
//! With [`Workload::watchers`], watchers follow the register's changes as cairn's streaming
//! watch would: in revision order, each change once, from their start revision, reconnecting now
//! and then at the last revision they saw + 1.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

mod inject;

pub use inject::{Anomaly, inject};

use crate::history::{
    ClientEvent, Consistency, Event, EventBody, EventType, FaultPhase, Function, NemesisEvent, REVISION_MISMATCH,
    Value, WatchAction, WatchEvent, WatchKind,
};

/// A small, fast, seeded generator (SplitMix64, Steele et al. 2014); not for cryptography.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`. Must have `low <= high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high);
        low + self.next_u64() % (high - low + 1)
    }

    /// True with probability `percent / 100`.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.next_u64() % 100 < u64::from(percent)
    }
}

/// The shape of a generated history.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Seeds every random choice.
    pub seed: u64,
    /// Number of keys (`k0`, `k1`, …). Must not be zero.
    pub keys: usize,
    /// Number of concurrent clients. Must not be zero.
    pub clients: usize,
    /// Client operations to issue, not counting the final reads.
    pub operations: usize,
    /// Relative weights of read, write, cas and delete.
    pub mix: [u32; 4],
    /// Percent of reads that ask for `stale` consistency.
    pub stale_reads_percent: u32,
    /// Percent of reads that ask for `lease` consistency.
    pub lease_reads_percent: u32,
    /// Percent of operations that time out (`info`); half of those still take effect.
    pub timeouts_percent: u32,
    /// Percent of operations that fail before taking effect (`no_leader`).
    pub failures_percent: u32,
    /// Operation latency bounds in nanoseconds; `min <= max`.
    pub latency_ns: (u64, u64),
    /// How many replicas serve stale reads, each lagging by up to `lag_max` revisions.
    pub nodes: u64,
    /// The most revisions a node serving a stale read lags behind.
    pub lag_max: u64,
    /// Whether to end with one final linearizable read per key.
    pub final_reads: bool,
    /// Whether to emit nemesis partition events (they do not change the register's behaviour).
    pub faults: bool,
    /// Watchers to run (`watch:0`, `watch:1`, …); even ones watch every key (prefix `""`), odd
    /// ones the prefix of one key name (see [`watch_prefix`]). Zero, the default, leaves the
    /// history exactly as without watchers.
    pub watchers: usize,
    /// Percent of a watcher's steps at which it disconnects and resumes at its last revision + 1.
    pub watch_reconnect_percent: u32,
}

impl Workload {
    /// A mixed workload: 5 keys, 5 clients, 1,000 operations, a few timeouts and failures.
    pub fn new(seed: u64) -> Workload {
        Workload {
            seed,
            keys: 5,
            clients: 5,
            operations: 1_000,
            mix: [45, 25, 20, 10],
            stale_reads_percent: 10,
            lease_reads_percent: 10,
            timeouts_percent: 3,
            failures_percent: 2,
            latency_ns: (200_000, 5_000_000),
            nodes: 3,
            lag_max: 5,
            final_reads: true,
            faults: true,
            watchers: 0,
            watch_reconnect_percent: 10,
        }
    }
}

impl Workload {
    /// The multi-key benchmark shape: 20 keys, 20 clients, 20,000 operations.
    pub fn wide(seed: u64) -> Workload {
        Workload { keys: 20, clients: 20, operations: 20_000, ..Workload::new(seed) }
    }

    /// The dense benchmark shape: one key, 24 clients, 2,000 operations with cas, deletes and
    /// timeouts, where a plain Wing & Gong search gives up.
    pub fn dense(seed: u64) -> Workload {
        Workload { keys: 1, clients: 24, operations: 2_000, ..Workload::new(seed) }
    }
}

/// What the simulator does next; ordered by time, then by scheduling order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    /// The client sends its next operation.
    Invoke(usize),
    /// An operation (position in `Simulation::operations`) takes effect on the register.
    Apply(usize),
    /// The client learns the operation's outcome.
    Complete(usize),
    /// The nemesis starts (`true`) or stops a partition.
    Nemesis(bool),
    /// A watcher connects, reconnects, or delivers what it has not delivered yet.
    Watch(usize),
}

/// How an operation will end, decided when it is invoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// Applied, then `ok` (or a `revision_mismatch` fail, decided when applied).
    Normal,
    /// Never applied; `fail` with `no_leader`.
    Failed,
    /// `info` with `timeout`; applied or not, possibly after the client gave up.
    TimedOut,
}

/// One issued operation.
#[derive(Clone, Debug)]
struct Issued {
    client: usize,
    process: u64,
    f: Function,
    key: usize,
    input: Value,
    consistency: Option<Consistency>,
    ending: Ending,
    /// Whether the operation takes effect at all.
    applies: bool,
    /// The completion, known once the operation was applied.
    result: Option<ClientEvent>,
}

/// The simulated store: one register per key, a global revision like etcd's, and lagging nodes.
struct Store {
    revision: u64,
    /// Per key, every version as `(revision, value)`, oldest first; starts absent at revision 0.
    versions: Vec<Vec<(u64, Option<String>)>>,
    /// Per node, the revision it has applied up to (for stale reads).
    node_applied: Vec<u64>,
    /// Every change in revision order: `log[r - 1]` is revision r's key and value (`None`:
    /// deleted). What watchers stream.
    log: Vec<(usize, Option<String>)>,
}

/// One simulated watcher.
#[derive(Clone, Debug, Default)]
struct Watcher {
    /// Whether it has connected (sent its first resume).
    started: bool,
    /// Its first resume's revision.
    start: u64,
    /// The next revision it looks at.
    cursor: u64,
    /// The last revision it delivered, 0 before the first.
    last: u64,
    /// The node it is connected to.
    node: u64,
}

/// The simulation: clients, the event queue and the output.
struct Simulation<'a> {
    workload: &'a Workload,
    rng: Rng,
    store: Store,
    queue: BinaryHeap<Reverse<(u64, u64, Action)>>,
    sequence: u64,
    operations: Vec<Issued>,
    /// Per client, its current process number.
    processes: Vec<u64>,
    next_value: u64,
    events: Vec<Event>,
    watchers: Vec<Watcher>,
    /// Watchers still scheduled; each has one `Action::Watch` in the queue.
    watchers_active: usize,
}

/// Simulates `workload` and returns its history's events, indexed from 0.
pub fn generate(workload: &Workload) -> Vec<Event> {
    assert!(workload.keys > 0 && workload.clients > 0);
    assert!(workload.latency_ns.0 <= workload.latency_ns.1);
    let mut sim = Simulation {
        workload,
        rng: Rng::new(workload.seed),
        store: Store {
            revision: 0,
            versions: vec![vec![(0, None)]; workload.keys],
            node_applied: vec![0; workload.nodes.max(1) as usize],
            log: Vec::new(),
        },
        queue: BinaryHeap::new(),
        sequence: 0,
        operations: Vec::with_capacity(workload.operations),
        processes: (0..workload.clients as u64).collect(),
        next_value: 0,
        events: Vec::with_capacity(2 * workload.operations + 2 * workload.keys),
        watchers: vec![Watcher::default(); workload.watchers],
        watchers_active: workload.watchers,
    };
    for client in 0..workload.clients {
        let at = sim.rng.range(0, workload.latency_ns.1);
        sim.schedule(at, Action::Invoke(client));
    }
    if workload.faults {
        let at = sim.rng.range(workload.latency_ns.1, 20 * workload.latency_ns.1);
        sim.schedule(at, Action::Nemesis(true));
    }
    for watcher in 0..workload.watchers {
        let at = sim.rng.range(0, 4 * workload.latency_ns.1);
        sim.schedule(at, Action::Watch(watcher));
    }
    let mut now = 0;
    while let Some(Reverse((time, _, action))) = sim.queue.pop() {
        now = time;
        sim.step(time, action);
    }
    if workload.final_reads {
        sim.final_reads(now + 1_000_000);
    }
    sim.events
}

impl Simulation<'_> {
    fn schedule(&mut self, time: u64, action: Action) {
        self.sequence += 1;
        self.queue.push(Reverse((time, self.sequence, action)));
    }

    fn record(&mut self, time: u64, body: EventBody) {
        let index = self.events.len() as u64;
        self.events.push(Event { index, time, body });
    }

    fn step(&mut self, time: u64, action: Action) {
        match action {
            Action::Invoke(client) => self.invoke(time, client),
            Action::Apply(op) => self.apply(op),
            Action::Complete(op) => self.complete(time, op),
            Action::Nemesis(start) => self.nemesis(time, start),
            Action::Watch(watcher) => self.watch(time, watcher),
        }
    }

    /// One watcher step: connect (from the next revision) or, now and then, reconnect at the
    /// last revision seen + 1; then deliver a few of the changes since, or all of them once
    /// nothing else is left to happen, after which the watcher stops.
    fn watch(&mut self, time: u64, id: usize) {
        let nodes = self.store.node_applied.len() as u64;
        let watcher = &self.watchers[id];
        let resume = if !watcher.started {
            Some(self.store.revision + 1)
        } else if self.rng.percent(self.workload.watch_reconnect_percent) {
            Some(if watcher.last == 0 { watcher.start } else { watcher.last + 1 })
        } else {
            None
        };
        if let Some(revision) = resume {
            let node = self.rng.range(0, nodes - 1);
            let watcher = &mut self.watchers[id];
            (watcher.started, watcher.cursor, watcher.node) = (true, revision, node);
            if watcher.start == 0 {
                watcher.start = revision;
            }
            let prefix = watch_prefix(id, self.workload.keys);
            self.record_watch(time, id, revision, WatchKind::Resume { prefix });
        }
        // Only this watcher's action has left the queue; anything beyond the other watchers'
        // means more changes may still come.
        let more_to_come = self.queue.len() >= self.watchers_active;
        let through =
            if more_to_come { self.watchers[id].cursor + self.rng.range(0, 5) } else { self.store.revision + 1 };
        self.deliver(time, id, through.min(self.store.revision + 1));
        if more_to_come {
            let (low, high) = self.workload.latency_ns;
            let at = time + self.rng.range(low, high);
            self.schedule(at, Action::Watch(id));
        } else {
            self.watchers_active -= 1;
        }
    }

    /// Delivers watcher `id`'s changes from its cursor up to, not including, revision `through`.
    fn deliver(&mut self, time: u64, id: usize, through: u64) {
        let prefix = watch_prefix(id, self.workload.keys);
        for revision in self.watchers[id].cursor..through {
            let (key, value) = self.store.log[revision as usize - 1].clone();
            let key = key_name(key);
            if !key.starts_with(&prefix) {
                continue;
            }
            let action = value.map_or(WatchAction::Delete, WatchAction::Put);
            self.watchers[id].last = revision;
            self.record_watch(time, id, revision, WatchKind::Event { key, action });
        }
        let watcher = &mut self.watchers[id];
        watcher.cursor = watcher.cursor.max(through);
    }

    fn record_watch(&mut self, time: u64, id: usize, revision: u64, kind: WatchKind) {
        let node = Some(self.watchers[id].node);
        self.record(time, EventBody::Watch(WatchEvent { watcher: id as u64, revision, node, kind }));
    }

    fn nemesis(&mut self, time: u64, start: bool) {
        let phase = if start { FaultPhase::Start } else { FaultPhase::Stop };
        let value = Some("{0,1} | {2}".to_owned());
        let fault = "partition".to_owned();
        self.record(time, EventBody::Nemesis(NemesisEvent { phase, fault, value }));
        let running = self.operations.len() < self.workload.operations;
        if running || start {
            let latency = self.workload.latency_ns.1;
            let at = time + self.rng.range(5 * latency, 20 * latency);
            self.schedule(at, Action::Nemesis(!start));
        }
    }

    fn invoke(&mut self, time: u64, client: usize) {
        if self.operations.len() >= self.workload.operations {
            return;
        }
        let op = self.choose_operation(client);
        let (low, high) = self.workload.latency_ns;
        let apply_at = time + self.rng.range(low / 2, high / 2).max(1);
        let complete_at = apply_at + self.rng.range(low / 2, high / 2).max(1);
        let id = self.operations.len();
        match op.ending {
            Ending::TimedOut => {
                // A timed-out operation may still take effect, even after the client gave up.
                let apply_at = time + self.rng.range(1, 2 * high);
                self.schedule(apply_at, Action::Apply(id));
                self.schedule(time + high, Action::Complete(id));
            }
            Ending::Failed => self.schedule(complete_at, Action::Complete(id)),
            Ending::Normal => {
                self.schedule(apply_at, Action::Apply(id));
                self.schedule(complete_at, Action::Complete(id));
            }
        }
        let event = self.client_event(&op, EventType::Invoke, op.input.clone());
        self.operations.push(op);
        self.record(time, EventBody::Client(event));
    }

    fn choose_operation(&mut self, client: usize) -> Issued {
        let key = self.rng.range(0, self.workload.keys as u64 - 1) as usize;
        let [read, write, cas, _] = self.workload.mix;
        let total = self.workload.mix.iter().sum::<u32>().max(1);
        let draw = self.rng.range(0, u64::from(total) - 1) as u32;
        let (f, input, consistency) = if draw < read {
            (Function::Read, Value::Null, Some(self.choose_consistency()))
        } else if draw < read + write {
            (Function::Write, Value::Str(self.fresh_value()), None)
        } else if draw < read + write + cas {
            let expected = self.choose_expected(key);
            (Function::Cas, Value::Cas { expected, new: self.fresh_value() }, None)
        } else {
            (Function::Delete, Value::Null, None)
        };
        let ending = if self.rng.percent(self.workload.timeouts_percent) {
            Ending::TimedOut
        } else if self.rng.percent(self.workload.failures_percent) {
            Ending::Failed
        } else {
            Ending::Normal
        };
        let applies = match ending {
            Ending::Normal => true,
            Ending::Failed => false,
            Ending::TimedOut => self.rng.percent(50),
        };
        let process = self.processes[client];
        Issued { client, process, f, key, input, consistency, ending, applies, result: None }
    }

    fn choose_consistency(&mut self) -> Consistency {
        let draw = self.rng.range(0, 99) as u32;
        if draw < self.workload.stale_reads_percent {
            Consistency::Stale
        } else if draw < self.workload.stale_reads_percent + self.workload.lease_reads_percent {
            Consistency::Lease
        } else {
            Consistency::Linearizable
        }
    }

    /// Half the time the key's current value (likely to succeed), otherwise a recent one or null.
    fn choose_expected(&mut self, key: usize) -> Option<String> {
        let versions = &self.store.versions[key];
        if self.rng.percent(50) {
            return versions.last().and_then(|(_, value)| value.clone());
        }
        if self.rng.percent(20) {
            return None;
        }
        let back = self.rng.range(0, versions.len().min(4) as u64 - 1) as usize;
        versions[versions.len() - 1 - back].1.clone()
    }

    fn fresh_value(&mut self) -> String {
        self.next_value += 1;
        format!("v{}", self.next_value)
    }

    fn apply(&mut self, id: usize) {
        if self.operations[id].applies {
            let op = self.operations[id].clone();
            self.operations[id].result = Some(self.execute(&op));
        }
    }

    fn complete(&mut self, time: u64, id: usize) {
        let op = self.operations[id].clone();
        let event = match op.ending {
            Ending::TimedOut => {
                // Jepsen retires a process after an info; its client goes on as a new one.
                self.processes[op.client] += self.workload.clients as u64;
                self.failure(&op, EventType::Info, "timeout")
            }
            Ending::Failed => self.failure(&op, EventType::Fail, "no_leader"),
            Ending::Normal => op.result.clone().expect("a normal operation applies before completing"),
        };
        self.record(time, EventBody::Client(event));
        let think = self.rng.range(0, self.workload.latency_ns.0);
        self.schedule(time + think, Action::Invoke(op.client));
    }

    fn failure(&self, op: &Issued, event_type: EventType, error: &str) -> ClientEvent {
        let mut event = self.client_event(op, event_type, Value::Null);
        event.error = Some(error.to_owned());
        event
    }

    fn client_event(&self, op: &Issued, event_type: EventType, value: Value) -> ClientEvent {
        ClientEvent {
            consistency: op.consistency,
            ..ClientEvent::new(op.process, event_type, op.f, &key_name(op.key), value)
        }
    }

    /// Applies `op` to the store and returns its completion.
    fn execute(&mut self, op: &Issued) -> ClientEvent {
        let mut event = self.client_event(op, EventType::Ok, op.input.clone());
        let store = &mut self.store;
        let current = store.versions[op.key].last().cloned().expect("versions start non-empty");
        match (&op.f, &op.input) {
            (Function::Read, _) if op.consistency == Some(Consistency::Stale) => {
                let node = self.rng.range(0, store.node_applied.len() as u64 - 1);
                let lag = self.rng.range(0, self.workload.lag_max);
                let applied = &mut store.node_applied[node as usize];
                *applied = (*applied).max(store.revision.saturating_sub(lag));
                let versions = &store.versions[op.key];
                let (mod_revision, value) =
                    versions[versions.partition_point(|(revision, _)| *revision <= *applied) - 1].clone();
                event.mod_revision = value.as_ref().map(|_| mod_revision);
                event.value = value.map_or(Value::Null, Value::Str);
                event.revision = Some(*applied);
                event.node = Some(node);
            }
            (Function::Read, _) => {
                event.mod_revision = current.1.as_ref().map(|_| current.0);
                event.value = current.1.map_or(Value::Null, Value::Str);
                event.revision = Some(store.revision);
                event.node = Some(0);
            }
            (Function::Write, Value::Str(value)) => {
                event.revision = Some(store.bump(op.key, Some(value.clone())));
            }
            (Function::Cas, Value::Cas { expected, new }) if *expected == current.1 => {
                event.revision = Some(store.bump(op.key, Some(new.clone())));
            }
            (Function::Cas, _) => {
                event.event_type = EventType::Fail;
                event.error = Some(REVISION_MISMATCH.to_owned());
            }
            (Function::Delete, _) if current.1.is_some() => {
                event.revision = Some(store.bump(op.key, None));
                event.value = Value::Deleted(true);
            }
            (Function::Delete, _) => {
                event.revision = Some(store.revision);
                event.value = Value::Deleted(false);
            }
            (Function::Write, _) => unreachable!("writes carry a string"),
        }
        event
    }

    /// One linearizable read per key, made after everything else, marked `final`.
    fn final_reads(&mut self, time: u64) {
        let first = self.processes.iter().max().map_or(0, |process| process + 1);
        for key in 0..self.workload.keys {
            let op = Issued {
                client: 0,
                process: first + key as u64,
                f: Function::Read,
                key,
                input: Value::Null,
                consistency: Some(Consistency::Linearizable),
                ending: Ending::Normal,
                applies: true,
                result: None,
            };
            let mut invoke = self.client_event(&op, EventType::Invoke, Value::Null);
            invoke.is_final = true;
            let mut ok = self.execute(&op);
            ok.is_final = true;
            let at = time + 2_000 * key as u64;
            self.record(at, EventBody::Client(invoke));
            self.record(at + 1_000, EventBody::Client(ok));
        }
    }
}

impl Store {
    /// Records a new version of `key` at the next revision and returns that revision.
    fn bump(&mut self, key: usize, value: Option<String>) -> u64 {
        self.revision += 1;
        self.log.push((key, value.clone()));
        self.versions[key].push((self.revision, value));
        self.revision
    }
}

/// The prefix generated watcher number `watcher` watches: `""` for even watchers, and for odd
/// ones the name of key `watcher / 2` (modulo `keys`), which also matches longer names such as
/// `k10` for `k1`.
pub fn watch_prefix(watcher: usize, keys: usize) -> String {
    if watcher.is_multiple_of(2) { String::new() } else { key_name(watcher / 2 % keys) }
}

/// The name of generated key number `key`.
pub fn key_name(key: usize) -> String {
    format!("k{key}")
}
