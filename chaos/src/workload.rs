//! The client workload: concurrent processes on a small key space mixing puts, compare-and-swaps,
//! deletes, reads at every consistency level and long polls, through random nodes, each
//! operation recorded as an invoke and a completion.
//!
//! Values are unique (`"{process}.{n}"`), which makes every read name its writer. A
//! compare-and-swap from value `v` is sent as `prev_revision` = the mod_revision this process
//! saw `v` at: with unique values, "the key holds `v`" and "the key's mod_revision is that one"
//! are the same condition. A process whose operation ends `info` is retired, as in Jepsen; its
//! client carries on under a fresh process number.

use std::collections::BTreeMap;

use bytes::Bytes;
use cairn_http::client::{CairnClient, ClientError, Route, StaleBounds};
use cairn_node::api;
use cairn_node::rt::{self, Duration, watch};

use crate::generate::Rng;
use crate::history::{ClientEvent, Consistency, EventType, Function, Value};
use crate::recorder::Recorder;

/// The operation mix, in percent (they must add up to 100).
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Unconditional puts.
    pub write: u32,
    /// Compare-and-swaps from the value this process last saw.
    pub cas: u32,
    /// Deletes.
    pub delete: u32,
    /// Linearizable (ReadIndex) reads.
    pub read_linearizable: u32,
    /// Lease reads.
    pub read_lease: u32,
    /// Stale reads from one chosen node.
    pub read_stale: u32,
    /// Long polls for news after the highest revision this process has seen, at a random
    /// consistency; stale ones go to one chosen node, which must wait until it has caught up.
    pub poll: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { write: 30, cas: 15, delete: 5, read_linearizable: 20, read_lease: 10, read_stale: 10, poll: 10 }
    }
}

/// How many clients do what.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadOptions {
    /// Concurrent clients; client `i` starts as process `i` and becomes `i + clients`, … when
    /// retired.
    pub clients: u64,
    /// Keys `k0` … `k{keys-1}`: few keys make contention.
    pub keys: u64,
    /// Longest pause between one client's operations.
    pub think_max: Duration,
    /// The operation mix.
    pub mix: Mix,
    /// Watchers of every key, recorded as `watch:N` processes (see [`crate::watcher`]).
    pub watchers: u64,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions { clients: 8, keys: 4, think_max: Duration::from_millis(30), mix: Mix::default(), watchers: 2 }
    }
}

/// One client's state: its process number and what it last saw.
struct ClientState {
    process: u64,
    written: u64,
    /// Per key: the value last seen and its mod_revision (`None`, 0 for absent).
    seen: BTreeMap<String, (Option<String>, u64)>,
    /// The highest store revision any answer carried.
    revision: u64,
}

enum Op {
    Write,
    Cas,
    Delete,
    Read(Consistency),
    Poll(Consistency),
}

/// The longest a long poll waits: well inside the clients' attempt timeout.
const POLL_WAIT_MAX: Duration = Duration::from_millis(800);

/// Runs client `index` until `stop` turns true, recording every operation.
pub async fn run_client(
    index: u64,
    client: CairnClient,
    recorder: Recorder,
    options: WorkloadOptions,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut state = ClientState { process: index, written: 0, seen: BTreeMap::new(), revision: 0 };
    let nodes = client.endpoints().len() as u64;
    while !*stop.borrow_and_update() {
        let key = format!("k{}", rng.range(0, options.keys - 1));
        let node = rng.range(0, nodes - 1) as usize;
        let op = choose(&mut rng, &options.mix);
        let wait = Duration::from_millis(rng.range(1, POLL_WAIT_MAX.as_millis() as u64));
        let bounds = match op {
            Op::Read(Consistency::Stale) => stale_bounds(&mut rng),
            _ => StaleBounds::default(),
        };
        let retire = perform(&client, &recorder, &mut state, op, Target { key, node, wait, bounds }).await;
        if retire {
            state.process += options.clients;
        }
        let think = rng.range(0, options.think_max.as_millis() as u64);
        rt::sleep(Duration::from_millis(think)).await;
    }
}

