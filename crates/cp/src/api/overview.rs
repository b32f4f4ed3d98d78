//! `GET /meshes/{mesh}/dataplanes/_overview`: Dataplanes with their
//! insights, in Kuma's DataplaneOverview shape.

use axum::Json;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use kodiak_api::{Resource, ResourceKey, ResourceType};
use serde_json::{Value, json};

use super::ApiState;
use super::error::ApiError;
use super::paging::{ListParams, page_body};
use super::resources::{not_found, query};
use crate::xds::proxy_id::ProxyId;

pub async fn list(
    state: &ApiState,
    mesh: &str,
    params: ListParams,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let page = state.store.list(&query(ResourceType::Dataplane, Some(mesh.into()), &params)).await?;
    let items = page.items.iter().map(|dataplane| overview(state, dataplane)).collect();
    Ok(Json(page_body(page.total, items, &params, uri, headers)).into_response())
}

pub async fn one(state: &ApiState, mesh: &str, name: &str) -> Result<Response, ApiError> {
    let key = ResourceKey::new(ResourceType::Dataplane, Some(mesh), name);
    let dataplane = state.store.get(&key).await?.ok_or_else(|| not_found(&key))?;
    Ok(Json(overview(state, &dataplane)).into_response())
}

/// A Dataplane with the insight of its sidecar's streams.
fn overview(state: &ApiState, dataplane: &Resource) -> Value {
    let mut document = dataplane.to_document();
    let object = document.as_object_mut().expect("documents are objects");
    object.insert("type".into(), "DataplaneOverview".into());
    let own_fields = Value::Object(dataplane.body.clone());
    object.retain(|key, _| {
        ["type", "mesh", "name", "creationTime", "modificationTime", "labels"].contains(&key.as_str())
    });
    object.insert("dataplane".into(), own_fields);
    let insight = ProxyId::of(&dataplane.key)
        .map_or_else(|| json!({ "subscriptions": [] }), |proxy| state.insights.document(&proxy));
    object.insert("dataplaneInsight".into(), insight);
    document
}
