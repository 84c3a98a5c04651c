//! Client histories in Jepsen's shape: typed events, validation, and pairing into operations.
//!
//! A history is a sequence of events, one JSON object per line (the format is specified in the
//! crate's `README.md`). Every client operation appears twice: an `invoke` when the client sends
//! it and a completion (`ok`, `fail` or `info`) when the client learns its outcome. The checkers
//! work on [`Operation`]s, the pairs, and order them by event index: operation A precedes B in
//! real time when A's completion has a smaller index than B's invoke (Herlihy & Wing 1990).
//!
//! Watchers (`"process":"watch:3"`) are the exception: they report what a streaming watch
//! delivered, as standalone `info` lines ([`WatchEvent`]) that are never paired; they are kept,
//! with their line numbers, in [`History::watch_lines`].
//!
//! Validation happens while the events are pushed, so a malformed file is reported at the first
//! bad line with its 1-based line number.

mod parse;
#[cfg(test)]
mod tests;
mod write;

pub use parse::parse_history;
pub use write::{HistoryWriter, write_event};

use std::collections::BTreeMap;
use std::fmt;

/// Who issued an event: a client process or the fault injector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Process {
    /// A client process. Jepsen retires a process after an `info` completion; its client goes on
    /// under a new number, so one number never has two operations in flight.
    Client(u64),
    /// The nemesis, which starts and stops faults.
    Nemesis,
    /// A watcher (`watch:N`), which follows a streaming watch and reports what it delivered.
    Watcher(u64),
}

/// The `type` of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    /// The client sent the request.
    Invoke,
    /// The operation took effect, and the completion carries its result.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// The outcome is unknown: the operation may or may not take effect, at any time after its
    /// invoke (timeout, `outcome_unknown`, dropped connection).
    Info,
}

/// The client operation (`f`) an event belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Function {
    /// Read one key.
    Read,
    /// Put a value, unconditionally.
    Write,
    /// Compare-and-set: replace the value only if it equals the expected one.
    Cas,
    /// Remove the key.
    Delete,
}

/// The read path a read asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Consistency {
    /// ReadIndex through the leader: must be linearizable.
    Linearizable,
    /// Served under the leader's lease: must be linearizable while clocks behave.
    Lease,
    /// Served from any node's local state: may be old, but never invented.
    Stale,
}

/// The `value` field of a client event, typed by its `f`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// JSON `null` or no `value` at all: nothing to say (read invoke, absent key, delete invoke).
    Null,
    /// A string: the value written, or the value a read returned.
    Str(String),
    /// A compare-and-set's `[expected, new]`; `expected == None` means "the key is absent".
    Cas {
        /// The value the key must hold for the swap to happen (`None`: the key must be absent).
        expected: Option<String>,
        /// The value written when the swap happens.
        new: String,
    },
    /// A delete completion's result: `true` when something was deleted, `false` when the key was
    /// already absent.
    Deleted(bool),
}

/// An event issued by a client process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEvent {
    /// The client process number.
    pub process: u64,
    /// Invoke or one of the completions.
    pub event_type: EventType,
    /// The operation.
    pub f: Function,
    /// The key operated on; histories are partitioned by key for checking.
    pub key: String,
    /// The operation's argument (invoke) or result (completion).
    pub value: Value,
    /// The mutation's revision (ok write/cas/delete) or the store revision a read was served at.
    pub revision: Option<u64>,
    /// The revision of the record a read returned.
    pub mod_revision: Option<u64>,
    /// The read path requested (reads only).
    pub consistency: Option<Consistency>,
    /// The node that served the request, when the client knows it.
    pub node: Option<u64>,
    /// A machine-readable failure code on `fail`/`info` completions, e.g. `revision_mismatch`.
    pub error: Option<String>,
    /// Set on the final linearizable reads made after the cluster healed.
    pub is_final: bool,
    /// Reads only: the read was a long poll for data newer than this revision (`"after":R`), so
    /// its completion must not be served at a revision below it. `None` for ordinary reads.
    pub after: Option<u64>,
    /// Stale reads' invokes: the `max_stale` bound asked for, in milliseconds.
    pub max_stale_ms: Option<u64>,
    /// Stale reads' invokes: the `max_lag` bound asked for.
    pub max_lag: Option<u64>,
    /// Stale reads' completions: the node's `X-Cairn-Last-Contact`, in milliseconds.
    pub last_contact_ms: Option<u64>,
    /// Stale reads' completions: the node's `X-Cairn-Lag`.
    pub lag: Option<u64>,
}

