//! `GET /v1/snapshot`: a backup of the answering node's applied state, streamed as the snapshot
//! file the nodes themselves install (checksummed; `cairn snapshot status` verifies it).

use std::io;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use cairn_node::ExportedSnapshot;

use super::ApiState;
use super::caller::{Caller, require_management_when_enforced};
use super::error::ApiError;
use super::query::Query;
use crate::wire::{REVISION_HEADER, SNAPSHOT_INDEX_HEADER, SNAPSHOT_KEYS_HEADER};

pub(super) async fn save(State(state): State<ApiState>, caller: Caller, uri: Uri) -> Result<Response, ApiError> {
    Query::parse(uri.query(), &[])?;
    require_management_when_enforced(&state, &caller).await?;
    let export = state.node.export_snapshot().await?;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
        (header::CONTENT_LENGTH, HeaderValue::from(export.bytes)),
        (header::HeaderName::from_static(REVISION_HEADER), HeaderValue::from(export.revision)),
        (header::HeaderName::from_static(SNAPSHOT_INDEX_HEADER), HeaderValue::from(export.index)),
        (header::HeaderName::from_static(SNAPSHOT_KEYS_HEADER), HeaderValue::from(export.keys)),
    ];
    Ok((headers, Body::from_stream(chunks(export))).into_response())
}

/// The file's chunks in order; the file is removed once the stream ends or is dropped.
fn chunks(export: ExportedSnapshot) -> impl futures_util::Stream<Item = io::Result<bytes::Bytes>> {
    futures_util::stream::try_unfold((export, 0u64), |(export, offset)| async move {
        let chunk = export.chunk(offset).await?;
        if chunk.is_empty() {
            return Ok(None);
        }
        let next = offset + chunk.len() as u64;
        Ok(Some((chunk, (export, next))))
    })
}
