//! `/v1/acl/…`: the bootstrap, policies and tokens (Consul's ACL API in cairn's shape). Every
//! change is a raft command, checked again where it applies; reads of tokens and policies are
//! served from the asked node's state. Everything but the bootstrap needs the management
//! policy.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cairn_node::acl::{self, AclCommand, AclOutcome, Credential, SecretHash};
use cairn_node::command::{ClientTag, Command, Response as StoreResponse};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::ApiState;
use super::caller::{Caller, require_management};
use super::error::ApiError;
use super::kv::client_tag;
use super::query::Query;
use crate::wire::{PoliciesBody, PolicyBody, REVISION_HEADER, TokenRequestBody, TokenSecretBody, TokensBody};

/// `POST /v1/acl/bootstrap`: once per cluster, by anyone; turns enforcement on.
pub(super) async fn bootstrap(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let tag = client_tag(&headers)?;
    let (accessor, secret) = (acl::fresh_accessor(), acl::fresh_secret());
    let command = AclCommand::Bootstrap { accessor: accessor.clone(), secret: SecretHash::of(&secret) };
    match change(&state, Credential::Anonymous, command, tag).await? {
        (AclOutcome::Bootstrapped, revision) => {
            let policies = vec![acl::MANAGEMENT.to_string()];
            let description = "bootstrap token".to_string();
            Ok(at(revision, Json(TokenSecretBody { accessor, secret, policies, description })))
        }
        (other, _) => Err(refused(other)),
    }
}

pub(super) async fn list_policies(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
) -> Result<Json<PoliciesBody>, ApiError> {
    Query::parse(uri.query(), &[])?;
    require_management(&state, &caller).await?;
    let acl = state.node.acl().await?;
    Ok(Json(PoliciesBody { policies: acl.policies().map(PolicyBody::of).collect() }))
}

pub(super) async fn get_policy(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Json<PolicyBody>, ApiError> {
    Query::parse(uri.query(), &[])?;
    require_management(&state, &caller).await?;
    let acl = state.node.acl().await?;
    acl.policy(&name).map(|policy| Json(PolicyBody::of(policy))).ok_or_else(|| refused(AclOutcome::PolicyNotFound))
}

pub(super) async fn create_policy(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let tag = client_tag(&headers)?;
    require_management(&state, &caller).await?;
    let body: PolicyBody = json_body(&body, "{\"name\",\"rules\":[{\"prefix\"|\"project\",\"access\"}],\"cluster\"}")?;
    put_policy(&state, caller, body, true, tag).await
}

pub(super) async fn update_policy(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let tag = client_tag(&headers)?;
    require_management(&state, &caller).await?;
    let body: PolicyBody = json_body(&body, "{\"name\",\"rules\":[{\"prefix\"|\"project\",\"access\"}],\"cluster\"}")?;
    if body.name != name {
        return Err(ApiError::bad_request(
            "invalid_acl",
            "the body's name differs from the path's; policies keep their names",
        ));
    }
    put_policy(&state, caller, body, false, tag).await
}

async fn put_policy(
    state: &ApiState,
    caller: Caller,
    body: PolicyBody,
    create: bool,
    tag: Option<ClientTag>,
) -> Result<Response, ApiError> {
    let policy = body.to_policy().map_err(|why| ApiError::bad_request("invalid_acl", why))?;
    let shown = PolicyBody::of(&policy);
    match change(state, caller.0, AclCommand::PutPolicy { policy, create }, tag).await? {
        (AclOutcome::Written, revision) => Ok(at(revision, Json(shown))),
        (other, _) => Err(refused(other)),
    }
}

pub(super) async fn delete_policy(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let tag = client_tag(&headers)?;
    require_management(&state, &caller).await?;
    deleted(change(&state, caller.0, AclCommand::DeletePolicy { name }, tag).await?)
}

pub(super) async fn list_tokens(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
) -> Result<Json<TokensBody>, ApiError> {
    Query::parse(uri.query(), &[])?;
    require_management(&state, &caller).await?;
    let acl = state.node.acl().await?;
    Ok(Json(TokensBody { tokens: acl.tokens().collect() }))
}

pub(super) async fn get_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(accessor): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    require_management(&state, &caller).await?;
    let acl = state.node.acl().await?;
    acl.token(&accessor).map(|token| Json(token).into_response()).ok_or_else(|| refused(AclOutcome::TokenNotFound))
}

