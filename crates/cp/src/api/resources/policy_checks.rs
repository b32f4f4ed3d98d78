//! Rules on policies that need more than their schema: what their Envoy
//! parts must be, checked when they are applied.

use kodiak_api::Resource;
use kodiak_xds_gen::policies::mesh_proxy_patch;

use crate::api::ApiError;

/// Checks a policy about to be stored: a MeshProxyPatch's values must be
/// Envoy messages of the kind they modify and its JSON patches well formed.
pub fn check_policy(policy: &Resource) -> Result<(), ApiError> {
    let violations = mesh_proxy_patch::check_resource(policy);
    if violations.is_empty() { Ok(()) } else { Err(violations.into()) }
}
