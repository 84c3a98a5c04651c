//! Writing histories as JSON Lines, byte for byte deterministically.
//!
//! Fields are written in one fixed order (the declaration order of [`Line`]) and absent optional
//! fields are left out, so identical events always produce identical bytes: a simulator run's
//! history can be compared across replays of the same seed with `cmp`.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value as Json;

use super::{Event, EventBody, EventType, FaultPhase, Function, Value};

/// Records events to a sink, assigning consecutive indices from 0.
///
/// ### To ensure correctness
/// Callers must record events in the order they happened, with non-decreasing times; the writer
/// asserts the latter because a history that goes back in time is a harness bug.
#[derive(Debug)]
pub struct HistoryWriter<W: Write> {
    /// Where the lines go.
    sink: W,
    /// The index the next event gets.
    next_index: u64,
    /// The time of the last recorded event.
    last_time: u64,
}

impl<W: Write> HistoryWriter<W> {
    /// A writer whose first event gets index 0.
    pub fn new(sink: W) -> HistoryWriter<W> {
        HistoryWriter { sink, next_index: 0, last_time: 0 }
    }

    /// What has been written so far.
    pub fn sink(&self) -> &W {
        &self.sink
    }

    /// Writes one event at `time` (nanoseconds) and returns the index it was given.
    pub fn record(&mut self, time: u64, body: EventBody) -> io::Result<u64> {
        assert!(time >= self.last_time, "history time went back from {} to {time}", self.last_time);
        let index = self.next_index;
        write_event(&mut self.sink, &Event { index, time, body })?;
        self.next_index += 1;
        self.last_time = time;
        Ok(index)
    }

    /// Flushes and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.sink.flush()?;
        Ok(self.sink)
    }
}

/// One output line; field order here is the order on the wire.
#[derive(Serialize)]
struct Line<'a> {
    index: u64,
    time: u64,
    process: Json,
    #[serde(rename = "type")]
    event_type: &'static str,
    f: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    value: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mod_revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consistency: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(rename = "final", skip_serializing_if = "std::ops::Not::not")]
    is_final: bool,
}

/// Writes one event as a JSON line, keeping its index and time.
pub fn write_event<W: Write>(sink: &mut W, event: &Event) -> io::Result<()> {
    let line = match &event.body {
        EventBody::Client(client) => Line {
            index: event.index,
            time: event.time,
            process: Json::from(client.process),
            event_type: type_name(client.event_type),
            f: function_name(client.f),
            fault: None,
            key: Some(&client.key),
            value: value_json(&client.value),
            revision: client.revision,
            mod_revision: client.mod_revision,
            consistency: client.consistency.map(super::consistency_name),
            node: client.node,
            error: client.error.as_deref(),
            is_final: client.is_final,
        },
        EventBody::Nemesis(nemesis) => Line {
            index: event.index,
            time: event.time,
            process: Json::from("nemesis"),
            event_type: "info",
            f: match nemesis.phase {
                FaultPhase::Start => "start",
                FaultPhase::Stop => "stop",
            },
            fault: Some(&nemesis.fault),
            key: None,
            value: nemesis.value.as_deref().map_or(Json::Null, Json::from),
            revision: None,
            mod_revision: None,
            consistency: None,
            node: None,
            error: None,
            is_final: false,
        },
    };
    serde_json::to_writer(&mut *sink, &line)?;
    sink.write_all(b"\n")
}

fn type_name(event_type: EventType) -> &'static str {
    match event_type {
        EventType::Invoke => "invoke",
        EventType::Ok => "ok",
        EventType::Fail => "fail",
        EventType::Info => "info",
    }
}

fn function_name(f: Function) -> &'static str {
    match f {
        Function::Read => "read",
        Function::Write => "write",
        Function::Cas => "cas",
        Function::Delete => "delete",
    }
}

fn value_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Str(text) => Json::from(text.as_str()),
        Value::Cas { expected, new } => {
            Json::Array(vec![expected.as_deref().map_or(Json::Null, Json::from), Json::from(new.as_str())])
        }
        Value::Deleted(deleted) => Json::Bool(*deleted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ClientEvent, parse_history};

    /// Goal: the writer's output reads back to the same events, and writing twice gives the same
    /// bytes. Method: record a write invoke and completion, parse, compare.
    #[test]
    fn written_history_reads_back_identically_and_deterministically() {
        let body = |event_type, revision| {
            EventBody::Client(ClientEvent {
                process: 3,
                event_type,
                f: Function::Write,
                key: "k1".to_owned(),
                value: Value::Str("v7".to_owned()),
                revision,
                mod_revision: None,
                consistency: None,
                node: None,
                error: None,
                is_final: false,
            })
        };
        let record = || {
            let mut writer = HistoryWriter::new(Vec::new());
            writer.record(1_234_567, body(EventType::Invoke, None)).unwrap();
            writer.record(1_240_011, body(EventType::Ok, Some(42))).unwrap();
            writer.finish().unwrap()
        };
        let bytes = record();
        assert_eq!(bytes, record());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"index":0,"time":1234567,"process":3,"type":"invoke","f":"write","key":"k1","value":"v7"}"#
        );
        let history = parse_history(bytes.as_slice()).unwrap();
        let mut again = Vec::new();
        for event in &history.events {
            write_event(&mut again, event).unwrap();
        }
        assert_eq!(again, bytes);
        assert_eq!(history.operations[0].revision, Some(42));
    }
}
