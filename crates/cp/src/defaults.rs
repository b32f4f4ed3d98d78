//! Resources every control plane starts with.

use kodiak_api::{Resource, ResourceKey};
use kodiak_store::{ResourceStore, StoreError};
use serde_json::json;

/// Creates the `default` mesh when it is missing, as Kuma does at start.
pub async fn ensure_default_mesh(store: &dyn ResourceStore) -> anyhow::Result<()> {
    if store.get(&ResourceKey::mesh("default")).await?.is_some() {
        return Ok(());
    }
    let mesh = Resource::from_document(&json!({"type": "Mesh", "name": "default"}))
        .map_err(|e| anyhow::anyhow!("the default mesh is invalid: {e}"))?;
    match store.create(mesh).await {
        Ok(_) => tracing::info!("created the default mesh"),
        // Another control plane on the same store was faster.
        Err(StoreError::AlreadyExists(_)) => {}
        Err(other) => return Err(other.into()),
    }
    Ok(())
}
