//! Dataplane tokens at the dp-server: a sidecar's bootstrap and each of its
//! ADS streams (Envoy sends the token as the `authorization` gRPC metadata)
//! are refused unless its token verifies and allows the Dataplane it serves.

use axum::http::StatusCode;
use kodiak_api::Resource;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use super::Xds;
use super::proxy_id::ProxyId;
use crate::api::ApiError;
use crate::config::DpProxyAuthn;
use crate::tokens::Tokens;
use crate::tokens::dataplane::{DataplaneRefusal, allows_dataplane};

/// The metadata key Envoy sends the token under (`initial_metadata`).
const AUTHORIZATION: &str = "authorization";

/// The Dataplane a stream serves, as authentication found it.
#[derive(Debug)]
pub struct StreamDataplane {
    pub proxy: ProxyId,
    /// Whether it is in the store; if not, the node carries it inline.
    pub stored: bool,
}

/// Finds the Dataplane a stream's first request names (in the store, else
/// carried inline by the node) and checks the stream's token against it,
/// before anything is sent or registered. A Dataplane found nowhere is
/// refused with NOT_FOUND.
pub async fn authenticate_stream(
    xds: &Xds,
    node_id: &str,
    inline: Option<String>,
    metadata: &MetadataMap,
) -> Result<StreamDataplane, Status> {
    let (found, dataplane) = find_dataplane(xds, node_id, inline.as_deref()).await?;
    if xds.dp_authn == DpProxyAuthn::None {
        return Ok(found);
    }
    let proxy = &found.proxy;
    let mut values = metadata.get_all(AUTHORIZATION).iter();
    let token =
        match (values.next(), values.next()) {
            (None, _) => None,
            (Some(value), None) => Some(value.to_str().map_err(|_| {
                refused_stream(proxy, Status::unauthenticated("the authorization metadata is not text"))
            })?),
            (Some(_), Some(_)) => {
                return Err(refused_stream(
                    proxy,
                    Status::unauthenticated("the stream carries more than one authorization metadata value"),
                ));
            }
        };
    match Tokens::new(xds.store.clone()).authenticate_dataplane(token, &dataplane).await {
        Ok(()) => Ok(found),
        Err(DataplaneRefusal::Store(error)) => {
            Err(Status::unavailable(format!("cannot check the dataplane token: {error}")))
        }
        Err(refusal) => {
            let code = if refusal.is_authn() { Code::Unauthenticated } else { Code::PermissionDenied };
            Err(refused_stream(proxy, Status::new(code, refusal.to_string())))
        }
    }
}

/// The Dataplane a node id names: the reading of the id (mesh names may
/// hold dots) that names a stored Dataplane, else the one the node carries,
/// read as the plain reading.
async fn find_dataplane(xds: &Xds, node_id: &str, inline: Option<&str>) -> Result<(StreamDataplane, Resource), Status> {
    let plain = ProxyId::parse(node_id).map_err(Status::invalid_argument)?;
    for reading in ProxyId::readings(node_id) {
        match xds.store.get(&reading.resource_key()).await {
            Ok(Some(dataplane)) => return Ok((StreamDataplane { proxy: reading, stored: true }, dataplane)),
            Ok(None) => {}
            Err(error) => return Err(Status::unavailable(format!("cannot read Dataplane {reading}: {error}"))),
        }
    }
    match inline.map(parse_inline) {
        Some(Ok(carried)) => Ok((StreamDataplane { proxy: plain, stored: false }, carried)),
        Some(Err(error)) => Err(refused_stream(&plain, Status::invalid_argument(error.to_string()))),
        None => Err(refused_stream(
            &plain,
            Status::not_found(format!(
                "Dataplane {plain} does not exist: apply it first (kodiakctl apply -f dataplane.yaml) or start kodiak-dp with --dataplane-file"
            )),
        )),
    }
}

fn refused_stream(proxy: &ProxyId, status: Status) -> Status {
    tracing::warn!(dataplane = %proxy, code = ?status.code(), reason = status.message(), "refused an xDS stream");
    status
}

/// Checks a bootstrap request's token against the Dataplane it registers
/// (`inline`) or the stored one. Nothing has been created when this refuses.
pub async fn authenticate_bootstrap(
    xds: &Xds,
    proxy: &ProxyId,
    inline: Option<&str>,
    token: Option<&str>,
) -> Result<(), ApiError> {
    if xds.dp_authn == DpProxyAuthn::None {
        return Ok(());
    }
    let dataplane = match inline {
        Some(text) => parse_inline(text)?,
        None => match xds.store.get(&proxy.resource_key()).await? {
            Some(stored) => stored,
            // The handler answers 404 for it.
            None => return Ok(()),
        },
    };
    check_request(xds, proxy, token, &dataplane, "bootstrap").await
}

/// Checks a drain request's token against the stored Dataplane: only the
/// sidecar serving a Dataplane may take it out of load balancing. The token
/// is verified (401) before the Dataplane is looked up (404), so callers
/// without a valid token learn nothing about which Dataplanes exist.
pub async fn authenticate_drain(xds: &Xds, proxy: &ProxyId, token: Option<&str>) -> Result<(), ApiError> {
    if xds.dp_authn == DpProxyAuthn::None {
        return Ok(());
    }
    let tokens = Tokens::new(xds.store.clone());
    let claims = tokens.verify_dataplane_token(token, &proxy.mesh, &proxy.name).await;
    let claims = claims.map_err(|refusal| refused_request(proxy, refusal, "drain"))?;
    let Some(dataplane) = xds.store.get(&proxy.resource_key()).await? else {
        tracing::warn!(dataplane = %proxy, "refused a drain for a Dataplane that does not exist");
        return Err(ApiError::not_found(format!("Dataplane {proxy} does not exist")));
    };
    allows_dataplane(&claims, &dataplane).map_err(|refusal| refused_request(proxy, refusal, "drain"))
}

/// Checks a dp-server HTTP request's token against `dataplane`.
async fn check_request(
    xds: &Xds,
    proxy: &ProxyId,
    token: Option<&str>,
    dataplane: &Resource,
    request: &str,
) -> Result<(), ApiError> {
    let checked = Tokens::new(xds.store.clone()).authenticate_dataplane(token, dataplane).await;
    checked.map_err(|refusal| refused_request(proxy, refusal, request))
}

/// The answer to a refused dp-server HTTP request: 401 for a missing or
/// invalid token, 403 for a token of another Dataplane.
fn refused_request(proxy: &ProxyId, refusal: DataplaneRefusal, request: &str) -> ApiError {
    if let DataplaneRefusal::Store(error) = refusal {
        return error.into();
    }
    let status = if refusal.is_authn() { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
    tracing::warn!(dataplane = %proxy, reason = %refusal, "refused a {request}");
    ApiError::new(status, refusal.title(), refusal.detail())
}

/// The Dataplane a sidecar carries, read but not stored.
fn parse_inline(text: &str) -> Result<Resource, ApiError> {
    let document = kodiak_api::parse_document(text)?;
    Ok(Resource::from_document(&document)?)
}
