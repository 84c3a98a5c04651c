//! The client commands: `put`, `get`, `del`, `list`, `watch`, `members`, `status`, `member`.
//!
//! The client tries the nodes of `--endpoints` in turn, starting with the leader when it can
//! find it, retries what is safe to retry (writes carry a client id and serial, so a retry after
//! an unknown outcome is applied at most once), and says so clearly when an outcome is unknown.
//! Human output by default, `--json` for scripts; the exit code tells what happened (see
//! [`Outcome`]).

mod acl;
mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cairn_http::client::{CairnClient, ClientError, ClientOptions, Route};
use cairn_node::storage::FsDisk;
use cairn_node::tls::ClientTls;
use clap::{Args, Subcommand};

use super::duration;

pub use commands::{
    DelArgs, GetArgs, ListArgs, MemberCommand, PutArgs, WatchArgs, del, get, list, member, members, put, status, watch,
};

/// Flags every client command takes.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Nodes to talk to (HTTP addresses, comma-separated); any live one will do.
    #[arg(long, env = "CAIRN_ENDPOINTS", value_delimiter = ',', default_value = "127.0.0.1:7700", global = true)]
    pub endpoints: Vec<String>,
    /// Print JSON (one object per line for `watch`) instead of human text.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long a command may take before it gives up.
    #[arg(long, env = "CAIRN_TIMEOUT", default_value = "15s", value_parser = duration::parse, global = true)]
    pub timeout: Duration,
    /// For https:// endpoints: the CA certificate (PEM) the nodes' certificates must chain to.
    #[arg(long, env = "CAIRN_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
    /// For nodes that require client certificates: this client's certificate (PEM), with --key.
    #[arg(long, env = "CAIRN_CERT", requires = "key", global = true)]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, env = "CAIRN_KEY", requires = "cert", global = true)]
    pub key: Option<PathBuf>,
    /// The ACL token's secret to send with every request, once ACLs are bootstrapped.
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

impl ClientArgs {
    /// The endpoints without their scheme, and the TLS to reach them with when they are
    /// `https://` ones. All endpoints share one scheme; none means `http://`.
    pub fn tls_endpoints(&self) -> Result<(Vec<String>, Option<ClientTls>), String> {
        let mut https = None;
        let mut endpoints = Vec::new();
        for endpoint in &self.endpoints {
            let (secure, bare) = match endpoint.split_once("://") {
                Some(("https", bare)) => (true, bare),
                Some(("http", bare)) => (false, bare),
                Some((scheme, _)) => {
                    return Err(format!("endpoint {endpoint:?}: {scheme}:// is neither http nor https"));
                }
                None => (false, endpoint.as_str()),
            };
            if https.replace(secure).is_some_and(|earlier| earlier != secure) {
                return Err("--endpoints mixes https:// and http:// addresses".to_string());
            }
            endpoints.push(bare.trim_end_matches('/').to_string());
        }
        if https != Some(true) {
            if self.cacert.is_some() || self.cert.is_some() {
                return Err("--cacert, --cert and --key are for https:// endpoints".to_string());
            }
            return Ok((endpoints, None));
        }
        let ca = self
            .cacert
            .as_deref()
            .ok_or("https:// endpoints need --cacert (the CA that signed the nodes' certificates)")?;
        let identity = self.cert.as_deref().zip(self.key.as_deref());
        let tls = ClientTls::from_files(&FsDisk::new(), ca, identity).map_err(|e| e.to_string())?;
        Ok((endpoints, Some(tls)))
    }
}

/// What a command's exit code says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 0: done.
    Done = 0,
    /// 1: the cluster refused the request (bad input, conflict); nothing changed.
    Refused = 1,
    /// 3: the key (or member) does not exist.
    NotFound = 3,
    /// 4: a compare-and-swap found another revision; nothing changed.
    Mismatch = 4,
    /// 5: no node could be reached or no leader was available; nothing changed.
    Unavailable = 5,
    /// 6: the write may or may not have been applied.
    Unknown = 6,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        ExitCode::from(outcome as u8)
    }
}

/// The exit code for a failed request, after saying what happened on stderr.
pub fn failure(error: &ClientError) -> Outcome {
    let outcome = match error {
        ClientError::Rejected { code, .. } if code.ends_with("not_found") => Outcome::NotFound,
        ClientError::Rejected { .. } | ClientError::Compacted { .. } => Outcome::Refused,
        ClientError::Mismatch { .. } => Outcome::Mismatch,
        ClientError::Unavailable { .. } => Outcome::Unavailable,
        ClientError::OutcomeUnknown { .. } | ClientError::Protocol(_) => Outcome::Unknown,
    };
    match outcome {
        Outcome::Unknown => eprintln!("cairn: OUTCOME UNKNOWN: the request may or may not have been applied ({error})"),
        _ => eprintln!("cairn: {error}"),
    }
    outcome
}

/// A client whose first endpoint is the leader, when some endpoint can name it. Refuses
/// (saying why) endpoints and TLS flags that do not fit together.
pub async fn connect(args: &ClientArgs) -> Result<CairnClient, Outcome> {
    let options =
        ClientOptions { attempt_timeout: args.timeout.min(Duration::from_secs(8)), call_timeout: args.timeout };
    let (mut endpoints, tls) = args.tls_endpoints().map_err(|error| {
        eprintln!("cairn: {error}");
        Outcome::Refused
    })?;
    let with_token = |client: CairnClient| {
        client.with_token(args.token.as_deref()).map_err(|error| {
            eprintln!("cairn: --token: {error}");
            Outcome::Refused
        })
    };
    let probe = with_token(CairnClient::with_tls(endpoints.clone(), options, tls.clone()))?;
    if let Ok(members) = probe.members(Route::Any).await
        && let Some(leader) = members.iter().find(|member| member.leader)
    {
        endpoints.retain(|endpoint| *endpoint != leader.http);
        endpoints.insert(0, leader.http.clone());
    }
    with_token(CairnClient::with_tls(endpoints, options, tls))
}

/// The client commands, as they appear in `cairn`'s command list.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Set a key's value (and labels); with --prev-revision, only if the key is at that revision.
    Put(PutArgs),
    /// Read a key.
    Get(GetArgs),
    /// Delete a key.
    Del(DelArgs),
    /// List keys by prefix and labels.
    List(ListArgs),
    /// Follow changes, resuming after a dropped connection from the last revision seen.
    Watch(WatchArgs),
    /// Show the cluster's members.
    Members(ClientArgs),
    /// Show this node's raft status.
    Status(ClientArgs),
    /// Add or remove a member.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Access control: bootstrap, policies and tokens.
    #[command(subcommand)]
    Acl(acl::AclCommand),
}

pub fn run(command: ClientCommand) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    let outcome = runtime.block_on(async move {
        match command {
            ClientCommand::Put(args) => put(args).await,
            ClientCommand::Get(args) => get(args).await,
            ClientCommand::Del(args) => del(args).await,
            ClientCommand::List(args) => list(args).await,
            ClientCommand::Watch(args) => watch(args).await,
            ClientCommand::Members(args) => members(args).await,
            ClientCommand::Status(args) => status(args).await,
            ClientCommand::Member(command) => member(command).await,
            ClientCommand::Acl(command) => acl::run(command).await,
        }
    });
    outcome.into()
}
