//! Reading a JSON Lines history into validated events.
//!
//! Each line is first decoded into [`RawEvent`], where every field is optional, so that a missing
//! field gets a message naming it; fields this crate does not know are ignored, so newer writers
//! stay readable by older checkers.

use std::io::BufRead;

use serde::Deserialize;
use serde_json::Value as Json;

use super::{
    ClientEvent, Consistency, Event, EventBody, EventType, FaultPhase, Function, History, HistoryBuilder, Malformation,
    MalformedHistory, NemesisEvent, Value, WatchAction, WatchEvent, WatchKind,
};

/// Parses and validates a JSON Lines history. Blank lines are skipped but still counted, so the
/// line numbers in errors match the file.
pub fn parse_history<R: BufRead>(reader: R) -> Result<History, MalformedHistory> {
    let mut builder = HistoryBuilder::default();
    for (position, line) in reader.lines().enumerate() {
        let number = position + 1;
        let at_line = |problem| MalformedHistory::Line { line: number, problem };
        let text = line.map_err(|error| at_line(Malformation::Io(error.to_string())))?;
        if text.trim().is_empty() {
            continue;
        }
        let event = parse_event(&text).map_err(at_line)?;
        builder.push(number, event)?;
    }
    Ok(builder.finish())
}

/// One line with every field optional; `serde` ignores the fields not named here.
#[derive(Deserialize)]
struct RawEvent {
    index: Option<u64>,
    time: Option<u64>,
    process: Option<Json>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    f: Option<String>,
    key: Option<String>,
    value: Option<Json>,
    revision: Option<u64>,
    mod_revision: Option<u64>,
    consistency: Option<String>,
    node: Option<u64>,
    error: Option<String>,
    #[serde(rename = "final")]
    is_final: Option<bool>,
    fault: Option<String>,
    after: Option<u64>,
    max_stale_ms: Option<u64>,
    max_lag: Option<u64>,
    last_contact_ms: Option<u64>,
    lag: Option<u64>,
    action: Option<String>,
    prefix: Option<String>,
}

/// Decodes and validates the fields of one line (ordering across lines is the builder's job).
fn parse_event(text: &str) -> Result<Event, Malformation> {
    let raw: RawEvent = serde_json::from_str(text).map_err(|error| Malformation::NotJson(error.to_string()))?;
    let index = raw.index.ok_or(Malformation::MissingField("index"))?;
    let time = raw.time.ok_or(Malformation::MissingField("time"))?;
    let type_name = raw.event_type.as_deref().ok_or(Malformation::MissingField("type"))?;
    let event_type = match type_name {
        "invoke" => EventType::Invoke,
        "ok" => EventType::Ok,
        "fail" => EventType::Fail,
        "info" => EventType::Info,
        other => return Err(Malformation::UnknownType(other.to_owned())),
    };
    let body = match raw.process.as_ref().ok_or(Malformation::MissingField("process"))? {
        Json::String(name) if name == "nemesis" => parse_nemesis(&raw, event_type)?,
        Json::String(name) if name.starts_with(WATCHER_PREFIX) => {
            let watcher = name[WATCHER_PREFIX.len()..].parse().map_err(|_| Malformation::InvalidField {
                field: "process",
                reason: format!("{name:?} is not \"watch:\" and a non-negative integer"),
            })?;
            EventBody::Watch(parse_watch(&raw, watcher, event_type)?)
        }
        Json::Number(number) => {
            let process = number.as_u64().ok_or_else(|| Malformation::InvalidField {
                field: "process",
                reason: format!("{number} is not a non-negative integer"),
            })?;
            EventBody::Client(parse_client(&raw, process, event_type)?)
        }
        other => {
            return Err(Malformation::InvalidField {
                field: "process",
                reason: format!("{other} is neither an integer, \"nemesis\" nor \"watch:N\""),
            });
        }
    };
    Ok(Event { index, time, body })
}

fn parse_nemesis(raw: &RawEvent, event_type: EventType) -> Result<EventBody, Malformation> {
    if event_type != EventType::Info {
        return Err(Malformation::UnknownType(format!("{event_type:?} (nemesis events are info)")));
    }
    let phase = match raw.f.as_deref().ok_or(Malformation::MissingField("f"))? {
        "start" => FaultPhase::Start,
        "stop" => FaultPhase::Stop,
        other => return Err(Malformation::UnknownFunction(other.to_owned())),
    };
    let fault = raw.fault.clone().ok_or(Malformation::MissingField("fault"))?;
    let value = match &raw.value {
        None => None,
        Some(Json::String(text)) => Some(text.clone()),
        Some(other) => Some(other.to_string()),
    };
    Ok(EventBody::Nemesis(NemesisEvent { phase, fault, value }))
}

/// How a watcher's `process` starts: `"watch:3"` is watcher 3.
const WATCHER_PREFIX: &str = "watch:";

