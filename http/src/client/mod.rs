//! A client for the cairn API: it tries the nodes it knows in turn, retries what is safe to
//! retry (every write carries this client's identity and a serial, so a retry after an unknown
//! outcome never applies twice), and reports an unknown outcome as such, never as a success or
//! a failure.

mod transport;
mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use cairn_node::api::{ClusterView, Consistency, MemberKind, MemberView, Status};
use cairn_node::raft::Member;
use cairn_node::rt::{self, Duration, Instant};
use cairn_node::tls::ClientTls;
use hyper::StatusCode;
pub use hyper::header::{HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use thiserror::Error;

pub use hyper::Method;
pub use transport::{ExchangeError, Exchanger, Outgoing, Reply, Stream};
pub use watch::{WatchError, WatchItem, WatchStream};

use crate::wire::{
    AddMemberBody, CLIENT_HEADER, DeleteBody, ErrorBody, LAG_HEADER, LAST_CONTACT_HEADER, LEADER_HEADER, ListBody,
    MembersBody, NODE_HEADER, PoliciesBody, PolicyBody, PutBody, REVISION_HEADER, RecordBody, SERIAL_HEADER,
    TOKEN_HEADER, TokenRequestBody, TokenSecretBody, TokensBody,
};

/// How long one attempt and a whole call may take.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    /// Per attempt; longer than the server's request timeout, so the server's own
    /// `outcome_unknown` arrives before the client gives up on the exchange.
    pub attempt_timeout: Duration,
    /// For the whole call, across nodes and retries.
    pub call_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions { attempt_timeout: Duration::from_secs(6), call_timeout: Duration::from_secs(12) }
    }
}

/// Which node a call goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Start with the node that answered last, fail over to the others.
    Any,
    /// Start with this endpoint (an index into the client's list), fail over to the others.
    Prefer(usize),
    /// Only this endpoint: for stale reads, where the node matters.
    Only(usize),
}

/// Why a call failed, and so whether it may have taken effect.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ClientError {
    /// The server refused the request; it did not take effect.
    #[error("{code} ({status}): {message}")]
    Rejected { status: u16, code: String, message: String },
    /// A compare-and-swap found another revision; nothing changed. `current` is the record now.
    #[error("revision mismatch")]
    Mismatch { current: Option<Box<RecordBody>> },
    /// The write may or may not have taken effect.
    #[error("outcome unknown: {reason}")]
    OutcomeUnknown { reason: String },
    /// No node could be reached; the request did not take effect.
    #[error("no node reachable: {reason}")]
    Unavailable { reason: String },
    /// A watch asked for history older than the node keeps; `oldest` is the first it has.
    #[error("revision compacted; the oldest available is {oldest}")]
    Compacted { oldest: u64 },
    /// A node answered something this client cannot read.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl ClientError {
    /// True when the request certainly did not take effect.
    pub fn is_definite(&self) -> bool {
        !matches!(self, ClientError::OutcomeUnknown { .. } | ClientError::Protocol(_))
    }

    /// The server's error code, if a server refused the request.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Rejected { code, .. } => Some(code),
            ClientError::Mismatch { .. } => Some("revision_mismatch"),
            _ => None,
        }
    }
}

/// A successful answer and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<T> {
    pub value: T,
    /// The store revision the answer was produced at (`X-Cairn-Revision`).
    pub revision: u64,
    /// The endpoint (index into the client's list) that answered.
    pub endpoint: usize,
    /// The id of the node that answered (`X-Cairn-Node`).
    pub node: Option<u64>,
    /// The leader the answering node knew of (`X-Cairn-Leader`).
    pub leader: Option<u64>,
    /// For a stale read, how stale it may be (`X-Cairn-Last-Contact`, `X-Cairn-Lag`).
    pub staleness: Staleness,
}

/// How stale a `stale` read's answer may be, as the answering node reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Staleness {
    /// Milliseconds since the node's state was known to hold every acknowledged write; `None`
    /// if it never was since it started.
    pub last_contact_ms: Option<u64>,
    /// Revisions behind the newest the node has heard of.
    pub lag: Option<u64>,
}

