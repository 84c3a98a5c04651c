//! `/v1/acl/…`: the bootstrap, policies and tokens (Consul's ACL API in cairn's shape). Every
//! change is a raft command, checked again where it applies; reads of tokens and policies are
//! served from the asked node's state. Everything but the bootstrap needs the management
//! policy.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cairn_node::acl::{self, AclCommand, AclOutcome, Credential, SecretHash};
use cairn_node::command::{ClientTag, Command, Response as StoreResponse};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::ApiState;
use super::caller::{Caller, require_management};
use super::error::ApiError;
use super::kv::{client_tag, read_body};
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
    match change(&state, Manager { credential: Credential::Anonymous, tag }, command).await? {
        (AclOutcome::Bootstrapped, revision) => {
            let policies = vec![acl::MANAGEMENT.to_string()];
            let description = "bootstrap token".to_string();
            Ok(at(revision, Json(TokenSecretBody { accessor, secret, policies, description })))
        }
        (other, _) => Err(refused(other)),
    }
}

/// The longest ACL request body: a policy of the most rules on the longest prefixes fits.
const ACL_BODY_BYTES_MAX: usize = 2 * 1024 * 1024;

/// A request of the management token, with no query parameters: its credential and the client
/// tag it sent, if any.
pub(super) struct Manager {
    credential: Credential,
    tag: Option<ClientTag>,
}

impl FromRequestParts<ApiState> for Manager {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Manager, ApiError> {
        Query::parse(parts.uri.query(), &[])?;
        let tag = client_tag(&parts.headers)?;
        let caller = Caller::from_request_parts(parts, state).await?;
        require_management(state, &caller).await?;
        Ok(Manager { credential: caller.0, tag })
    }
}

/// A management request with a JSON body of the shape `T`, read only once the caller is known
/// to hold the management policy.
pub(super) struct ManagerWith<T>(Manager, T);

/// What an ACL body looks like, for the error that answers a malformed one.
trait Shape: DeserializeOwned {
    const EXPECTED: &'static str;
}

impl Shape for PolicyBody {
    const EXPECTED: &'static str = "{\"name\",\"rules\":[{\"prefix\"|\"project\",\"access\"}],\"cluster\"}";
}

impl Shape for TokenRequestBody {
    const EXPECTED: &'static str = "{\"policies\":[names],\"description\"}";
}

impl<T: Shape> FromRequest<ApiState> for ManagerWith<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> Result<ManagerWith<T>, ApiError> {
        let (mut parts, body) = request.into_parts();
        let manager = Manager::from_request_parts(&mut parts, state).await?;
        let bytes = read_body(body, ACL_BODY_BYTES_MAX, "body_too_large", "body").await?;
        let body = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("expected {}: {e}", T::EXPECTED)))?;
        Ok(ManagerWith(manager, body))
    }
}

pub(super) async fn list_policies(State(state): State<ApiState>, _: Manager) -> Result<Json<PoliciesBody>, ApiError> {
    let acl = state.node.acl().await?;
    Ok(Json(PoliciesBody { policies: acl.policies().map(PolicyBody::of).collect() }))
}

pub(super) async fn get_policy(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    _: Manager,
) -> Result<Json<PolicyBody>, ApiError> {
    let acl = state.node.acl().await?;
    acl.policy(&name).map(|policy| Json(PolicyBody::of(policy))).ok_or_else(|| refused(AclOutcome::PolicyNotFound))
}

pub(super) async fn create_policy(
    State(state): State<ApiState>,
    ManagerWith(manager, body): ManagerWith<PolicyBody>,
) -> Result<Response, ApiError> {
    put_policy(&state, manager, body, true).await
}

pub(super) async fn update_policy(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    ManagerWith(manager, body): ManagerWith<PolicyBody>,
) -> Result<Response, ApiError> {
    if body.name != name {
        return Err(ApiError::bad_request(
            "invalid_acl",
            "the body's name differs from the path's; policies keep their names",
        ));
    }
    put_policy(&state, manager, body, false).await
}

async fn put_policy(state: &ApiState, manager: Manager, body: PolicyBody, create: bool) -> Result<Response, ApiError> {
    let policy = body.to_policy().map_err(|why| ApiError::bad_request("invalid_acl", why))?;
    let shown = PolicyBody::of(&policy);
    match change(state, manager, AclCommand::PutPolicy { policy, create }).await? {
        (AclOutcome::Written, revision) => Ok(at(revision, Json(shown))),
        (other, _) => Err(refused(other)),
    }
}

pub(super) async fn delete_policy(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    manager: Manager,
) -> Result<Response, ApiError> {
    deleted(change(&state, manager, AclCommand::DeletePolicy { name }).await?)
}

pub(super) async fn list_tokens(State(state): State<ApiState>, _: Manager) -> Result<Json<TokensBody>, ApiError> {
    let acl = state.node.acl().await?;
    Ok(Json(TokensBody { tokens: acl.tokens().collect() }))
}

pub(super) async fn get_token(
    State(state): State<ApiState>,
    Path(accessor): Path<String>,
    _: Manager,
) -> Result<Response, ApiError> {
    let acl = state.node.acl().await?;
    acl.token(&accessor).map(|token| Json(token).into_response()).ok_or_else(|| refused(AclOutcome::TokenNotFound))
}

/// `POST /v1/acl/tokens {"policies":[…],"description"}`: answers with the secret, shown once.
pub(super) async fn create_token(
    State(state): State<ApiState>,
    ManagerWith(manager, body): ManagerWith<TokenRequestBody>,
) -> Result<Response, ApiError> {
    let (accessor, secret) = (acl::fresh_accessor(), acl::fresh_secret());
    let command = AclCommand::CreateToken {
        accessor: accessor.clone(),
        secret: SecretHash::of(&secret),
        policies: body.policies.clone(),
        description: body.description.clone(),
    };
    match change(&state, manager, command).await? {
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
    Path(accessor): Path<String>,
    ManagerWith(manager, body): ManagerWith<TokenRequestBody>,
) -> Result<Response, ApiError> {
    let command = AclCommand::UpdateToken {
        accessor: accessor.clone(),
        policies: body.policies.clone(),
        description: body.description.clone(),
    };
    match change(&state, manager, command).await? {
        (AclOutcome::Written, revision) => {
            let view = cairn_node::acl::TokenView { accessor, policies: body.policies, description: body.description };
            Ok(at(revision, Json(view)))
        }
        (other, _) => Err(refused(other)),
    }
}

pub(super) async fn delete_token(
    State(state): State<ApiState>,
    Path(accessor): Path<String>,
    manager: Manager,
) -> Result<Response, ApiError> {
    deleted(change(&state, manager, AclCommand::DeleteToken { accessor }).await?)
}

/// Applies an ACL change through raft on behalf of the caller, under the client's tag when
/// it sent one (so a retry applies at most once, and a stray older attempt never after a newer
/// change of the same client): what it did, and the store
/// revision it applied at (it sits in the log after that revision's mutation and before the
/// next one).
async fn change(state: &ApiState, manager: Manager, command: AclCommand) -> Result<(AclOutcome, u64), ApiError> {
    match state.node.write(Command::Acl(command), manager.tag, manager.credential).await? {
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
        AclOutcome::LimitReached => (
            StatusCode::CONFLICT,
            "acl_limit_reached",
            "the cluster holds as many policies or tokens, or ACL bytes, as it may".into(),
        ),
        AclOutcome::Bootstrapped | AclOutcome::Written | AclOutcome::Deleted => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected ACL outcome {outcome:?}"))
        }
    };
    ApiError::new(status, code, message)
}
