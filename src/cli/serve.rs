//! `cairn serve`: run a node until interrupted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cairn_node::acl::TokenSecret;
use cairn_node::api::MemberKind;
use cairn_node::config::{APPENDS_IN_FLIGHT_DEFAULT, Bootstrap, Limits, NodeConfig, RaftTimings};
use cairn_node::gossip::{GossipConfig, derived_address};
use cairn_node::metrics::Metrics;
use cairn_node::node::AutopilotConfig;
use cairn_node::raft::Member;
use cairn_node::storage::FsDisk;
use cairn_node::store::events::HistoryLimits;
use cairn_node::tls::TlsFiles;
use clap::Args;

use super::duration;
use super::log::{LogFormat, TermCell};

/// Flags of `cairn serve`; each also reads the environment variable named beside it.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// This node's id: a positive integer, unique in the cluster and never reused.
    #[arg(long, env = "CAIRN_ID", default_value_t = 1)]
    id: u64,
    /// Address for the HTTP API (ip:port), also advertised to the cluster.
    #[arg(long, env = "CAIRN_HTTP", default_value = "127.0.0.1:7700")]
    http: String,
    /// Address for raft and request forwarding between nodes (ip:port), advertised to peers.
    #[arg(long, env = "CAIRN_PEER", default_value = "127.0.0.1:7701")]
    peer: String,
    /// Directory holding this node's raft log and snapshots.
    #[arg(long, env = "CAIRN_DATA", default_value = "data")]
    data: PathBuf,
    /// HTTP or gossip address of any member to join through (comma-separated for several).
    /// Ignored when the data directory already holds this node's state.
    #[arg(long, env = "CAIRN_JOIN", value_delimiter = ',', conflicts_with = "initial_cluster")]
    join: Vec<String>,
    /// With --join: join as a learner, which replicates and serves stale reads but does not
    /// vote, until promoted (`cairn member add` without --learner, or autopilot).
    #[arg(long, requires = "join")]
    learner: bool,
    /// With --join, once the cluster enforces ACLs: the token to ask with (it needs
    /// `cluster: write`).
    #[arg(long = "join-token", env = "CAIRN_JOIN_TOKEN", hide_env_values = true, requires = "join")]
    join_token: Option<String>,
    /// Static bootstrap, etcd style: `1=PEER@HTTP,2=PEER@HTTP,3=PEER@HTTP`, the same on every
    /// listed node; the cluster forms without joins.
    #[arg(long, env = "CAIRN_INITIAL_CLUSTER")]
    initial_cluster: Option<String>,
    /// Interval between leader heartbeats.
    #[arg(long, env = "CAIRN_HEARTBEAT_INTERVAL", default_value = "50ms", value_parser = duration::parse)]
    heartbeat_interval: Duration,
    /// Minimum election timeout; elections start between this and twice this after the last
    /// heartbeat.
    #[arg(long, env = "CAIRN_ELECTION_TIMEOUT", default_value = "400ms", value_parser = duration::parse)]
    election_timeout: Duration,
    /// How long a request may take before the client gets a timeout (or, for a write that may
    /// have been proposed, 504 outcome_unknown).
    #[arg(long, env = "CAIRN_REQUEST_TIMEOUT", default_value = "5s", value_parser = duration::parse)]
    request_timeout: Duration,
    /// Log entries between snapshots; the log is purged behind each snapshot. etcd's default
    /// count: a snapshot carries the whole state and the watch history, so it is not cheap.
    #[arg(long, env = "CAIRN_SNAPSHOT_EVERY", default_value_t = 100_000)]
    snapshot_every: u64,
    /// AppendEntries requests the leader keeps in flight to each follower. Raise it when
    /// followers are far away or their disks slow (each round trip then leaves the link idle);
    /// 1 does the most writes per CPU second on machines close together. At most 256.
    #[arg(long, env = "CAIRN_APPENDS_IN_FLIGHT", default_value_t = APPENDS_IN_FLIGHT_DEFAULT)]
    appends_in_flight: usize,
    /// Events the watch history keeps (watches and long polls can resume within it).
    #[arg(long, env = "CAIRN_HISTORY_EVENTS", default_value_t = 100_000)]
    history_events: usize,
    /// Bytes of values the watch history keeps; the oldest events go first.
    #[arg(long, env = "CAIRN_HISTORY_BYTES", default_value_t = 64 * 1024 * 1024)]
    history_bytes: usize,
    /// Largest key, in bytes.
    #[arg(long, env = "CAIRN_MAX_KEY_BYTES", default_value_t = 4096)]
    max_key_bytes: usize,
    /// Largest value, in bytes; larger request bodies get 413.
    #[arg(long, env = "CAIRN_MAX_VALUE_BYTES", default_value_t = 1024 * 1024)]
    max_value_bytes: usize,
    /// Gossip and autopilot flags (boxed: they would make every `Command` variant large).
    #[command(flatten)]
    cluster: Box<ClusterArgs>,
    /// TLS flags of the HTTP port (boxed for the same reason).
    #[command(flatten)]
    tls: Box<TlsArgs>,
    /// Log filter, e.g. `info` or `cairn_node=debug,info`.
    #[arg(long, env = "CAIRN_LOG", default_value = "info")]
    log: String,
    /// Log lines as `text`, or as `json` lines (timestamp, level, target, node, term, message
    /// and the event's fields) [default: text when stderr is a terminal, json otherwise].
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Deliberate bugs for testing the test harness (debug builds only), comma-separated:
    /// local-reads, early-ack, skip-dedup, drop-watch-events, any-contact, ignore-tag-reuse,
    /// stale-acl-cache, current-acl-events, optional-client-certificates, backup-from-raft-snapshot.
    #[cfg(debug_assertions)]
    #[arg(long, env = "CAIRN_INJECT_BUGS", hide = true)]
    inject_bugs: Option<String>,
}

