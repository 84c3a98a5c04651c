//! Parsing, validation and pairing, on the examples from the format description and on every
//! kind of malformed line.

use super::*;
use crate::testing::{history, try_history};

/// Goal: the exact lines from the format description parse, pair, and ignore unknown fields.
/// Method: parse them and inspect the operation and the fault.
#[test]
fn documented_examples_parse_and_pair_into_operations() {
    let text = r#"{"index":0,"time":1234567,"process":3,"type":"invoke","f":"write","key":"k1","value":"v7"}
{"index":1,"time":1234600,"process":"nemesis","type":"info","f":"start","fault":"partition","value":"{1,2} | {3}"}
{"index":5,"time":1240011,"process":3,"type":"ok","f":"write","key":"k1","value":"v7","revision":42,"shiny_new_field":[1,2]}
{"index":6,"time":1240012,"process":"nemesis","type":"info","f":"stop","fault":"partition"}
"#;
    let history = parse_history(text.as_bytes()).unwrap();
    let op = &history.operations[0];
    assert_eq!((op.process, op.f, op.key.as_str(), op.outcome), (3, Function::Write, "k1", Outcome::Ok));
    assert_eq!((op.invoke_index, op.complete_index, op.revision), (0, Some(5), Some(42)));
    assert_eq!((op.start_time, op.end_time), (1_234_567, Some(1_240_011)));
    assert_eq!(op.written_value(), Some("v7"));
    assert_eq!(history.faults[0].value.as_deref(), Some("{1,2} | {3}"));
    assert_eq!(history.faults[0].stop_index, Some(6));
}

/// Goal: every value shape of the format is typed correctly. Method: one operation of each kind.
#[test]
fn values_are_typed_by_function() {
    let history = history(
        "p0 invoke cas x null a
         p0 ok cas x null a rev=1
         p1 invoke read x cons=lease node=2
         p1 ok read x a rev=1 mod=1
         p2 invoke delete x
         p2 ok delete x true rev=2
         p3 invoke read x
         p3 ok read x null rev=2",
    );
    let ops = &history.operations;
    assert_eq!(ops[0].cas_expected(), Some(None));
    assert_eq!(ops[1].read_value(), Some(Some("a")));
    assert_eq!((ops[1].consistency, ops[1].node, ops[1].mod_revision), (Some(Consistency::Lease), Some(2), Some(1)));
    assert_eq!(ops[2].deleted(), Some(true));
    assert_eq!(ops[3].read_value(), Some(None));
}

/// Goal: an info completion and an invoke still pending at the end both mean "unknown, forever".
#[test]
fn info_and_pending_operations_end_at_infinity() {
    let history = history(
        "p0 invoke write x a
         p0 info write x a err=timeout
         p1 invoke write x b",
    );
    for op in &history.operations {
        assert_eq!((op.outcome, op.complete_index, op.end_time), (Outcome::Info, None, None));
    }
    assert_eq!(history.operations[0].error.as_deref(), Some("timeout"));
}

fn malformed(script: &str) -> (usize, Malformation) {
    match try_history(script) {
        Err(MalformedHistory::Line { line, problem }) => (line, problem),
        other => panic!("expected a malformed line, got {other:?}"),
    }
}

