//! `POST /bootstrap`: registers the Dataplane kodiak-dp carries (or finds
//! the one applied beforehand) and answers with Envoy's bootstrap.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use kodiak_api::bootstrap::{BootstrapRequest, BootstrapResponse};
use kodiak_api::dataplane_view::DataplaneView;
use kodiak_api::name::check_name;
use kodiak_xds_gen::BootstrapParams;

use super::DpServerState;
use crate::api::ApiError;
use crate::xds::auth::authenticate_bootstrap;
use crate::xds::proxy_id::ProxyId;
use crate::xds::register::register_inline;
use crate::xds::sync::Signal;

pub async fn handle(
    State(state): State<Arc<DpServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<BootstrapResponse>, ApiError> {
    let request: BootstrapRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("the bootstrap request is not valid: {error}")))?;
    for (field, value) in [("mesh", &request.mesh), ("name", &request.name)] {
        check_name(value).map_err(|reason| ApiError::invalid_field(field, reason))?;
    }
    let proxy = ProxyId::new(request.mesh.clone(), request.name.clone());
    let (inline, token) = (request.dataplane_resource.as_deref(), request.dataplane_token.as_deref());
    authenticate_bootstrap(&state.xds, &proxy, inline, token).await?;
    let instance = uuid::Uuid::new_v4().simple().to_string();
    state.xds.connections.claim(&proxy, &instance).map_err(|reason| {
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "{reason}: one Dataplane is served by one sidecar; stop the other kodiak-dp (an Envoy left behind by a killed kodiak-dp counts too) or give this one another name"
            ),
        )
    })?;
    let dataplane = match &request.dataplane_resource {
        Some(text) => {
            let registered = register_inline(state.xds.store.as_ref(), &proxy, text).await?;
            state.xds.known.insert(proxy.clone());
            // Callers get it once its Envoy connects; if that never
            // happens, it is removed like a sidecar that left.
            state.xds.connections.withhold(&proxy);
            state.xds.cleanup.departed(proxy.clone());
            let _ = state.xds.signals.send(Signal::Departed(proxy.clone()));
            tracing::info!(dataplane = %proxy, "registered a Dataplane from kodiak-dp");
            registered
        }
        None => state.xds.store.get(&proxy.resource_key()).await?.ok_or_else(|| {
            ApiError::not_found(format!(
                "Dataplane {proxy} does not exist: apply it first (kodiakctl apply -f dataplane.yaml), or start kodiak-dp with --dataplane-file so it registers one"
            ))
        })?,
    };
    let (host, port) =
        control_plane_address(&headers).unwrap_or_else(|| (state.address.ip().to_string(), state.address.port()));
    let view = DataplaneView::from_resource(&dataplane);
    let params = BootstrapParams {
        sidecar_instance: Some(instance),
        xds_tls: state.xds_tls(&request),
        ..BootstrapParams::new(&request, &view, &host, port)
    };
    let bootstrap = kodiak_xds_gen::bootstrap(&params);
    Ok(Json(BootstrapResponse { bootstrap, dataplane: dataplane.to_document() }))
}

/// The host and port the sidecar used to reach this server (its Host
/// header), which is where Envoy's ADS connection should go too.
fn control_plane_address(headers: &HeaderMap) -> Option<(String, u16)> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let (name, port) = host.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let name = name.trim_start_matches('[').trim_end_matches(']');
    (!name.is_empty()).then(|| (name.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_names_the_control_plane() {
        let mut headers = HeaderMap::new();
        for (host, expected) in [
            ("127.0.0.1:5678", Some(("127.0.0.1", 5678))),
            ("[::1]:15678", Some(("::1", 15678))),
            ("cp.example:5678", Some(("cp.example", 5678))),
            ("cp.example", None),
            (":5678", None),
        ] {
            headers.insert(header::HOST, host.parse().unwrap());
            assert_eq!(control_plane_address(&headers), expected.map(|(h, p)| (h.to_owned(), p)), "{host}");
        }
    }
}
