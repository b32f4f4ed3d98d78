//! The sidecar Envoy's own config dump, fetched from its admin API.
//!
//! Kodiak sidecars serve Envoy's admin API on 127.0.0.1 only, on the port
//! the Dataplane names in `networking.admin.port` (kodiak-dp picks a free
//! port when it names none, which the control plane cannot know). So the
//! control plane reaches it directly at `127.0.0.1:<port>` when both run on
//! one host, within [`TIMEOUT`], and makes sure the Envoy that answers is
//! the Dataplane's (its node id is `<mesh>.<name>`), so a port reused by
//! another proxy is never mistaken for it. Private keys are redacted.

use std::time::Duration;

use axum::http::StatusCode;
use kodiak_api::{Resource, ResourceKey};
use serde_json::Value;

use super::super::error::ApiError;

/// How long the whole fetch may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the config dump could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "the Dataplane sets no networking.admin.port, so the control plane does not know where its Envoy admin API listens (kodiak-dp then picks a free port); set networking.admin.port to fetch the config dump"
    )]
    NoAdminPort,
    #[error(
        "cannot reach the sidecar's Envoy admin API at {address}: {cause} (Kodiak sidecars serve it on 127.0.0.1 only, so the control plane reaches it only on the sidecar's own host)"
    )]
    Unreachable { address: String, cause: String },
    #[error("the sidecar's Envoy admin API at {address} did not answer within {}s", TIMEOUT.as_secs())]
    Timeout { address: String },
    #[error("the sidecar's Envoy admin API at {address} answered {status}: {body}")]
    Status { address: String, status: u16, body: String },
    #[error("the Envoy admin API at {address} is not this Dataplane's: it belongs to node {node_id:?}")]
    OtherProxy { address: String, node_id: String },
    #[error("the sidecar's Envoy admin API at {address} answered something that is not a config dump: {reason}")]
    NotADump { address: String, reason: String },
}

impl AdminError {
    /// 504 when the sidecar's Envoy is too slow, 502 otherwise.
    pub fn into_api_error(self, key: &ResourceKey) -> ApiError {
        let (status, title) = match self {
            AdminError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout"),
            _ => (StatusCode::BAD_GATEWAY, "Bad Gateway"),
        };
        ApiError::new(status, title, format!("cannot fetch the Envoy config dump of {key}: {self}"))
    }
}

/// Fetches `/config_dump` from the Envoy of `dataplane`, with the
/// endpoints (EDS) when `include_eds`.
pub async fn config_dump(dataplane: &Resource, include_eds: bool) -> Result<Value, AdminError> {
    let port = admin_port(dataplane).ok_or(AdminError::NoAdminPort)?;
    let address = format!("127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|error| AdminError::Unreachable { address: address.clone(), cause: error.to_string() })?;
    let failed = |error: reqwest::Error| match error.is_timeout() {
        true => AdminError::Timeout { address: address.clone() },
        false => AdminError::Unreachable { address: address.clone(), cause: super::super::error_chain(&error) },
    };
    let response = client
        .get(format!("http://{address}/config_dump{}", if include_eds { "?include_eds" } else { "" }))
        .send()
        .await
        .map_err(failed)?;
    let status = response.status();
    let body = response.bytes().await.map_err(failed)?;
    if !status.is_success() {
        let body = String::from_utf8_lossy(&body).chars().take(500).collect();
        return Err(AdminError::Status { address, status: status.as_u16(), body });
    }
    let mut dump: Value = serde_json::from_slice(&body)
        .map_err(|error| AdminError::NotADump { address: address.clone(), reason: error.to_string() })?;
    check_node(&dump, dataplane, &address)?;
    super::config::redact(&mut dump);
    Ok(dump)
}

fn admin_port(dataplane: &Resource) -> Option<u16> {
    let port = dataplane.body.get("networking")?.get("admin")?.get("port")?.as_u64()?;
    u16::try_from(port).ok().filter(|port| *port != 0)
}

/// Checks that the dump's bootstrap names the Dataplane's node.
fn check_node(dump: &Value, dataplane: &Resource, address: &str) -> Result<(), AdminError> {
    let configs = dump
        .get("configs")
        .and_then(Value::as_array)
        .ok_or_else(|| AdminError::NotADump { address: address.to_owned(), reason: "it has no configs list".into() })?;
    let node_id = configs.iter().find_map(|config| config.pointer("/bootstrap/node/id")).and_then(Value::as_str);
    let expected = format!("{}.{}", dataplane.key.mesh.as_deref().unwrap_or_default(), dataplane.key.name);
    match node_id {
        Some(id) if id == expected => Ok(()),
        other => {
            Err(AdminError::OtherProxy { address: address.to_owned(), node_id: other.unwrap_or("(none)").to_owned() })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dataplane(admin: Option<u64>) -> Resource {
        let mut networking = json!({"address": "127.0.0.1", "inbound": [{"port": 10001, "servicePort": 8080,
            "tags": {"kuma.io/service": "web"}}]});
        if let Some(port) = admin {
            networking["admin"] = json!({"port": port});
        }
        Resource::from_document(
            &json!({"type": "Dataplane", "mesh": "default", "name": "web-1", "networking": networking}),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn without_an_admin_port_nothing_is_fetched() {
        let error = config_dump(&dataplane(None), false).await.unwrap_err();
        assert!(matches!(error, AdminError::NoAdminPort), "{error}");
        assert!(error.to_string().contains("set networking.admin.port"), "{error}");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_with_the_address() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let error = config_dump(&dataplane(Some(port.into())), false).await.unwrap_err();
        assert!(matches!(error, AdminError::Unreachable { .. }), "{error}");
        assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
        let key = ResourceKey::new(kodiak_api::ResourceType::Dataplane, Some("default"), "web-1");
        let api = error.into_api_error(&key).to_string();
        assert!(api.starts_with("cannot fetch the Envoy config dump of Dataplane \"web-1\""), "{api}");
    }

    #[tokio::test]
    async fn a_silent_admin_api_is_a_gateway_timeout() {
        // The kernel completes the connection; nobody ever answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let error = config_dump(&dataplane(Some(port.into())), false).await.unwrap_err();
        assert!(matches!(error, AdminError::Timeout { .. }), "{error}");
        assert!(started.elapsed() >= TIMEOUT, "gave up after {:?}", started.elapsed());
        let key = ResourceKey::new(kodiak_api::ResourceType::Dataplane, Some("default"), "web-1");
        let response = axum::response::IntoResponse::into_response(error.into_api_error(&key));
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        drop(listener);
    }

    #[test]
    fn another_nodes_dump_is_refused() {
        let dump = |id: &str| json!({"configs": [{"@type": "x", "bootstrap": {"node": {"id": id}}}]});
        assert!(check_node(&dump("default.web-1"), &dataplane(Some(9901)), "a").is_ok());
        let error = check_node(&dump("default.web-2"), &dataplane(Some(9901)), "a").unwrap_err();
        assert!(error.to_string().contains("belongs to node \"default.web-2\""), "{error}");
        assert!(matches!(check_node(&json!({}), &dataplane(Some(9901)), "a"), Err(AdminError::NotADump { .. })));
    }
}
