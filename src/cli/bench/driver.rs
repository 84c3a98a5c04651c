//! The load: `clients` closed-loop clients, each sending its next request when the previous one
//! is answered, over `conns` keep-alive connections spread over the endpoints in turn.
//!
//! ```text
//!  client 0 ─┐                ┌─ connection 0 ── endpoint 0
//!  client 1 ─┼─ client % conns┼─ connection 1 ── endpoint 1      (connection % endpoints)
//!  client 2 ─┘                └─ …
//!        │ claim a request number (stops at --total or after --duration)
//!        ▼
//!   per-client Tally (histograms) ── merged at the end ──▶ Report
//! ```
//!
//! HTTP/1.1 carries one request at a time per connection, so a client whose connection is busy
//! waits for it, and that wait is part of its latency, as a real client's would be.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_http::client::{ExchangeError, Exchanger, Outgoing, Reply};
use cairn_node::rt::{self, Duration, Instant};
use cairn_node::tls::ClientTls;
use hyper::header::{HeaderName, HeaderValue};

use super::report::{Tally, thousands};
use super::target::{Outcome, Request, Requests, exchange_failure};
use super::workload::{KeyOrder, KeySpace, Mix, Picker};

/// When a run stops sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this many requests in all.
    Total(u64),
    /// Once this much time has passed; requests in flight then still complete.
    After(Duration),
}

/// Everything a run needs, validated.
pub struct Load {
    pub endpoints: Vec<String>,
    pub clients: u32,
    pub conns: u32,
    pub stop: Stop,
    pub keys: KeySpace,
    pub order: KeyOrder,
    pub mix: Mix,
    pub requests: Requests,
    /// For one exchange, not counting the wait for a busy connection.
    pub timeout: Duration,
    pub seed: u64,
    /// Show the live progress line (on a terminal only).
    pub progress: bool,
    /// Note the revision each successful put got and when it was sent (for `watch`).
    pub keep_revisions: bool,
    /// How to reach the endpoints: HTTPS with this client TLS, or plain HTTP.
    pub tls: Option<ClientTls>,
    /// Sent with every request (the ACL token).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Load {
    pub fn exchanger(&self) -> Exchanger {
        match &self.tls {
            Some(tls) => Exchanger::with_tls(tls.clone()),
            None => Exchanger::default(),
        }
    }
}

/// What a run measured.
pub struct Measured {
    pub tally: Tally,
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
    /// With `keep_revisions`: each successful put's revision and when it was sent.
    pub sent: Vec<(u64, Instant)>,
}

/// One keep-alive connection to one endpoint. The exchanger pools connections; taking `turn`
/// around each exchange keeps it to one request at a time, so it holds exactly one connection.
struct Connection {
    endpoint: String,
    exchanger: Exchanger,
    headers: Vec<(HeaderName, HeaderValue)>,
    turn: tokio::sync::Mutex<()>,
}

impl Connection {
    async fn send(&self, request: Request, timeout: Duration) -> Result<Reply, ExchangeError> {
        let _turn = self.turn.lock().await;
        let headers = self.headers.clone();
        let outgoing = Outgoing { method: request.method, path_and_query: &request.path, headers, body: request.body };
        self.exchanger.send(&self.endpoint, outgoing, timeout).await
    }
}

/// Counters shared by the clients: request numbers handed out, and outcomes for the progress line.
#[derive(Default)]
struct Counters {
    claimed: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    /// The next request number, or `None` once the run should stop sending.
    fn claim(&self, stop: Stop, started: Instant) -> Option<u64> {
        if let Stop::After(duration) = stop
            && started.elapsed() >= duration
        {
            return None;
        }
        let sequence = self.claimed.fetch_add(1, Ordering::Relaxed);
        match stop {
            Stop::Total(total) if sequence >= total => None,
            _ => Some(sequence),
        }
    }
}

/// Sends the load's preflight request to each endpoint; an error names the first endpoint that
/// did not answer it with 200.
pub async fn preflight(load: &Load, system: &str) -> Result<(), String> {
    let exchanger = load.exchanger();
    for endpoint in &load.endpoints {
        let request = load.requests.preflight();
        let outgoing = Outgoing {
            method: request.method.clone(),
            path_and_query: &request.path,
            headers: load.headers.clone(),
            body: request.body,
        };
        let asked = format!("{} {}", request.method, request.path);
        match exchanger.send(endpoint, outgoing, Duration::from_secs(5)).await {
            Ok(reply) if reply.status.is_success() => {}
            Ok(reply) => {
                return Err(format!(
                    "{endpoint} answered {asked} with {}: is it {system}? (--target picks the system)",
                    reply.status
                ));
            }
            Err(error) => return Err(format!("{system} at {endpoint} did not answer {asked}: {error}")),
        }
    }
    Ok(())
}

