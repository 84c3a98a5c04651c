//! The system under test: which HTTP request each operation becomes, and how an answer is judged.
//! Both systems are driven by the same connections and clients; only this translation differs.

use bytes::Bytes;
use cairn_http::client::{ExchangeError, Method};
use cairn_http::wire::ErrorBody;
use clap::ValueEnum;

use super::etcd;
use super::workload::Op;

/// Which API the requests are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// cairn's `/v1/kv/{key}`.
    Cairn,
    /// etcd's v3 JSON gateway (`/v3/kv/put`, `/v3/kv/range`).
    Etcd,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Cairn => "cairn",
            System::Etcd => "etcd",
        }
    }

    pub fn default_endpoint(self) -> &'static str {
        match self {
            System::Cairn => "127.0.0.1:7700",
            System::Etcd => "127.0.0.1:2379",
        }
    }
}

/// How reads are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// A quorum round confirms the leader after the read arrives (cairn ReadIndex; etcd's
    /// default range).
    Linearizable,
    /// cairn only: the leader answers within its lease, without a quorum round.
    Lease,
    /// The asked node answers from its own state (cairn `stale`; etcd `serializable`).
    #[value(alias = "serializable")]
    Stale,
}

impl Consistency {
    /// The name on the asked system's API.
    pub fn name(self, system: System) -> &'static str {
        match (self, system) {
            (Consistency::Linearizable, _) => "linearizable",
            (Consistency::Lease, _) => "lease",
            (Consistency::Stale, System::Cairn) => "stale",
            (Consistency::Stale, System::Etcd) => "serializable",
        }
    }
}

/// One HTTP request, ready for a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub body: Bytes,
}

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done as asked.
    Ok,
    /// A read that found no value: a successful request, counted apart.
    Miss,
    /// Anything else, labelled for the report's error table (status and code, or the failure of
    /// the exchange), without request-specific details so that equal failures add up.
    Failed(String),
}

/// Builds and judges the requests of one run.
#[derive(Clone)]
pub struct Requests {
    system: System,
    consistency: Consistency,
    value: Bytes,
    /// The value as etcd's gateway wants it, encoded once per run.
    value_base64: String,
}

impl Requests {
    pub fn new(system: System, consistency: Consistency, value: Bytes) -> Requests {
        let value_base64 = etcd::base64(&value);
        Requests { system, consistency, value, value_base64 }
    }

    pub fn build(&self, op: Op, key: &str) -> Request {
        match (self.system, op) {
            (System::Cairn, Op::Put) => {
                Request { method: Method::PUT, path: format!("/v1/kv/{key}"), body: self.value.clone() }
            }
            (System::Cairn, Op::Get) => Request {
                method: Method::GET,
                path: format!("/v1/kv/{key}?consistency={}", self.consistency.name(System::Cairn)),
                body: Bytes::new(),
            },
            (System::Etcd, Op::Put) => Request {
                method: Method::POST,
                path: etcd::PUT_PATH.to_string(),
                body: etcd::put_body(key, &self.value_base64),
            },
            (System::Etcd, Op::Get) => Request {
                method: Method::POST,
                path: etcd::RANGE_PATH.to_string(),
                body: etcd::range_body(key, self.consistency == Consistency::Stale),
            },
        }
    }

    /// A cheap request every node of the system answers with 200, sent to each endpoint before
    /// the run so that a wrong address or `--target` is reported before any load starts.
    pub fn preflight(&self) -> Request {
        match self.system {
            System::Cairn => Request { method: Method::GET, path: "/v1/status".to_string(), body: Bytes::new() },
            System::Etcd => {
                Request { method: Method::POST, path: etcd::STATUS_PATH.to_string(), body: Bytes::from_static(b"{}") }
            }
        }
    }

    /// The revision a successful cairn put got (its record's `mod_revision`).
    pub fn revision(&self, body: &[u8]) -> Option<u64> {
        let record: serde_json::Value = serde_json::from_slice(body).ok()?;
        record.get("mod_revision")?.as_u64()
    }

    /// Judges an answer by its status and body.
    pub fn judge(&self, op: Op, status: u16, body: &[u8]) -> Outcome {
        match self.system {
            System::Cairn => judge_cairn(op, status, body),
            System::Etcd => judge_etcd(op, status, body),
        }
    }
}

fn judge_cairn(op: Op, status: u16, body: &[u8]) -> Outcome {
    let code = || serde_json::from_slice::<ErrorBody>(body).map(|body| body.error.code);
    match status {
        200..=299 => Outcome::Ok,
        404 if op == Op::Get && code().is_ok_and(|code| code == "key_not_found") => Outcome::Miss,
        _ => Outcome::Failed(match code() {
            Ok(code) => format!("{status} {code}"),
            Err(_) => format!("{status} (not a cairn error body)"),
        }),
    }
}

