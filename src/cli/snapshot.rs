//! `cairn snapshot save|status|restore`: backups, etcdctl's way. `save` downloads a node's
//! snapshot into a file it renames into place only once the file is synced and verified;
//! `status` verifies and describes a file; `restore` prepares a new cluster's data directory.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use cairn_http::client::Route;
use cairn_node::backup::{self, RestorePlan, SnapshotSummary};
use cairn_node::rt;
use cairn_node::storage::FsDisk;
use clap::{Args, Subcommand};
use http_body_util::BodyExt;

use super::client::{ClientArgs, Outcome, connect, failure};
use super::serve::parse_initial_cluster;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a snapshot of the cluster's state (from the leader when it can be found) to FILE.
    Save(SaveArgs),
    /// Verify a snapshot file and describe what it holds.
    Status(StatusArgs),
    /// Prepare a data directory from which a new cluster starts with the snapshot's state.
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub file: PathBuf,
    /// Print JSON instead of human text.
    #[arg(long)]
    pub json: bool,
}

/// Run once per node of the new cluster, with the same FILE and --initial-cluster on each.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    pub file: PathBuf,
    /// The data directory to prepare; it must be absent or empty.
    #[arg(long)]
    pub data: PathBuf,
    /// The id of the node that will serve from --data.
    #[arg(long)]
    pub id: u64,
    /// The new cluster: `1=PEER@HTTP,2=PEER@HTTP,3=PEER@HTTP`, as each node is then started with.
    #[arg(long)]
    pub initial_cluster: String,
    /// Print JSON instead of human text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: SnapshotCommand) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    let outcome = runtime.block_on(async move {
        match command {
            SnapshotCommand::Save(args) => save(args).await,
            SnapshotCommand::Status(args) => status(args).await,
            SnapshotCommand::Restore(args) => restore(args).await,
        }
    });
    outcome.into()
}

async fn save(args: SaveArgs) -> Outcome {
    let client = match connect(&args.client).await {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    let download = match client.snapshot(Route::Any).await {
        Ok(download) => download,
        Err(error) => return failure(&error),
    };
    let partial = partial_path(&args.file);
    let saved = async {
        write_download(download.body, &partial, args.client.timeout).await?;
        let summary = backup::describe(Arc::new(FsDisk::new()), &partial)
            .await
            .map_err(|error| format!("the downloaded snapshot does not verify: {error}"))?;
        fs::rename(&partial, &args.file).map_err(|error| format!("renaming into {}: {error}", args.file.display()))?;
        sync_parent(&args.file)?;
        Ok::<_, String>(summary)
    };
    match saved.await {
        Ok(summary) => {
            print_summary(&args.file, &summary, args.client.json, "saved");
            Outcome::Done
        }
        Err(error) => {
            let _ = fs::remove_file(&partial);
            eprintln!("cairn: snapshot save: {error}; {} was not written", args.file.display());
            Outcome::Unavailable
        }
    }
}

/// Where a download goes until it is verified: beside the file, so the rename is atomic.
fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(".part");
    file.with_file_name(name)
}

/// Writes the body to `path` and syncs it; each piece must arrive within `idle`, so a node
/// that stalls mid-download fails the save rather than hanging it.
async fn write_download(mut body: hyper::body::Incoming, path: &Path, idle: rt::Duration) -> Result<(), String> {
    let mut file = File::create(path).map_err(|error| format!("creating {}: {error}", path.display()))?;
    loop {
        let frame = match rt::timeout(idle, body.frame()).await {
            Err(_) => return Err(format!("the node sent nothing for {idle:?}")),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|error| format!("the download broke: {error}"))?,
        };
        if let Ok(data) = frame.into_data() {
            file.write_all(&data).map_err(|error| format!("writing {}: {error}", path.display()))?;
        }
    }
    file.sync_all().map_err(|error| format!("syncing {}: {error}", path.display()))
}

fn sync_parent(file: &Path) -> Result<(), String> {
    let parent = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent).and_then(|dir| dir.sync_all()).map_err(|error| format!("syncing {}: {error}", parent.display()))
}

async fn status(args: StatusArgs) -> Outcome {
    match backup::describe(Arc::new(FsDisk::new()), &args.file).await {
        Ok(summary) => {
            print_summary(&args.file, &summary, args.json, "verified");
            Outcome::Done
        }
        Err(error) => {
            eprintln!("cairn: {} is not a valid snapshot: {error}", args.file.display());
            Outcome::Refused
        }
    }
}

async fn restore(args: RestoreArgs) -> Outcome {
    let members = match parse_initial_cluster(&args.initial_cluster) {
        Ok(members) => members,
        Err(error) => {
            eprintln!("cairn: {error}");
            return Outcome::Refused;
        }
    };
    let plan = RestorePlan { snapshot: &args.file, data_dir: &args.data, id: args.id, members: &members };
    match backup::restore(Arc::new(FsDisk::new()), plan).await {
        Ok(restored) => {
            let summary = &restored.summary;
            if args.json {
                let answer = serde_json::json!({
                    "data": args.data,
                    "id": args.id,
                    "cluster_id": restored.cluster_id.to_string(),
                    "snapshot": summary,
                });
                println!("{answer}");
            } else {
                let member = &members[&args.id];
                println!(
                    "restored {} into {} for node {} of new cluster {}: revision {}, {} keys",
                    args.file.display(),
                    args.data.display(),
                    args.id,
                    restored.cluster_id,
                    summary.revision,
                    summary.keys
                );
                println!(
                    "start it with: cairn --id {} --data {} --peer {} --http {} --initial-cluster {}",
                    args.id,
                    args.data.display(),
                    member.peer,
                    member.http,
                    args.initial_cluster
                );
            }
            Outcome::Done
        }
        Err(error) => {
            eprintln!("cairn: snapshot restore: {error}");
            Outcome::Refused
        }
    }
}

fn print_summary(file: &Path, summary: &SnapshotSummary, as_json: bool, what: &str) {
    if as_json {
        println!("{}", serde_json::to_string(summary).expect("a summary serializes"));
        return;
    }
    let cluster = summary.cluster_id.map_or_else(|| "none".to_string(), |id| id.to_string());
    let members: Vec<String> =
        summary.members.iter().map(|(id, member)| format!("{id}={}@{}", member.peer, member.http)).collect();
    println!("{what} {}", file.display());
    println!("revision:      {}", summary.revision);
    println!("keys:          {}", summary.keys);
    println!("size:          {} bytes", summary.bytes);
    println!("raft index:    {} (term {})", summary.index, summary.term);
    println!("cluster:       {cluster}");
    println!("members:       {}", members.join(","));
    println!("watch from:    revision {}", summary.oldest_watch_revision);
    println!("acl:           {}", if summary.acl_enabled { "enforced" } else { "off" });
}
