//! Registering the Dataplane that kodiak-dp carries (from its dataplane
//! file): at bootstrap, and again when a sidecar reconnects to a control
//! plane that lost it.

use axum::http::StatusCode;
use kodiak_api::bootstrap::{REGISTERED_BY_KODIAK_DP, REGISTERED_BY_LABEL};
use kodiak_api::{Resource, ResourceType, Violation};
use kodiak_store::{ResourceStore, StoreError};

use super::cleanup::is_registered_by_kodiak_dp;
use super::proxy_id::ProxyId;
use crate::api::ApiError;

/// Validates `text` as the Dataplane `proxy` and creates or updates it,
/// labelled as registered by kodiak-dp. A Dataplane of that name that a
/// user applied is left alone: the sidecar must then use it by name.
pub async fn register_inline(store: &dyn ResourceStore, proxy: &ProxyId, text: &str) -> Result<Resource, ApiError> {
    let document = kodiak_api::parse_document(text)?;
    let mut dataplane = Resource::from_document(&document)?;
    if dataplane.key.kind != ResourceType::Dataplane {
        return Err(ApiError::invalid_field(
            "dataplaneResource.type",
            format!("must be Dataplane, not {}", dataplane.key.kind.name()),
        ));
    }
    let mut mismatched = Vec::new();
    if dataplane.key.mesh.as_deref() != Some(proxy.mesh.as_str()) {
        mismatched.push(Violation {
            field: "dataplaneResource.mesh".into(),
            reason: format!("must be {:?}, the mesh asked for", proxy.mesh),
        });
    }
    if dataplane.key.name != proxy.name {
        mismatched.push(Violation {
            field: "dataplaneResource.name".into(),
            reason: format!("must be {:?}, the name asked for", proxy.name),
        });
    }
    if !mismatched.is_empty() {
        return Err(ApiError::invalid("the dataplane resource does not match the mesh and name asked for", mismatched));
    }
    dataplane.labels.insert(REGISTERED_BY_LABEL.into(), REGISTERED_BY_KODIAK_DP.into());

    match store.get(&dataplane.key).await? {
        None => match store.create(dataplane).await {
            Ok(created) => Ok(created),
            // Registered meanwhile by another stream of the same sidecar.
            Err(StoreError::AlreadyExists(key)) => Ok(store.get(&key).await?.ok_or(StoreError::NotFound(key))?),
            Err(error) => Err(error.into()),
        },
        Some(existing) if !is_registered_by_kodiak_dp(&existing.labels) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Dataplane {proxy} exists and was applied by a user, not registered by kodiak-dp: start kodiak-dp with --name {} --mesh {} instead of --dataplane-file, or delete it first",
                proxy.name, proxy.mesh
            ),
        )),
        Some(existing) if existing.body == dataplane.body && existing.labels == dataplane.labels => Ok(existing),
        Some(existing) => Ok(store.update(dataplane, Some(existing.version)).await?),
    }
}