fn judge_etcd(op: Op, status: u16, body: &[u8]) -> Outcome {
    match (status, op) {
        (200, Op::Get) if !etcd::range_found(body) => Outcome::Miss,
        (200, _) => Outcome::Ok,
        _ => Outcome::Failed(format!("{status} {}", etcd::error_message(body))),
    }
}

/// The report's label for an exchange that got no answer.
pub fn exchange_failure(error: &ExchangeError) -> String {
    match error {
        ExchangeError::Connect { reason, .. } => format!("cannot connect: {reason}"),
        ExchangeError::Timeout { .. } => "no answer within --timeout".to_string(),
        ExchangeError::Broken { reason, .. } => format!("connection broken: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(system: System, consistency: Consistency) -> Requests {
        Requests::new(system, consistency, Bytes::from_static(b"v"))
    }

    #[test]
    fn cairn_puts_send_the_raw_value_and_gets_name_the_consistency() {
        let cairn = requests(System::Cairn, Consistency::Stale);
        let put = cairn.build(Op::Put, "00000001");
        assert_eq!((put.method, put.path.as_str(), &put.body[..]), (Method::PUT, "/v1/kv/00000001", &b"v"[..]));
        let get = cairn.build(Op::Get, "00000001");
        assert_eq!((get.method, get.path.as_str()), (Method::GET, "/v1/kv/00000001?consistency=stale"));
        assert!(get.body.is_empty());
    }

    #[test]
    fn etcd_requests_go_to_the_gateway_and_stale_reads_become_serializable_ranges() {
        let etcd = requests(System::Etcd, Consistency::Stale);
        let put = etcd.build(Op::Put, "k");
        assert_eq!((put.method, put.path.as_str()), (Method::POST, "/v3/kv/put"));
        assert_eq!(&put.body[..], br#"{"key":"aw==","value":"dg=="}"#);
        let get = etcd.build(Op::Get, "k");
        assert_eq!(get.path, "/v3/kv/range");
        assert_eq!(&get.body[..], br#"{"key":"aw==","serializable":true}"#);
        let linearizable = requests(System::Etcd, Consistency::Linearizable).build(Op::Get, "k");
        assert_eq!(&linearizable.body[..], br#"{"key":"aw=="}"#);
    }

    #[test]
    fn cairn_answers_are_judged_by_status_and_error_code() {
        let cairn = requests(System::Cairn, Consistency::Linearizable);
        let not_found = br#"{"error":{"code":"key_not_found","message":"no such key"}}"#;
        let no_leader = br#"{"error":{"code":"no_leader","message":"no leader"}}"#;
        assert_eq!(cairn.judge(Op::Put, 200, b"{}"), Outcome::Ok);
        assert_eq!(cairn.judge(Op::Get, 404, not_found), Outcome::Miss);
        assert_eq!(cairn.judge(Op::Get, 503, no_leader), Outcome::Failed("503 no_leader".into()));
        assert_eq!(cairn.judge(Op::Put, 404, b"nope"), Outcome::Failed("404 (not a cairn error body)".into()));
    }

    #[test]
    fn etcd_answers_are_judged_by_status_and_whether_a_range_found_the_key() {
        let etcd = requests(System::Etcd, Consistency::Linearizable);
        assert_eq!(etcd.judge(Op::Put, 200, br#"{"header":{}}"#), Outcome::Ok);
        assert_eq!(etcd.judge(Op::Get, 200, br#"{"header":{}}"#), Outcome::Miss);
        assert_eq!(etcd.judge(Op::Get, 200, br#"{"header":{},"kvs":[],"count":"1"}"#), Outcome::Ok);
        let timeout = br#"{"error":"etcdserver: request timed out","code":14}"#;
        assert_eq!(etcd.judge(Op::Put, 503, timeout), Outcome::Failed("503 etcdserver: request timed out".into()));
    }

    #[test]
    fn a_put_answer_gives_the_revision_the_put_got() {
        let cairn = requests(System::Cairn, Consistency::Linearizable);
        let record = br#"{"key":"k","value":"v","revision":9,"create_revision":2,"mod_revision":9,"version":3}"#;
        assert_eq!(cairn.revision(record), Some(9));
        assert_eq!(cairn.revision(b"{}"), None);
    }

    #[test]
    fn each_system_has_its_name_for_a_stale_read() {
        assert_eq!(Consistency::Stale.name(System::Cairn), "stale");
        assert_eq!(Consistency::Stale.name(System::Etcd), "serializable");
        assert_eq!(Consistency::from_str("serializable", false), Ok(Consistency::Stale));
    }
}