/// Runs the load to its end and merges what every client saw.
pub async fn drive(load: Arc<Load>) -> Measured {
    let connections: Vec<Arc<Connection>> = (0..load.conns as usize)
        .map(|index| {
            Arc::new(Connection {
                endpoint: load.endpoints[index % load.endpoints.len()].clone(),
                exchanger: load.exchanger(),
                headers: load.headers.clone(),
                turn: tokio::sync::Mutex::new(()),
            })
        })
        .collect();
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let progress = (load.progress && std::io::stderr().is_terminal())
        .then(|| rt::spawn(show_progress(Arc::clone(&counters), started)));
    let clients: Vec<_> = (0..load.clients)
        .map(|index| {
            let connection = Arc::clone(&connections[index as usize % connections.len()]);
            rt::spawn(client(index, Arc::clone(&load), connection, Arc::clone(&counters), started))
        })
        .collect();
    let (mut tally, mut sent) = (Tally::default(), Vec::new());
    for client in clients {
        let (client_tally, client_sent) = client.await.expect("a bench client does not panic");
        tally.merge(client_tally);
        sent.extend(client_sent);
    }
    let elapsed = started.elapsed();
    if let Some(progress) = progress {
        progress.abort();
        eprint!("\r\x1b[2K");
    }
    Measured { tally, elapsed, sent }
}

async fn client(
    index: u32,
    load: Arc<Load>,
    connection: Arc<Connection>,
    counters: Arc<Counters>,
    started: Instant,
) -> (Tally, Vec<(u64, Instant)>) {
    let mut picker = Picker::new(load.seed, index, load.order, load.mix);
    let (mut tally, mut sent_revisions) = (Tally::default(), Vec::new());
    while let Some(sequence) = counters.claim(load.stop, started) {
        let (op, key) = picker.next(sequence, &load.keys);
        let request = load.requests.build(op, &load.keys.key(key));
        let sent = Instant::now();
        let result = connection.send(request, load.timeout).await;
        let latency = sent.elapsed();
        let refused = matches!(result, Err(ExchangeError::Connect { .. }));
        let outcome = match result {
            Ok(reply) => {
                let outcome = load.requests.judge(op, reply.status.as_u16(), &reply.body);
                if load.keep_revisions
                    && outcome == Outcome::Ok
                    && let Some(revision) = load.requests.revision(&reply.body)
                {
                    sent_revisions.push((revision, sent));
                }
                outcome
            }
            Err(error) => Outcome::Failed(exchange_failure(&error)),
        };
        let counter = if matches!(outcome, Outcome::Failed(_)) { &counters.failed } else { &counters.answered };
        counter.fetch_add(1, Ordering::Relaxed);
        tally.record(op, outcome, latency);
        if refused {
            // A closed port refuses at once; pausing keeps a client from spinning through the
            // rest of the run in a tight loop of failures.
            rt::sleep(Duration::from_millis(100)).await;
        }
    }
    (tally, sent_revisions)
}

/// Rewrites one stderr line each second: elapsed time, answered and failed requests, and the
/// rate over the last second.
async fn show_progress(counters: Arc<Counters>, started: Instant) {
    let mut previous = 0;
    loop {
        rt::sleep(Duration::from_secs(1)).await;
        let answered = counters.answered.load(Ordering::Relaxed);
        let failed = counters.failed.load(Ordering::Relaxed);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r\x1b[2K{:>7.1} s  {:>10} answered  {:>6} failed  {:>8} ops/s",
            started.elapsed().as_secs_f64(),
            thousands(answered),
            thousands(failed),
            thousands(answered - previous)
        );
        let _ = stderr.flush();
        previous = answered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_hands_out_exactly_that_many_request_numbers() {
        let counters = Counters::default();
        let started = Instant::now();
        let claimed: Vec<u64> = std::iter::from_fn(|| counters.claim(Stop::Total(3), started)).collect();
        assert_eq!(claimed, [0, 1, 2]);
        assert_eq!(counters.claim(Stop::Total(3), started), None);
    }

    #[test]
    fn a_duration_stops_handing_out_request_numbers_once_it_has_passed() {
        let counters = Counters::default();
        let started = Instant::now();
        assert_eq!(counters.claim(Stop::After(Duration::from_secs(3600)), started), Some(0));
        assert_eq!(counters.claim(Stop::After(Duration::ZERO), started), None);
    }
}
