//! The REST API (port 5681), in Kuma's paths and shapes.

mod authn;
mod error;
mod index;
mod inspect;
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
    /// The snapshot each connected sidecar was last given.
    pub cache: Arc<kodiak_xds_server::SnapshotCache>,
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
        (Route::InspectDataplane { mesh, name, view }, _) => inspect::dataplane(state, &mesh, &name, view, uri).await,
        (Route::PolicyDataplanes(key), _) => inspect::policy_dataplanes(state, &key, uri, headers).await,
        (Route::One(key), &Method::GET) => resources::get(state, &key).await,
        (Route::One(key), &Method::PUT) => resources::put(state, key, headers, body, limit).await,
        (Route::One(key), _) => resources::delete(state, &key).await,
        (Route::DataplaneToken, _) => tokens::dataplane(state, read_body(body, limit).await?).await,
        (Route::UserToken, _) => tokens::user(state, read_body(body, limit).await?).await,
    }
}

/// Reads at most `limit` bytes. A larger body is answered with 413 after
/// reading (and dropping) a bounded amount more, so the client sees the
/// answer instead of a connection reset in the middle of its upload; a body
/// that cannot be read (a client gone mid-upload, broken chunking) gets 400.
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut collected = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            ApiError::bad_request(format!("could not read the request body: {}", error_chain(&error)))
        })?;
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

/// An error and its causes, each new part once (wrappers often repeat
/// their cause in their own message).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut reason = String::new();
    for message in std::iter::successors(Some(error), |e| e.source()).map(ToString::to_string) {
        if !reason.contains(&message) {
            reason = if reason.is_empty() { message } else { format!("{reason}: {message}") };
        }
    }
    reason
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    async fn error_of(body: Body, limit: usize) -> serde_json::Value {
        let response = read_body(body, limit).await.unwrap_err().into_response();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["status"], status, "{json}");
        json
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413() {
        assert_eq!(read_body(Body::from("12345678"), 8).await.unwrap(), "12345678");
        let json = error_of(Body::from("123456789"), 8).await;
        assert_eq!((&json["status"], &json["title"]), (&413.into(), &"Payload Too Large".into()), "{json}");
        assert!(json["detail"].as_str().unwrap().contains("larger than 8 bytes"), "{json}");
    }

    /// Sends raw HTTP/1.1 to a started control plane and returns the status
    /// line and the JSON body.
    /// Sends `request` on a new connection and reads the answer until the
    /// server closes it (every request says `Connection: close`).
    fn raw_request(address: &str, request: &[u8]) -> (String, serde_json::Value) {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        stream.write_all(request).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
        let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
        (head.lines().next().unwrap().to_owned(), json)
    }

    #[test]
    fn real_requests_get_413_over_the_limit_and_400_for_a_broken_body() {
        let mut config = crate::testing::loopback_config();
        config.api_server.max_body_bytes = 64;
        let dir = tempfile::tempdir().unwrap();
        config.store.data_dir = dir.path().to_owned();
        let control_plane = crate::testing::start(config).unwrap();
        let address = control_plane.api_url().trim_start_matches("http://").to_owned();
        let head = "POST /tokens/dataplane HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n";

        let body = format!("{{\"name\": \"{}\"}}", "a".repeat(100));
        let request = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
        let (status, json) = raw_request(&address, request.as_bytes());
        assert!(status.contains(" 413 "), "{status} {json}");
        assert!(json["detail"].as_str().unwrap().contains("larger than 64 bytes"), "{json}");

        // A client that hangs up in the middle of its body cannot read an
        // answer, so only a body that breaks while the client listens is asked.
        let broken_chunked = format!("{head}Transfer-Encoding: chunked\r\n\r\n5\r\n{{\"nam\r\nzz\r\n");
        let (status, json) = raw_request(&address, broken_chunked.as_bytes());
        assert!(status.contains(" 400 "), "{status} {json}");
        assert_eq!(json["title"], "Bad Request", "{json}");
        let detail = json["detail"].as_str().unwrap();
        assert!(detail.starts_with("could not read the request body: ") && detail.contains("chunk size"), "{json}");
    }
}
