//! `POST /drain`: a sidecar is shutting down. Its endpoints are withdrawn
//! from callers now, while Envoy still drains the connections it has.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use kodiak_api::bootstrap::DrainRequest;
use serde_json::{Value, json};

use super::DpServerState;
use crate::api::ApiError;
use crate::xds::proxy_id::ProxyId;
use crate::xds::sync::Signal;

pub async fn handle(State(state): State<Arc<DpServerState>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: DrainRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("the drain request is not valid: {error}")))?;
    let proxy = ProxyId::new(request.mesh, request.name);
    let draining = state.xds.connections.draining(&proxy);
    if draining {
        tracing::info!(dataplane = %proxy, "sidecar is draining: callers stop choosing it");
        let _ = state.xds.signals.send(Signal::Departed(proxy));
    }
    Ok(Json(json!({ "draining": draining })))
}