/// A watcher line: `info` only; `resume` needs `revision` and `prefix`, `event` needs `revision`,
/// `key`, `action` and (for puts) a string `value`, `compacted` needs `revision` and takes the
/// oldest retained revision as an integer `value`.
fn parse_watch(raw: &RawEvent, watcher: u64, event_type: EventType) -> Result<WatchEvent, Malformation> {
    if event_type != EventType::Info {
        return Err(Malformation::UnknownType(format!("{event_type:?} (watcher events are info)")));
    }
    let f = raw.f.as_deref().ok_or(Malformation::MissingField("f"))?;
    let kind = match f {
        "resume" => WatchKind::Resume { prefix: raw.prefix.clone().ok_or(Malformation::MissingField("prefix"))? },
        "event" => {
            let key = raw.key.clone().ok_or(Malformation::MissingField("key"))?;
            WatchKind::Event { key, action: parse_action(raw)? }
        }
        "compacted" => {
            let compact_revision = match &raw.value {
                None | Some(Json::Null) => None,
                Some(value) => Some(value.as_u64().ok_or_else(|| Malformation::InvalidField {
                    field: "value",
                    reason: "a compaction's value is the oldest retained revision, an integer".to_owned(),
                })?),
            };
            WatchKind::Compacted { compact_revision }
        }
        other => return Err(Malformation::UnknownFunction(other.to_owned())),
    };
    let revision = raw.revision.ok_or(Malformation::MissingField("revision"))?;
    Ok(WatchEvent { watcher, revision, node: raw.node, kind })
}

/// A delivered change's `action` with its `value`: a string for `put`, null for `delete`.
fn parse_action(raw: &RawEvent) -> Result<WatchAction, Malformation> {
    let invalid = |reason: &str| Malformation::InvalidField { field: "value", reason: reason.to_owned() };
    match (raw.action.as_deref().ok_or(Malformation::MissingField("action"))?, &raw.value) {
        ("put", Some(Json::String(value))) => Ok(WatchAction::Put(value.clone())),
        ("put", None | Some(Json::Null)) => Err(Malformation::MissingField("value")),
        ("put", Some(_)) => Err(invalid("a put's value must be a string")),
        ("delete", None | Some(Json::Null)) => Ok(WatchAction::Delete),
        ("delete", Some(_)) => Err(invalid("a delete's value must be null")),
        (other, _) => Err(Malformation::InvalidField {
            field: "action",
            reason: format!("{other:?} is neither \"put\" nor \"delete\""),
        }),
    }
}

fn parse_client(raw: &RawEvent, process: u64, event_type: EventType) -> Result<ClientEvent, Malformation> {
    let f = match raw.f.as_deref().ok_or(Malformation::MissingField("f"))? {
        "read" => Function::Read,
        "write" => Function::Write,
        "cas" => Function::Cas,
        "delete" => Function::Delete,
        other => return Err(Malformation::UnknownFunction(other.to_owned())),
    };
    let key = raw.key.clone().ok_or(Malformation::MissingField("key"))?;
    let consistency = match raw.consistency.as_deref() {
        None => None,
        Some("linearizable") => Some(Consistency::Linearizable),
        Some("lease") => Some(Consistency::Lease),
        Some("stale") => Some(Consistency::Stale),
        Some(other) => {
            return Err(Malformation::InvalidField {
                field: "consistency",
                reason: format!("{other:?} is not linearizable, lease or stale"),
            });
        }
    };
    Ok(ClientEvent {
        process,
        event_type,
        f,
        key,
        value: parse_value(f, event_type, raw.value.as_ref())?,
        revision: raw.revision,
        mod_revision: raw.mod_revision,
        consistency,
        node: raw.node,
        error: raw.error.clone(),
        is_final: raw.is_final.unwrap_or(false),
        after: raw.after,
        max_stale_ms: raw.max_stale_ms,
        max_lag: raw.max_lag,
        last_contact_ms: raw.last_contact_ms,
        lag: raw.lag,
    })
}

/// Types `value` by `f`: a write carries a string, a compare-and-set `[expected, new]`, a read
/// completion a string or null, and a delete completion an optional bool.
fn parse_value(f: Function, event_type: EventType, value: Option<&Json>) -> Result<Value, Malformation> {
    let invalid = |reason: &str| Malformation::InvalidField { field: "value", reason: reason.to_owned() };
    let invoke = event_type == EventType::Invoke;
    match (f, value) {
        (Function::Write | Function::Cas, None) if invoke => Err(Malformation::MissingField("value")),
        (_, None) => Ok(Value::Null),
        (Function::Write, Some(Json::String(text))) => Ok(Value::Str(text.clone())),
        (Function::Write, Some(_)) => Err(invalid("a write's value must be a string")),
        (Function::Cas, Some(Json::Array(pair))) => match pair.as_slice() {
            [Json::Null, Json::String(new)] => Ok(Value::Cas { expected: None, new: new.clone() }),
            [Json::String(expected), Json::String(new)] => {
                Ok(Value::Cas { expected: Some(expected.clone()), new: new.clone() })
            }
            _ => Err(invalid("a cas value must be [expected string or null, new string]")),
        },
        (Function::Cas, Some(_)) => Err(invalid("a cas value must be [expected, new]")),
        (Function::Read, Some(_)) if invoke => Ok(Value::Null),
        (Function::Read, Some(Json::String(text))) => Ok(Value::Str(text.clone())),
        (Function::Read, Some(_)) if event_type != EventType::Ok => Ok(Value::Null),
        (Function::Read, Some(_)) => Err(invalid("a read returns a string or null")),
        (Function::Delete, Some(Json::Bool(deleted))) if !invoke => Ok(Value::Deleted(*deleted)),
        (Function::Delete, Some(_)) => Err(invalid("a delete carries null, or a bool on completion")),
    }
}