impl ClientEvent {
    /// An event with only the fields every client event has; the others are unset.
    pub fn new(process: u64, event_type: EventType, f: Function, key: &str, value: Value) -> ClientEvent {
        ClientEvent {
            process,
            event_type,
            f,
            key: key.to_string(),
            value,
            revision: None,
            mod_revision: None,
            consistency: None,
            node: None,
            error: None,
            is_final: false,
            after: None,
            max_stale_ms: None,
            max_lag: None,
            last_contact_ms: None,
            lag: None,
        }
    }
}

/// Whether a nemesis event starts or stops a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultPhase {
    /// The fault begins.
    Start,
    /// The fault ends.
    Stop,
}

/// An event issued by the nemesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NemesisEvent {
    /// Start or stop.
    pub phase: FaultPhase,
    /// The fault's kind, e.g. `partition`, `kill`, `clock-skew`; pairs a stop with its start.
    pub fault: String,
    /// A human description of the fault, e.g. `{1,2} | {3}`.
    pub value: Option<String>,
}

/// What a streamed change did to its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WatchAction {
    /// `"action":"put"`: the key now holds this value.
    Put(String),
    /// `"action":"delete"` (with `"value":null`): the key was removed.
    Delete,
}

impl WatchAction {
    /// The value put, or `None` for a delete.
    pub fn value(&self) -> Option<&str> {
        match self {
            WatchAction::Put(value) => Some(value),
            WatchAction::Delete => None,
        }
    }
}

/// What a watcher line reports (its `f`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchKind {
    /// `"f":"resume"`: the watcher (re)connected asking for every change from
    /// [`WatchEvent::revision`] on. Its first resume is its start.
    Resume {
        /// The key prefix watched (`""`: every key). One watcher watches one prefix.
        prefix: String,
    },
    /// `"f":"event"`: one change delivered, at [`WatchEvent::revision`].
    Event {
        /// The key changed.
        key: String,
        /// What happened to it.
        action: WatchAction,
    },
    /// `"f":"compacted"`: the node refused the resume at [`WatchEvent::revision`] because its
    /// history before `compact_revision` is compacted (`revision_compacted`). The watcher's next
    /// resume may skip ahead: only across this marker may a watcher miss changes.
    Compacted {
        /// The `value`: the oldest revision the node still has; `None` when the error did not say.
        compact_revision: Option<u64>,
    },
}

/// An event reported by a watcher process; always `type` `info`, never paired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The watcher number (`"process":"watch:3"` is watcher 3). Distinct from client numbers.
    pub watcher: u64,
    /// The resume's start revision, the delivered change's revision, or the refused start.
    pub revision: u64,
    /// The node the watcher is connected to, when it knows.
    pub node: Option<u64>,
    /// Which of the three lines this is.
    pub kind: WatchKind,
}

/// What an event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventBody {
    /// A client's invoke or completion.
    Client(ClientEvent),
    /// A fault starting or stopping.
    Nemesis(NemesisEvent),
    /// A watcher's resume, delivered change or compaction refusal.
    Watch(WatchEvent),
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Position in the history; strictly increasing. Real-time order is index order.
    pub index: u64,
    /// Nanoseconds (virtual time in the simulator); non-decreasing. Used for display only.
    pub time: u64,
    /// The payload.
    pub body: EventBody,
}

impl Event {
    /// The process that issued this event.
    pub fn process(&self) -> Process {
        match &self.body {
            EventBody::Client(client) => Process::Client(client.process),
            EventBody::Nemesis(_) => Process::Nemesis,
            EventBody::Watch(watch) => Process::Watcher(watch.watcher),
        }
    }
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Took effect; the result is known.
    Ok,
    /// Definitely did not take effect.
    Fail,
    /// May or may not have taken effect; also every invoke still pending at the end.
    Info,
}

