//! The resource types Kodiak knows, with the names Kuma gives them on the
//! wire (`type:` in a document, the plural in REST paths).

use std::fmt;
use std::str::FromStr;

use crate::schema::Schema;

/// Whether a resource lives inside a mesh or beside the meshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Mesh,
}

/// Whether a type is a targetRef policy or another kind of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Core,
    Policy,
}

macro_rules! resource_types {
    ($($variant:ident => $name:literal, $short:literal, $scope:ident, $role:ident, $schema:path;)*) => {
        /// Every resource type a control plane stores.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ResourceType {
            $($variant,)*
        }

        impl ResourceType {
            pub const ALL: &'static [ResourceType] = &[$(ResourceType::$variant,)*];

            /// The name used in a document's `type` field (`MeshTimeout`).
            pub fn name(self) -> &'static str {
                match self { $(ResourceType::$variant => $name,)* }
            }

            /// A short alias accepted by kodiakctl (`mt` for MeshTimeout).
            pub fn short_name(self) -> &'static str {
                match self { $(ResourceType::$variant => $short,)* }
            }

            pub fn scope(self) -> Scope {
                match self { $(ResourceType::$variant => Scope::$scope,)* }
            }

            /// Targeting policies keep their configuration under `spec`
            /// and select proxies with `targetRef`.
            pub fn is_policy(self) -> bool {
                match self { $(ResourceType::$variant => Role::$role == Role::Policy,)* }
            }

            /// The schema of the fields a document of this type holds besides
            /// `type`, `name`, `mesh`, `labels` and the timestamps.
            pub fn schema(self) -> &'static Schema {
                match self { $(ResourceType::$variant => &$schema,)* }
            }
        }
    };
}

resource_types! {
    Mesh => "Mesh", "mesh", Global, Core, crate::mesh::SCHEMA;
    Dataplane => "Dataplane", "dp", Mesh, Core, crate::dataplane::SCHEMA;
    Secret => "Secret", "secret", Mesh, Core, crate::secret::SCHEMA;
    GlobalSecret => "GlobalSecret", "global-secret", Global, Core, crate::secret::SCHEMA;
    Zone => "Zone", "zone", Global, Core, crate::zone::SCHEMA;
    MeshTrafficPermission => "MeshTrafficPermission", "mtp", Mesh, Policy, crate::policy::mesh_traffic_permission::SCHEMA;
    MeshTimeout => "MeshTimeout", "mt", Mesh, Policy, crate::policy::mesh_timeout::SCHEMA;
    MeshRetry => "MeshRetry", "mr", Mesh, Policy, crate::policy::mesh_retry::SCHEMA;
    MeshCircuitBreaker => "MeshCircuitBreaker", "mcb", Mesh, Policy, crate::policy::mesh_circuit_breaker::SCHEMA;
    MeshHealthCheck => "MeshHealthCheck", "mhc", Mesh, Policy, crate::policy::mesh_health_check::SCHEMA;
    MeshHTTPRoute => "MeshHTTPRoute", "mhr", Mesh, Policy, crate::policy::mesh_http_route::SCHEMA;
    MeshTCPRoute => "MeshTCPRoute", "mtr", Mesh, Policy, crate::policy::mesh_tcp_route::SCHEMA;
    MeshLoadBalancingStrategy => "MeshLoadBalancingStrategy", "mlbs", Mesh, Policy, crate::policy::mesh_load_balancing_strategy::SCHEMA;
    MeshFaultInjection => "MeshFaultInjection", "mfi", Mesh, Policy, crate::policy::mesh_fault_injection::SCHEMA;
    MeshRateLimit => "MeshRateLimit", "mrl", Mesh, Policy, crate::policy::mesh_rate_limit::SCHEMA;
    MeshAccessLog => "MeshAccessLog", "mal", Mesh, Policy, crate::policy::mesh_access_log::SCHEMA;
    MeshTrace => "MeshTrace", "mtrace", Mesh, Policy, crate::policy::mesh_trace::SCHEMA;
    MeshProxyPatch => "MeshProxyPatch", "mpp", Mesh, Policy, crate::policy::mesh_proxy_patch::SCHEMA;
}

