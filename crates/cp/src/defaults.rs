//! Resources every control plane starts with, and the policies every new
//! mesh starts with.

use kodiak_api::{Resource, ResourceKey, ResourceType};
use kodiak_store::{ResourceStore, StoreError};
use serde_json::{Value, json};

/// Creates the `default` mesh when it is missing, as Kuma does at start.
pub async fn ensure_default_mesh(store: &dyn ResourceStore) -> anyhow::Result<()> {
    if store.get(&ResourceKey::mesh("default")).await?.is_some() {
        return Ok(());
    }
    let mesh = Resource::from_document(&json!({"type": "Mesh", "name": "default"}))
        .map_err(|e| anyhow::anyhow!("the default mesh is invalid: {e}"))?;
    match store.create(mesh).await {
        Ok(mesh) => {
            tracing::info!("created the default mesh");
            create_initial_policies(store, &mesh).await?;
        }
        // Another control plane on the same store was faster.
        Err(StoreError::AlreadyExists(_)) => {}
        Err(other) => return Err(other.into()),
    }
    Ok(())
}

/// Creates the policies a new mesh starts with, each unless the Mesh's
/// `skipCreatingInitialPolicies` names its type or `*`: see
/// [`initial_policies`]. Called once, when the Mesh is created, so a user who
/// deletes one does not see it come back.
pub async fn create_initial_policies(store: &dyn ResourceStore, mesh: &Resource) -> Result<(), StoreError> {
    let skipped: Vec<&str> = mesh
        .body
        .get("skipCreatingInitialPolicies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (kind, name, spec) in initial_policies(&mesh.key.name) {
        if skipped.iter().any(|skip| *skip == "*" || *skip == kind.name()) {
            continue;
        }
        let document = json!({"type": kind.name(), "mesh": mesh.key.name, "name": name, "spec": spec});
        let policy = Resource::from_document(&document)
            .map_err(|e| StoreError::Backend(format!("the default {} is invalid: {e}", kind.name())))?;
        match store.create(policy).await {
            Ok(_) => tracing::info!(mesh = %mesh.key.name, policy = %name, "created a default {}", kind.name()),
            // Created meanwhile by another control plane, or already there.
            Err(StoreError::AlreadyExists(_)) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// The policies every new mesh starts with, by type, name and spec:
/// - `allow-all-<mesh>` (MeshTrafficPermission): every proxy may call every
///   other once mTLS is on;
/// - `mesh-timeout-all-<mesh>` (MeshTimeout): calls time out after 15 s, connecting
///   after 5 s, idle connections after 1 h; inbounds are more patient, so the
///   caller's timeout decides;
/// - `mesh-circuit-breaker-all-<mesh>` (MeshCircuitBreaker): at most 1024
///   connections, pending and active requests per service, and 3 retries at once;
/// - `mesh-retry-all-<mesh>` (MeshRetry): 5 connect attempts for TCP and up to 5
///   retries of failed HTTP and gRPC requests, with a back-off of 25-250 ms.
pub fn initial_policies(mesh: &str) -> [(ResourceType, String, Value); 4] {
    let retries =
        json!({"numRetries": 5, "perTryTimeout": "16s", "backOff": {"baseInterval": "25ms", "maxInterval": "250ms"}});
    [
        (
            ResourceType::MeshTrafficPermission,
            format!("allow-all-{mesh}"),
            json!({
                "targetRef": {"kind": "Mesh"},
                "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
            }),
        ),
        (
            ResourceType::MeshTimeout,
            format!("mesh-timeout-all-{mesh}"),
            json!({
                "targetRef": {"kind": "Mesh", "proxyTypes": ["Sidecar"]},
                "from": [{"targetRef": {"kind": "Mesh"}, "default": {
                    "connectionTimeout": "10s",
                    "idleTimeout": "2h",
                    "http": {"requestTimeout": "0s", "streamIdleTimeout": "1h", "maxStreamDuration": "0s"},
                }}],
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {
                    "connectionTimeout": "5s",
                    "idleTimeout": "1h",
                    "http": {"requestTimeout": "15s", "streamIdleTimeout": "30m"},
                }}],
            }),
        ),
        (
            ResourceType::MeshCircuitBreaker,
            format!("mesh-circuit-breaker-all-{mesh}"),
            json!({
                "targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionLimits": {
                    "maxConnections": 1024, "maxPendingRequests": 1024, "maxRequests": 1024, "maxRetries": 3,
                }}}],
            }),
        ),
        (
            ResourceType::MeshRetry,
            format!("mesh-retry-all-{mesh}"),
            json!({
                "targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {
                    "tcp": {"maxConnectAttempt": 5},
                    "http": retries,
                    "grpc": retries,
                }}],
            }),
        ),
    ]
}
