//! One chaos run: clients and the nemesis together for a while, then a quiet phase in which the
//! healed cluster must recover within a bound (liveness), then a final linearizable read of every
//! key (durability). The result is the recorded history and how long recovery took.

use cairn_http::client::{CairnClient, ClientOptions, Route};
use cairn_node::api;
use cairn_node::rt::{self, Duration, Instant, watch};

use crate::acl::{self, AclCounts, AclSetup, GrantLog};
use crate::generate::Rng;
use crate::history::parse_history;
use crate::history::{ClientEvent, Consistency, EventType, Function, Value};
use crate::hostile::{HostileCounts, HostileOptions, run_hostile};
use crate::nemesis::{Cluster, NemesisOptions, run_nemesis};
use crate::recorder::{Counts, Recorder};
use crate::watcher::run_watcher;
use crate::workload::{WorkloadOptions, run_client};

/// Everything a run is made of.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Seeds the nemesis and the clients (the simulator seeds everything else).
    pub seed: u64,
    /// How long clients and faults run together.
    pub chaos: Duration,
    /// The clients.
    pub workload: WorkloadOptions,
    /// The faults.
    pub nemesis: NemesisOptions,
    /// How soon after healing a write and a linearizable read must succeed again.
    pub recovery_bound: Duration,
    /// The clients' timeouts: longer than the servers' request timeout, so that the server's own
    /// `outcome_unknown` arrives first.
    pub client: ClientOptions,
    /// Runs a hostile client beside the workload (see [`crate::hostile`]).
    pub hostile: bool,
    /// Bootstraps ACLs and runs restricted clients and policy changes beside the workload (see
    /// [`crate::acl`]).
    pub acl: bool,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The history, JSON Lines.
    pub history: Vec<u8>,
    /// Event counts.
    pub counts: Counts,
    /// Time from healing until a write and a linearizable read both succeeded, or why the
    /// cluster did not recover within the bound.
    pub recovery: Result<Duration, String>,
    /// How the hostile client's requests were answered (all zero without one).
    pub hostile: HostileCounts,
    /// What the restricted clients did and whether the policy allowed it (all zero without ACLs).
    pub acl: AclCounts,
}

/// Runs clients and nemesis on `cluster`, then checks recovery and reads every key.
pub async fn run<C: Cluster>(cluster: &C, options: &RunOptions) -> RunOutcome {
    let recorder = Recorder::new();
    let (stop, stopped) = watch::channel(false);
    let endpoints = cluster.endpoints();
    let mut clients = Vec::new();
    let grants = GrantLog::default();
    if options.acl {
        let setup = set_up_acl(cluster, options, &grants).await;
        clients.extend(spawn_restricted(cluster, options, &setup, &recorder, &grants, &stopped));
    }
    for index in 0..options.workload.clients {
        let (recorder, endpoints, stopped, workload) =
            (recorder.clone(), endpoints.clone(), stopped.clone(), options.workload);
        let (seed, client_options, tls) = (options.seed, options.client, cluster.client_tls());
        clients.push(cluster.spawn_client(Box::pin(async move {
            let client = CairnClient::with_tls(endpoints, client_options, tls);
            run_client(index, client, recorder, workload, seed, stopped).await;
        })));
    }
    for index in 0..options.workload.watchers {
        let (recorder, endpoints, stopped) = (recorder.clone(), endpoints.clone(), stopped.clone());
        let (seed, client_options, tls) = (options.seed, options.client, cluster.client_tls());
        clients.push(cluster.spawn_client(Box::pin(async move {
            let client = CairnClient::with_tls(endpoints, client_options, tls);
            run_watcher(index, client, recorder, seed, stopped).await;
        })));
    }
    let mut hostile_answer = None;
    if options.hostile {
        let (hostile_counts, answer) = tokio::sync::oneshot::channel();
        hostile_answer = Some(answer);
        let hostile = HostileOptions {
            endpoints: endpoints.clone(),
            keys: options.workload.keys,
            seed: options.seed,
            process_base: options.workload.clients * 1_000_000 + 1,
            tls: cluster.client_tls(),
        };
        let (recorder, stopped) = (recorder.clone(), stopped.clone());
        clients.push(cluster.spawn_client(Box::pin(async move {
            let _ = hostile_counts.send(run_hostile(hostile, recorder, stopped).await);
        })));
    }
    let mut rng = Rng::new(options.seed);
    run_nemesis(cluster, &recorder, &options.nemesis, &mut rng, Instant::now() + options.chaos).await;
    stop.send_if_modified(|stop| !std::mem::replace(stop, true));
    for client in clients {
        client.await;
    }
    let recovery = recover(cluster, options).await;
    if recovery.is_ok() {
        read_every_key(cluster, &recorder, options).await;
    }
    let hostile = match hostile_answer {
        Some(answer) => answer.await.unwrap_or_default(),
        None => HostileCounts::default(),
    };
    let history = recorder.bytes();
    let acl = match options.acl {
        true => match parse_history(history.as_slice()) {
            Ok(parsed) => acl::check(&parsed, &grants.changes()),
            Err(malformed) => {
                AclCounts { violations: vec![format!("the history is malformed: {malformed}")], ..AclCounts::default() }
            }
        },
        false => AclCounts::default(),
    };
    RunOutcome { history, counts: recorder.counts(), recovery, hostile, acl }
}