impl ResourceType {
    /// The REST path segment: the lower-case English plural of the name
    /// (`meshtimeouts`, `meshes`, `meshretries`, `global-secrets`).
    pub fn plural(self) -> String {
        let name = match self {
            ResourceType::GlobalSecret => "global-secret".to_owned(),
            other => other.name().to_lowercase(),
        };
        if name.ends_with(['s', 'x']) || name.ends_with("sh") || name.ends_with("ch") {
            format!("{name}es")
        } else if let Some(stem) = name.strip_suffix('y').filter(|stem| !stem.ends_with(['a', 'e', 'i', 'o', 'u'])) {
            format!("{stem}ies")
        } else {
            format!("{name}s")
        }
    }

    /// Finds a type by any name a user may type: `MeshTimeout`,
    /// `meshtimeout`, `meshtimeouts`, `mt`, `global-secrets`.
    pub fn from_any_name(text: &str) -> Option<ResourceType> {
        let wanted = text.to_lowercase();
        ResourceType::ALL.iter().copied().find(|t| {
            let name = t.name().to_lowercase();
            wanted == name || wanted == t.plural() || wanted == t.short_name() || wanted == t.plural().replace('-', "")
        })
    }

    /// Finds a type by its REST plural only.
    pub fn from_plural(plural: &str) -> Option<ResourceType> {
        ResourceType::ALL.iter().copied().find(|t| t.plural() == plural)
    }

    /// Human-readable names for the `/_resources` descriptor ("Mesh Timeout").
    pub fn display_name(self) -> String {
        let name = self.name();
        let mut out = String::new();
        let chars: Vec<char> = name.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_is_lower = i > 0 && chars[i - 1].is_lowercase();
            if i > 0 && c.is_uppercase() && (prev_is_lower || next_is_lower) {
                out.push(' ');
            }
            out.push(*c);
        }
        out
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ResourceType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ResourceType::ALL
            .iter()
            .copied()
            .find(|t| t.name() == text)
            .ok_or_else(|| format!("unknown resource type {text:?}; known types: {}", known_types()))
    }
}

/// The `type` names, comma-separated, for error messages.
pub fn known_types() -> String {
    ResourceType::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_plurals() {
        assert_eq!(ResourceType::MeshTimeout.plural(), "meshtimeouts");
        assert_eq!(ResourceType::MeshHTTPRoute.plural(), "meshhttproutes");
        assert_eq!(ResourceType::GlobalSecret.plural(), "global-secrets");
        assert_eq!(ResourceType::Mesh.plural(), "meshes");
        assert_eq!(ResourceType::MeshRetry.plural(), "meshretries");
        assert_eq!(ResourceType::MeshProxyPatch.plural(), "meshproxypatches");
        assert_eq!(ResourceType::MeshLoadBalancingStrategy.plural(), "meshloadbalancingstrategies");
        assert_eq!(ResourceType::from_any_name("meshes"), Some(ResourceType::Mesh));
        assert_eq!(ResourceType::from_any_name("globalsecrets"), Some(ResourceType::GlobalSecret));
        assert_eq!(ResourceType::from_any_name("dataplanes"), Some(ResourceType::Dataplane));
        assert_eq!(ResourceType::from_any_name("MeshTimeout"), Some(ResourceType::MeshTimeout));
        assert_eq!(ResourceType::from_any_name("mtp"), Some(ResourceType::MeshTrafficPermission));
        assert_eq!(ResourceType::from_any_name("global-secret"), Some(ResourceType::GlobalSecret));
        assert_eq!(ResourceType::MeshHTTPRoute.display_name(), "Mesh HTTP Route");
        assert!(ResourceType::MeshRetry.is_policy());
        assert!(!ResourceType::Mesh.is_policy());
    }
}
