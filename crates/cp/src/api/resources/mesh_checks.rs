//! Rules on Meshes and Secrets that need the store: a CA cannot be swapped
//! while mTLS is on, a provided CA must be usable, and a Secret a CA backend
//! reads cannot be deleted.

use kodiak_api::mesh::{CaKind, MtlsView, builtin_cert_secret};
use kodiak_api::{FieldPath, Resource, ResourceKey, ResourceType, Violation, Violations};
use kodiak_store::ResourceStore;

use crate::api::ApiError;
use crate::xds::mesh_ca::{self, MeshCaError};

/// Checks a Mesh about to be stored over `existing` (none when it is new).
pub async fn check_mesh(
    store: &dyn ResourceStore,
    mesh: &Resource,
    existing: Option<&Resource>,
) -> Result<(), ApiError> {
    let new = MtlsView::of(&mesh.body);
    let mut violations = Violations::new();
    let mtls = FieldPath::root().field("mtls");
    if let Some(old) = existing.map(|existing| MtlsView::of(&existing.body))
        && let (Some(before), Some(after)) = (&old.enabled_backend, &new.enabled_backend)
        && before != after
    {
        violations.add(
            &mtls.field("enabledBackend"),
            format!(
                "Changing CA when mTLS is enabled is forbidden. Disable mTLS first and then change the CA \
                 (from {before:?} to {after:?})"
            ),
        );
    }
    // The builtin CA lives in Secrets named after the mesh and the backend.
    for (i, backend) in new.backends.iter().enumerate() {
        if let CaKind::Builtin { .. } = backend.kind {
            let secret = builtin_cert_secret(&mesh.key.name, &backend.name);
            if let Err(reason) = kodiak_api::name::check_name(&secret) {
                violations.add(
                    &mtls.field("backends").index(i).field("name"),
                    format!("the builtin CA's Secret would be named {secret:?}, which {reason}; choose a shorter backend name"),
                );
            }
        }
    }
    if !new.skip_validation {
        for (i, backend) in new.backends.iter().enumerate() {
            let CaKind::Provided { cert, key } = &backend.kind else { continue };
            match mesh_ca::load_provided(store, &mesh.key.name, &backend.name, cert, key).await {
                Ok(_) => {}
                Err(MeshCaError::Store(error)) => return Err(error.into()),
                Err(error) => {
                    let conf = mtls.field("backends").index(i).field("conf");
                    let path = error.part().map_or(conf.clone(), |part| conf.field(part.field()));
                    violations.add(&path, format!("{error} (set mtls.skipValidation to store it unchecked)"));
                }
            }
        }
    }
    if violations.is_empty() { Ok(()) } else { Err(violations.into()) }
}

/// Refuses to delete a Secret that a CA backend of its mesh reads.
pub async fn check_secret_delete(store: &dyn ResourceStore, key: &ResourceKey) -> Result<(), ApiError> {
    let (ResourceType::Secret, Some(mesh)) = (key.kind, &key.mesh) else { return Ok(()) };
    let Some(mesh_resource) = store.get(&ResourceKey::mesh(mesh)).await? else { return Ok(()) };
    let violations: Vec<Violation> = MtlsView::of(&mesh_resource.body)
        .backends
        .iter()
        .filter(|backend| MtlsView::secrets_of(mesh, backend).contains(&key.name))
        .map(|backend| Violation {
            field: "name".into(),
            reason: format!(
                "The secret {:?} that you are trying to remove is currently in use in Mesh {mesh:?} in mTLS backend {:?}. \
                 Please remove the reference from the {:?} backend before removing the secret.",
                key.name, backend.name, backend.name
            ),
        })
        .collect();
    if violations.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(format!("{key} is in use"), violations))
}

/// Generates the root of every builtin CA backend of a stored Mesh that has
/// none yet, before the PUT answers, so its Secrets can be read right after.
/// A failure is only logged: the sync loop tries again on its own.
pub async fn ensure_builtin_cas(store: &dyn ResourceStore, mesh: &Resource) {
    for backend in MtlsView::of(&mesh.body).backends {
        if let CaKind::Builtin { .. } = backend.kind
            && let Err(error) = mesh_ca::load(store, &mesh.key.name, &backend).await
        {
            tracing::warn!(mesh = %mesh.key.name, backend = %backend.name, %error, "cannot generate the builtin CA yet");
        }
    }
}