/// Bootstraps ACLs before any client starts; the cluster is healthy then, so a failure here is
/// the run's failure.
async fn set_up_acl<C: Cluster>(cluster: &C, options: &RunOptions, grants: &GrantLog) -> AclSetup {
    let (endpoints, client_options, tls) = (cluster.endpoints(), options.client, cluster.client_tls());
    let (answer, setup) = tokio::sync::oneshot::channel();
    let grants = grants.clone();
    cluster
        .spawn_client(Box::pin(async move {
            let client = CairnClient::with_tls(endpoints.clone(), client_options, tls.clone());
            let with_token = |secret: &str| {
                CairnClient::with_tls(endpoints.clone(), client_options, tls.clone())
                    .with_token(Some(secret))
                    .expect("a fresh secret is a header value")
            };
            let _ = answer.send(acl::set_up(&client, with_token, &grants).await);
        }))
        .await;
    match setup.await {
        Ok(Ok(setup)) => setup,
        Ok(Err(why)) => panic!("{why}"),
        Err(_) => panic!("the ACL setup did not finish"),
    }
}

/// The restricted clients (the ordinary workload, with the restricted token), a watcher with
/// that token, and the changer of their policy.
fn spawn_restricted<C: Cluster>(
    cluster: &C,
    options: &RunOptions,
    setup: &AclSetup,
    recorder: &Recorder,
    grants: &GrantLog,
    stopped: &watch::Receiver<bool>,
) -> Vec<futures_util::future::BoxFuture<'static, ()>> {
    let restricted_clients = 2;
    let mut tasks = Vec::new();
    for index in 0..restricted_clients {
        let (recorder, stopped, seed) = (recorder.clone(), stopped.clone(), options.seed);
        let workload = WorkloadOptions { clients: restricted_clients, watchers: 0, ..options.workload };
        let client = token_client(cluster, options, &setup.restricted);
        tasks.push(cluster.spawn_client(Box::pin(async move {
            run_client(acl::RESTRICTED_PROCESSES + index, client(), recorder, workload, seed, stopped).await;
        })));
    }
    let (recorder, watching, seed) = (recorder.clone(), stopped.clone(), options.seed);
    let client = token_client(cluster, options, &setup.restricted);
    tasks.push(cluster.spawn_client(Box::pin(async move {
        run_watcher(acl::RESTRICTED_WATCHERS, client(), recorder, seed, watching).await;
    })));
    let (grants, changing, seed) = (grants.clone(), stopped.clone(), options.seed);
    let management = token_client(cluster, options, &setup.management);
    tasks.push(cluster.spawn_client(Box::pin(async move {
        acl::run_changer(management(), grants, seed, changing).await;
    })));
    tasks
}

