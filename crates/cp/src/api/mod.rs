//! The REST API (port 5681), in Kuma's paths and shapes.

mod authn;
mod error;
mod index;
mod overview;
mod paging;
mod resources;
mod route;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kodiak_store::ResourceStore;

use crate::config::Config;
pub use error::ApiError;
use route::Route;

/// What every handler can reach.
pub struct ApiState {
    pub store: Arc<dyn ResourceStore>,
    pub config: Config,
    pub instance_id: String,
    pub hostname: String,
    /// What the xDS layer knows about each sidecar's streams.
    pub insights: Arc<crate::xds::insights::Insights>,
}

/// The API router. Every path goes through one dispatcher so unknown paths
/// and wrong methods get the same Kuma-shaped errors as everything else.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|info| info.0);
    let tokens = crate::tokens::Tokens::new(state.store.clone());
    let localhost_is_admin = state.config.api_server.authn.localhost_is_admin;
    let identity = match authn::authenticate(&tokens, localhost_is_admin, peer, &parts.uri, &parts.headers).await {
        Ok(identity) => identity,
        Err(error) => return error.into_response(),
    };
    match handle(&state, &identity, &parts.method, &parts.uri, &parts.headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(
    state: &ApiState,
    identity: &authn::Identity,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let route = route::route(uri.path())?;
    let methods = route.methods();
    if !methods.contains(method) {
        let allowed: Vec<&str> = methods.iter().map(Method::as_str).collect();
        let error = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            format!("{method} is not supported on {}; use {}", uri.path(), allowed.join(", ")),
        );
        let mut response = error.into_response();
        if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        return Ok(response);
    }
    authn::authorize(identity, &route)?;
    let page = || paging::parse(uri.query());
    let limit = state.config.api_server.max_body_bytes;
    match (route, method) {
        (Route::Index, _) => Ok(index::index(state).into_response()),
        (Route::Config, _) => Ok(index::config(state).into_response()),
        (Route::ResourceTypes, _) => Ok(index::resource_types().into_response()),
        (Route::List { kind, mesh }, _) => resources::list(state, kind, mesh, page()?, uri, headers).await,
        (Route::Overview { mesh, name: None }, _) => overview::list(state, &mesh, page()?, uri, headers).await,
        (Route::Overview { mesh, name: Some(name) }, _) => overview::one(state, &mesh, &name).await,
        (Route::One(key), &Method::GET) => resources::get(state, &key).await,
        (Route::One(key), &Method::PUT) => resources::put(state, key, headers, body, limit).await,
        (Route::One(key), _) => resources::delete(state, &key).await,
        (Route::DataplaneToken, _) => tokens::dataplane(state, read_body(body, limit).await?).await,
        (Route::UserToken, _) => tokens::user(state, read_body(body, limit).await?).await,
    }
}

/// A request body of at most `limit` bytes (413 beyond).
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            format!("the request body is too large or unreadable: {error}"),
        )
    })
}
