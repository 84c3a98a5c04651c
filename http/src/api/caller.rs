//! Who is asking: the token a request carries (`Authorization: Bearer <secret>`, or
//! `X-Cairn-Token: <secret>` as Consul's `X-Consul-Token`), reduced at once to the hash of
//! its secret. Whether it may do what it asks is decided by the store that serves or applies
//! the request (see `cairn_node::acl`).

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use cairn_node::acl::{Access, Credential, Denial};

use super::ApiState;
use super::error::ApiError;
use crate::wire::TOKEN_HEADER;

/// Bytes of a presented secret; ours are 32, and anything much longer is no token of ours.
const SECRET_BYTES_MAX: usize = 256;

/// The credential of the request being served.
pub struct Caller(pub Credential);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        let bearer = parts.headers.get(axum::http::header::AUTHORIZATION).map(|value| {
            let text = value.to_str().unwrap_or("");
            let (scheme, secret) = text.split_once(' ').unwrap_or((text, ""));
            scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim()).ok_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Authorization must be `Bearer <token>`")
            })
        });
        let header = parts.headers.get(TOKEN_HEADER).map(|value| {
            value.to_str().map_err(|_| {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", format!("{TOKEN_HEADER} is not text"))
            })
        });
        let secret = match (bearer, header) {
            (None, None) => return Ok(Caller(Credential::Anonymous)),
            (Some(_), Some(_)) => {
                let message = format!("give the token once: Authorization or {TOKEN_HEADER}, not both");
                return Err(ApiError::bad_request("invalid_header", message));
            }
            (Some(secret), None) | (None, Some(secret)) => secret?,
        };
        if secret.is_empty() || secret.len() > SECRET_BYTES_MAX {
            return Err(ApiError::from(cairn_node::api::NodeError::Denied(Denial::Unauthenticated)));
        }
        Ok(Caller(Credential::from_secret(secret)))
    }
}

/// Refuses the request unless its caller has at least `need` on the cluster (membership and
/// status): in the cluster's current ACL state for a change (a membership change is not
/// checked again where it applies), in this node's for a look.
pub(super) async fn require_cluster(state: &ApiState, caller: &Caller, need: Access) -> Result<(), ApiError> {
    if need == Access::Write {
        state.node.catch_up().await?;
    }
    let authority = state.node.authority(caller.0).await?;
    authority.check(authority.cluster() >= need).map_err(|denial| cairn_node::api::NodeError::Denied(denial).into())
}

/// Refuses the request unless its caller holds the management policy, and ACLs are on, in the
/// cluster's current ACL state: a bootstrap or a revocation is seen at once on every node.
pub(super) async fn require_management(state: &ApiState, caller: &Caller) -> Result<(), ApiError> {
    state.node.catch_up().await?;
    let authority = state.node.authority(caller.0).await?;
    if let cairn_node::acl::Authority::Open = authority {
        return Err(not_bootstrapped());
    }
    authority.check(authority.manages_acl()).map_err(|denial| cairn_node::api::NodeError::Denied(denial).into())
}

/// Refuses the request unless ACLs are off or its caller holds the management policy: for what
/// exposes everything at once (a backup holds every key and every token). This node's ACL
/// state decides, as for a stale read: it is the state of the data the node would hand out,
/// and a backup must be possible from a member that lost its quorum.
pub(super) async fn require_management_when_enforced(state: &ApiState, caller: &Caller) -> Result<(), ApiError> {
    let authority = state.node.authority(caller.0).await?;
    let allowed = matches!(authority, cairn_node::acl::Authority::Open) || authority.manages_acl();
    authority.check(allowed).map_err(|denial| cairn_node::api::NodeError::Denied(denial).into())
}

pub(super) fn not_bootstrapped() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "acl_not_bootstrapped",
        "ACLs are off until POST /v1/acl/bootstrap (cairn acl bootstrap) creates the management token",
    )
}