impl Staleness {
    fn of(reply: &Reply) -> Staleness {
        Staleness {
            last_contact_ms: reply.header(LAST_CONTACT_HEADER).and_then(|value| value.parse().ok()),
            lag: reply.header(LAG_HEADER).and_then(|value| value.parse().ok()),
        }
    }
}

/// Bounds on a `stale` read (`max_stale`, `max_lag`); beyond them the node answers `too_stale`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StaleBounds {
    pub max_stale: Option<Duration>,
    pub max_lag: Option<u64>,
}

/// A cairn client over a list of node HTTP addresses (`host:port`).
pub struct CairnClient {
    endpoints: Vec<String>,
    exchanger: Exchanger,
    options: ClientOptions,
    preferred: AtomicUsize,
    identity: u128,
    serial: AtomicU64,
    /// The token's secret sent with every request, if any.
    token: Option<HeaderValue>,
}

/// What a call is, for the retry policy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Changes state under this client's tag: retrying after an unknown outcome is safe.
    TaggedWrite,
    /// Changes state idempotently (membership).
    IdempotentWrite,
    /// Changes state, and a second attempt would be a different change (an ACL bootstrap or a
    /// token's creation draws a fresh secret): never repeated once it may have been applied.
    Once,
    Read,
}

impl CairnClient {
    /// A client of `endpoints` that speaks HTTPS with `tls`, or plain HTTP without.
    pub fn with_tls(endpoints: Vec<String>, options: ClientOptions, tls: Option<ClientTls>) -> CairnClient {
        match tls {
            Some(tls) => CairnClient { exchanger: Exchanger::with_tls(tls), ..CairnClient::new(endpoints, options) },
            None => CairnClient::new(endpoints, options),
        }
    }

    pub fn new(endpoints: Vec<String>, options: ClientOptions) -> CairnClient {
        assert!(!endpoints.is_empty(), "a client needs at least one endpoint");
        let identity = (u128::from(rt::random_u64()) << 64) | u128::from(rt::random_u64());
        CairnClient {
            endpoints,
            exchanger: Exchanger::default(),
            options,
            preferred: AtomicUsize::new(0),
            identity,
            serial: AtomicU64::new(0),
            token: None,
        }
    }

    /// Sends `secret` as the token of every request (`X-Cairn-Token`); a parsed secret is
    /// always a valid header.
    pub fn with_token_secret(mut self, secret: Option<&cairn_node::acl::TokenSecret>) -> CairnClient {
        self.token = secret.and_then(|secret| HeaderValue::from_str(secret.expose()).ok());
        self
    }

