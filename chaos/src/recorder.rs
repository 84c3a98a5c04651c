//! Records a run's events as they happen, with times relative to the run's start (virtual time
//! in the simulator), into JSON Lines.

use std::sync::{Arc, Mutex, PoisonError};

use cairn_node::rt::Instant;

use crate::history::{ClientEvent, EventBody, EventType, FaultPhase, HistoryWriter, NemesisEvent, WatchEvent};

/// How many client events of each kind a run recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Operations invoked.
    pub invoked: u64,
    /// Completed `ok`.
    pub ok: u64,
    /// Completed `fail`: definitely not applied.
    pub fail: u64,
    /// Completed `info`: outcome unknown.
    pub info: u64,
    /// Faults started.
    pub faults: u64,
    /// Watch events delivered.
    pub watched: u64,
}

/// A shared, cloneable recorder. A std mutex guards the writer: each record is a short,
/// in-memory append, never held across an `.await`.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<State>>,
}

struct State {
    writer: HistoryWriter<Vec<u8>>,
    started: Instant,
    counts: Counts,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// A recorder whose time zero is now.
    pub fn new() -> Recorder {
        let state =
            State { writer: HistoryWriter::new(Vec::new()), started: Instant::now(), counts: Counts::default() };
        Recorder { inner: Arc::new(Mutex::new(state)) }
    }

    fn record(&self, body: EventBody) {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let time = u64::try_from(state.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        state.writer.record(time, body).expect("writing to memory cannot fail");
    }

    /// Records a client invoke or completion.
    pub fn client(&self, event: ClientEvent) {
        {
            let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let counts = &mut state.counts;
            match event.event_type {
                EventType::Invoke => counts.invoked += 1,
                EventType::Ok => counts.ok += 1,
                EventType::Fail => counts.fail += 1,
                EventType::Info => counts.info += 1,
            }
        }
        self.record(EventBody::Client(event));
    }

    /// Records a fault starting or stopping.
    pub fn nemesis(&self, phase: FaultPhase, fault: &str, value: String) {
        if phase == FaultPhase::Start {
            self.inner.lock().unwrap_or_else(PoisonError::into_inner).counts.faults += 1;
        }
        self.record(EventBody::Nemesis(NemesisEvent { phase, fault: fault.to_string(), value: Some(value) }));
    }

    /// Records a watcher's resume, delivered event or compaction refusal.
    pub fn watch(&self, event: WatchEvent) {
        if matches!(event.kind, crate::history::WatchKind::Event { .. }) {
            self.inner.lock().unwrap_or_else(PoisonError::into_inner).counts.watched += 1;
        }
        self.record(EventBody::Watch(event));
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).counts
    }

    /// The history recorded so far, as JSON Lines.
    pub fn bytes(&self) -> Vec<u8> {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state.writer.sink().clone()
    }
}
