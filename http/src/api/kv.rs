//! `/v1/kv/{key}`: put (optionally compare-and-swap), get at a chosen consistency, delete.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cairn_node::api::Consistency;
use cairn_node::command::{ClientTag, Command, Precondition, Response as StoreResponse};
use cairn_node::record::{Key, Labels};
use cairn_node::store::filter::Filter;
use cairn_node::validate;

use super::ApiState;
use super::caller::Caller;
use super::error::ApiError;
use super::labels::validate_label_map;
use super::longpoll::{Waited, wait_for_change};
use super::query::{Query, decimal_u64};
use super::staleness::{self, Bounds};
use crate::wire::{CLIENT_HEADER, DeleteBody, PutBody, REVISION_HEADER, RecordBody, SERIAL_HEADER};

const KEY_PREFIX: &str = "/v1/kv/";

pub(super) async fn empty_key() -> ApiError {
    ApiError::bad_request("invalid_key", "the key is empty")
}

pub(super) async fn get(State(state): State<ApiState>, caller: Caller, uri: Uri) -> Result<Response, ApiError> {
    let query =
        Query::parse(uri.query(), &["consistency", "raw", "redirect", "wait", "revision", "max_stale", "max_lag"])?;
    let key = key_of(&uri, &state)?;
    let consistency = query.consistency()?;
    let bounds = Bounds::parse(&query, consistency)?;
    if consistency != Consistency::Stale
        && let Some(redirect) = redirect_to_leader(&state, &query, &uri)?
    {
        return Ok(redirect);
    }
    if let Some(wait) = query.wait()? {
        let since = query.u64("revision")?.unwrap_or_else(|| state.node.revision());
        if let Waited::TimedOut = wait_for_change(&state.node, &Filter::key(&*key), since, wait, caller.0).await? {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
    }
    let contact = state.node.leader_contact();
    let result = state.node.read(key.clone(), consistency, caller.0).await?;
    let revision = HeaderValue::from(result.revision);
    let stale_headers = match staleness::headers_for(&state.node, consistency, contact, result.revision, bounds).await {
        Ok(headers) => headers,
        Err(too_stale) => return Ok(too_stale),
    };
    let Some(record) = result.record else {
        let mut response = ApiError::new(StatusCode::NOT_FOUND, "key_not_found", format!("key {key:?} does not exist"))
            .into_response();
        response.headers_mut().extend(stale_headers);
        response.headers_mut().insert(REVISION_HEADER, revision);
        return Ok(response);
    };
    let mut response = if query.flag("raw")? {
        ([(header::CONTENT_TYPE, "application/octet-stream")], Body::from(record.value.clone())).into_response()
    } else {
        Json(RecordBody::new(&record, result.revision)).into_response()
    };
    response.headers_mut().extend(stale_headers);
    response.headers_mut().insert(REVISION_HEADER, revision);
    Ok(response)
}

pub(super) async fn put(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let query = Query::parse(uri.query(), &["prev_revision", "redirect"])?;
    let key = writable_key_of(&uri, &state)?;
    let expect = precondition(&query)?;
    let tag = client_tag(&headers)?;
    let limit = state.node.config().limits.value_bytes_max;
    let (value, labels) = if is_json(&headers) {
        value_and_labels(read_body(body, limit + JSON_OVERHEAD_MAX, "value_too_large", "value").await?, limit)?
    } else {
        (read_body(body, limit, "value_too_large", "value").await?, None)
    };
    if let Some(redirect) = redirect_to_leader(&state, &query, &uri)? {
        return Ok(redirect);
    }
    let command = Command::Put { key, value, labels, expect };
    answer(state.node.write(command, tag, caller.0).await?)
}

/// Whether the body is JSON: a media type is case-insensitive and may carry parameters
/// (`Application/JSON; charset=utf-8`).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) else { return false };
    let media_type = value.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case("application/json")
}

/// Room for the JSON around a value (quoting, escapes, base64, labels) beyond the value limit.
const JSON_OVERHEAD_MAX: usize = 512 * 1024;

/// Reads `{"value":…,"labels":{…}}` (`value_encoding: "base64"` for binary values).
fn value_and_labels(body: Bytes, limit: usize) -> Result<(Bytes, Option<Labels>), ApiError> {
    let parsed: PutBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("expected {{\"value\",\"labels\"}}: {e}")))?;
    let value = match parsed.value_encoding.as_deref() {
        None => Bytes::from(parsed.value),
        Some("base64") => BASE64.decode(&parsed.value).map(Bytes::from).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("value_encoding is base64 but value is not: {e}"))
        })?,
        Some(other) => return Err(ApiError::bad_request("invalid_json", format!("unknown value_encoding {other:?}"))),
    };
    if value.len() > limit {
        let message = format!("the value exceeds the {limit}-byte limit");
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "value_too_large", message));
    }
    if let Some(labels) = &parsed.labels {
        validate_label_map(labels)?;
    }
    Ok((value, parsed.labels))
}

