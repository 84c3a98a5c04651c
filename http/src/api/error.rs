//! Errors as clients see them: an HTTP status and a JSON body
//! `{"error":{"code":"…","message":"…"}}` with a machine-readable code.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_node::acl::Denial;
use cairn_node::api::NodeError;
use cairn_node::validate::{Invalid, Rule};
use serde_json::{Value, json};

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra top-level fields, e.g. the current record of a failed compare-and-swap.
    pub details: Option<(&'static str, Value)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A request the node's rules refuse, with the code the HTTP routes use for the same rule.
    pub fn invalid(invalid: Invalid) -> ApiError {
        let (status, code) = match invalid.rule {
            Rule::Key => (StatusCode::BAD_REQUEST, "invalid_key"),
            Rule::Reserved => (StatusCode::BAD_REQUEST, "reserved_key"),
            Rule::Value => (StatusCode::PAYLOAD_TOO_LARGE, "value_too_large"),
            Rule::Label => (StatusCode::BAD_REQUEST, "invalid_label"),
            Rule::Project => (StatusCode::BAD_REQUEST, "invalid_project"),
            Rule::KieId => (StatusCode::BAD_REQUEST, "invalid_id"),
            Rule::KieField => (StatusCode::BAD_REQUEST, "invalid_json"),
            Rule::Member => (StatusCode::BAD_REQUEST, "invalid_member"),
            Rule::Acl => (StatusCode::BAD_REQUEST, "invalid_acl"),
        };
        ApiError::new(status, code, invalid.message)
    }

    /// The error for a store answer that refused a tagged request without applying it; `None`
    /// for every other answer.
    pub fn refusal(response: &cairn_node::command::Response) -> Option<ApiError> {
        use cairn_node::command::Response;
        match response {
            Response::Superseded { .. } => Some(ApiError::new(
                StatusCode::CONFLICT,
                "request_superseded",
                "this client has completed a newer request; this retry was not applied",
            )),
            Response::TagReused { .. } => Some(ApiError::new(
                StatusCode::CONFLICT,
                "client_tag_reused",
                "this client id and serial were already used for a different request; nothing was applied",
            )),
            Response::Denied { denial, .. } => Some(NodeError::Denied(*denial).into()),
            _ => None,
        }
    }

    pub fn with_detail(mut self, name: &'static str, value: Value) -> ApiError {
        self.details = Some((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": { "code": self.code, "message": self.message } });
        if let Some((name, value)) = self.details {
            body[name] = value;
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> ApiError {
        let message = error.to_string();
        let (status, code) = match error {
            NodeError::NoLeader => (StatusCode::SERVICE_UNAVAILABLE, "no_leader"),
            NodeError::OutcomeUnknown { .. } => (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown"),
            NodeError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            NodeError::NodeRemoved => (StatusCode::GONE, "node_removed"),
            NodeError::NotJoined => (StatusCode::SERVICE_UNAVAILABLE, "not_joined"),
            NodeError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            NodeError::MemberRetired { .. } => (StatusCode::CONFLICT, "member_id_retired"),
            NodeError::MemberConflict { .. } => (StatusCode::CONFLICT, "member_conflict"),
            NodeError::MemberNotFound { .. } => (StatusCode::NOT_FOUND, "member_not_found"),
            NodeError::MembershipRefused { .. } => (StatusCode::CONFLICT, "membership_change_refused"),
            NodeError::Invalid(invalid) => return ApiError::invalid(invalid),
            NodeError::InsufficientStorage { .. } => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
            NodeError::StorageUnavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            NodeError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            NodeError::Denied(Denial::Unauthenticated) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            NodeError::Denied(Denial::PermissionDenied) => (StatusCode::FORBIDDEN, "permission_denied"),
            NodeError::SnapshotInProgress => (StatusCode::TOO_MANY_REQUESTS, "snapshot_in_progress"),
        };
        ApiError::new(status, code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(error: ApiError) -> (StatusCode, Option<String>, Value) {
        let response = error.into_response();
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, retry_after, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn an_unknown_outcome_is_504_outcome_unknown() {
        let (status, _, body) = body_of(NodeError::OutcomeUnknown { reason: "lost".into() }.into()).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(body["error"]["code"], "outcome_unknown");
    }

    #[tokio::test]
    async fn no_leader_is_503_with_retry_after() {
        let (status, retry_after, body) = body_of(NodeError::NoLeader.into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "no_leader");
        assert!(body["error"]["message"].as_str().unwrap().contains("leader"));
    }

    #[tokio::test]
    async fn details_appear_beside_the_error() {
        let error = ApiError::new(StatusCode::PRECONDITION_FAILED, "revision_mismatch", "changed")
            .with_detail("current", json!({"key": "a"}));
        let (status, _, body) = body_of(error).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(body["current"]["key"], "a");
    }
}
