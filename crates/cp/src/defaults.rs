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

/// Creates the policies a new mesh starts with, unless the Mesh's
/// `skipCreatingInitialPolicies` names their type or `*`: the
/// MeshTrafficPermission `allow-all-<mesh>`, which lets every proxy of the
/// mesh call every other once mTLS is on. Called once, when the Mesh is
/// created, so a user who deletes it does not see it come back.
pub async fn create_initial_policies(store: &dyn ResourceStore, mesh: &Resource) -> Result<(), StoreError> {
    let skipped: Vec<&str> = mesh
        .body
        .get("skipCreatingInitialPolicies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let kind = ResourceType::MeshTrafficPermission;
    if skipped.iter().any(|name| *name == "*" || *name == kind.name()) {
        return Ok(());
    }
    let name = format!("allow-all-{}", mesh.key.name);
    let document = json!({
        "type": kind.name(),
        "mesh": mesh.key.name,
        "name": name,
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
        },
    });
    let policy = Resource::from_document(&document)
        .map_err(|e| StoreError::Backend(format!("the default MeshTrafficPermission is invalid: {e}")))?;
    match store.create(policy).await {
        Ok(_) => {
            tracing::info!(mesh = %mesh.key.name, policy = %name, "created the mesh's default MeshTrafficPermission")
        }
        // Created meanwhile by another control plane, or already there.
        Err(StoreError::AlreadyExists(_)) => {}
        Err(other) => return Err(other),
    }
    Ok(())
}