/// Goal: each malformation is reported with the 1-based line of the offending event.
#[test]
fn malformed_lines_are_reported_with_their_line_numbers() {
    let (line, problem) = malformed("p0 invoke write x a\np0 fail write x a\np0 bogus write x a");
    assert_eq!((line, problem), (3, Malformation::UnknownType("bogus".to_owned())));
    let (line, problem) = malformed("p0 invoke append x a");
    assert_eq!((line, problem), (1, Malformation::UnknownFunction("append".to_owned())));
    let (line, problem) = malformed("p0 invoke read x\np0 ok read x a\np0 ok read x a");
    assert_eq!((line, problem), (3, Malformation::CompletionWithoutInvoke(0)));
    let (line, problem) = malformed("p0 invoke read x\np0 ok write x a");
    assert_eq!((line, problem), (2, Malformation::CompletionMismatch { field: "f", invoke_line: 1 }));
    let (line, problem) = malformed("p0 invoke read x\np0 ok read y a");
    assert_eq!((line, problem), (2, Malformation::CompletionMismatch { field: "key", invoke_line: 1 }));
    let (line, problem) = malformed("p0 invoke write x a\np0 ok write x b");
    assert_eq!((line, problem), (2, Malformation::CompletionMismatch { field: "value", invoke_line: 1 }));
    let (line, problem) = malformed("p0 invoke read x\np1 invoke read x\np0 invoke read x");
    assert_eq!((line, problem), (3, Malformation::InvokeWhilePending { process: 0, invoke_line: 1 }));
    let (line, problem) = malformed("p0 invoke read x\np0 info read x\np0 invoke read x");
    assert_eq!((line, problem), (3, Malformation::InvokeAfterInfo { process: 0, info_line: 2 }));
    let (line, problem) = malformed("p0 invoke write x");
    assert_eq!((line, problem), (1, Malformation::MissingField("value")));
    let (line, problem) = malformed("nemesis stop partition");
    assert_eq!((line, problem), (1, Malformation::StopWithoutStart("partition".to_owned())));
}

/// Goal: index and time ordering, missing fields and broken JSON are malformed, and blank lines
/// still count towards line numbers.
#[test]
fn ordering_and_syntax_errors_are_malformed() {
    let at = |text: &str| match parse_history(text.as_bytes()) {
        Err(MalformedHistory::Line { line, problem }) => (line, problem),
        other => panic!("expected a malformed line, got {other:?}"),
    };
    let invoke = |index: u64, time: u64, process: u64| {
        format!(r#"{{"index":{index},"time":{time},"process":{process},"type":"invoke","f":"read","key":"x"}}"#)
    };
    let text = format!("{}\n\n{}\n", invoke(4, 10, 0), invoke(4, 11, 1));
    assert_eq!(at(&text), (3, Malformation::IndexNotIncreasing { previous: 4, index: 4 }));
    let text = format!("{}\n{}\n", invoke(4, 10, 0), invoke(5, 9, 1));
    assert_eq!(at(&text), (2, Malformation::TimeDecreasing { previous: 10, time: 9 }));
    let text = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"read"}"#;
    assert_eq!(at(text), (1, Malformation::MissingField("key")));
    let text = r#"{"index":0,"time":1,"process":-2,"type":"invoke","f":"read","key":"x"}"#;
    assert!(matches!(at(text), (1, Malformation::InvalidField { field: "process", .. })));
    assert!(matches!(at("{\"index\":0,"), (1, Malformation::NotJson(_))));
    let text = r#"{"index":0,"time":"soon","process":0,"type":"invoke","f":"read","key":"x"}"#;
    assert!(matches!(at(text), (1, Malformation::NotJson(_))));
}

/// Goal: the watcher lines and the long-poll field from the format description parse into
/// typed events, stay out of the operations, and keep their line numbers.
/// Method: parse the documented shapes and inspect `watch_lines` and the read's `after`.
#[test]
fn watcher_lines_and_long_polls_parse() {
    let text = r#"{"index":0,"time":10,"process":"watch:3","type":"info","f":"resume","revision":41,"node":2,"prefix":""}
{"index":1,"time":11,"process":3,"type":"invoke","f":"read","key":"k1","after":41}
{"index":2,"time":12,"process":"watch:3","type":"info","f":"event","key":"k1","action":"put","value":"v7","revision":42,"node":2}
{"index":3,"time":13,"process":"watch:3","type":"info","f":"event","key":"k1","action":"delete","value":null,"revision":43}
{"index":4,"time":14,"process":3,"type":"ok","f":"read","key":"k1","value":null,"revision":43,"after":41}
{"index":5,"time":15,"process":"watch:3","type":"info","f":"compacted","revision":41,"value":57}
"#;
    let history = parse_history(text.as_bytes()).unwrap();
    assert_eq!(history.operations.len(), 1);
    assert_eq!((history.operations[0].after, history.operations[0].revision), (Some(41), Some(43)));
    let kinds: Vec<(usize, u64, &WatchKind)> =
        history.watch_lines.iter().map(|line| (line.line, line.event.revision, &line.event.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, 41, &WatchKind::Resume { prefix: String::new() }),
            (3, 42, &WatchKind::Event { key: "k1".to_owned(), action: WatchAction::Put("v7".to_owned()) }),
            (4, 43, &WatchKind::Event { key: "k1".to_owned(), action: WatchAction::Delete }),
            (6, 41, &WatchKind::Compacted { compact_revision: Some(57) }),
        ]
    );
    assert_eq!(history.watch_lines[1].event.node, Some(2));
    assert_eq!(history.events[0].process(), Process::Watcher(3));
}