impl ServeArgs {
    fn join_kind(&self) -> MemberKind {
        if self.learner { MemberKind::Learner } else { MemberKind::Voter }
    }

    fn config(&self) -> Result<NodeConfig, String> {
        let member = Member { peer: self.peer.clone(), http: self.http.clone() };
        for (name, address) in [("--http", &self.http), ("--peer", &self.peer)] {
            address
                .parse::<std::net::SocketAddr>()
                .map_err(|_| format!("{name} {address:?} is not an ip:port address"))?;
        }
        let mut config = NodeConfig::new(self.id, member, self.data.clone());
        config.bootstrap = match (&self.initial_cluster, self.join.is_empty()) {
            (Some(list), _) => Bootstrap::InitialCluster(parse_initial_cluster(list)?),
            (None, false) => {
                let token = self
                    .join_token
                    .as_deref()
                    .map(TokenSecret::parse)
                    .transpose()
                    .map_err(|e| format!("--join-token: {e}"))?;
                Bootstrap::Join { seeds: self.join.clone(), kind: self.join_kind(), cluster_id: None, token }
            }
            (None, true) => Bootstrap::Single,
        };
        config.timings = RaftTimings {
            heartbeat: self.heartbeat_interval,
            election_timeout_min: self.election_timeout,
            election_timeout_max: self.election_timeout * 2,
        };
        config.limits = Limits { key_bytes_max: self.max_key_bytes, value_bytes_max: self.max_value_bytes };
        config.request_timeout = self.request_timeout;
        config.snapshot_every = self.snapshot_every;
        config.appends_in_flight = self.appends_in_flight;
        config.history = HistoryLimits { events_max: self.history_events, bytes_max: self.history_bytes };
        config.gossip = Some(self.gossip_config()?);
        config.cluster_secret = self.cluster.cluster_secret.as_ref().map(|secret| secret.as_bytes().to_vec());
        config.tls = self.tls.files();
        config.peer_tls = self.tls.peer_files();
        let cluster = &self.cluster;
        config.autopilot = cluster.autopilot.then_some(AutopilotConfig {
            dead_node_timeout: cluster.dead_node_timeout,
            min_voters: cluster.min_voters,
            stabilization: cluster.stabilization,
        });
        #[cfg(debug_assertions)]
        if let Some(bugs) = &self.inject_bugs {
            config.bugs = cairn_node::bugs::InjectedBugs::parse(bugs)?;
        }
        config.validate().map_err(|e| e.to_string())
    }
}

/// Flags of `cairn serve` for TLS on the HTTP and peer ports, named as etcd names them.
#[derive(Debug, Args)]
struct TlsArgs {
    /// The HTTP port's certificate chain (PEM); with it the port speaks only HTTPS. Re-read
    /// when the file changes.
    #[arg(long, env = "CAIRN_CERT_FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// The private key (PEM) of --cert-file.
    #[arg(long, env = "CAIRN_KEY_FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// The CA (PEM) that client certificates, and other members' certificates when this node
    /// calls them, must chain to.
    #[arg(long, env = "CAIRN_TRUSTED_CA_FILE", requires = "cert_file")]
    trusted_ca_file: Option<PathBuf>,
    /// Require every HTTPS client to present a certificate the trusted CA signed.
    #[arg(long, env = "CAIRN_CLIENT_CERT_AUTH", requires = "trusted_ca_file")]
    client_cert_auth: bool,
    /// The peer port's certificate chain (PEM): peers then talk mutual TLS, each side
    /// presenting a certificate the peer CA signed. Re-read when the file changes.
    #[arg(long, env = "CAIRN_PEER_CERT_FILE", requires_all = ["peer_key_file", "peer_trusted_ca_file"])]
    peer_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --peer-cert-file.
    #[arg(long, env = "CAIRN_PEER_KEY_FILE", requires = "peer_cert_file")]
    peer_key_file: Option<PathBuf>,
    /// The CA (PEM) every peer's certificate must chain to.
    #[arg(long, env = "CAIRN_PEER_TRUSTED_CA_FILE", requires = "peer_cert_file")]
    peer_trusted_ca_file: Option<PathBuf>,
}

