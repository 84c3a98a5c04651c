//! Test fixtures: hand-written histories in a compact line format.
//!
//! Each line is `<process> <type> <f> <key> [values…] [name=value…]`, e.g.
//! `p1 ok read x a rev=3 mod=2 node=1 cons=stale`. Values: a write takes one, a cas two
//! (`null` for absent), a read completion one (or `null`), a delete completion `true`/`false`.
//! Named fields: `rev`, `mod`, `node`, `cons`, `err`, `final`, `after`, and for bounded stale
//! reads `max_stale` and `contact` (milliseconds), `max_lag` and `lag`. Nemesis lines are
//! `nemesis start|stop <fault> [description]`. Watcher lines (process `w3` is `watch:3`) are
//! `w3 resume <rev> [prefix=P] [node=N]` (prefix `""` unless given),
//! `w3 event put <key> <value> <rev> [node=N]`, `w3 event delete <key> <rev> [node=N]` and
//! `w3 compacted <rev> <oldest retained rev>`. The lines are turned into JSON Lines with
//! consecutive indices and times (1 ms apart) and parsed, so the parser is exercised too.

use crate::history::{History, MalformedHistory, parse_history};

/// The JSON Lines text for `script`.
pub(crate) fn jsonl(script: &str) -> String {
    let mut out = String::new();
    for (index, line) in script.lines().map(str::trim).filter(|line| !line.is_empty()).enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let time = 1_000_000 * (index as u64 + 1);
        let json = if words[0] == "nemesis" {
            let value = words.get(3..).map(|rest| rest.join(" ")).unwrap_or_default();
            format!(
                r#"{{"index":{index},"time":{time},"process":"nemesis","type":"info","f":"{}","fault":"{}","value":{value:?}}}"#,
                words[1], words[2]
            )
        } else if words[0].starts_with('w') {
            watch_line(index, time, &words)
        } else {
            client_line(index, time, &words)
        };
        out.push_str(&json);
        out.push('\n');
    }
    out
}

fn client_line(index: usize, time: u64, words: &[&str]) -> String {
    let process: u64 = words[0].trim_start_matches('p').parse().expect("process like p3");
    let (event_type, f, key) = (words[1], words[2], words[3]);
    let (named, values): (Vec<&str>, Vec<&str>) = words[4..].iter().partition(|word| word.contains('='));
    let quote = |value: &str| if value == "null" { "null".to_owned() } else { format!("{value:?}") };
    let value = match (f, values.as_slice()) {
        ("cas", [expected, new]) => format!("[{},{}]", quote(expected), quote(new)),
        ("delete", [deleted]) => (*deleted).to_owned(),
        (_, [value]) => quote(value),
        _ => "null".to_owned(),
    };
    let mut json = format!(
        r#"{{"index":{index},"time":{time},"process":{process},"type":"{event_type}","f":"{f}","key":"{key}","value":{value}"#
    );
    for pair in named {
        let (name, value) = pair.split_once('=').expect("name=value");
        let field = match name {
            "rev" => format!(r#","revision":{value}"#),
            "mod" => format!(r#","mod_revision":{value}"#),
            "node" => format!(r#","node":{value}"#),
            "cons" => format!(r#","consistency":"{value}""#),
            "err" => format!(r#","error":"{value}""#),
            "final" => format!(r#","final":{value}"#),
            "after" => format!(r#","after":{value}"#),
            "max_stale" => format!(r#","max_stale_ms":{value}"#),
            "max_lag" => format!(r#","max_lag":{value}"#),
            "contact" => format!(r#","last_contact_ms":{value}"#),
            "lag" => format!(r#","lag":{value}"#),
            other => panic!("unknown field {other}"),
        };
        json.push_str(&field);
    }
    json.push('}');
    json
}

fn watch_line(index: usize, time: u64, words: &[&str]) -> String {
    let watcher: u64 = words[0].trim_start_matches('w').parse().expect("watcher like w3");
    let (named, values): (Vec<&str>, Vec<&str>) = words[1..].iter().partition(|word| word.contains('='));
    let field = |name: &str| named.iter().find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='));
    let node = field("node").map_or(String::new(), |node| format!(r#","node":{node}"#));
    let fields = match values.as_slice() {
        ["resume", revision] => format!(r#""revision":{revision}{node},"prefix":{:?}"#, field("prefix").unwrap_or("")),
        ["event", "put", key, value, revision] => {
            format!(r#""key":"{key}","action":"put","value":"{value}","revision":{revision}{node}"#)
        }
        ["event", "delete", key, revision] => {
            format!(r#""key":"{key}","action":"delete","value":null,"revision":{revision}{node}"#)
        }
        ["compacted", revision, oldest] => format!(r#""revision":{revision},"value":{oldest}{node}"#),
        other => panic!("unknown watcher line {other:?}"),
    };
    format!(
        r#"{{"index":{index},"time":{time},"process":"watch:{watcher}","type":"info","f":"{}",{fields}}}"#,
        values[0]
    )
}

/// Parses `script`, panicking if it is malformed.
pub(crate) fn history(script: &str) -> History {
    try_history(script).expect("test history is well-formed")
}

/// Parses `script`.
pub(crate) fn try_history(script: &str) -> Result<History, MalformedHistory> {
    parse_history(jsonl(script).as_bytes())
}