/// Goal: every malformed watcher or long-poll line is reported with its line number.
/// Method: one bad line after a valid start, for each rule in the format description.
#[test]
fn malformed_watcher_lines_are_reported_with_their_line_numbers() {
    let at = |lines: &[&str]| {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(index, fields)| {
                format!("{{\"index\":{index},\"time\":{index},\"process\":\"watch:3\",\"type\":\"info\",{fields}}}\n")
            })
            .collect();
        match parse_history(text.as_bytes()) {
            Err(MalformedHistory::Line { line, problem }) => (line, problem),
            other => panic!("expected a malformed line, got {other:?}"),
        }
    };
    let resume = r#""f":"resume","revision":1,"prefix":"""#;
    let event = r#""f":"event","key":"k","action":"put","value":"v","revision":1"#;
    assert_eq!(at(&[event]), (1, Malformation::WatchBeforeResume(3)));
    assert_eq!(at(&[r#""f":"compacted","revision":1,"value":5"#]), (1, Malformation::WatchBeforeResume(3)));
    assert_eq!(
        at(&[resume, r#""f":"event","key":"k","action":"put","value":"v""#]).1,
        Malformation::MissingField("revision")
    );
    assert_eq!(at(&[resume, r#""f":"event","action":"delete","revision":2"#]), (2, Malformation::MissingField("key")));
    assert_eq!(at(&[resume, r#""f":"event","key":"k","revision":2"#]), (2, Malformation::MissingField("action")));
    assert_eq!(
        at(&[resume, r#""f":"event","key":"k","action":"put","revision":2"#]).1,
        Malformation::MissingField("value")
    );
    assert!(matches!(
        at(&[resume, r#""f":"event","key":"k","action":"bump","revision":2"#]),
        (2, Malformation::InvalidField { field: "action", .. })
    ));
    assert_eq!(at(&[resume, r#""f":"replay","revision":2"#]), (2, Malformation::UnknownFunction("replay".to_owned())));
    assert_eq!(at(&[r#""f":"resume","revision":1"#]), (1, Malformation::MissingField("prefix")));
    assert!(matches!(
        at(&[resume, r#""f":"resume","revision":2,"prefix":"k""#]),
        (2, Malformation::InvalidField { field: "prefix", .. })
    ));
    let text = r#"{"index":0,"time":0,"process":"watch:3","type":"ok","f":"resume","revision":1,"prefix":""}"#;
    assert!(matches!(
        parse_history(text.as_bytes()),
        Err(MalformedHistory::Line { line: 1, problem: Malformation::UnknownType(_) })
    ));
    let text = r#"{"index":0,"time":0,"process":"watch:x","type":"info","f":"resume","revision":1,"prefix":""}"#;
    assert!(matches!(
        parse_history(text.as_bytes()),
        Err(MalformedHistory::Line { line: 1, problem: Malformation::InvalidField { field: "process", .. } })
    ));
    let (line, problem) = malformed("p0 invoke write x a after=3");
    assert!(matches!((line, problem), (1, Malformation::InvalidField { field: "after", .. })));
    let (line, problem) = malformed("p0 invoke read x after=3\np0 ok read x a rev=4 after=2");
    assert_eq!((line, problem), (2, Malformation::CompletionMismatch { field: "after", invoke_line: 1 }));
}