/// A maker of clients of `cluster` that send `secret`, for a client task to call where it runs
/// (in the simulator, on the clients' node).
fn token_client<C: Cluster>(
    cluster: &C,
    options: &RunOptions,
    secret: &str,
) -> impl FnOnce() -> CairnClient + Send + 'static {
    let (endpoints, client_options, tls, secret) =
        (cluster.endpoints(), options.client, cluster.client_tls(), secret.to_string());
    move || {
        CairnClient::with_tls(endpoints, client_options, tls)
            .with_token(Some(&secret))
            .expect("a fresh secret is a header value")
    }
}

/// Probes the healed cluster until a write and a linearizable read both succeed.
async fn recover<C: Cluster>(cluster: &C, options: &RunOptions) -> Result<Duration, String> {
    let (endpoints, bound, client_options) = (cluster.endpoints(), options.recovery_bound, options.client);
    let tls = cluster.client_tls();
    let (answer, outcome) = tokio::sync::oneshot::channel();
    cluster
        .spawn_client(Box::pin(async move {
            let client = CairnClient::with_tls(endpoints, client_options, tls);
            let started = Instant::now();
            let mut last_error = String::from("no attempt finished");
            while started.elapsed() < bound {
                let written = client.put(Route::Any, "recovery-probe", bytes::Bytes::from("alive"), None).await;
                let read = match written {
                    Ok(_) => client.get(Route::Any, "recovery-probe", api::Consistency::Linearizable).await.map(|_| ()),
                    Err(error) => Err(error),
                };
                match read {
                    Ok(()) => {
                        let _ = answer.send(Ok(started.elapsed()));
                        return;
                    }
                    Err(error) => last_error = error.to_string(),
                }
                rt::sleep(Duration::from_millis(100)).await;
            }
            let _ = answer.send(Err(format!("no write and linearizable read within {bound:?}: {last_error}")));
        }))
        .await;
    outcome.await.unwrap_or_else(|_| Err("the recovery probe did not finish".to_string()))
}

/// Reads every key linearizably, recorded as final reads, retrying each until it succeeds.
async fn read_every_key<C: Cluster>(cluster: &C, recorder: &Recorder, options: &RunOptions) {
    let (endpoints, keys, client_options) = (cluster.endpoints(), options.workload.keys, options.client);
    let tls = cluster.client_tls();
    let recorder = recorder.clone();
    let process = options.workload.clients * 1_000_000;
    cluster
        .spawn_client(Box::pin(async move {
            let client = CairnClient::with_tls(endpoints, client_options, tls);
            for key in (0..keys).map(|k| format!("k{k}")) {
                loop {
                    let mut invoke = ClientEvent::new(process, EventType::Invoke, Function::Read, &key, Value::Null);
                    invoke.consistency = Some(Consistency::Linearizable);
                    invoke.is_final = true;
                    recorder.client(invoke);
                    let read = client.get(Route::Any, &key, api::Consistency::Linearizable).await;
                    let (kind, value, answer) = match read {
                        Ok(answer) => (
                            EventType::Ok,
                            answer.value.as_ref().map_or(Value::Null, |r| Value::Str(r.value.clone())),
                            Some(answer),
                        ),
                        Err(_) => (EventType::Fail, Value::Null, None),
                    };
                    let mut done = ClientEvent::new(process, kind, Function::Read, &key, value);
                    done.consistency = Some(Consistency::Linearizable);
                    done.is_final = true;
                    if let Some(answer) = &answer {
                        done.revision = Some(answer.revision);
                        done.mod_revision = answer.value.as_ref().map(|record| record.mod_revision);
                        done.node = answer.node;
                    }
                    recorder.client(done);
                    if answer.is_some() {
                        break;
                    }
                }
            }
        }))
        .await;
}
