//! The HTTP side: one handler for every method and path.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// The response header that names the instance.
pub const INSTANCE_HEADER: &str = "x-kodiak-instance";
/// The response header of `/fail-first/N` that numbers the attempt.
pub const ATTEMPT_HEADER: &str = "x-kodiak-attempt";

/// How many requests each `/fail-first/N` path and query got so far.
type Attempts = Arc<Mutex<HashMap<String, u32>>>;

/// The most `/fail-first` paths remembered; past it, counting starts over.
const MAX_REMEMBERED: usize = 10_000;

pub async fn serve(listener: TcpListener, name: Arc<str>) -> anyhow::Result<()> {
    let attempts = Attempts::default();
    let router = Router::new()
        .fallback(move |method, uri, headers, body| answer(name.clone(), attempts.clone(), method, uri, headers, body));
    axum::serve(listener, router).await?;
    Ok(())
}

/// The body is taken (and dropped) so a request with one is read whole
/// and the connection stays usable for the next request.
async fn answer(
    name: Arc<str>,
    attempts: Attempts,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    let path = uri.path();
    if let Some(count) = path.strip_prefix("/fail-first/") {
        let Ok(failures) = count.parse::<u32>() else {
            return with_instance(&name, (StatusCode::BAD_REQUEST, format!("{path}: expected /fail-first/COUNT\n")));
        };
        let attempt = {
            let mut seen = attempts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
            let attempt = seen.entry(uri.to_string()).or_default();
            *attempt += 1;
            *attempt
        };
        let status = if attempt <= failures { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
        let mut response = with_instance(&name, (status, format!("attempt {attempt}\n")));
        response.headers_mut().insert(ATTEMPT_HEADER, HeaderValue::from(attempt));
        return response;
    }
    let status = match path.strip_prefix("/status/").map(str::parse::<u16>) {
        // 1xx are not final answers; a request for one gets a 400 saying so.
        Some(Ok(code)) if code >= 200 => StatusCode::from_u16(code).ok(),
        Some(_) => None,
        None => Some(StatusCode::OK),
    };
    let Some(status) = status else {
        return with_instance(
            &name,
            (StatusCode::BAD_REQUEST, format!("{path}: expected /status/CODE with CODE in 200..=999\n")),
        );
    };
    if let Some(delay) = path.strip_prefix("/delay/") {
        match delay.parse::<u64>() {
            Ok(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Err(_) => {
                return with_instance(
                    &name,
                    (StatusCode::BAD_REQUEST, format!("{path}: expected /delay/MILLISECONDS\n")),
                );
            }
        }
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (header_name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        seen.entry(header_name.as_str().to_owned())
            .and_modify(|all| {
                all.push_str(", ");
                all.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    // HTTP/2 carries the host as the :authority pseudo-header.
    if !seen.contains_key("host")
        && let Some(authority) = uri.authority()
    {
        seen.insert("host".to_owned(), authority.to_string());
    }
    let body = serde_json::json!({
        "instance": &*name,
        "method": method.as_str(),
        "path": uri.path_and_query().map_or(path, |p| p.as_str()),
        "headers": seen,
    });
    let mut text = serde_json::to_string(&body).unwrap_or_default();
    text.push('\n');
    // 204 and 304 carry no body by definition (RFC 9110, 15.3.5 and 15.4.5).
    if matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        text.clear();
    }
    with_instance(&name, (status, [(header::CONTENT_TYPE, "application/json")], text))
}

fn with_instance(name: &str, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    if let Ok(value) = HeaderValue::from_str(name) {
        response.headers_mut().insert(INSTANCE_HEADER, value);
    }
    response
}
