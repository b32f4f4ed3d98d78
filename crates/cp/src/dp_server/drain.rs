//! `POST /drain`: a sidecar is shutting down. Its endpoints are withdrawn
//! from callers now, while Envoy still drains the connections it has. The
//! request carries the sidecar's dataplane token, checked like a bootstrap's.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use kodiak_api::bootstrap::DrainRequest;
use kodiak_api::name::check_name;
use serde_json::{Value, json};

use super::DpServerState;
use crate::api::ApiError;
use crate::xds::auth::authenticate_drain;
use crate::xds::proxy_id::ProxyId;
use crate::xds::sync::Signal;

pub async fn handle(State(state): State<Arc<DpServerState>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: DrainRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("the drain request is not valid: {error}")))?;
    for (field, value) in [("mesh", &request.mesh), ("name", &request.name)] {
        check_name(value).map_err(|reason| ApiError::invalid_field(field, reason))?;
    }
    let proxy = ProxyId::new(request.mesh, request.name);
    authenticate_drain(&state.xds, &proxy, request.dataplane_token.as_deref()).await?;
    let draining = state.xds.connections.draining(&proxy);
    if draining {
        tracing::info!(dataplane = %proxy, "sidecar is draining: callers stop choosing it");
        let _ = state.xds.signals.send(Signal::Departed(proxy));
    }
    Ok(Json(json!({ "draining": draining })))
}