/// An invoke paired with its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Position in [`History::operations`], which is ordered by invoke index.
    pub id: usize,
    /// The client process.
    pub process: u64,
    /// The operation.
    pub f: Function,
    /// The key.
    pub key: String,
    /// The argument from the invoke event.
    pub input: Value,
    /// The result from the completion event ([`Value::Null`] for info and pending operations).
    pub output: Value,
    /// How it ended.
    pub outcome: Outcome,
    /// Index of the invoke event.
    pub invoke_index: u64,
    /// Index of the completion event; `None` means infinity (info or still pending).
    pub complete_index: Option<u64>,
    /// Time of the invoke event, in nanoseconds.
    pub start_time: u64,
    /// Time of the completion event; `None` means infinity.
    pub end_time: Option<u64>,
    /// 1-based line of the invoke event.
    pub invoke_line: usize,
    /// 1-based line of the completion event, if any.
    pub complete_line: Option<usize>,
    /// The completion's `revision`.
    pub revision: Option<u64>,
    /// The completion's `mod_revision`.
    pub mod_revision: Option<u64>,
    /// The read path (from the invoke, or the completion if only it says).
    pub consistency: Option<Consistency>,
    /// The serving node (from the completion, or the invoke if only it says).
    pub node: Option<u64>,
    /// The completion's error code.
    pub error: Option<String>,
    /// Whether this is a final read made after healing.
    pub is_final: bool,
    /// For a long-poll read, the revision it asked for data newer than (from the invoke, or the
    /// completion if only it says).
    pub after: Option<u64>,
    /// The invoke's `max_stale` bound, in milliseconds.
    pub max_stale_ms: Option<u64>,
    /// The invoke's `max_lag` bound.
    pub max_lag: Option<u64>,
    /// The completion's reported last contact, in milliseconds.
    pub last_contact_ms: Option<u64>,
    /// The completion's reported lag.
    pub lag: Option<u64>,
}

/// The error code a compare-and-set fails with when the key did not hold the expected value.
pub const REVISION_MISMATCH: &str = "revision_mismatch";

impl Operation {
    /// The completion index, with infinity as `u64::MAX`.
    pub fn end_index(&self) -> u64 {
        self.complete_index.unwrap_or(u64::MAX)
    }

    /// Whether this operation completed before `other` was invoked (real-time precedence).
    pub fn precedes(&self, other: &Operation) -> bool {
        self.end_index() < other.invoke_index
    }

    /// The value this write or compare-and-set stores, if it takes effect.
    pub fn written_value(&self) -> Option<&str> {
        match (&self.f, &self.input) {
            (Function::Write, Value::Str(value)) => Some(value),
            (Function::Cas, Value::Cas { new, .. }) => Some(new),
            _ => None,
        }
    }

    /// A compare-and-set's expected value (`Some(None)`: expects the key absent).
    pub fn cas_expected(&self) -> Option<Option<&str>> {
        match &self.input {
            Value::Cas { expected, .. } => Some(expected.as_deref()),
            _ => None,
        }
    }

    /// What a completed read returned (`Some(None)`: the key was absent).
    pub fn read_value(&self) -> Option<Option<&str>> {
        match (self.f, self.outcome, &self.output) {
            (Function::Read, Outcome::Ok, Value::Str(value)) => Some(Some(value)),
            (Function::Read, Outcome::Ok, _) => Some(None),
            _ => None,
        }
    }

    /// A completed delete's result, when the completion reported one.
    pub fn deleted(&self) -> Option<bool> {
        match (self.f, &self.output) {
            (Function::Delete, Value::Deleted(deleted)) => Some(*deleted),
            _ => None,
        }
    }

    /// Whether this is a write, compare-and-set or delete.
    pub fn is_mutation(&self) -> bool {
        self.f != Function::Read
    }