    /// Sends `secret` as the token of every request (`X-Cairn-Token`).
    pub fn with_token(mut self, secret: Option<&str>) -> Result<CairnClient, ClientError> {
        self.token = match secret {
            None => None,
            Some(secret) => Some(HeaderValue::from_str(secret).map_err(|_| ClientError::Rejected {
                status: 0,
                code: "invalid_token".into(),
                message: "a token is printable text".into(),
            })?),
        };
        Ok(self)
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Sets `key` to `value`; with `prev_revision`, only if the key's mod_revision equals it
    /// (`0`: only if absent).
    pub async fn put(
        &self,
        route: Route,
        key: &str,
        value: Bytes,
        prev_revision: Option<u64>,
    ) -> Result<Answer<RecordBody>, ClientError> {
        let path = kv_path(key, &[("prev_revision", prev_revision.map(|r| r.to_string()))]);
        let reply = self.call(route, Kind::TaggedWrite, Method::PUT, &path, value, Vec::new()).await?;
        decode(reply)
    }

    /// Like [`CairnClient::put`], also replacing the key's labels.
    pub async fn put_labelled(
        &self,
        route: Route,
        key: &str,
        value: Bytes,
        labels: BTreeMap<String, String>,
        prev_revision: Option<u64>,
    ) -> Result<Answer<RecordBody>, ClientError> {
        let path = kv_path(key, &[("prev_revision", prev_revision.map(|r| r.to_string()))]);
        let (value, value_encoding) = match String::from_utf8(value.to_vec()) {
            Ok(text) => (text, None),
            Err(_) => {
                (base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &value), Some("base64".to_string()))
            }
        };
        let body = PutBody { value, labels: Some(labels), value_encoding };
        let body = Bytes::from(serde_json::to_vec(&body).expect("a put body serializes"));
        let json = vec![(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        let reply = self.call(route, Kind::TaggedWrite, Method::PUT, &path, body, json).await?;
        decode(reply)
    }

    /// One page of keys under `prefix` carrying `labels`, after the `continuation` token.
    pub async fn list(
        &self,
        route: Route,
        prefix: &str,
        labels: &[(String, String)],
        limit: usize,
        continuation: Option<&str>,
        consistency: Consistency,
    ) -> Result<Answer<ListBody>, ClientError> {
        let mut params = vec![
            ("prefix", prefix.to_string()),
            ("limit", limit.to_string()),
            ("consistency", level(consistency).to_string()),
        ];
        params.extend(labels.iter().map(|(name, value)| ("label", format!("{name}:{value}"))));
        params.extend(continuation.map(|token| ("continue", token.to_string())));
        let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let reply =
            self.call(route, Kind::Read, Method::GET, &format!("/v1/kv?{query}"), Bytes::new(), Vec::new()).await?;
        decode(reply)
    }

    pub async fn get(
        &self,
        route: Route,
        key: &str,
        consistency: Consistency,
    ) -> Result<Answer<Option<RecordBody>>, ClientError> {
        self.get_path(route, kv_path(key, &[("consistency", Some(level(consistency).to_string()))])).await
    }

    /// A `stale` read that the node refuses (`too_stale`) beyond `bounds`.
    pub async fn get_stale(
        &self,
        route: Route,
        key: &str,
        bounds: StaleBounds,
    ) -> Result<Answer<Option<RecordBody>>, ClientError> {
        let params = [
            ("consistency", Some(level(Consistency::Stale).to_string())),
            ("max_stale", bounds.max_stale.map(|bound| format!("{}ms", bound.as_millis()))),
            ("max_lag", bounds.max_lag.map(|bound| bound.to_string())),
        ];
        self.get_path(route, kv_path(key, &params)).await
    }

    async fn get_path(&self, route: Route, path: String) -> Result<Answer<Option<RecordBody>>, ClientError> {
        let (reply, endpoint) = self.call(route, Kind::Read, Method::GET, &path, Bytes::new(), Vec::new()).await?;
        if let Some(absent) = absent(&reply, endpoint) {
            return Ok(absent);
        }
        decode((reply, endpoint)).map(|answer: Answer<RecordBody>| Answer {
            value: Some(answer.value),
            revision: answer.revision,
            endpoint: answer.endpoint,
            node: answer.node,
            leader: answer.leader,
            staleness: answer.staleness,
        })
    }

    /// A long poll on `key`: waits up to `wait` for a change after `revision`, then reads the key
    /// at `consistency`. `Ok(None)` when nothing changed in time (the server's 304).
    pub async fn poll(
        &self,
        route: Route,
        key: &str,
        wait: Duration,
        revision: u64,
        consistency: Consistency,
    ) -> Result<Option<Answer<Option<RecordBody>>>, ClientError> {
        let params = [
            ("wait", Some(format!("{}ms", wait.as_millis()))),
            ("revision", Some(revision.to_string())),
            ("consistency", Some(level(consistency).to_string())),
        ];
        let path = kv_path(key, &params);
        let (reply, endpoint) = self.call(route, Kind::Read, Method::GET, &path, Bytes::new(), Vec::new()).await?;
        if reply.status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if let Some(absent) = absent(&reply, endpoint) {
            return Ok(Some(absent));
        }
        decode((reply, endpoint)).map(|answer: Answer<RecordBody>| {
            Some(Answer {
                value: Some(answer.value),
                revision: answer.revision,
                endpoint: answer.endpoint,
                node: answer.node,
                leader: answer.leader,
                staleness: answer.staleness,
            })
        })
    }

    pub async fn delete(
        &self,
        route: Route,
        key: &str,
        prev_revision: Option<u64>,
    ) -> Result<Answer<DeleteBody>, ClientError> {
        let path = kv_path(key, &[("prev_revision", prev_revision.map(|r| r.to_string()))]);
        let reply = self.call(route, Kind::TaggedWrite, Method::DELETE, &path, Bytes::new(), Vec::new()).await?;
        decode(reply)
    }

    pub async fn members(&self, route: Route) -> Result<Vec<MemberView>, ClientError> {
        let reply = self.call(route, Kind::Read, Method::GET, "/v1/cluster/members", Bytes::new(), Vec::new()).await?;
        decode::<MembersBody>(reply).map(|answer| answer.value.members)
    }

    /// `GET /v1/cluster`: raft membership joined with gossip state.
    pub async fn cluster(&self, route: Route) -> Result<ClusterView, ClientError> {
        let reply = self.call(route, Kind::Read, Method::GET, "/v1/cluster", Bytes::new(), Vec::new()).await?;
        decode::<ClusterView>(reply).map(|answer| answer.value)
    }

    /// `GET /metrics`: the node's Prometheus metrics, as text.
    pub async fn metrics(&self, route: Route) -> Result<String, ClientError> {
        let (reply, _) = self.call(route, Kind::Read, Method::GET, "/metrics", Bytes::new(), Vec::new()).await?;
        if !reply.status.is_success() {
            return Err(refusal(&reply));
        }
        String::from_utf8(reply.body.to_vec()).map_err(|_| ClientError::Protocol("metrics that are not UTF-8".into()))
    }

    pub async fn add_member(
        &self,
        route: Route,
        id: u64,
        member: &Member,
        kind: MemberKind,
    ) -> Result<Vec<MemberView>, ClientError> {
        let learner = kind == MemberKind::Learner;
        let body = AddMemberBody { id, peer: member.peer.clone(), http: member.http.clone(), learner };
        let body = Bytes::from(serde_json::to_vec(&body).expect("a member serializes"));
        let reply =
            self.call(route, Kind::IdempotentWrite, Method::POST, "/v1/cluster/members", body, Vec::new()).await?;
        decode::<MembersBody>(reply).map(|answer| answer.value.members)
    }

    pub async fn remove_member(&self, route: Route, id: u64) -> Result<Vec<MemberView>, ClientError> {
        let path = format!("/v1/cluster/members/{id}");
        let reply = self.call(route, Kind::IdempotentWrite, Method::DELETE, &path, Bytes::new(), Vec::new()).await?;
        decode::<MembersBody>(reply).map(|answer| answer.value.members)
    }

    /// Opens a watch on keys under `prefix` (with these `label=k:v` filters) from revision
    /// `start` on (`None`: only what happens from now). Tries the route's endpoints in turn.
    pub async fn watch(
        &self,
        route: Route,
        prefix: &str,
        labels: &[(String, String)],
        start: Option<u64>,
    ) -> Result<WatchStream, ClientError> {
        let mut path = format!(
            "/v1/watch?prefix={}",
            percent_encoding::utf8_percent_encode(prefix, percent_encoding::NON_ALPHANUMERIC)
        );
        for (name, value) in labels {
            let label = format!("{name}:{value}");
            path.push_str(&format!(
                "&label={}",
                percent_encoding::utf8_percent_encode(&label, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        if let Some(start) = start {
            path.push_str(&format!("&start_revision={start}"));
        }
        let (stream, endpoint) = self.open_stream(route, &path).await?;
        let node = stream.headers.get(NODE_HEADER).and_then(|value| value.to_str().ok()).and_then(|id| id.parse().ok());
        Ok(WatchStream::new(stream.body, endpoint, node))
    }

    /// Starts a backup download (`GET /v1/snapshot`): the answer's head, with the body unread.
    pub async fn snapshot(&self, route: Route) -> Result<transport::Stream, ClientError> {
        self.open_stream(route, "/v1/snapshot").await.map(|(stream, _)| stream)
    }

    /// Sends a GET for a streamed answer to the route's endpoints in turn, until one answers
    /// with success (returned with its endpoint's index, its body unread) or with a client
    /// error.
    async fn open_stream(&self, route: Route, path: &str) -> Result<(transport::Stream, usize), ClientError> {
        let mut last = ClientError::Unavailable { reason: "no endpoint tried".into() };
        for endpoint in self.order(route) {
            let outgoing = Outgoing {
                method: Method::GET,
                path_and_query: path,
                headers: self.token_header(),
                body: Bytes::new(),
            };
            let stream = match self
                .exchanger
                .open_stream(&self.endpoints[endpoint], outgoing, self.options.attempt_timeout)
                .await
            {
                Ok(stream) => stream,
                Err(error) => {
                    last = ClientError::Unavailable { reason: error.to_string() };
                    continue;
                }
            };
            if stream.status.is_success() {
                return Ok((stream, endpoint));
            }
            let body =
                http_body_util::BodyExt::collect(stream.body).await.map(|body| body.to_bytes()).unwrap_or_default();
            let refusal: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
            let code = refusal.as_ref().and_then(|r| r["error"]["code"].as_str()).unwrap_or("").to_string();
            if code == "revision_compacted" {
                let oldest = refusal.as_ref().and_then(|r| r["oldest_revision"].as_u64()).unwrap_or(0);
                return Err(ClientError::Compacted { oldest });
            }
            let message = refusal.as_ref().and_then(|r| r["error"]["message"].as_str()).unwrap_or("").to_string();
            last = ClientError::Rejected { status: stream.status.as_u16(), code, message };
            if stream.status.is_client_error() {
                return Err(last);
            }
        }
        Err(last)
    }

    pub async fn status(&self, route: Route) -> Result<Answer<Status>, ClientError> {
        let reply = self.call(route, Kind::Read, Method::GET, "/v1/status", Bytes::new(), Vec::new()).await?;
        decode(reply)
    }

    /// Sends one logical request, trying endpoints in turn until one gives a definite answer or
    /// the call's time runs out.
    async fn call(
        &self,
        route: Route,
        kind: Kind,
        method: Method,
        path: &str,
        body: Bytes,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<(Reply, usize), ClientError> {
        let deadline = Instant::now() + self.options.call_timeout;
        let tag = (kind == Kind::TaggedWrite).then(|| self.serial.fetch_add(1, Ordering::Relaxed) + 1);
        let order = self.order(route);
        let mut maybe_applied: Option<String> = None;
        let mut last_refusal = String::from("no endpoint tried");
        for attempt in 0.. {
            let endpoint = order[attempt % order.len()];
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || (attempt >= order.len() && route_is_only(route)) {
                break;
            }
            if attempt > 0 && attempt % order.len() == 0 {
                rt::sleep(Duration::from_millis(100).min(remaining)).await;
            }
            let outgoing = Outgoing {
                method: method.clone(),
                path_and_query: path,
                headers: self
                    .tag_headers(tag)
                    .into_iter()
                    .chain(self.token_header())
                    .chain(headers.iter().cloned())
                    .collect(),
                body: body.clone(),
            };
            let timeout = self.options.attempt_timeout.min(remaining);
            match self.exchanger.send(&self.endpoints[endpoint], outgoing, timeout).await {
                Ok(reply) => match classify(&reply) {
                    Verdict::Answer => {
                        self.preferred.store(endpoint, Ordering::Relaxed);
                        return Ok((reply, endpoint));
                    }
                    Verdict::Unknown(reason) => maybe_applied = Some(reason),
                    Verdict::TryElsewhere(reason) => last_refusal = reason,
                },
                Err(error) if error.never_sent() || kind == Kind::Read => last_refusal = error.to_string(),
                Err(error) => maybe_applied = Some(error.to_string()),
            }
            if maybe_applied.is_some() && kind == Kind::Once {
                break;
            }
        }
        Err(match maybe_applied {
            Some(reason) if kind != Kind::Read => ClientError::OutcomeUnknown { reason },
            _ => ClientError::Unavailable { reason: last_refusal },
        })
    }

    fn order(&self, route: Route) -> Vec<usize> {
        let count = self.endpoints.len();
        let first = match route {
            Route::Any => self.preferred.load(Ordering::Relaxed),
            Route::Prefer(index) | Route::Only(index) => index,
        } % count;
        match route {
            Route::Only(_) => vec![first],
            _ => (0..count).map(|offset| (first + offset) % count).collect(),
        }
    }

    fn token_header(&self) -> Vec<(HeaderName, HeaderValue)> {
        self.token.iter().map(|secret| (HeaderName::from_static(TOKEN_HEADER), secret.clone())).collect()
    }

    /// `POST /v1/acl/bootstrap`: the management token, with its secret (shown once).
    pub async fn acl_bootstrap(&self, route: Route) -> Result<TokenSecretBody, ClientError> {
        self.acl_answer(route, Kind::Once, Method::POST, "/v1/acl/bootstrap", None::<&()>)
            .await
            .map(|answer| answer.value)
    }

    pub async fn acl_policies(&self, route: Route) -> Result<Vec<PolicyBody>, ClientError> {
        let listed: PoliciesBody =
            self.acl_answer(route, Kind::Read, Method::GET, "/v1/acl/policies", None::<&()>).await?.value;
        Ok(listed.policies)
    }

    /// Creates the policy, or with `update` replaces the one of that name; the answer's revision
    /// is the store revision the change applied at.
    pub async fn acl_put_policy(
        &self,
        route: Route,
        policy: &PolicyBody,
        update: bool,
    ) -> Result<Answer<PolicyBody>, ClientError> {
        let (method, path) = match update {
            true => (Method::PUT, format!("/v1/acl/policies/{}", path_segment(&policy.name))),
            false => (Method::POST, "/v1/acl/policies".to_string()),
        };
        self.acl_answer(route, Kind::TaggedWrite, method, &path, Some(policy)).await
    }

    pub async fn acl_delete_policy(&self, route: Route, name: &str) -> Result<(), ClientError> {
        let path = format!("/v1/acl/policies/{}", path_segment(name));
        let _: serde_json::Value =
            self.acl_answer(route, Kind::IdempotentWrite, Method::DELETE, &path, None::<&()>).await?.value;
        Ok(())
    }

    pub async fn acl_tokens(&self, route: Route) -> Result<Vec<cairn_node::acl::TokenView>, ClientError> {
        let listed: TokensBody =
            self.acl_answer(route, Kind::Read, Method::GET, "/v1/acl/tokens", None::<&()>).await?.value;
        Ok(listed.tokens)
    }

    /// Creates a token with these policies: its accessor and secret (shown once).
    pub async fn acl_create_token(
        &self,
        route: Route,
        token: &TokenRequestBody,
    ) -> Result<TokenSecretBody, ClientError> {
        self.acl_answer(route, Kind::Once, Method::POST, "/v1/acl/tokens", Some(token)).await.map(|answer| answer.value)
    }

    pub async fn acl_update_token(
        &self,
        route: Route,
        accessor: &str,
        token: &TokenRequestBody,
    ) -> Result<cairn_node::acl::TokenView, ClientError> {
        let path = format!("/v1/acl/tokens/{}", path_segment(accessor));
        self.acl_answer(route, Kind::IdempotentWrite, Method::PUT, &path, Some(token)).await.map(|answer| answer.value)
    }

    pub async fn acl_delete_token(&self, route: Route, accessor: &str) -> Result<(), ClientError> {
        let path = format!("/v1/acl/tokens/{}", path_segment(accessor));
        let _: serde_json::Value =
            self.acl_answer(route, Kind::IdempotentWrite, Method::DELETE, &path, None::<&()>).await?.value;
        Ok(())
    }

    async fn acl_answer<T: DeserializeOwned>(
        &self,
        route: Route,
        kind: Kind,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<Answer<T>, ClientError> {
        let body = body.map(|body| Bytes::from(serde_json::to_vec(body).expect("ACL bodies serialize")));
        let json = vec![(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        let reply = self.call(route, kind, method, path, body.unwrap_or_default(), json).await?;
        decode(reply)
    }

    fn tag_headers(&self, serial: Option<u64>) -> Vec<(HeaderName, HeaderValue)> {
        let Some(serial) = serial else { return Vec::new() };
        vec![
            (
                HeaderName::from_static(CLIENT_HEADER),
                HeaderValue::from_str(&format!("{:032x}", self.identity)).expect("hex is a valid header"),
            ),
            (HeaderName::from_static(SERIAL_HEADER), HeaderValue::from(serial)),
        ]
    }
}

fn level(consistency: Consistency) -> &'static str {
    match consistency {
        Consistency::Linearizable => "linearizable",
        Consistency::Lease => "lease",
        Consistency::Stale => "stale",
    }
}

fn path_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn route_is_only(route: Route) -> bool {
    matches!(route, Route::Only(_))
}

/// How the client reads one node's answer.
enum Verdict {
    /// A definite answer (success or a refusal that another node would repeat).
    Answer,
    /// The node may have applied the request: `504`.
    Unknown(String),
    /// This node cannot help now (no leader, removed, not joined): ask another.
    TryElsewhere(String),
}

fn classify(reply: &Reply) -> Verdict {
    let code = || serde_json::from_slice::<ErrorBody>(&reply.body).map(|body| body.error.code).unwrap_or_default();
    match reply.status {
        StatusCode::GATEWAY_TIMEOUT => Verdict::Unknown(format!("{} {}", reply.status, code())),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::GONE => {
            Verdict::TryElsewhere(format!("{} {}", reply.status, code()))
        }
        _ => Verdict::Answer,
    }
}

/// Decodes a definite answer: a 2xx body, or the matching [`ClientError`].
fn decode<T: DeserializeOwned>((reply, endpoint): (Reply, usize)) -> Result<Answer<T>, ClientError> {
    let revision = reply.header(REVISION_HEADER).and_then(|value| value.parse().ok()).unwrap_or(0);
    let leader = reply.header(LEADER_HEADER).and_then(|value| value.parse().ok());
    let node = reply.header(NODE_HEADER).and_then(|value| value.parse().ok());
    if reply.status.is_success() {
        let value = serde_json::from_slice(&reply.body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        return Ok(Answer { value, revision, endpoint, node, leader, staleness: Staleness::of(&reply) });
    }
    Err(refusal(&reply))
}

/// The error an unsuccessful reply carries.
fn refusal(reply: &Reply) -> ClientError {
    let error: ErrorBody = match serde_json::from_slice(&reply.body) {
        Ok(error) => error,
        Err(_) => return ClientError::Protocol(format!("{} with a body that is not an error", reply.status)),
    };
    if error.error.code == "revision_mismatch" {
        return ClientError::Mismatch { current: error.current.flatten().map(Box::new) };
    }
    ClientError::Rejected { status: reply.status.as_u16(), code: error.error.code, message: error.error.message }
}

/// Turns a 404 `key_not_found` into the answer "absent".
fn absent(reply: &Reply, endpoint: usize) -> Option<Answer<Option<RecordBody>>> {
    if reply.status != StatusCode::NOT_FOUND {
        return None;
    }
    let body: ErrorBody = serde_json::from_slice(&reply.body).ok()?;
    (body.error.code == "key_not_found").then(|| Answer {
        value: None,
        revision: reply.header(REVISION_HEADER).and_then(|value| value.parse().ok()).unwrap_or(0),
        endpoint,
        node: reply.header(NODE_HEADER).and_then(|value| value.parse().ok()),
        leader: reply.header(LEADER_HEADER).and_then(|value| value.parse().ok()),
        staleness: Staleness::of(reply),
    })
}

fn kv_path(key: &str, params: &[(&str, Option<String>)]) -> String {
    let encoded = percent_encoding::utf8_percent_encode(key, KEY_ESCAPES);
    let mut path = format!("/v1/kv/{encoded}");
    let mut separator = '?';
    for (name, value) in params {
        if let Some(value) = value {
            path.push(separator);
            path.push_str(name);
            path.push('=');
            path.push_str(value);
            separator = '&';
        }
    }
    path
}

/// Characters escaped in a key's path segment: controls, space and URL delimiters except `/`,
/// which keys may contain and the server keeps as part of the key.
const KEY_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');
