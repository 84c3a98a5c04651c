//! A hostile client beside the workload: it reuses client tags for other writes and sends
//! malformed requests, through random nodes, while the nemesis runs.
//!
//! Its reused-tag writes aim at the workload's keys with values no recorded process wrote
//! (`forged.N`) or delete them, so a node that applied one corrupts what the history checkers
//! see (a read of an unwritten value, a lost acknowledged write). The write of its own key
//! that takes the tag first is recorded like any other (watchers see it). What it cannot leave
//! in the history it counts: every answer that accepted what must be refused is a broken
//! contract.

use bytes::Bytes;
use cairn_http::client::{Exchanger, Method, Outgoing, Reply};
use cairn_node::rt::{self, Duration, watch};
use cairn_node::tls::ClientTls;
use hyper::header::{HeaderName, HeaderValue};

use crate::generate::Rng;
use crate::history::{ClientEvent, EventType, Function, Value};
use crate::recorder::Recorder;

/// How the hostile client's requests were answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostileCounts {
    /// Requests sent that had to be refused.
    pub sent: u64,
    /// Refused with the expected status and code.
    pub refused: u64,
    /// No verdict: unreachable, no leader, outcome unknown, a full disk, a removed node (the
    /// cluster is under faults).
    pub inconclusive: u64,
    /// Accepted, or refused with the wrong status: what was accepted and how.
    pub broken: Vec<String>,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
const PAUSE_MAX_MS: u64 = 200;

/// One request the node must refuse, and the code it must refuse it with.
struct Probe {
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
    code: &'static str,
}

/// Who the hostile client is and where it sends.
pub struct HostileOptions {
    /// The nodes' HTTP addresses; each request goes to a random one.
    pub endpoints: Vec<String>,
    /// The workload's keys `k0` … `k{keys-1}`, which its reused tags aim at.
    pub keys: u64,
    /// Seeds its choices.
    pub seed: u64,
    /// Its recorded writes use processes from here up, one each (an unknown outcome retires a
    /// process, as in Jepsen).
    pub process_base: u64,
    /// How to reach nodes that speak only HTTPS.
    pub tls: Option<ClientTls>,
}

/// Runs until `stop`, then returns what it saw.
pub async fn run_hostile(
    options: HostileOptions,
    recorder: Recorder,
    mut stop: watch::Receiver<bool>,
) -> HostileCounts {
    let HostileOptions { endpoints, keys, seed, process_base, tls } = options;
    let mut rng = Rng::new(seed ^ 0x6e6f_7420_6672_6965);
    let exchanger = tls.map_or_else(Exchanger::default, Exchanger::with_tls);
    let mut counts = HostileCounts::default();
    let mut n = 0;
    while !*stop.borrow_and_update() {
        n += 1;
        let endpoint = &endpoints[rng.range(0, endpoints.len() as u64 - 1) as usize];
        let key = format!("k{}", rng.range(0, keys - 1));
        let probe = if rng.percent(60) {
            reuse_a_tag(&exchanger, endpoint, &mut rng, &key, n, (&recorder, process_base + n)).await
        } else {
            Some(malformed(&mut rng, &key, n))
        };
        if let Some(probe) = probe {
            counts.sent += 1;
            let reply = send(&exchanger, endpoint, &probe).await;
            judge(&mut counts, &probe, reply);
        }
        rt::sleep(Duration::from_millis(rng.range(1, PAUSE_MAX_MS))).await;
    }
    counts
}