    /// Whether this failed compare-and-set observed a value other than the expected one.
    pub fn is_mismatch(&self) -> bool {
        self.f == Function::Cas && self.outcome == Outcome::Fail && self.error.as_deref() == Some(REVISION_MISMATCH)
    }
}

/// A fault from its start to its stop, as the nemesis reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The fault's kind.
    pub fault: String,
    /// The description from the start event.
    pub value: Option<String>,
    /// Index of the start event.
    pub start_index: u64,
    /// Time of the start event.
    pub start_time: u64,
    /// Index of the stop event; `None` when the fault was never stopped.
    pub stop_index: Option<u64>,
    /// Time of the stop event.
    pub stop_time: Option<u64>,
}

/// One watcher line of a validated history, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchLine {
    /// 1-based line in the file (or event position + 1 for in-memory histories).
    pub line: usize,
    /// The event's index.
    pub index: u64,
    /// The event's time, in nanoseconds.
    pub time: u64,
    /// What the watcher reported.
    pub event: WatchEvent,
}

/// A validated history: its events, the operations they pair into, and the faults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Every event, in file order.
    pub events: Vec<Event>,
    /// Invoke/completion pairs, ordered by invoke index; `operations[i].id == i`.
    pub operations: Vec<Operation>,
    /// Nemesis faults, ordered by start index.
    pub faults: Vec<Fault>,
    /// Every watcher line, in file order.
    pub watch_lines: Vec<WatchLine>,
}

impl History {
    /// Validates and pairs events that were built in memory (line `n` is `events[n - 1]`).
    pub fn from_events(events: Vec<Event>) -> Result<History, MalformedHistory> {
        let mut builder = HistoryBuilder::default();
        for (position, event) in events.into_iter().enumerate() {
            builder.push(position + 1, event)?;
        }
        Ok(builder.finish())
    }

    /// The distinct keys operated on, in order.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.operations.iter().map(|op| op.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The index of the last event, or 0 for an empty history.
    pub fn last_index(&self) -> u64 {
        self.events.last().map_or(0, |event| event.index)
    }
}

/// Why a history file cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum MalformedHistory {
    /// The file could not be opened or read. Nothing was checked.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line breaks the format. Nothing was checked; the line number is 1-based.
    #[error("line {line}: {problem}")]
    Line {
        /// 1-based line number in the file (or event position + 1 for in-memory histories).
        line: usize,
        /// What is wrong with it.
        problem: Malformation,
    },
}

impl MalformedHistory {
    /// The 1-based line number, when the problem is on a line.
    pub fn line(&self) -> Option<usize> {
        match self {
            MalformedHistory::Unreadable { .. } => None,
            MalformedHistory::Line { line, .. } => Some(*line),
        }
    }
}

/// What is wrong with one line of a history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformation {
    /// Reading the line failed midway through the file.
    #[error("read failed: {0}")]
    Io(String),
    /// The line is not a JSON object, or a field has the wrong JSON type.
    #[error("not a valid event: {0}")]
    NotJson(String),
    /// A required field is absent (or null where a value is required).
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field is present but its value is not allowed.
    #[error("field `{field}`: {reason}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// Why the value is rejected.
        reason: String,
    },
    /// `type` is not invoke, ok, fail or info (or a nemesis event is not info).
    #[error("unknown type {0:?}")]
    UnknownType(String),
    /// `f` is not a known function for this process.
    #[error("unknown f {0:?}")]
    UnknownFunction(String),
    /// `index` did not increase.
    #[error("index {index} does not increase (previous {previous})")]
    IndexNotIncreasing {
        /// The previous event's index.
        previous: u64,
        /// This event's index.
        index: u64,
    },
    /// `time` went backwards.
    #[error("time {time} is before the previous event's time {previous}")]
    TimeDecreasing {
        /// The previous event's time.
        previous: u64,
        /// This event's time.
        time: u64,
    },
    /// A completion arrived for a process with nothing in flight.
    #[error("completion for process {0} without a pending invoke")]
    CompletionWithoutInvoke(u64),
    /// A completion's `f`, `key` or written value differs from its invoke.
    #[error("completion's {field} differs from its invoke on line {invoke_line}")]
    CompletionMismatch {
        /// Which field differs: `f`, `key`, `value` or `after`.
        field: &'static str,
        /// The invoke's line.
        invoke_line: usize,
    },
    /// A process invoked while its previous operation was still in flight.
    #[error("process {process} invokes while its invoke on line {invoke_line} is pending")]
    InvokeWhilePending {
        /// The process.
        process: u64,
        /// The pending invoke's line.
        invoke_line: usize,
    },
    /// A process invoked again after an `info` completion; Jepsen retires such processes.
    #[error("process {process} invokes after its info completion on line {info_line}")]
    InvokeAfterInfo {
        /// The process.
        process: u64,
        /// The info completion's line.
        info_line: usize,
    },
    /// A nemesis `stop` without a started fault of that kind.
    #[error("stop of fault {0:?} that is not running")]
    StopWithoutStart(String),
    /// A watcher reported an event or a compaction before its first `resume`, so there is no
    /// start to judge it against.
    #[error("watcher {0} reports before its first resume")]
    WatchBeforeResume(u64),
}

