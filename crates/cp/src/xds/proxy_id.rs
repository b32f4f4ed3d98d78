//! Which Dataplane a sidecar serves: Envoy's node id is `<mesh>.<name>`.

use std::fmt;

use kodiak_api::{ResourceKey, ResourceType};

/// A Dataplane's identity as the xDS layer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyId {
    pub mesh: String,
    pub name: String,
}

impl ProxyId {
    pub fn new(mesh: impl Into<String>, name: impl Into<String>) -> Self {
        Self { mesh: mesh.into(), name: name.into() }
    }

    /// Reads a node id. Mesh names cannot hold a dot, so the first dot
    /// separates the mesh from the Dataplane's name (which may hold dots).
    pub fn parse(node_id: &str) -> Result<Self, String> {
        match node_id.split_once('.') {
            Some((mesh, name)) if !mesh.is_empty() && !name.is_empty() => Ok(Self::new(mesh, name)),
            _ => Err(format!("node id {node_id:?} is not of the form <mesh>.<dataplane name>")),
        }
    }

    /// Every way to read a node id when mesh names may hold dots too: the
    /// caller picks the one that names an existing Dataplane.
    pub fn readings(node_id: &str) -> impl Iterator<Item = ProxyId> + '_ {
        node_id
            .match_indices('.')
            .map(|(dot, _)| (&node_id[..dot], &node_id[dot + 1..]))
            .filter(|(mesh, name)| !mesh.is_empty() && !name.is_empty())
            .map(|(mesh, name)| ProxyId::new(mesh, name))
    }

    pub fn node_id(&self) -> String {
        format!("{}.{}", self.mesh, self.name)
    }

    pub fn resource_key(&self) -> ResourceKey {
        ResourceKey::new(ResourceType::Dataplane, Some(&self.mesh), &self.name)
    }

    /// The proxy of a Dataplane's key (None for other kinds).
    pub fn of(key: &ResourceKey) -> Option<Self> {
        match (&key.kind, &key.mesh) {
            (ResourceType::Dataplane, Some(mesh)) => Some(Self::new(mesh.clone(), key.name.clone())),
            _ => None,
        }
    }
}

impl fmt::Display for ProxyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.mesh, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_dot_ends_the_mesh() {
        assert_eq!(ProxyId::parse("default.web-1.eu").unwrap(), ProxyId::new("default", "web-1.eu"));
        assert_eq!(ProxyId::new("m", "a.b").node_id(), "m.a.b");
        for bad in ["", "default", ".web", "default."] {
            assert!(ProxyId::parse(bad).is_err(), "{bad}");
        }
        let readings: Vec<ProxyId> = ProxyId::readings("team.a.web-1").collect();
        assert_eq!(readings, [ProxyId::new("team", "a.web-1"), ProxyId::new("team.a", "web-1")]);
    }
}
