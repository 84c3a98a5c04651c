//! `GET /metrics` (Prometheus), and the middleware that counts and times every request.
//!
//! Open to everyone, as etcd serves it and as the probes are: it carries counts and latencies,
//! never a key, value or token, and its labels are route templates, methods, status codes and
//! node ids.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_node::metrics::{CONTENT_TYPE, RequestLabels, UNMATCHED_ROUTE};
use cairn_node::rt::Instant;

use super::ApiState;
use super::error::ApiError;
use super::query::Query;

/// The node's metrics in the OpenMetrics text format. No query parameters.
pub(super) async fn metrics(State(state): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let text = state.node.render_metrics().await;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// Counts the request under its route template (never the raw path: a client could mint label
/// values without end) and times it to its response head.
pub(super) async fn count_requests(State(state): State<ApiState>, request: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED_ROUTE, MatchedPath::as_str).to_string();
    let method = method_label(request.method()).to_string();
    let response = next.run(request).await;
    let labels = RequestLabels { route, method, code: response.status().as_u16() };
    state.node.metrics_registry().observe_request(labels, started.elapsed().as_secs_f64());
    response
}

/// The standard methods by name; any other (HTTP allows extension methods) as `other`, so a
/// client cannot mint label values that way either.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}
