//! The probes: `/healthz` (the node serves), `/livez` and `/readyz` (etcd's, for Kubernetes'
//! liveness and readiness probes; `?verbose` lists every check). They are open to everyone and
//! answered by removed nodes too.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cairn_node::api::Role;
use cairn_node::node::Check;
use serde_json::json;

use super::ApiState;
use super::error::ApiError;
use super::query::Query;

/// 200 while the node serves; 503 once it was removed or is shutting down.
pub(super) async fn healthz(State(state): State<ApiState>) -> Response {
    match state.node.status().role {
        Role::Removed | Role::Shutdown => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "stopped"}))).into_response()
        }
        _ => Json(json!({"status": "ok"})).into_response(),
    }
}

/// 200 while the process serves and its store answers: restart the node when this fails.
pub(super) async fn livez(State(state): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    let verbose = verbose(&uri)?;
    probe("not_alive", state.node.liveness().await, verbose)
}

/// 200 while this node can serve linearizable reads: send it traffic only then.
pub(super) async fn readyz(State(state): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    let verbose = verbose(&uri)?;
    probe("not_ready", state.node.readiness(), verbose)
}

fn verbose(uri: &Uri) -> Result<bool, ApiError> {
    Query::parse(uri.query(), &["verbose"])?.flag("verbose")
}

/// `{"status":"ok"}`, or 503 with `code`, naming the failed checks; every check with `verbose`
/// (on failure the body's `checks` holds the failed ones, or all with `verbose`).
fn probe(code: &'static str, checks: Vec<Check>, verbose: bool) -> Result<Response, ApiError> {
    let shown = |check: &&Check| verbose || !check.passed;
    let listed: Vec<_> = checks
        .iter()
        .filter(shown)
        .map(|check| json!({"name": check.name, "passed": check.passed, "detail": check.detail}))
        .collect();
    let failed: Vec<&str> = checks.iter().filter(|check| !check.passed).map(|check| check.name).collect();
    match (failed.is_empty(), verbose) {
        (true, false) => Ok(Json(json!({"status": "ok"})).into_response()),
        (true, true) => Ok(Json(json!({"status": "ok", "checks": listed})).into_response()),
        (false, _) => {
            let message = format!("failed: {}", failed.join(", "));
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message).with_detail("checks", json!(listed)))
        }
    }
}