fn choose(rng: &mut Rng, mix: &Mix) -> Op {
    let mut roll = rng.range(0, 99) as u32;
    let shares = [
        (mix.write, Op::Write),
        (mix.cas, Op::Cas),
        (mix.delete, Op::Delete),
        (mix.read_linearizable, Op::Read(Consistency::Linearizable)),
        (mix.read_lease, Op::Read(Consistency::Lease)),
        (mix.read_stale, Op::Read(Consistency::Stale)),
    ];
    for (share, op) in shares {
        if roll < share {
            return op;
        }
        roll -= share;
    }
    let consistency = [Consistency::Linearizable, Consistency::Lease, Consistency::Stale][roll as usize % 3];
    Op::Poll(consistency)
}

/// Bounds for a stale read: half of them ask for `max_stale`, two thirds for `max_lag`, some
/// tight enough to be refused during faults, so the checker sees answered bounded reads near
/// their limits.
fn stale_bounds(rng: &mut Rng) -> StaleBounds {
    let roll = rng.range(0, 11);
    let max_stale = match roll % 4 {
        0 => Some(Duration::from_millis(200)),
        1 => Some(Duration::from_secs(1)),
        _ => None,
    };
    let max_lag = match roll % 3 {
        0 => Some(0),
        1 => Some(5),
        _ => None,
    };
    StaleBounds { max_stale, max_lag }
}

/// Where an operation goes: its key, the node it prefers, for a long poll how long it waits,
/// and for a stale read its bounds.
struct Target {
    key: String,
    node: usize,
    wait: Duration,
    bounds: StaleBounds,
}

/// Performs one operation; returns true when its outcome is unknown (the process retires).
async fn perform(client: &CairnClient, recorder: &Recorder, state: &mut ClientState, op: Op, target: Target) -> bool {
    let Target { key, node, wait, bounds } = target;
    match op {
        Op::Write => {
            let value = state.fresh_value();
            let invoke =
                ClientEvent::new(state.process, EventType::Invoke, Function::Write, &key, Value::Str(value.clone()));
            recorder.client(invoke);
            let outcome = client.put(Route::Prefer(node), &key, Bytes::from(value.clone()), None).await;
            complete_write(recorder, state, Function::Write, key, Value::Str(value), outcome)
        }
        Op::Cas => {
            let (expected, revision) = state.seen.get(&key).cloned().unwrap_or((None, 0));
            let new = state.fresh_value();
            let input = Value::Cas { expected, new: new.clone() };
            recorder.client(ClientEvent::new(state.process, EventType::Invoke, Function::Cas, &key, input.clone()));
            let outcome = client.put(Route::Prefer(node), &key, Bytes::from(new), Some(revision)).await;
            complete_write(recorder, state, Function::Cas, key, input, outcome)
        }
        Op::Delete => {
            recorder.client(ClientEvent::new(state.process, EventType::Invoke, Function::Delete, &key, Value::Null));
            match client.delete(Route::Prefer(node), &key, None).await {
                Ok(answer) => {
                    let mut done = ClientEvent::new(
                        state.process,
                        EventType::Ok,
                        Function::Delete,
                        &key,
                        Value::Deleted(answer.value.deleted),
                    );
                    done.revision = Some(answer.value.revision);
                    done.node = answer.node;
                    recorder.client(done);
                    state.revision = state.revision.max(answer.value.revision);
                    state.seen.insert(key, (None, 0));
                    false
                }
                Err(error) => failed(recorder, state.process, Function::Delete, &key, Value::Null, &error),
            }
        }
        Op::Read(consistency) => {
            read(client, recorder, state, Target { key, node, wait, bounds }, consistency, None).await
        }
        Op::Poll(consistency) => {
            let after = Some(state.revision);
            read(client, recorder, state, Target { key, node, wait, bounds }, consistency, after).await
        }
    }
}

fn complete_write(
    recorder: &Recorder,
    state: &mut ClientState,
    f: Function,
    key: String,
    input: Value,
    outcome: Result<cairn_http::client::Answer<cairn_http::wire::RecordBody>, ClientError>,
) -> bool {
    match outcome {
        Ok(answer) => {
            let mut done = ClientEvent::new(state.process, EventType::Ok, f, &key, input);
            done.revision = Some(answer.value.mod_revision);
            done.node = answer.node;
            recorder.client(done);
            state.revision = state.revision.max(answer.value.mod_revision);
            state.seen.insert(key, (Some(answer.value.value), answer.value.mod_revision));
            false
        }
        Err(ClientError::Mismatch { current }) => {
            let mut done = ClientEvent::new(state.process, EventType::Fail, f, &key, input);
            done.error = Some("revision_mismatch".to_string());
            recorder.client(done);
            let seen = current.map_or((None, 0), |record| (Some(record.value), record.mod_revision));
            state.seen.insert(key, seen);
            false
        }
        Err(error) => failed(recorder, state.process, f, &key, input, &error),
    }
}

