//! ServiceComb kie's v1 routes over the same store: a kie kv is the record
//! `.kie/{project}/{id}`, so kie writes are linearizable, share the global revision and show up
//! in native listings and watches.
//!
//! - `POST /v1/{project}/kie/kv` creates (key + labels identify a kv within a project);
//! - `GET /v1/{project}/kie/kv` lists with `label=k:v`, `key=`, `match=exact`, `offset`/`limit`,
//!   and `wait`/`revision` long polling (`304` with an empty body on timeout or when nothing
//!   changed after `revision`); every list and get carries `X-Kie-Revision`;
//! - `GET|PUT|DELETE /v1/{project}/kie/kv/{id}`; `DELETE /v1/{project}/kie/kv` with `{"ids":[…]}`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cairn_node::Node;
use cairn_node::acl::Credential;
use cairn_node::api::{Consistency, ListQuery};
use cairn_node::command::{Command, Response as StoreResponse};
use cairn_node::record::{KIE_PREFIX, Record, kie_key};
use cairn_node::rt;
use cairn_node::store::filter::Filter;
use cairn_node::validate::{self, KIE_STATUSES, KIE_VALUE_TYPES};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::ApiState;
use super::caller::Caller;
use super::error::ApiError;
use super::labels::validate_label_map;
use super::longpoll::{Waited, wait_for_change};
use super::query::{Accepts, Query, invalid};
use crate::wire::{KIE_REVISION_HEADER, KieCreateBody, KieDeleteBody, KieKvBody, KieListBody, KieUpdateBody};

const LIMIT_MAX: usize = 1_000;

pub(super) async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let project = project_name(&project)?;
    let body: KieCreateBody = json_body(&body)?;
    let limits = state.node.config().limits;
    if body.key.is_empty() || body.key.len() > limits.key_bytes_max {
        return Err(ApiError::bad_request("invalid_key", format!("key must be 1 to {} bytes", limits.key_bytes_max)));
    }
    check_value(&body.value, limits.value_bytes_max)?;
    validate_label_map(&body.labels)?;
    let command = Command::KieCreate {
        project: project.into(),
        id: new_id().into(),
        key: body.key.into(),
        labels: body.labels,
        value: Bytes::from(body.value),
        value_type: one_of("value_type", body.value_type, &KIE_VALUE_TYPES)?,
        status: one_of("status", body.status, &KIE_STATUSES)?,
    };
    kv_answer(state.node.write(command, None, caller.0).await?)
}

pub(super) async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let (project, id) = (project_name(&project)?, kv_id(&id)?);
    let body: KieUpdateBody = json_body(&body)?;
    if let Some(value) = &body.value {
        check_value(value, state.node.config().limits.value_bytes_max)?;
    }
    let status = body.status.map(|status| one_of("status", Some(status), &KIE_STATUSES)).transpose()?;
    let command =
        Command::KieUpdate { project: project.into(), id: id.into(), value: body.value.map(Bytes::from), status };
    match state.node.write(command, None, caller.0).await? {
        StoreResponse::KieNotFound { .. } => Err(missing(&state.node, project, id, caller.0).await),
        answer => kv_answer(answer),
    }
}

pub(super) async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let (project, id) = (project_name(&project)?, kv_id(&id)?);
    let read = state.node.read(kie_key(project, id), Consistency::Linearizable, caller.0).await?;
    match read.record.as_ref().and_then(kv_body) {
        Some(body) => Ok(with_revision(Json(body).into_response(), read.revision)),
        None => Err(missing(&state.node, project, id, caller.0).await),
    }
}

pub(super) async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let (project, id) = (project_name(&project)?, kv_id(&id)?);
    let command = Command::KieDelete { project: project.into(), ids: vec![id.into()] };
    match state.node.write(command, None, caller.0).await? {
        StoreResponse::KieDeleted { ids, revision } if !ids.is_empty() => {
            Ok(with_revision(StatusCode::NO_CONTENT.into_response(), revision))
        }
        _ => Err(missing(&state.node, project, id, caller.0).await),
    }
}

pub(super) async fn delete_many(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    let project = project_name(&project)?;
    let body: KieDeleteBody = json_body(&body)?;
    let ids = body.ids.iter().map(|id| kv_id(id).map(Arc::<str>::from)).collect::<Result<Vec<_>, _>>()?;
    match state.node.write(Command::KieDelete { project: project.into(), ids }, None, caller.0).await? {
        StoreResponse::KieDeleted { revision, .. } => {
            Ok(with_revision(StatusCode::NO_CONTENT.into_response(), revision))
        }
        other => Err(ApiError::refusal(&other).unwrap_or_else(|| unexpected(other))),
    }
}

pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(project): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let accepts = Accepts { once: &["key", "match", "wait", "revision", "limit", "offset"], repeated: &["label"] };
    let query = Query::parse_with(uri.query(), accepts)?;
    let project = project_name(&project)?;
    let exact_labels = match query.get("match") {
        None | Some("") => false,
        Some("exact") => true,
        Some(other) => return Err(invalid("match", other, "exact or nothing")),
    };
    let filter = Filter {
        prefix: format!("{KIE_PREFIX}{project}/"),
        labels: query.labels()?,
        exact_labels,
        kie_key: query.get("key").map(str::to_string),
        ..Filter::default()
    };
    let offset = query.u64("offset")?.unwrap_or(0) as usize;
    let limit = query.limit("limit", LIMIT_MAX, LIMIT_MAX)?;
    let wait = query.wait()?;
    if let Some(revision) = query.u64("revision")? {
        let changed = state.node.changed_after(revision, filter.clone(), caller.0).await?;
        if changed == Ok(false) && wait.is_none() {
            return Ok(with_revision(StatusCode::NOT_MODIFIED.into_response(), state.node.revision()));
        }
    }
    if let Some(wait) = wait {
        let since = query.u64("revision")?.unwrap_or_else(|| state.node.revision());
        if let Waited::TimedOut = wait_for_change(&state.node, &filter, since, wait, caller.0).await? {
            return Ok(with_revision(StatusCode::NOT_MODIFIED.into_response(), state.node.revision()));
        }
    }
    let query = ListQuery { filter, after: None, limit: offset + limit };
    let listed = state.node.list(query, Consistency::Linearizable, caller.0).await?;
    let data = listed.records.iter().skip(offset).filter_map(kv_body).collect();
    Ok(with_revision(Json(KieListBody { total: listed.total, data }).into_response(), listed.revision))
}

/// kie's view of a record made by these routes; `None` for a record under the kie prefix that
/// no kie route made (native writes there are refused now, but older logs may hold some).
fn kv_body(record: &Record) -> Option<KieKvBody> {
    let kie = record.kie.as_ref()?;
    Some(KieKvBody {
        id: kie.id.to_string(),
        key: kie.key.to_string(),
        value: String::from_utf8_lossy(&record.value).into_owned(),
        value_type: kie.value_type.clone(),
        create_revision: record.create_revision,
        update_revision: record.mod_revision,
        status: kie.status.clone(),
        create_time: record.create_time_ms / 1_000,
        update_time: record.update_time_ms / 1_000,
        labels: record.labels.clone(),
    })
}

fn kv_answer(answer: StoreResponse) -> Result<Response, ApiError> {
    match answer {
        StoreResponse::KieWritten { record, revision } => match kv_body(&record) {
            Some(body) => Ok(with_revision(Json(body).into_response(), revision)),
            None => Err(unexpected(StoreResponse::KieWritten { record, revision })),
        },
        StoreResponse::KieExists { id, .. } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "kv_exists",
            format!("the project already has kv {id} with this key and labels; update it instead"),
        )
        .with_detail("id", json!(id.to_string()))),
        other => Err(ApiError::refusal(&other).unwrap_or_else(|| unexpected(other))),
    }
}

fn unexpected(answer: StoreResponse) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected answer {answer:?}"))
}

/// 404: `kv_not_found`, or `project_not_found` when the project holds no kv at all.
async fn missing(node: &Node, project: &str, id: &str, credential: Credential) -> ApiError {
    let query = ListQuery { filter: Filter::prefix(format!("{KIE_PREFIX}{project}/")), after: None, limit: 1 };
    match node.list(query, Consistency::Stale, credential).await {
        Ok(listed) if listed.total == 0 => {
            ApiError::new(StatusCode::NOT_FOUND, "project_not_found", format!("project {project:?} has no kvs"))
        }
        _ => ApiError::new(
            StatusCode::NOT_FOUND,
            "kv_not_found",
            format!("kv {id:?} does not exist in project {project:?}"),
        ),
    }
}

fn with_revision(mut response: Response, revision: u64) -> Response {
    response.headers_mut().insert(KIE_REVISION_HEADER, HeaderValue::from(revision));
    response
}

fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("malformed request body: {e}")))
}

fn project_name(project: &str) -> Result<&str, ApiError> {
    validate::kie_project(project).map_err(ApiError::invalid)?;
    Ok(project)
}

fn kv_id(id: &str) -> Result<&str, ApiError> {
    validate::kie_id(id).map_err(ApiError::invalid)?;
    Ok(id)
}

fn check_value(value: &str, limit: usize) -> Result<(), ApiError> {
    if value.len() > limit {
        let message = format!("the value exceeds the {limit}-byte limit");
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "value_too_large", message));
    }
    Ok(())
}

/// `given` if it is one of `allowed`, the first allowed value if absent.
fn one_of(field: &str, given: Option<String>, allowed: &[&str]) -> Result<String, ApiError> {
    match given {
        None => Ok(allowed[0].to_string()),
        Some(value) if allowed.contains(&value.as_str()) => Ok(value),
        Some(value) => {
            Err(ApiError::bad_request("invalid_json", format!("{field} {value:?} is not one of {allowed:?}")))
        }
    }
}

/// A random UUID (version 4 layout) for a new kv.
fn new_id() -> String {
    let (high, low) = (rt::random_u64(), rt::random_u64());
    let high = (high & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let low = (low & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_and_ids_are_checked() {
        assert!(project_name("default").is_ok());
        assert_eq!(project_name("kv").unwrap_err().code, "invalid_project");
        assert_eq!(project_name("a b").unwrap_err().code, "invalid_project");
        assert_eq!(kv_id("../etc").unwrap_err().code, "invalid_id");
    }

    #[test]
    fn value_types_and_statuses_default_and_are_checked() {
        assert_eq!(one_of("value_type", None, &KIE_VALUE_TYPES).unwrap(), "text");
        assert_eq!(one_of("status", Some("disabled".into()), &KIE_STATUSES).unwrap(), "disabled");
        assert_eq!(one_of("status", Some("paused".into()), &KIE_STATUSES).unwrap_err().code, "invalid_json");
    }
}
