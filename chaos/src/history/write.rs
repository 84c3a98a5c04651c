//! Writing histories as JSON Lines, byte for byte deterministically.
//!
//! Fields are written in one fixed order (the declaration order of [`Line`]) and absent optional
//! fields are left out, so identical events always produce identical bytes: a simulator run's
//! history can be compared across replays of the same seed with `cmp`.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value as Json;

use super::{Event, EventBody, EventType, FaultPhase, Function, Value, WatchAction, WatchEvent, WatchKind};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    /// Always written for client and nemesis lines (`null` when empty), so their bytes are the
    /// same as before watchers existed; left out of a watcher's `resume`.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mod_revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_stale_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_lag: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_contact_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consistency: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<&'a str>,
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
            action: None,
            value: Some(value_json(&client.value)),
            revision: client.revision,
            mod_revision: client.mod_revision,
            after: client.after,
            max_stale_ms: client.max_stale_ms,
            max_lag: client.max_lag,
            last_contact_ms: client.last_contact_ms,
            lag: client.lag,
            consistency: client.consistency.map(super::consistency_name),
            node: client.node,
            prefix: None,
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
            action: None,
            value: Some(nemesis.value.as_deref().map_or(Json::Null, Json::from)),
            revision: None,
            mod_revision: None,
            after: None,
            max_stale_ms: None,
            max_lag: None,
            last_contact_ms: None,
            lag: None,
            consistency: None,
            node: None,
            prefix: None,
            error: None,
            is_final: false,
        },
        EventBody::Watch(watch) => watch_line(event, watch),
    };
    serde_json::to_writer(&mut *sink, &line)?;
    sink.write_all(b"\n")
}

/// A watcher's line: `resume` carries `prefix`, `event` carries `key`, `action` and `value`
/// (`null` for a delete), `compacted` carries the oldest retained revision as `value`.
fn watch_line<'a>(event: &Event, watch: &'a WatchEvent) -> Line<'a> {
    let (f, key, action, value, prefix) = match &watch.kind {
        WatchKind::Resume { prefix } => ("resume", None, None, None, Some(prefix.as_str())),
        WatchKind::Event { key, action } => {
            let (name, value) = match action {
                WatchAction::Put(value) => ("put", Json::from(value.as_str())),
                WatchAction::Delete => ("delete", Json::Null),
            };
            ("event", Some(key.as_str()), Some(name), Some(value), None)
        }
        WatchKind::Compacted { compact_revision } => ("compacted", None, None, compact_revision.map(Json::from), None),
    };
    Line {
        index: event.index,
        time: event.time,
        process: Json::from(format!("watch:{}", watch.watcher)),
        event_type: "info",
        f,
        fault: None,
        key,
        action,
        value,
        revision: Some(watch.revision),
        mod_revision: None,
        after: None,
        max_stale_ms: None,
        max_lag: None,
        last_contact_ms: None,
        lag: None,
        consistency: None,
        node: watch.node,
        prefix,
        error: None,
        is_final: false,
    }
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
            let write = ClientEvent::new(3, event_type, Function::Write, "k1", Value::Str("v7".to_owned()));
            EventBody::Client(ClientEvent { revision, ..write })
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

    /// Goal: watcher lines and long polls are written in the documented shapes and read back to
    /// the same events. Method: record one of each, compare the text, parse, write again.
    #[test]
    fn watcher_lines_and_long_polls_round_trip() {
        let watch = |revision, kind| EventBody::Watch(WatchEvent { watcher: 3, revision, node: Some(2), kind });
        let mut writer = HistoryWriter::new(Vec::new());
        writer.record(10, watch(41, WatchKind::Resume { prefix: String::new() })).unwrap();
        let put = WatchKind::Event { key: "k1".to_owned(), action: WatchAction::Put("v7".to_owned()) };
        writer.record(11, watch(42, put)).unwrap();
        writer.record(12, watch(43, WatchKind::Event { key: "k1".to_owned(), action: WatchAction::Delete })).unwrap();
        writer.record(13, watch(41, WatchKind::Compacted { compact_revision: Some(57) })).unwrap();
        let poll = ClientEvent {
            after: Some(41),
            ..ClientEvent::new(5, EventType::Invoke, Function::Read, "k1", Value::Null)
        };
        writer.record(14, EventBody::Client(poll)).unwrap();
        let bytes = writer.finish().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..2],
            [
                r#"{"index":0,"time":10,"process":"watch:3","type":"info","f":"resume","revision":41,"node":2,"prefix":""}"#,
                r#"{"index":1,"time":11,"process":"watch:3","type":"info","f":"event","key":"k1","action":"put","value":"v7","revision":42,"node":2}"#,
            ]
        );
        assert!(lines[2].contains(r#""action":"delete","value":null,"revision":43"#), "{}", lines[2]);
        assert!(lines[3].contains(r#""f":"compacted","value":57,"revision":41"#), "{}", lines[3]);
        assert!(lines[4].ends_with(r#""key":"k1","value":null,"after":41}"#), "{}", lines[4]);
        let history = parse_history(bytes.as_slice()).unwrap();
        let mut again = Vec::new();
        for event in &history.events {
            write_event(&mut again, event).unwrap();
        }
        assert_eq!(again, bytes);
        assert_eq!(history.watch_lines.len(), 4);
    }
}