pub(super) async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = Query::parse(uri.query(), &["prev_revision", "redirect"])?;
    let key = writable_key_of(&uri, &state)?;
    let expect = precondition(&query)?;
    let tag = client_tag(&headers)?;
    if let Some(redirect) = redirect_to_leader(&state, &query, &uri)? {
        return Ok(redirect);
    }
    answer(state.node.write(Command::Delete { key, expect }, tag, caller.0).await?)
}

/// Turns the store's answer to a write into the HTTP answer.
fn answer(response: StoreResponse) -> Result<Response, ApiError> {
    let revision = HeaderValue::from(response.revision());
    let mut http = match response {
        StoreResponse::Put { record, revision } => Json(RecordBody::new(&record, revision)).into_response(),
        StoreResponse::Delete { deleted, revision } => {
            Json(DeleteBody { deleted: deleted.is_some(), revision }).into_response()
        }
        StoreResponse::Mismatch { current, revision } => {
            let body = current.as_ref().map(|record| RecordBody::new(record, revision));
            let message = match &current {
                Some(record) => format!("the key's mod_revision is {}", record.mod_revision),
                None => "the key does not exist".to_string(),
            };
            return Err(ApiError::new(StatusCode::PRECONDITION_FAILED, "revision_mismatch", message)
                .with_detail("current", serde_json::to_value(body).expect("records serialize")));
        }
        other => {
            return Err(ApiError::refusal(&other).unwrap_or_else(|| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "unexpected answer to a key write")
            }));
        }
    };
    http.headers_mut().insert(REVISION_HEADER, revision);
    Ok(http)
}

/// The key is the rest of the path after `/v1/kv/`, percent-decoded, UTF-8, within limits.
fn key_of(uri: &Uri, state: &ApiState) -> Result<Key, ApiError> {
    let raw = uri.path().strip_prefix(KEY_PREFIX).unwrap_or_default();
    let key = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("invalid_key", "the key is not valid UTF-8"))?;
    validate::key(&key, &state.node.config().limits).map_err(ApiError::invalid)?;
    Ok(Key::from(key.as_ref()))
}

/// A key native writes may change: the kie routes own everything under `.kie/`.
fn writable_key_of(uri: &Uri, state: &ApiState) -> Result<Key, ApiError> {
    let key = key_of(uri, state)?;
    validate::native_key(&key, &state.node.config().limits).map_err(ApiError::invalid)?;
    Ok(key)
}

fn precondition(query: &Query) -> Result<Precondition, ApiError> {
    Ok(query.u64("prev_revision")?.map_or(Precondition::Always, Precondition::ModRevision))
}

/// The optional client identity that makes a retried write safe: both headers or neither.
pub(super) fn client_tag(headers: &HeaderMap) -> Result<Option<ClientTag>, ApiError> {
    let text = |name: &str| headers.get(name).map(|value| value.to_str().unwrap_or("\u{fffd}"));
    match (text(CLIENT_HEADER), text(SERIAL_HEADER)) {
        (None, None) => Ok(None),
        (Some(client), Some(serial)) => {
            let client = client_id(client).ok_or_else(|| {
                ApiError::bad_request("invalid_header", format!("{CLIENT_HEADER} must be 1 to 32 hex digits"))
            })?;
            let serial = decimal_u64(serial).ok_or_else(|| {
                ApiError::bad_request("invalid_header", format!("{SERIAL_HEADER} must be a decimal integer"))
            })?;
            Ok(Some(ClientTag { client, serial }))
        }
        _ => Err(ApiError::bad_request("invalid_header", format!("{CLIENT_HEADER} and {SERIAL_HEADER} go together"))),
    }
}

/// A client id: 1 to 32 hex digits and nothing else (`u128::from_str_radix` alone also takes a
/// leading `+`).
fn client_id(text: &str) -> Option<u128> {
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

/// The whole body, at most `limit` bytes: a longer one is 413 with `code`, one that cannot be
/// read (a malformed chunked encoding, a connection cut mid-body) is 400.
pub(super) async fn read_body(body: Body, limit: usize, code: &'static str, what: &str) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let error = error.into_inner();
        if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            let message = format!("the {what} exceeds the {limit}-byte limit");
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message);
        }
        ApiError::bad_request("invalid_body", format!("the request body is malformed: {error}"))
    })
}

/// With `?redirect`, a node that is not the leader answers 307 to the leader's HTTP address.
fn redirect_to_leader(state: &ApiState, query: &Query, uri: &Uri) -> Result<Option<Response>, ApiError> {
    if !query.flag("redirect")? {
        return Ok(None);
    }
    let node = &state.node;
    let Some(leader) = node.leader() else { return Err(cairn_node::api::NodeError::NoLeader.into()) };
    if leader == node.id() {
        return Ok(None);
    }
    let member = node.member(leader).ok_or_else(|| ApiError::from(cairn_node::api::NodeError::NoLeader))?;
    let path_and_query = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let scheme = if node.config().tls.is_some() { "https" } else { "http" };
    let location = format!("{scheme}://{}{path_and_query}", member.http);
    let location = HeaderValue::try_from(location).map_err(|_| ApiError::from(cairn_node::api::NodeError::NoLeader))?;
    Ok(Some((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response()))
}
