//! One function per client command.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::{ClientError, Route, WatchItem};
use cairn_node::api::{Consistency, MemberKind};
use cairn_node::raft::Member;
use clap::{Args, Subcommand, ValueEnum};

use super::output;
use super::{ClientArgs, Outcome, connect, failure};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Level {
    Linearizable,
    Lease,
    Stale,
}

impl From<Level> for Consistency {
    fn from(level: Level) -> Consistency {
        match level {
            Level::Linearizable => Consistency::Linearizable,
            Level::Lease => Consistency::Lease,
            Level::Stale => Consistency::Stale,
        }
    }
}

#[derive(Debug, Args)]
pub struct PutArgs {
    pub key: String,
    /// The value; read from standard input when absent or `-`.
    pub value: Option<String>,
    /// A label `name=value` (repeatable); given labels replace the key's labels.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Only if the key's mod_revision is this (0: only if the key is absent).
    #[arg(long)]
    pub prev_revision: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    pub key: String,
    #[arg(long, value_enum, default_value = "linearizable")]
    pub consistency: Level,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct DelArgs {
    pub key: String,
    /// Only if the key's mod_revision is this.
    #[arg(long)]
    pub prev_revision: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Only keys with this label `name=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// At most this many keys (all of them by default, fetched page by page).
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, value_enum, default_value = "linearizable")]
    pub consistency: Level,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Only keys with this label `name=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Start at this revision (default: only changes from now on).
    #[arg(long)]
    pub from: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add node ID with its peer and HTTP addresses (idempotent); adding a learner again
    /// without --learner promotes it.
    Add {
        id: u64,
        #[arg(long)]
        peer: String,
        #[arg(long)]
        http: String,
        /// Add it as a learner: it replicates and serves stale reads but does not vote.
        #[arg(long)]
        learner: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove node ID from the cluster for good.
    Remove {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .ok_or_else(|| format!("label {text:?} is not name=value"))
}

fn value_or_stdin(value: Option<String>) -> std::io::Result<Bytes> {
    match value.as_deref() {
        Some("-") | None => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            Ok(Bytes::from(bytes))
        }
        Some(value) => Ok(Bytes::from(value.to_string())),
    }
}

pub async fn put(args: PutArgs) -> Outcome {
    let value = match value_or_stdin(args.value) {
        Ok(value) => value,
        Err(error) => {
            eprintln!("cairn: reading the value from standard input: {error}");
            return Outcome::Refused;
        }
    };
    let client = match connect(&args.client).await {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    let written = if args.labels.is_empty() {
        client.put(Route::Any, &args.key, value, args.prev_revision).await
    } else {
        let labels: BTreeMap<String, String> = args.labels.into_iter().collect();
        client.put_labelled(Route::Any, &args.key, value, labels, args.prev_revision).await
    };
    match written {
        Ok(answer) => output::record_written(&answer.value, args.client.json),
        Err(ClientError::Mismatch { current }) => output::mismatch(current.as_deref(), args.client.json),
        Err(error) => failure(&error),
    }
}

pub async fn get(args: GetArgs) -> Outcome {
    let client = match connect(&args.client).await {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    match client.get(Route::Any, &args.key, args.consistency.into()).await {
        Ok(answer) => match answer.value {
            Some(record) => output::record(&record, args.client.json),
            None => {
                eprintln!("cairn: key {:?} not found (revision {})", args.key, answer.revision);
                Outcome::NotFound
            }
        },
        Err(error) => failure(&error),
    }
}

pub async fn del(args: DelArgs) -> Outcome {
    let client = match connect(&args.client).await {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    match client.delete(Route::Any, &args.key, args.prev_revision).await {
        Ok(answer) => output::deleted(&args.key, &answer.value, args.client.json),
        Err(ClientError::Mismatch { current }) => output::mismatch(current.as_deref(), args.client.json),
        Err(error) => failure(&error),
    }
}

pub async fn list(args: ListArgs) -> Outcome {
    const PAGE: usize = 1_000;
    let client = match connect(&args.client).await {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    let wanted = args.limit.unwrap_or(usize::MAX);
    let (mut records, mut continuation) = (Vec::new(), None);
    let (total, revision) = loop {
        let page_size = PAGE.min(wanted - records.len());
        let page = client
            .list(Route::Any, &args.prefix, &args.labels, page_size, continuation.as_deref(), args.consistency.into())
            .await;
        let page = match page {
            Ok(page) => page.value,
            Err(error) => return failure(&error),
        };
        records.extend(page.data);
        continuation = page.continuation;
        if continuation.is_none() || records.len() >= wanted {
            break (page.total, page.revision);
        }
    };
    output::listing(&records, total, revision, args.client.json)
}

/// Follows changes until interrupted, reconnecting (to any endpoint) from the last revision seen.
pub async fn watch(args: WatchArgs) -> Outcome {
    let client = match connect(&args.client).await {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    let mut next = args.from;
    loop {
        let mut stream = match client.watch(Route::Any, &args.prefix, &args.labels, next).await {
            Ok(stream) => stream,
            Err(error @ (ClientError::Compacted { .. } | ClientError::Rejected { .. })) => return failure(&error),
            Err(error) => {
                eprintln!("cairn: watch: {error}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
                Ok(Ok(Some(WatchItem::Event(event)))) => {
                    next = Some(event.revision + 1);
                    output::watch_event(&event, args.client.json);
                }
                Ok(Ok(Some(WatchItem::Progress(revision)))) => next = next.max(Some(revision + 1)),
                Ok(Ok(Some(WatchItem::Compacted { revision, oldest }))) => {
                    eprintln!(
                        "cairn: the watch fell behind the history at revision {revision}: list again, then watch"
                    );
                    return failure(&ClientError::Compacted { oldest });
                }
                Ok(Ok(Some(WatchItem::Denied { code }))) => {
                    let message = "the token may no longer watch".to_string();
                    return failure(&ClientError::Rejected { status: 403, code, message });
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    eprintln!("cairn: watch interrupted; resuming from revision {}", next.unwrap_or(0));
                    break;
                }
            }
        }
    }
}

pub async fn members(args: ClientArgs) -> Outcome {
    let client = match connect(&args).await {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    match client.cluster(Route::Any).await {
        Ok(cluster) => output::cluster(&cluster, args.json),
        Err(error) => failure(&error),
    }
}

pub async fn status(args: ClientArgs) -> Outcome {
    let client = match connect(&args).await {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    match client.status(Route::Any).await {
        Ok(answer) => output::status(&answer.value, args.json),
        Err(error) => failure(&error),
    }
}

pub async fn member(command: MemberCommand) -> Outcome {
    let (changed, json) = match command {
        MemberCommand::Add { id, peer, http, learner, client } => {
            let kind = if learner { MemberKind::Learner } else { MemberKind::Voter };
            let Ok(connected) = connect(&client).await else { return Outcome::Refused };
            (connected.add_member(Route::Any, id, &Member { peer, http }, kind).await, client.json)
        }
        MemberCommand::Remove { id, client } => {
            let Ok(connected) = connect(&client).await else { return Outcome::Refused };
            (connected.remove_member(Route::Any, id).await, client.json)
        }
    };
    match changed {
        Ok(members) => output::members(&members, json),
        Err(error) => failure(&error),
    }
}