impl TlsArgs {
    fn files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.cert_file.clone()?,
            key: self.key_file.clone()?,
            trusted_ca: self.trusted_ca_file.clone(),
            client_cert_auth: self.client_cert_auth,
        })
    }

    fn peer_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.peer_cert_file.clone()?,
            key: self.peer_key_file.clone()?,
            trusted_ca: self.peer_trusted_ca_file.clone(),
            client_cert_auth: true,
        })
    }
}

/// Flags of `cairn serve` for gossip membership and autopilot.
#[derive(Debug, Args)]
struct ClusterArgs {
    /// UDP address for gossip membership (ip:port), advertised to peers. Default: the peer
    /// address's host with its port plus one.
    #[arg(long, env = "CAIRN_GOSSIP")]
    gossip: Option<String>,
    /// Gossip addresses to announce to until they are members (comma-separated); raft members'
    /// default gossip addresses are always tried too.
    #[arg(long, env = "CAIRN_GOSSIP_SEEDS", value_delimiter = ',')]
    gossip_seeds: Vec<String>,
    /// Gossip packets carry an id derived from this name; other clusters' packets are dropped.
    #[arg(long, env = "CAIRN_CLUSTER_NAME", default_value = "cairn")]
    cluster_name: String,
    /// The cluster's shared secret, the same on every node. Peers prove they know it in the peer
    /// handshake (a challenge-response over fresh nonces) before anything else is read, and every
    /// gossip packet carries an HMAC-SHA256 tag under it (packets without the right tag are
    /// dropped and counted, see `GET /v1/cluster`). Without it peers and gossip are
    /// unauthenticated.
    #[arg(long, env = "CAIRN_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// Let the leader remove voters gossip has seen down for `--dead-node-timeout` (while a
    /// healthy majority and `--min-voters` remain) and promote learners stable for
    /// `--stabilization`.
    #[arg(long, env = "CAIRN_AUTOPILOT")]
    autopilot: bool,
    /// Autopilot: how long a voter must be shown down before it is removed.
    #[arg(long, env = "CAIRN_DEAD_NODE_TIMEOUT", default_value = "60s", value_parser = duration::parse)]
    dead_node_timeout: Duration,
    /// Autopilot: never leave fewer voters than this.
    #[arg(long, env = "CAIRN_MIN_VOTERS", default_value_t = 3)]
    min_voters: usize,
    /// Autopilot: how long a learner must be alive and caught up before it is promoted.
    #[arg(long, env = "CAIRN_STABILIZATION", default_value = "10s", value_parser = duration::parse)]
    stabilization: Duration,
}

impl ServeArgs {
    fn gossip_config(&self) -> Result<GossipConfig, String> {
        let cluster = &self.cluster;
        let address = match &cluster.gossip {
            Some(address) => address.parse().map_err(|_| format!("--gossip {address:?} is not an ip:port address"))?,
            None => derived_address(&self.peer)
                .ok_or_else(|| format!("no default gossip address for --peer {:?}; pass --gossip", self.peer))?,
        };
        let mut gossip = GossipConfig::new(address);
        for seed in &cluster.gossip_seeds {
            gossip.seeds.push(seed.parse().map_err(|_| format!("--gossip-seeds {seed:?} is not an ip:port address"))?);
        }
        // A join address may be a member's gossip address; announcing to an HTTP one is harmless.
        if self.initial_cluster.is_none() {
            gossip.seeds.extend(self.join.iter().filter_map(|address| address.parse::<SocketAddr>().ok()));
        }
        gossip.cluster_name = cluster.cluster_name.clone();
        gossip.secret = cluster.cluster_secret.as_ref().map(|secret| secret.as_bytes().to_vec());
        Ok(gossip)
    }
}

