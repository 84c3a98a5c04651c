//! Cluster routes: members (list, add, remove), this node's status, and health.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use cairn_node::acl::Access;
use cairn_node::api::{ClusterView, MemberKind};
use cairn_node::raft::Member;

use super::ApiState;
use super::caller::{Caller, require_cluster};
use super::error::ApiError;
use super::query::Query;
use crate::wire::{AddMemberBody, MembersBody};

/// `GET /v1/cluster`: every node raft or gossip knows, joining raft membership and gossip state.
pub(super) async fn cluster(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
) -> Result<Json<ClusterView>, ApiError> {
    Query::parse(uri.query(), &[])?;
    require_cluster(&state, &caller, Access::Read).await?;
    Ok(Json(state.node.cluster().await))
}

pub(super) async fn list_members(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
) -> Result<Json<MembersBody>, ApiError> {
    Query::parse(uri.query(), &[])?;
    require_cluster(&state, &caller, Access::Read).await?;
    Ok(Json(MembersBody { members: state.node.members() }))
}

/// Adds a member (what `--join` calls). Idempotent: adding a voter again changes nothing.
pub(super) async fn add_member(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
    body: Bytes,
) -> Result<Json<MembersBody>, ApiError> {
    Query::parse(uri.query(), &[])?;
    require_cluster(&state, &caller, Access::Write).await?;
    let request: AddMemberBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("expected {{\"id\",\"peer\",\"http\"[,\"learner\"]}}: {e}"))
    })?;
    if request.id == 0 {
        return Err(ApiError::bad_request("invalid_member", "node id 0 is reserved"));
    }
    for (name, address) in [("peer", &request.peer), ("http", &request.http)] {
        if address.parse::<std::net::SocketAddr>().is_err() {
            return Err(ApiError::bad_request(
                "invalid_member",
                format!("{name} must be an ip:port address, got {address:?}"),
            ));
        }
    }
    let member = Member { peer: request.peer, http: request.http };
    let kind = if request.learner { MemberKind::Learner } else { MemberKind::Voter };
    let members = state.node.add_member(request.id, member, kind).await?;
    Ok(Json(MembersBody { members }))
}

pub(super) async fn remove_member(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Json<MembersBody>, ApiError> {
    Query::parse(uri.query(), &[])?;
    require_cluster(&state, &caller, Access::Write).await?;
    let id = id.parse().map_err(|_| ApiError::bad_request("invalid_member", format!("{id:?} is not a node id")))?;
    let members = state.node.remove_member(id).await?;
    Ok(Json(MembersBody { members }))
}

pub(super) async fn status(State(state): State<ApiState>, caller: Caller, uri: Uri) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    require_cluster(&state, &caller, Access::Read).await?;
    Ok(Json(state.node.status()).into_response())
}
