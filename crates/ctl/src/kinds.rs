//! Resource types and keys as users type and read them on the command line.

use kodiak_api::{ResourceKey, ResourceType, Scope};

/// Finds a type by any of its names (`meshtimeouts`, `MeshTimeout`, `mt`);
/// the error lists what is accepted, so a typo is fixed without the docs.
pub fn parse_kind(text: &str) -> anyhow::Result<ResourceType> {
    ResourceType::from_any_name(text).ok_or_else(|| {
        let known = ResourceType::ALL
            .iter()
            .map(|t| format!("{} ({})", t.plural(), t.short_name()))
            .collect::<Vec<_>>()
            .join(", ");
        anyhow::anyhow!("unknown resource type {text:?}; known types: {known}")
    })
}

/// The key of `name` in `mesh`; global types (Mesh, Zone, GlobalSecret) have
/// no mesh, so `--mesh` is ignored for them.
pub fn key(kind: ResourceType, mesh: &str, name: &str) -> ResourceKey {
    let mesh = (kind.scope() == Scope::Mesh).then_some(mesh);
    ResourceKey::new(kind, mesh, name)
}

/// `MeshTimeout "x" <what> in mesh "default"` (`Mesh "x" <what>` for
/// global types): the sentence kodiakctl reports a resource's fate with.
pub fn describe(key: &ResourceKey, what: &str) -> String {
    match &key.mesh {
        Some(mesh) => format!("{} {:?} {what} in mesh {mesh:?}", key.kind, key.name),
        None => format!("{} {:?} {what}", key.kind, key.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_name_a_user_may_type() {
        for (text, kind) in [
            ("meshes", ResourceType::Mesh),
            ("mesh", ResourceType::Mesh),
            ("dataplanes", ResourceType::Dataplane),
            ("dp", ResourceType::Dataplane),
            ("meshtimeouts", ResourceType::MeshTimeout),
            ("MeshTimeout", ResourceType::MeshTimeout),
            ("mt", ResourceType::MeshTimeout),
            ("global-secrets", ResourceType::GlobalSecret),
        ] {
            assert_eq!(parse_kind(text).unwrap(), kind, "{text}");
        }
    }

    #[test]
    fn an_unknown_type_lists_the_known_ones() {
        let error = parse_kind("meshtimeout5").unwrap_err().to_string();
        assert!(error.contains("unknown resource type \"meshtimeout5\""), "{error}");
        assert!(error.contains("meshtimeouts (mt)"), "{error}");
        assert!(error.contains("dataplanes (dp)"), "{error}");
    }

    #[test]
    fn global_types_drop_the_mesh() {
        let mesh = key(ResourceType::Mesh, "default", "demo");
        assert_eq!(describe(&mesh, "not found"), "Mesh \"demo\" not found");
        let timeout = key(ResourceType::MeshTimeout, "default", "x");
        assert_eq!(describe(&timeout, "created"), "MeshTimeout \"x\" created in mesh \"default\"");
    }
}
