//! What the client commands print: short human text, or JSON with `--json`.

use cairn_http::wire::{DeleteBody, RecordBody, WatchEventBody};
use cairn_node::api::{ClusterView, MemberView, Status};
use serde::Serialize;

use super::Outcome;

fn json<T: Serialize>(value: &T) {
    println!("{}", serde_json::to_string(value).expect("answers serialize"));
}

/// A value as text, or a note that it is binary.
fn shown(record: &RecordBody) -> String {
    match record.value_encoding.as_deref() {
        Some("base64") => format!("<{} bytes of binary, base64 {}>", record.value.len() * 3 / 4, record.value),
        _ => record.value.clone(),
    }
}

fn labels(record: &RecordBody) -> String {
    record.labels.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(",")
}

pub fn record_written(record: &RecordBody, as_json: bool) -> Outcome {
    if as_json {
        json(record);
    } else {
        println!("OK {} (revision {}, version {})", record.key, record.mod_revision, record.version);
    }
    Outcome::Done
}

pub fn record(record: &RecordBody, as_json: bool) -> Outcome {
    if as_json {
        json(record);
    } else {
        println!("{}", shown(record));
    }
    Outcome::Done
}

pub fn mismatch(current: Option<&RecordBody>, as_json: bool) -> Outcome {
    match current {
        Some(current) if as_json => json(current),
        Some(current) => eprintln!("cairn: revision mismatch: {} is at revision {}", current.key, current.mod_revision),
        None => eprintln!("cairn: revision mismatch: the key does not exist"),
    }
    Outcome::Mismatch
}

pub fn deleted(key: &str, answer: &DeleteBody, as_json: bool) -> Outcome {
    if as_json {
        json(answer);
    } else if answer.deleted {
        println!("deleted {key} (revision {})", answer.revision);
    } else {
        println!("{key} did not exist (revision {})", answer.revision);
    }
    Outcome::Done
}

pub fn listing(records: &[RecordBody], total: usize, revision: u64, as_json: bool) -> Outcome {
    if as_json {
        json(&serde_json::json!({ "revision": revision, "total": total, "data": records }));
        return Outcome::Done;
    }
    let width = records.iter().map(|record| record.key.chars().count()).max().unwrap_or(3).max(3);
    println!("{:width$}  {:>8}  {:<24}  VALUE", "KEY", "REVISION", "LABELS");
    for record in records {
        let mut value = shown(record).replace('\n', "\\n");
        if value.chars().count() > 60 {
            value = value.chars().take(57).collect::<String>() + "...";
        }
        println!("{:width$}  {:>8}  {:<24}  {value}", record.key, record.mod_revision, labels(record));
    }
    println!("({} of {total} keys at revision {revision})", records.len());
    Outcome::Done
}

pub fn watch_event(event: &WatchEventBody, as_json: bool) {
    if as_json {
        json(event);
        return;
    }
    match &event.record {
        Some(record) => println!("{:>8}  PUT     {} = {}", event.revision, event.key, shown(record)),
        None => println!("{:>8}  DELETE  {}", event.revision, event.key),
    }
}

pub fn members(members: &[MemberView], as_json: bool) -> Outcome {
    if as_json {
        json(&members);
        return Outcome::Done;
    }
    println!("{:>4}  {:<22}  {:<22}  {:<7}  LEADER", "ID", "PEER", "HTTP", "ROLE");
    for member in members {
        let role = if member.voter { "voter" } else { "learner" };
        let leader = if member.leader { "*" } else { "" };
        println!("{:>4}  {:<22}  {:<22}  {role:<7}  {leader}", member.id, member.peer, member.http);
    }
    Outcome::Done
}

/// `cairn members`: one row per node raft or gossip knows.
pub fn cluster(cluster: &ClusterView, as_json: bool) -> Outcome {
    if as_json {
        json(cluster);
        return Outcome::Done;
    }
    println!(
        "{:>4}  {:<21}  {:<21}  {:<21}  {:<8}  {:<7}  {:>10}  {:>9}",
        "ID", "PEER", "HTTP", "GOSSIP", "RAFT", "GOSSIP", "GENERATION", "SEEN (MS)"
    );
    for node in &cluster.nodes {
        let raft = match &node.raft {
            Some(raft) if raft.leader => "leader",
            Some(raft) if raft.voter => "voter",
            Some(_) => "learner",
            None => "-",
        };
        let gossip = node.gossip.as_ref();
        let state = gossip.map_or("-".to_string(), |g| format!("{:?}", g.state).to_lowercase());
        let generation = gossip.map_or("-".to_string(), |g| g.generation.to_string());
        let seen = gossip.and_then(|g| g.last_seen_ms).map_or("-".to_string(), |ms| ms.to_string());
        let address = node.gossip_addr.as_deref().unwrap_or("-");
        println!(
            "{:>4}  {:<21}  {:<21}  {address:<21}  {raft:<8}  {state:<7}  {generation:>10}  {seen:>9}",
            node.id, node.peer, node.http
        );
    }
    Outcome::Done
}

pub fn status(status: &Status, as_json: bool) -> Outcome {
    if as_json {
        json(status);
        return Outcome::Done;
    }
    let leader = status.leader.map_or_else(|| "none".to_string(), |leader| leader.to_string());
    println!("node {} is {:?} in term {}; leader {leader}", status.id, status.role, status.term);
    println!("committed {} applied {} revision {}", status.commit_index, status.applied_index, status.revision);
    println!("snapshot at {} purged through {}", status.snapshot_index, status.purged_index);
    Outcome::Done
}
