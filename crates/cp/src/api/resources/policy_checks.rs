//! Rules on policies that need more than their schema: what their Envoy
//! parts must be, checked when they are applied.

use kodiak_api::{FieldPath, Resource, ResourceType, Violations};
use kodiak_xds_gen::policies::mesh_proxy_patch;

use crate::api::ApiError;

/// Checks a policy about to be stored: a MeshProxyPatch's values must be
/// Envoy messages of the kind they modify and its JSON patches well formed.
pub fn check_policy(policy: &Resource) -> Result<(), ApiError> {
    let mut violations = Violations::new();
    if policy.key.kind == ResourceType::MeshProxyPatch
        && let Some(default) = policy.body.get("spec").and_then(|spec| spec.get("default"))
    {
        mesh_proxy_patch::validate(default, &FieldPath::root().field("spec").field("default"), &mut violations);
    }
    if violations.is_empty() { Ok(()) } else { Err(violations.into()) }
}
