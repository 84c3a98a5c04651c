//! `GET /v1/kv?prefix=…&label=…&limit=…&continue=…`: records in key order, filtered by prefix and
//! labels, paginated; with `wait` (and `revision`), a long poll on everything matching.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cairn_node::api::ListQuery;
use cairn_node::record::Key;
use cairn_node::store::filter::Filter;

use super::ApiState;
use super::caller::Caller;
use super::error::ApiError;
use super::longpoll::{Waited, wait_for_change};
use super::query::{Accepts, Query, invalid};
use super::staleness::{self, Bounds};
use crate::wire::{ListBody, REVISION_HEADER, RecordBody};

const LIMIT_DEFAULT: usize = 100;
const LIMIT_MAX: usize = 10_000;

pub(super) async fn list(State(state): State<ApiState>, caller: Caller, uri: Uri) -> Result<Response, ApiError> {
    let accepts = Accepts {
        once: &["prefix", "limit", "continue", "consistency", "wait", "revision", "max_stale", "max_lag"],
        repeated: &["label"],
    };
    let query = Query::parse_with(uri.query(), accepts)?;
    let filter =
        Filter { prefix: query.get("prefix").unwrap_or("").to_string(), labels: query.labels()?, ..Filter::default() };
    let limit = query.limit("limit", LIMIT_DEFAULT, LIMIT_MAX)?;
    let after = query.get("continue").map(decode_continue).transpose()?;
    let consistency = query.consistency()?;
    let bounds = Bounds::parse(&query, consistency)?;
    if let Some(wait) = query.wait()? {
        let since = query.u64("revision")?.unwrap_or_else(|| state.node.revision());
        if let Waited::TimedOut = wait_for_change(&state.node, &filter, since, wait, caller.0).await? {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
    }
    let contact = state.node.leader_contact();
    let listed = state.node.list(ListQuery { filter, after, limit }, consistency, caller.0).await?;
    let revision = HeaderValue::from(listed.revision);
    let stale_headers = match staleness::headers_for(&state.node, consistency, contact, listed.revision, bounds).await {
        Ok(headers) => headers,
        Err(too_stale) => return Ok(too_stale),
    };
    let body = ListBody {
        revision: listed.revision,
        total: listed.total,
        data: listed.records.iter().map(|record| RecordBody::new(record, listed.revision)).collect(),
        continuation: listed.next.as_deref().map(encode_continue),
    };
    let mut response = Json(body).into_response();
    response.headers_mut().extend(stale_headers);
    response.headers_mut().insert(REVISION_HEADER, revision);
    Ok(response)
}

/// The continuation token: the last key of the page, base64url so it survives any URL.
fn encode_continue(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

fn decode_continue(token: &str) -> Result<Key, ApiError> {
    let bytes =
        URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid("continue", token, "a token from a previous page"))?;
    let key = String::from_utf8(bytes).map_err(|_| invalid("continue", token, "a token from a previous page"))?;
    Ok(key.into())
}
