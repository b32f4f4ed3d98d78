//! Dataplane tokens at the dp-server: a sidecar's bootstrap and each of its
//! ADS streams (Envoy sends the token as the `authorization` gRPC metadata)
//! are refused unless its token verifies and allows the Dataplane it serves.

use axum::http::StatusCode;
use kodiak_api::Resource;
use kodiak_xds_server::StreamInfo;
use tonic::Status;

use super::Xds;
use super::proxy_id::ProxyId;
use crate::api::ApiError;
use crate::config::DpProxyAuthn;
use crate::tokens::Tokens;
use crate::tokens::dataplane::DataplaneRefusal;

/// The metadata key Envoy sends the token under (`initial_metadata`).
const AUTHORIZATION: &str = "authorization";

/// Checks the token of a stream's first request, before anything is sent or
/// registered. A Dataplane neither stored nor carried by the node is left to
/// `stream_opened`, which refuses it as unknown.
pub async fn authenticate_stream(
    xds: &Xds,
    proxy: Result<ProxyId, String>,
    inline: Option<String>,
    stream: &StreamInfo,
) -> Result<(), Status> {
    if xds.dp_authn == DpProxyAuthn::None {
        return Ok(());
    }
    let proxy = proxy.map_err(Status::invalid_argument)?;
    let mut values = stream.metadata.get_all(AUTHORIZATION).iter();
    let token =
        match (values.next(), values.next()) {
            (None, _) => None,
            (Some(value), None) => Some(value.to_str().map_err(|_| {
                refused_stream(&proxy, Status::unauthenticated("the authorization metadata is not text"))
            })?),
            (Some(_), Some(_)) => {
                return Err(refused_stream(
                    &proxy,
                    Status::unauthenticated("the stream carries more than one authorization metadata value"),
                ));
            }
        };
    let dataplane = match xds.store.get(&proxy.resource_key()).await {
        Ok(Some(stored)) => stored,
        Ok(None) => match inline.as_deref().map(parse_inline) {
            Some(Ok(carried)) => carried,
            Some(Err(error)) => return Err(refused_stream(&proxy, Status::invalid_argument(error.to_string()))),
            None => return Ok(()),
        },
        Err(error) => return Err(Status::unavailable(format!("cannot read Dataplane {proxy}: {error}"))),
    };
    match Tokens::new(xds.store.clone()).authenticate_dataplane(token, &dataplane).await {
        Ok(()) => Ok(()),
        Err(refusal @ (DataplaneRefusal::Missing { .. } | DataplaneRefusal::Invalid(_))) => {
            Err(refused_stream(&proxy, Status::unauthenticated(refusal.to_string())))
        }
        Err(refusal @ DataplaneRefusal::Mismatch(_)) => {
            Err(refused_stream(&proxy, Status::permission_denied(refusal.to_string())))
        }
        Err(DataplaneRefusal::Store(error)) => {
            Err(Status::unavailable(format!("cannot check the dataplane token: {error}")))
        }
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
/// sidecar serving a Dataplane may take it out of load balancing.
pub async fn authenticate_drain(xds: &Xds, proxy: &ProxyId, token: Option<&str>) -> Result<(), ApiError> {
    if xds.dp_authn == DpProxyAuthn::None {
        return Ok(());
    }
    let Some(dataplane) = xds.store.get(&proxy.resource_key()).await? else {
        tracing::warn!(dataplane = %proxy, "refused a drain for a Dataplane that does not exist");
        return Err(ApiError::not_found(format!("Dataplane {proxy} does not exist")));
    };
    check_request(xds, proxy, token, &dataplane, "drain").await
}

/// Checks a dp-server HTTP request's token against `dataplane`: 401 for a
/// missing or invalid token, 403 for a token of another Dataplane.
async fn check_request(
    xds: &Xds,
    proxy: &ProxyId,
    token: Option<&str>,
    dataplane: &Resource,
    request: &str,
) -> Result<(), ApiError> {
    let refused = |status: StatusCode, title: &str, reason: String| {
        tracing::warn!(dataplane = %proxy, %reason, "refused a {request}");
        ApiError::new(status, title, reason)
    };
    match Tokens::new(xds.store.clone()).authenticate_dataplane(token, dataplane).await {
        Ok(()) => Ok(()),
        Err(refusal @ DataplaneRefusal::Missing { .. }) => {
            Err(refused(StatusCode::UNAUTHORIZED, "Dataplane token required", refusal.to_string()))
        }
        Err(refusal @ DataplaneRefusal::Invalid(_)) => {
            Err(refused(StatusCode::UNAUTHORIZED, "Invalid dataplane token", refusal.to_string()))
        }
        Err(refusal @ DataplaneRefusal::Mismatch(_)) => {
            Err(refused(StatusCode::FORBIDDEN, "Dataplane token does not match", refusal.to_string()))
        }
        Err(DataplaneRefusal::Store(error)) => Err(error.into()),
    }
}

/// The Dataplane a sidecar carries, read but not stored.
fn parse_inline(text: &str) -> Result<Resource, ApiError> {
    let document = kodiak_api::parse_document(text)?;
    Ok(Resource::from_document(&document)?)
}