/// Validates events one at a time and pairs them into operations.
#[derive(Debug, Default)]
struct HistoryBuilder {
    events: Vec<Event>,
    operations: Vec<Operation>,
    faults: Vec<Fault>,
    /// Per process, the operation in flight.
    pending: BTreeMap<u64, usize>,
    /// Per retired process, the line of its info completion.
    retired: BTreeMap<u64, usize>,
    /// Per fault kind, the running faults (positions in `faults`).
    running: BTreeMap<String, Vec<usize>>,
    /// Per started watcher, its prefix and the line of its first resume.
    watchers: BTreeMap<u64, (String, usize)>,
    /// Every watcher line so far.
    watch_lines: Vec<WatchLine>,
}

impl HistoryBuilder {
    fn push(&mut self, line: usize, event: Event) -> Result<(), MalformedHistory> {
        let at_line = |problem| MalformedHistory::Line { line, problem };
        if let Some(previous) = self.events.last() {
            if event.index <= previous.index {
                let (previous, index) = (previous.index, event.index);
                return Err(at_line(Malformation::IndexNotIncreasing { previous, index }));
            }
            if event.time < previous.time {
                let (previous, time) = (previous.time, event.time);
                return Err(at_line(Malformation::TimeDecreasing { previous, time }));
            }
        }
        match &event.body {
            EventBody::Client(client) if client.after.is_some() && client.f != Function::Read => {
                let reason = format!("only reads long-poll, not a {}", client.f);
                return Err(at_line(Malformation::InvalidField { field: "after", reason }));
            }
            EventBody::Client(client) if client.event_type == EventType::Invoke => {
                self.invoke(line, &event, client).map_err(at_line)?
            }
            EventBody::Client(client) => self.complete(line, &event, client).map_err(at_line)?,
            EventBody::Nemesis(nemesis) => self.nemesis(&event, nemesis).map_err(at_line)?,
            EventBody::Watch(watch) => self.watch(line, &event, watch).map_err(at_line)?,
        }
        self.events.push(event);
        Ok(())
    }

    fn invoke(&mut self, line: usize, event: &Event, client: &ClientEvent) -> Result<(), Malformation> {
        let process = client.process;
        if let Some(&info_line) = self.retired.get(&process) {
            return Err(Malformation::InvokeAfterInfo { process, info_line });
        }
        if let Some(&pending) = self.pending.get(&process) {
            let invoke_line = self.operations[pending].invoke_line;
            return Err(Malformation::InvokeWhilePending { process, invoke_line });
        }
        let id = self.operations.len();
        self.pending.insert(process, id);
        self.operations.push(Operation {
            id,
            process,
            f: client.f,
            key: client.key.clone(),
            input: client.value.clone(),
            output: Value::Null,
            outcome: Outcome::Info,
            invoke_index: event.index,
            complete_index: None,
            start_time: event.time,
            end_time: None,
            invoke_line: line,
            complete_line: None,
            revision: None,
            mod_revision: None,
            consistency: client.consistency,
            node: client.node,
            error: None,
            is_final: client.is_final,
            after: client.after,
            max_stale_ms: client.max_stale_ms,
            max_lag: client.max_lag,
            last_contact_ms: None,
            lag: None,
        });
        Ok(())
    }

