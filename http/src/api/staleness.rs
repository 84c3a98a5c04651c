//! Bounded staleness for `consistency=stale` reads: the answer says how stale it may be
//! (`X-Cairn-Known-Leader`, `X-Cairn-Last-Contact`, `X-Cairn-Lag`), and `?max_stale=` /
//! `?max_lag=` turn an answer beyond the bound into `503 too_stale`.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use cairn_node::Node;
use cairn_node::api::{Consistency, Staleness};
use cairn_node::rt::Instant;

use super::error::ApiError;
use super::query::{Query, invalid, parse_duration};
use axum::response::{IntoResponse, Response};

use crate::wire::{KNOWN_LEADER_HEADER, LAG_HEADER, LAST_CONTACT_HEADER, REVISION_HEADER};

/// How stale a client accepts an answer to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    /// The longest since the answering node last heard from a leader.
    pub max_stale: Option<Duration>,
    /// The most revisions the answer may be behind the newest one the node has heard of.
    pub max_lag: Option<u64>,
}

impl Bounds {
    /// Reads the bounds; they only make sense for stale reads.
    pub fn parse(query: &Query, consistency: Consistency) -> Result<Bounds, ApiError> {
        let max_stale = match query.get("max_stale") {
            Some(text) => {
                Some(parse_duration(text).ok_or_else(|| invalid("max_stale", text, "a duration like 500ms or 2s"))?)
            }
            None => None,
        };
        let bounds = Bounds { max_stale, max_lag: query.u64("max_lag")? };
        if bounds != Bounds::default() && consistency != Consistency::Stale {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "max_stale and max_lag bound stale reads; add consistency=stale",
            ));
        }
        Ok(bounds)
    }
}

/// The staleness of an answer at `revision`, read after `contact` was taken, as headers, or
/// `too_stale` (with the same headers) if it is beyond `bounds`. A node that never heard from a
/// leader fails any `max_stale`.
pub async fn check(
    node: &Node,
    contact: Option<Instant>,
    revision: u64,
    bounds: Bounds,
) -> Result<HeaderMap, (ApiError, HeaderMap)> {
    let staleness = node.staleness(revision, contact).await;
    let headers = headers(&staleness);
    if let Some(max) = bounds.max_stale
        && staleness.last_contact.is_none_or(|contact| contact > max)
    {
        let since = staleness.last_contact.map_or_else(|| "never".to_string(), |d| format!("{} ms ago", d.as_millis()));
        let message = format!("this node last heard from a leader {since}, beyond max_stale {} ms", max.as_millis());
        return Err((ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_stale", message), headers));
    }
    if let Some(max) = bounds.max_lag
        && staleness.lag > max
    {
        let message = format!("the answer is {} revisions behind, beyond max_lag {max}", staleness.lag);
        return Err((ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_stale", message), headers));
    }
    Ok(headers)
}

/// For a stale read answered at `revision`, read after `contact` ([`Node::leader_contact`]) was
/// taken: its staleness headers, or the complete `too_stale` response when it is beyond
/// `bounds`. Other consistencies get no headers.
pub async fn headers_for(
    node: &Node,
    consistency: Consistency,
    contact: Option<Instant>,
    revision: u64,
    bounds: Bounds,
) -> Result<HeaderMap, Response> {
    if consistency != Consistency::Stale {
        return Ok(HeaderMap::new());
    }
    check(node, contact, revision, bounds).await.map_err(|(error, headers)| {
        let mut response = error.into_response();
        response.headers_mut().extend(headers);
        response.headers_mut().insert(REVISION_HEADER, HeaderValue::from(revision));
        response
    })
}

fn headers(staleness: &Staleness) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(leader) = staleness.known_leader {
        headers.insert(KNOWN_LEADER_HEADER, HeaderValue::from(leader));
    }
    if let Some(contact) = staleness.last_contact {
        headers.insert(LAST_CONTACT_HEADER, HeaderValue::from(u64::try_from(contact.as_millis()).unwrap_or(u64::MAX)));
    }
    headers.insert(LAG_HEADER, HeaderValue::from(staleness.lag));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(raw: &str) -> Result<Bounds, ApiError> {
        let query = Query::parse(Some(raw), &["consistency", "max_stale", "max_lag"])?;
        Bounds::parse(&query, query.consistency()?)
    }

    #[test]
    fn bounds_are_a_duration_and_a_count_on_stale_reads() {
        let parsed = bounds("consistency=stale&max_stale=2s&max_lag=5").unwrap();
        assert_eq!(parsed, Bounds { max_stale: Some(Duration::from_secs(2)), max_lag: Some(5) });
        assert_eq!(bounds("consistency=stale").unwrap(), Bounds::default());
    }

    #[test]
    fn bad_bounds_are_invalid_parameters() {
        for raw in ["consistency=stale&max_stale=soon", "consistency=stale&max_lag=-1", "max_lag=3"] {
            let error = bounds(raw).unwrap_err();
            assert_eq!(error.code, "invalid_parameter", "{raw}");
        }
    }
}
