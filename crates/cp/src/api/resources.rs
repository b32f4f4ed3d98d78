//! Reading and writing resources: list, get, put (create or update) and
//! delete.

mod mesh_checks;
mod policy_checks;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use kodiak_api::{Resource, ResourceKey, ResourceType, Violation, parse_document};
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
    mesh_checks::check_secret_delete(state.store.as_ref(), key).await?;
    state.store.delete(key).await?;
    tracing::info!(resource = %key, "deleted");
    Ok(Json(json!({})).into_response())
}

/// Creates (201) or updates (200) the resource at `key`. An `If-Match`
/// header makes it an update only: of the resource as it is (`*`), or only
/// if it still has the given version (409 when stale).
pub async fn put(
    state: &ApiState,
    key: ResourceKey,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Response, ApiError> {
    let precondition = if_match(headers)?;
    let bytes = super::read_body(body, limit).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the request body is not UTF-8 text"))?;
    let mut document = parse_document(text)?;
    check_type(&document, key.kind)?;
    fill_identity(&mut document, &key)?;
    let resource = Resource::from_document(&document)?;
    let existing = state.store.get(&key).await?;
    if key.kind == ResourceType::Mesh {
        mesh_checks::check_mesh(state.store.as_ref(), &resource, existing.as_ref()).await?;
    }
    policy_checks::check_policy(&resource)?;
    let (status, stored) = match (existing, precondition) {
        (None, Some(_)) => return Err(not_found(&key)),
        (None, None) => match state.store.create(resource.clone()).await {
            Ok(stored) => (StatusCode::CREATED, stored),
            // Someone created it between our read and write: update instead.
            Err(StoreError::AlreadyExists(_)) => (StatusCode::OK, state.store.update(resource, None).await?),
            Err(other) => return Err(other.into()),
        },
        (Some(_), precondition) => {
            (StatusCode::OK, state.store.update(resource, precondition.and_then(|p| p.version)).await?)
        }
    };
    tracing::info!(resource = %key, version = stored.version, created = status == StatusCode::CREATED, "stored");
    if key.kind == ResourceType::Mesh && status == StatusCode::CREATED {
        crate::defaults::create_initial_policies(state.store.as_ref(), &stored).await?;
        crate::tokens::Tokens::new(state.store.clone()).ensure_dataplane_key(&key.name).await?;
    }
    if key.kind == ResourceType::Mesh {
        mesh_checks::ensure_builtin_cas(state.store.as_ref(), &stored).await;
    }
    let mut response = (status, Json(json!({}))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", stored.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// Refuses a body of another type than the path's, before anything else
/// is looked at, so the error names the real mistake.
fn check_type(document: &Value, kind: ResourceType) -> Result<(), ApiError> {
    match document.get("type") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(name)) if name == kind.name() => Ok(()),
        Some(other) => Err(ApiError::invalid_field(
            "type",
            format!("{other} does not match the path, which is for {kind} resources"),
        )),
    }
}

/// Fills `type`, `name` and `mesh` from the path when the body leaves them
/// out, and refuses a body that names something else.
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

/// What an `If-Match` header asks for: that the resource exists (`*`), and
/// optionally that it has a given version.
#[derive(Debug, Clone, Copy)]
struct Precondition {
    version: Option<u64>,
}

fn if_match(headers: &HeaderMap) -> Result<Option<Precondition>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(Some(Precondition { version: None }));
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(|version| Some(Precondition { version: Some(version) }))
        .map_err(|_| {
            ApiError::bad_parameters(
                "the If-Match header is invalid",
                vec![Violation {
                    field: "If-Match".into(),
                    reason: "must be a resource version in quotes, as in an ETag (\"3\"), or *".into(),
                }],
            )
        })
}

pub fn not_found(key: &ResourceKey) -> ApiError {
    ApiError::not_found(format!("{key} not found"))
}
