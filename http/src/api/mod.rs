//! The HTTP API: routes, strict parameter parsing, JSON bodies and error mapping.

mod acl;
mod caller;
mod cluster;
mod error;
mod health;
mod kie;
mod kv;
mod labels;
mod list;
mod longpoll;
mod metrics;
mod query;
mod snapshot;
mod staleness;
mod watch;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use cairn_node::Node;

pub use error::ApiError;

use crate::wire::{LEADER_HEADER, NODE_HEADER, REVISION_HEADER};

/// Everything a handler needs: the node it fronts.
#[derive(Clone)]
pub struct ApiState {
    pub node: Node,
}

/// The full API router for `node`. Every collection route also answers with a trailing slash,
/// as ServiceComb kie's server does (its documentation's first command posts to `…/kie/kv/`).
pub fn router(node: Node) -> Router {
    let state = ApiState { node };
    Router::new()
        .route("/v1/kv", get(list::list))
        .route("/v1/kv/", get(list::list).put(kv::empty_key).delete(kv::empty_key))
        .route("/v1/kv/{*key}", get(kv::get).put(kv::put).delete(kv::delete))
        .route("/v1/cluster", get(cluster::cluster))
        .route("/v1/cluster/members", get(cluster::list_members).post(cluster::add_member))
        .route("/v1/cluster/members/", get(cluster::list_members).post(cluster::add_member))
        .route("/v1/cluster/members/{id}", delete(cluster::remove_member))
        .route("/v1/status", get(cluster::status))
        .route("/v1/snapshot", get(snapshot::save))
        .route("/v1/watch", get(watch::watch))
        .route("/v1/{project}/kie/kv", post(kie::create).get(kie::list).delete(kie::delete_many))
        .route("/v1/{project}/kie/kv/", post(kie::create).get(kie::list).delete(kie::delete_many))
        .route("/v1/{project}/kie/kv/{id}", get(kie::get).put(kie::update).delete(kie::delete))
        .route("/v1/acl/bootstrap", post(acl::bootstrap))
        .route("/v1/acl/policies", get(acl::list_policies).post(acl::create_policy))
        .route("/v1/acl/policies/", get(acl::list_policies).post(acl::create_policy))
        .route("/v1/acl/policies/{name}", get(acl::get_policy).put(acl::update_policy).delete(acl::delete_policy))
        .route("/v1/acl/tokens", get(acl::list_tokens).post(acl::create_token))
        .route("/v1/acl/tokens/", get(acl::list_tokens).post(acl::create_token))
        .route("/v1/acl/tokens/{accessor}", get(acl::get_token).put(acl::update_token).delete(acl::delete_token))
        .route("/healthz", get(health::healthz))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), cluster_headers))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::count_requests))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not accept that method")
}

/// Refuses every request once the node was removed, and stamps every answer with the store's
/// revision (unless the handler already did, with the revision it read at), the answering
/// node's id and the leader.
async fn cluster_headers(State(state): State<ApiState>, request: Request<Body>, next: Next) -> Response {
    let path = request.uri().path();
    let exempt = matches!(path, "/healthz" | "/livez" | "/readyz" | "/metrics" | "/v1/status");
    let mut response = if state.node.is_removed() && !exempt {
        ApiError::from(cairn_node::api::NodeError::NodeRemoved).into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    if !headers.contains_key(REVISION_HEADER) {
        headers.insert(REVISION_HEADER, HeaderValue::from(state.node.revision()));
    }
    headers.insert(NODE_HEADER, HeaderValue::from(state.node.id()));
    if let Some(leader) = state.node.leader() {
        headers.insert(LEADER_HEADER, HeaderValue::from(leader));
    }
    response
}
