//! MeshTrafficPermission: for one inbound of one proxy, which callers are
//! allowed, denied or allowed with a shadow deny, and which policy decided
//! each of them.

use kodiak_api::Resource;
use kodiak_api::dataplane_view::{DataplaneView, InboundView};

/// What a permission decides for the callers it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
    /// Allowed, while Envoy's shadow rules record that a deny would apply.
    AllowWithShadowDeny,
}

/// One condition on the caller's identity: its certificate carries (or,
/// when `negated`, does not carry) the tag `key` with `value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagCondition {
    pub key: String,
    pub value: String,
    pub negated: bool,
}

/// A set of callers: those that meet every condition. No condition means
/// every caller in the mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Callers(pub Vec<TagCondition>);

/// The decision for one set of callers and the policy it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionRule {
    pub callers: Callers,
    pub action: Action,
    /// The name of the MeshTrafficPermission whose `from` entry decided.
    pub policy: String,
}

/// The permissions of one inbound. The rules' caller sets are disjoint; a
/// caller no rule covers is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundPermissions {
    pub rules: Vec<PermissionRule>,
}

/// A MeshTrafficPermission as the matcher reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshTrafficPermission {
    pub name: String,
}

impl MeshTrafficPermission {
    /// Reads a stored (already validated) MeshTrafficPermission.
    pub fn from_resource(resource: &Resource) -> MeshTrafficPermission {
        MeshTrafficPermission { name: resource.key.name.clone() }
    }
}

/// The effective permissions of `inbound` of `dataplane` under the mesh's
/// `policies`.
pub fn inbound_permissions(
    policies: &[MeshTrafficPermission],
    dataplane: &DataplaneView,
    inbound: &InboundView,
) -> InboundPermissions {
    let _ = (policies, dataplane, inbound);
    unimplemented!("being written")
}