/// Parses `1=PEER@HTTP,2=PEER@HTTP`.
pub(super) fn parse_initial_cluster(list: &str) -> Result<BTreeMap<u64, Member>, String> {
    let mut members = BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let malformed = || format!("--initial-cluster entry {item:?} is not ID=PEER@HTTP");
        let (id, addresses) = item.split_once('=').ok_or_else(malformed)?;
        let (peer, http) = addresses.split_once('@').ok_or_else(malformed)?;
        let id: u64 = id.parse().map_err(|_| malformed())?;
        if members.insert(id, Member { peer: peer.to_string(), http: http.to_string() }).is_some() {
            return Err(format!("--initial-cluster lists node {id} twice"));
        }
    }
    if members.is_empty() {
        return Err("--initial-cluster is empty".to_string());
    }
    Ok(members)
}

pub fn run(args: ServeArgs) -> ExitCode {
    let term = super::log::init(&args.log, args.log_format.unwrap_or_else(LogFormat::for_stderr), args.id);
    let config = match args.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("cairn: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts");
    runtime.block_on(serve(config, term))
}

async fn serve(config: NodeConfig, term: TermCell) -> ExitCode {
    let (id, http, peer, data) =
        (config.id, config.member.http.clone(), config.member.peer.clone(), config.data_dir.clone());
    let config_gossip = config.gossip.as_ref().map(|gossip| gossip.address);
    let launched = match cairn_http::launch(config, Arc::new(FsDisk::new()), Arc::new(Metrics::new())).await {
        Ok(launched) => launched,
        Err(error) => {
            eprintln!("cairn: {error}");
            return ExitCode::FAILURE;
        }
    };
    let gossip = config_gossip.map_or_else(|| "off".to_string(), |address| address.to_string());
    println!(
        "cairn node {id} serving HTTP on http://{http}, peers on {peer}, gossip on {gossip}, data in {}",
        data.display()
    );
    let node = launched.node.clone();
    tokio::spawn(async move { node.follow_term(|current| term.set(current)).await });
    wait_for_stop_signal(&launched).await;
    tracing::info!("stopping");
    launched.shutdown().await;
    ExitCode::SUCCESS
}

/// Waits for SIGINT or SIGTERM. SIGHUP re-reads the TLS files of both ports at once (they are
/// also polled every second), as etcd and Consul operators expect, and never stops the node.
async fn wait_for_stop_signal(launched: &cairn_http::Launched) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
    let mut hangup = signal(SignalKind::hangup()).expect("SIGHUP can be handled");
    loop {
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => return,
            _ = terminate.recv() => return,
            _ = hangup.recv() => {
                report_reload("HTTP", launched.tls.as_ref().map(|tls| tls.reload()));
                report_reload("peer", launched.node.reload_peer_tls());
            }
        }
    }
}

fn report_reload(port: &str, reloaded: Option<Result<bool, cairn_node::tls::TlsError>>) {
    match reloaded {
        None => tracing::info!("SIGHUP: the {port} port has no TLS files to reload"),
        Some(Ok(true)) => tracing::info!("SIGHUP: the {port} port's TLS files reloaded; new connections use them"),
        Some(Ok(false)) => tracing::info!("SIGHUP: the {port} port's TLS files are unchanged"),
        Some(Err(error)) => {
            tracing::error!(%error, "SIGHUP: the {port} port's TLS files cannot be used; the previous ones stay in force");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(flags: &[&str]) -> Result<NodeConfig, String> {
        use clap::Parser;
        let args = Serve::try_parse_from(std::iter::once("cairn").chain(flags.iter().copied())).unwrap().args;
        args.config()
    }

    #[test]
    fn gossip_defaults_to_the_peer_port_plus_one_and_autopilot_is_off() {
        let config = parse(&["--peer", "127.0.0.1:7721", "--http", "127.0.0.1:7720"]).unwrap();
        assert_eq!(config.gossip.unwrap().address, "127.0.0.1:7722".parse().unwrap());
        assert!(config.autopilot.is_none());
        let flags = ["--gossip", "127.0.0.1:9000", "--cluster-secret", "s", "--autopilot", "--min-voters", "5"];
        let config = parse(&flags).unwrap();
        let gossip = config.gossip.unwrap();
        assert_eq!(gossip.address, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(gossip.secret.as_deref(), Some(&b"s"[..]));
        assert_eq!(config.autopilot.unwrap().min_voters, 5);
        assert!(parse(&["--gossip", "nowhere"]).is_err());
    }

    #[test]
    fn an_initial_cluster_lists_ids_with_peer_and_http_addresses() {
        let members = parse_initial_cluster("1=127.0.0.1:7711@127.0.0.1:7710,2=127.0.0.1:7721@127.0.0.1:7720").unwrap();
        assert_eq!(members[&2], Member { peer: "127.0.0.1:7721".into(), http: "127.0.0.1:7720".into() });
        assert!(parse_initial_cluster("1=127.0.0.1:7711").is_err());
        assert!(parse_initial_cluster("1=a@b,1=c@d").is_err());
    }
}
