//! Reading and writing resources: list, get, put (create or update) and
//! delete.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use kodiak_api::{Resource, ResourceKey, ResourceType, parse_document};
use kodiak_store::{ListQuery, StoreError};
use serde_json::{Value, json};

use super::ApiState;
use super::error::ApiError;
use super::paging::{ListParams, page_body};

pub async fn list(
    state: &ApiState,
    kind: ResourceType,
    mesh: Option<String>,
    params: ListParams,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let page = state.store.list(&query(kind, mesh, &params)).await?;
    let items = page.items.iter().map(Resource::to_document).collect();
    Ok(Json(page_body(page.total, items, &params, uri, headers)).into_response())
}

pub fn query(kind: ResourceType, mesh: Option<String>, params: &ListParams) -> ListQuery {
    ListQuery {
        kind,
        mesh,
        name_contains: params.name.clone(),
        labels: params.labels.clone(),
        offset: params.offset,
        size: params.size,
    }
}

pub async fn get(state: &ApiState, key: &ResourceKey) -> Result<Response, ApiError> {
    let resource = state.store.get(key).await?.ok_or_else(|| not_found(key))?;
    let mut response = Json(resource.to_document()).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", resource.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

pub async fn delete(state: &ApiState, key: &ResourceKey) -> Result<Response, ApiError> {
    state.store.delete(key).await.map_err(|e| match e {
        StoreError::NotFound(_) => not_found(key),
        other => other.into(),
    })?;
    tracing::info!(resource = %key, "deleted");
    Ok(Json(json!({})).into_response())
}

/// Creates (201) or updates (200) the resource at `key`. An `If-Match`
/// header with a version makes the update conditional (409 when stale).
pub async fn put(
    state: &ApiState,
    key: ResourceKey,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Response, ApiError> {
    let expected_version = if_match(headers)?;
    let bytes = read_body(body, limit).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the request body is not UTF-8 text"))?;
    let mut document = parse_document(text)?;
    fill_identity(&mut document, &key)?;
    let resource = Resource::from_document(&document)?;
    if resource.key.kind != key.kind {
        return Err(ApiError::invalid_field(
            "type",
            format!("{} does not match the path, which is for {}", resource.key.kind, key.kind),
        ));
    }
    let existing = state.store.get(&key).await?;
    let (status, stored) = match existing {
        None if expected_version.is_some() => return Err(not_found(&key)),
        None => match state.store.create(resource.clone()).await {
            Ok(stored) => (StatusCode::CREATED, stored),
            // Someone created it between our read and write: update instead.
            Err(StoreError::AlreadyExists(_)) => (StatusCode::OK, state.store.update(resource, None).await?),
            Err(other) => return Err(other.into()),
        },
        Some(_) => (StatusCode::OK, state.store.update(resource, expected_version).await?),
    };
    tracing::info!(resource = %key, version = stored.version, created = status == StatusCode::CREATED, "stored");
    let mut response = (status, Json(json!({}))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", stored.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// Fills `name` and `mesh` from the path when the body leaves them out,
/// and refuses a body that names something else.
fn fill_identity(document: &mut Value, key: &ResourceKey) -> Result<(), ApiError> {
    let Some(object) = document.as_object_mut() else {
        return Err(ApiError::bad_request("the request body must be a resource document (an object)"));
    };
    let mut pairs = vec![("name", key.name.as_str())];
    if let Some(mesh) = &key.mesh {
        pairs.push(("mesh", mesh.as_str()));
    }
    for (field, from_path) in pairs {
        match object.get(field) {
            None | Some(Value::Null) => {
                object.insert(field.into(), from_path.into());
            }
            Some(Value::String(in_body)) if in_body == from_path => {}
            Some(in_body) => {
                return Err(ApiError::invalid_field(
                    field,
                    format!("{in_body} in the body does not match {from_path:?} in the path"),
                ));
            }
        }
    }
    object.entry("type").or_insert_with(|| key.kind.name().into());
    Ok(())
}

/// Reads at most `limit` bytes. A larger body is answered with 413 after
/// reading (and dropping) a bounded amount more, so the client sees the
/// answer instead of a connection reset in the middle of its upload.
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut collected = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let Ok(chunk) = frame.into_data() else { continue };
        seen += chunk.len();
        if seen <= limit {
            collected.extend_from_slice(&chunk);
        } else if seen > limit.saturating_mul(8) {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            format!("the request body is larger than {limit} bytes (apiServer.maxBodyBytes)"),
        ));
    }
    Ok(collected.into())
}

fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid_field("If-Match", "must be a resource version in quotes, as in an ETag: \"3\"")
        })
}

pub fn not_found(key: &ResourceKey) -> ApiError {
    ApiError::not_found(format!("{key} not found"))
}