    fn complete(&mut self, line: usize, event: &Event, client: &ClientEvent) -> Result<(), Malformation> {
        let process = client.process;
        let Some(id) = self.pending.remove(&process) else {
            return Err(Malformation::CompletionWithoutInvoke(process));
        };
        let op = &mut self.operations[id];
        let invoke_line = op.invoke_line;
        if op.f != client.f {
            return Err(Malformation::CompletionMismatch { field: "f", invoke_line });
        }
        if op.key != client.key {
            return Err(Malformation::CompletionMismatch { field: "key", invoke_line });
        }
        let echoes_input = matches!(client.value, Value::Str(_) | Value::Cas { .. });
        if op.f != Function::Read && echoes_input && client.value != op.input {
            return Err(Malformation::CompletionMismatch { field: "value", invoke_line });
        }
        if op.after.is_some() && client.after.is_some() && op.after != client.after {
            return Err(Malformation::CompletionMismatch { field: "after", invoke_line });
        }
        op.outcome = match client.event_type {
            EventType::Ok => Outcome::Ok,
            EventType::Fail => Outcome::Fail,
            EventType::Info | EventType::Invoke => Outcome::Info,
        };
        if op.outcome == Outcome::Info {
            self.retired.insert(process, line);
        } else {
            op.complete_index = Some(event.index);
            op.end_time = Some(event.time);
        }
        op.complete_line = Some(line);
        if op.f == Function::Read || matches!(client.value, Value::Deleted(_)) {
            op.output = client.value.clone();
        }
        op.revision = client.revision;
        op.mod_revision = client.mod_revision;
        op.consistency = op.consistency.or(client.consistency);
        op.node = client.node.or(op.node);
        op.error = client.error.clone();
        op.is_final |= client.is_final;
        op.after = op.after.or(client.after);
        op.last_contact_ms = client.last_contact_ms;
        op.lag = client.lag;
        Ok(())
    }

    /// A watcher line: it must follow the watcher's first resume, and a watcher keeps its prefix.
    fn watch(&mut self, line: usize, event: &Event, watch: &WatchEvent) -> Result<(), Malformation> {
        match (&watch.kind, self.watchers.get(&watch.watcher)) {
            (WatchKind::Resume { prefix }, None) => {
                self.watchers.insert(watch.watcher, (prefix.clone(), line));
            }
            (WatchKind::Resume { prefix }, Some((first, first_line))) if prefix != first => {
                return Err(Malformation::InvalidField {
                    field: "prefix",
                    reason: format!("watcher {} started on prefix {first:?} on line {first_line}", watch.watcher),
                });
            }
            (_, Some(_)) => {}
            (_, None) => return Err(Malformation::WatchBeforeResume(watch.watcher)),
        }
        self.watch_lines.push(WatchLine { line, index: event.index, time: event.time, event: watch.clone() });
        Ok(())
    }

    fn nemesis(&mut self, event: &Event, nemesis: &NemesisEvent) -> Result<(), Malformation> {
        match nemesis.phase {
            FaultPhase::Start => {
                self.running.entry(nemesis.fault.clone()).or_default().push(self.faults.len());
                self.faults.push(Fault {
                    fault: nemesis.fault.clone(),
                    value: nemesis.value.clone(),
                    start_index: event.index,
                    start_time: event.time,
                    stop_index: None,
                    stop_time: None,
                });
            }
            FaultPhase::Stop => {
                let running = self.running.get_mut(&nemesis.fault).and_then(Vec::pop);
                let Some(position) = running else {
                    return Err(Malformation::StopWithoutStart(nemesis.fault.clone()));
                };
                self.faults[position].stop_index = Some(event.index);
                self.faults[position].stop_time = Some(event.time);
            }
        }
        Ok(())
    }