/// `POST /v1/acl/tokens {"policies":[…],"description"}`: answers with the secret, shown once.
pub(super) async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let tag = client_tag(&headers)?;
    require_management(&state, &caller).await?;
    let body: TokenRequestBody = json_body(&body, "{\"policies\":[names],\"description\"}")?;
    let (accessor, secret) = (acl::fresh_accessor(), acl::fresh_secret());
    let command = AclCommand::CreateToken {
        accessor: accessor.clone(),
        secret: SecretHash::of(&secret),
        policies: body.policies.clone(),
        description: body.description.clone(),
    };
    match change(&state, caller.0, command, tag).await? {
        (AclOutcome::Written, revision) => {
            let TokenRequestBody { policies, description } = body;
            Ok(at(revision, Json(TokenSecretBody { accessor, secret, policies, description })))
        }
        (other, _) => Err(refused(other)),
    }
}

/// `PUT /v1/acl/tokens/{accessor}`: new policies and description; the secret stays.
pub(super) async fn update_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(accessor): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let tag = client_tag(&headers)?;
    require_management(&state, &caller).await?;
    let body: TokenRequestBody = json_body(&body, "{\"policies\":[names],\"description\"}")?;
    let command = AclCommand::UpdateToken {
        accessor: accessor.clone(),
        policies: body.policies.clone(),
        description: body.description.clone(),
    };
    match change(&state, caller.0, command, tag).await? {
        (AclOutcome::Written, revision) => {
            let view = cairn_node::acl::TokenView { accessor, policies: body.policies, description: body.description };
            Ok(at(revision, Json(view)))
        }
        (other, _) => Err(refused(other)),
    }
}

pub(super) async fn delete_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(accessor): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let tag = client_tag(&headers)?;
    require_management(&state, &caller).await?;
    deleted(change(&state, caller.0, AclCommand::DeleteToken { accessor }, tag).await?)
}

/// Applies an ACL change through raft on behalf of `credential`, under the client's tag when
/// it sent one (so a retry applies at most once, and a stray older attempt never after a newer
/// change of the same client): what it did, and the store
/// revision it applied at (it sits in the log after that revision's mutation and before the
/// next one).
async fn change(
    state: &ApiState,
    credential: Credential,
    command: AclCommand,
    tag: Option<ClientTag>,
) -> Result<(AclOutcome, u64), ApiError> {
    match state.node.write(Command::Acl(command), tag, credential).await? {
        StoreResponse::Acl { outcome, revision } => Ok((outcome, revision)),
        other => Err(ApiError::refusal(&other).unwrap_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected answer {other:?}"))
        })),
    }
}

fn deleted((outcome, revision): (AclOutcome, u64)) -> Result<Response, ApiError> {
    match outcome {
        AclOutcome::Deleted => Ok(at(revision, Json(json!({ "deleted": true })))),
        other => Err(refused(other)),
    }
}

/// An answer stamped with the revision its change applied at.
fn at(revision: u64, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(REVISION_HEADER, HeaderValue::from(revision));
    response
}

/// The error for an ACL command the ACL state refused to carry out.
fn refused(outcome: AclOutcome) -> ApiError {
    let (status, code, message) = match outcome {
        AclOutcome::AlreadyBootstrapped => {
            (StatusCode::CONFLICT, "acl_bootstrapped", "ACLs were already bootstrapped".to_string())
        }
        AclOutcome::NotBootstrapped => return super::caller::not_bootstrapped(),
        AclOutcome::PolicyExists => (StatusCode::CONFLICT, "policy_exists", "a policy with this name exists".into()),
        AclOutcome::PolicyNotFound => (StatusCode::NOT_FOUND, "policy_not_found", "no policy has this name".into()),
        AclOutcome::TokenExists => (StatusCode::CONFLICT, "token_exists", "a token with this accessor exists".into()),
        AclOutcome::TokenNotFound => (StatusCode::NOT_FOUND, "token_not_found", "no token has this accessor".into()),
        AclOutcome::UnknownPolicy { name } => {
            (StatusCode::BAD_REQUEST, "unknown_policy", format!("no policy is named {name:?}"))
        }
        AclOutcome::ReservedPolicy => (
            StatusCode::BAD_REQUEST,
            "reserved_policy",
            format!("the {} policy is built in and cannot be changed", acl::MANAGEMENT),
        ),
        AclOutcome::LimitReached => {
            (StatusCode::CONFLICT, "acl_limit_reached", "the cluster holds as many policies or tokens as it may".into())
        }
        AclOutcome::Bootstrapped | AclOutcome::Written | AclOutcome::Deleted => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected ACL outcome {outcome:?}"))
        }
    };
    ApiError::new(status, code, message)
}

fn json_body<T: DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_json", format!("expected {expected}: {e}")))
}