/// A read, or with `after` a long poll for a change after that revision.
async fn read(
    client: &CairnClient,
    recorder: &Recorder,
    state: &mut ClientState,
    target: Target,
    consistency: Consistency,
    after: Option<u64>,
) -> bool {
    let Target { key, node, wait, bounds } = target;
    let mut invoke = ClientEvent::new(state.process, EventType::Invoke, Function::Read, &key, Value::Null);
    invoke.consistency = Some(consistency);
    invoke.after = after;
    invoke.max_stale_ms = bounds.max_stale.map(|bound| bound.as_millis() as u64);
    invoke.max_lag = bounds.max_lag;
    recorder.client(invoke);
    let (route, level) = match consistency {
        Consistency::Linearizable => (Route::Prefer(node), api::Consistency::Linearizable),
        Consistency::Lease => (Route::Prefer(node), api::Consistency::Lease),
        Consistency::Stale => (Route::Only(node), api::Consistency::Stale),
    };
    let outcome = match after {
        None if consistency == Consistency::Stale => client.get_stale(route, &key, bounds).await.map(Some),
        None => client.get(route, &key, level).await.map(Some),
        Some(after) => client.poll(route, &key, wait, after, level).await,
    };
    match outcome {
        Ok(None) => {
            let mut done = ClientEvent::new(state.process, EventType::Fail, Function::Read, &key, Value::Null);
            done.consistency = Some(consistency);
            done.after = after;
            done.error = Some("not_modified".to_string());
            recorder.client(done);
            false
        }
        Ok(Some(answer)) => {
            let value = answer.value.as_ref().map_or(Value::Null, |record| Value::Str(record.value.clone()));
            let mut done = ClientEvent::new(state.process, EventType::Ok, Function::Read, &key, value);
            done.revision = Some(answer.revision);
            done.mod_revision = answer.value.as_ref().map(|record| record.mod_revision);
            done.consistency = Some(consistency);
            done.after = after;
            done.node = answer.node;
            if consistency == Consistency::Stale {
                done.last_contact_ms = answer.staleness.last_contact_ms;
                done.lag = answer.staleness.lag;
            }
            recorder.client(done);
            state.revision = state.revision.max(answer.revision);
            if consistency != Consistency::Stale {
                let seen = answer.value.map_or((None, 0), |record| (Some(record.value), record.mod_revision));
                state.seen.insert(key, seen);
            }
            false
        }
        Err(error) => {
            let mut done = ClientEvent::new(state.process, EventType::Fail, Function::Read, &key, Value::Null);
            done.consistency = Some(consistency);
            done.after = after;
            done.error = Some(error_code(&error));
            recorder.client(done);
            false
        }
    }
}

/// Records a failed mutation: `fail` when it certainly did not apply, `info` otherwise.
fn failed(recorder: &Recorder, process: u64, f: Function, key: &str, input: Value, error: &ClientError) -> bool {
    let unknown = !error.is_definite();
    let kind = if unknown { EventType::Info } else { EventType::Fail };
    let mut done = ClientEvent::new(process, kind, f, key, input);
    done.error = Some(error_code(error));
    recorder.client(done);
    unknown
}

fn error_code(error: &ClientError) -> String {
    match error {
        ClientError::Rejected { code, .. } => code.clone(),
        ClientError::Mismatch { .. } => "revision_mismatch".to_string(),
        ClientError::OutcomeUnknown { .. } => "outcome_unknown".to_string(),
        ClientError::Unavailable { .. } => "unavailable".to_string(),
        ClientError::Compacted { .. } => "revision_compacted".to_string(),
        ClientError::Protocol(_) => "protocol".to_string(),
    }
}

impl ClientState {
    fn fresh_value(&mut self) -> String {
        self.written += 1;
        format!("{}.{}", self.process, self.written)
    }
}