    fn finish(self) -> History {
        History { events: self.events, operations: self.operations, faults: self.faults, watch_lines: self.watch_lines }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Function::Read => "read",
            Function::Write => "write",
            Function::Cas => "cas",
            Function::Delete => "delete",
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |value: &Option<String>| value.as_ref().map_or("null".to_owned(), |v| format!("{v:?}"));
        match self {
            Value::Null => f.write_str("null"),
            Value::Str(value) => write!(f, "{value:?}"),
            Value::Cas { expected, new } => write!(f, "[{}, {new:?}]", show(expected)),
            Value::Deleted(deleted) => write!(f, "{deleted}"),
        }
    }
}

impl fmt::Display for Operation {
    /// One readable line: `p3 write k1 "v7" -> ok rev 42 [#12..#18, 1.234ms..1.240ms]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{} {} {:?}", self.process, self.f, self.key)?;
        match self.f {
            Function::Read => {}
            _ if self.input != Value::Null => write!(f, " {}", self.input)?,
            _ => {}
        }
        write!(f, " -> {}", self.outcome)?;
        if self.f == Function::Read && self.outcome == Outcome::Ok {
            write!(f, " {}", self.output)?;
        }
        if let Value::Deleted(deleted) = self.output {
            write!(f, " deleted={deleted}")?;
        }
        if let Some(error) = &self.error {
            write!(f, " ({error})")?;
        }
        if let Some(revision) = self.revision {
            write!(f, " rev {revision}")?;
        }
        if let Some(consistency) = self.consistency {
            write!(f, " {}", consistency_name(consistency))?;
        }
        if let Some(after) = self.after {
            write!(f, " after {after}")?;
        }
        if let Some(bound) = self.max_stale_ms {
            write!(f, " max_stale {bound}ms")?;
        }
        if let Some(bound) = self.max_lag {
            write!(f, " max_lag {bound}")?;
        }
        if let Some(contact) = self.last_contact_ms {
            write!(f, " contact {contact}ms ago")?;
        }
        if let Some(lag) = self.lag {
            write!(f, " lag {lag}")?;
        }
        let end_index = self.complete_index.map_or("∞".to_owned(), |index| format!("#{index}"));
        let end_time = self.end_time.map_or("∞".to_owned(), format_time);
        let start_time = format_time(self.start_time);
        write!(f, " [#{}..{end_index}, {start_time}..{end_time}]", self.invoke_index)
    }
}

impl fmt::Display for WatchLine {
    /// One readable line: `watch:3 event put "k1" "v7" rev 42 node 2 [#13, 1.240ms]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let watch = &self.event;
        write!(f, "watch:{} ", watch.watcher)?;
        match &watch.kind {
            WatchKind::Resume { prefix } => write!(f, "resume from rev {} prefix {prefix:?}", watch.revision)?,
            WatchKind::Event { key, action: WatchAction::Put(value) } => {
                write!(f, "event put {key:?} {value:?} rev {}", watch.revision)?
            }
            WatchKind::Event { key, action: WatchAction::Delete } => {
                write!(f, "event delete {key:?} rev {}", watch.revision)?
            }
            WatchKind::Compacted { compact_revision } => {
                write!(f, "compacted: resume from rev {} refused", watch.revision)?;
                if let Some(compact_revision) = compact_revision {
                    write!(f, ", history kept from rev {compact_revision}")?;
                }
            }
        }
        if let Some(node) = watch.node {
            write!(f, " node {node}")?;
        }
        write!(f, " [#{}, {}]", self.index, format_time(self.time))
    }
}

/// The wire name of a consistency level.
pub fn consistency_name(consistency: Consistency) -> &'static str {
    match consistency {
        Consistency::Linearizable => "linearizable",
        Consistency::Lease => "lease",
        Consistency::Stale => "stale",
    }
}

/// Formats nanoseconds as milliseconds with microsecond precision.
pub fn format_time(nanos: u64) -> String {
    format!("{}.{:03}ms", nanos / 1_000_000, (nanos / 1_000) % 1_000)
}