/// Writes a key of its own under a fresh tag and, once that is acknowledged, returns a write of
/// workload key `key` under the same tag: a reused tag that must change nothing.
async fn reuse_a_tag(
    exchanger: &Exchanger,
    endpoint: &str,
    rng: &mut Rng,
    key: &str,
    n: u64,
    (recorder, process): (&Recorder, u64),
) -> Option<Probe> {
    let client = format!("{:x}", rng.next_u64() | 1 << 63);
    let tag = vec![("X-Cairn-Client", client), ("X-Cairn-Serial", "1".to_string())];
    let (own_key, value) = (format!("hostile-{n}"), format!("hostile.{n}"));
    let own = Probe {
        method: Method::PUT,
        path: format!("/v1/kv/{own_key}"),
        headers: tag.clone(),
        body: value.clone(),
        code: "",
    };
    let record =
        |event_type| ClientEvent::new(process, event_type, Function::Write, &own_key, Value::Str(value.clone()));
    recorder.client(record(EventType::Invoke));
    let reply = send(exchanger, endpoint, &own).await;
    let completion = match &reply {
        Ok(reply) if reply.status.is_success() => {
            let mut done = record(EventType::Ok);
            done.revision = serde_json::from_slice::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|body| body["mod_revision"].as_u64());
            done
        }
        Ok(reply) if reply.status.is_client_error() => record(EventType::Fail),
        _ => record(EventType::Info),
    };
    let applied = completion.event_type == EventType::Ok;
    recorder.client(completion);
    if !applied {
        return None;
    }
    let (method, path, body) = match rng.range(0, 2) {
        0 => (Method::PUT, format!("/v1/kv/{key}"), format!("forged.{n}")),
        1 => (Method::DELETE, format!("/v1/kv/{key}"), String::new()),
        _ => (Method::PUT, format!("/v1/kv/{key}?prev_revision=0"), format!("forged.{n}")),
    };
    Some(Probe { method, path, headers: tag, body, code: "client_tag_reused" })
}

/// A request that breaks one of the node's rules.
fn malformed(rng: &mut Rng, key: &str, n: u64) -> Probe {
    let probe =
        |method, path: String, headers, body: &str, code| Probe { method, path, headers, body: body.into(), code };
    let json = vec![("Content-Type", "application/json".to_string())];
    match rng.range(0, 4) {
        0 => probe(Method::PUT, format!("/v1/kv/.kie/default/{n}"), vec![], "raw", "reserved_key"),
        1 => probe(
            Method::PUT,
            format!("/v1/kv/{key}"),
            json,
            r#"{"value":"forged","labels":{"bad name":"x"}}"#,
            "invalid_label",
        ),
        2 => probe(
            Method::PUT,
            format!("/v1/kv/{key}"),
            vec![("X-Cairn-Client", "+a".into()), ("X-Cairn-Serial", "1".into())],
            "forged",
            "invalid_header",
        ),
        3 => probe(Method::DELETE, "/v1/kv/".to_string(), vec![], "", "invalid_key"),
        _ => probe(
            Method::POST,
            "/v1/cluster/members".to_string(),
            json,
            r#"{"id":0,"peer":"nowhere","http":"nowhere"}"#,
            "invalid_member",
        ),
    }
}

async fn send(exchanger: &Exchanger, endpoint: &str, probe: &Probe) -> Result<Reply, String> {
    let headers = probe
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((HeaderName::from_bytes(name.as_bytes()).ok()?, HeaderValue::from_str(value).ok()?))
        })
        .collect();
    let outgoing = Outgoing {
        method: probe.method.clone(),
        path_and_query: &probe.path,
        headers,
        body: Bytes::from(probe.body.clone()),
    };
    exchanger.send(endpoint, outgoing, REQUEST_TIMEOUT).await.map_err(|error| error.to_string())
}

fn judge(counts: &mut HostileCounts, probe: &Probe, reply: Result<Reply, String>) {
    let reply = match reply {
        Ok(reply) => reply,
        Err(_) => return counts.inconclusive += 1,
    };
    let status = reply.status.as_u16();
    let code = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|body| body["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    if code == probe.code {
        counts.refused += 1;
    } else if matches!(status, 503 | 504 | 507) || code == "node_removed" {
        counts.inconclusive += 1;
    } else {
        let what = format!("{} {} answered {status} {code:?}, expected {:?}", probe.method, probe.path, probe.code);
        counts.broken.push(what);
    }
}
