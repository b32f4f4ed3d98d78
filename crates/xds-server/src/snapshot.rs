//! Everything one proxy should hold, by type URL and name.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Resource;

/// Resources of one type by name.
pub type Resources = BTreeMap<String, Arc<Resource>>;

static NONE: Resources = BTreeMap::new();

/// All resources one proxy should have, by type URL, plus a generation number
/// (set by the caller, increasing per node) reported back by
/// [`Callbacks::synced`](crate::Callbacks::synced) once the proxy has ACKed all of it.
///
/// Keep snapshots consistent: no EDS or RDS resource that no cluster or
/// listener of the same snapshot refers to, else the proxy never asks for it
/// and `synced` never fires.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    generation: u64,
    types: BTreeMap<String, Resources>,
}

impl Snapshot {
    /// An empty snapshot with this generation.
    pub fn new(generation: u64) -> Self {
        Self { generation, types: BTreeMap::new() }
    }

    /// Adds resources of `type_url` (the type is present, and served, even when
    /// `resources` is empty); a later resource with the same name replaces an earlier one.
    pub fn with(mut self, type_url: &str, resources: impl IntoIterator<Item = Arc<Resource>>) -> Self {
        let of_type = self.types.entry(type_url.to_owned()).or_default();
        of_type.extend(resources.into_iter().map(|resource| (resource.name.clone(), resource)));
        self
    }

    /// A copy numbered `generation`, to change with [`Snapshot::with`]; it
    /// shares every resource with this one.
    pub fn renumbered(&self, generation: u64) -> Self {
        Self { generation, types: self.types.clone() }
    }

    /// The generation the caller gave this snapshot.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The resources of `type_url` by name (empty when the type is absent).
    pub fn resources(&self, type_url: &str) -> &Resources {
        self.types.get(type_url).unwrap_or(&NONE)
    }

    /// The type URLs this snapshot holds, including those added with no resources.
    pub fn type_urls(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::resource;
    use crate::type_url::{CLUSTER, LISTENER};

    #[test]
    fn a_type_added_empty_is_present_and_a_later_resource_replaces_its_namesake() {
        let snapshot =
            Snapshot::new(7).with(CLUSTER, [resource(CLUSTER, "a", 1), resource(CLUSTER, "a", 2)]).with(LISTENER, []);
        assert_eq!(snapshot.generation(), 7);
        assert_eq!(snapshot.type_urls().collect::<Vec<_>>(), [CLUSTER, LISTENER]);
        assert_eq!(snapshot.resources(CLUSTER)["a"], resource(CLUSTER, "a", 2));
        assert!(snapshot.resources(LISTENER).is_empty() && snapshot.resources("unknown").is_empty());
    }

    #[test]
    fn a_renumbered_copy_shares_the_resources_and_changes_apart() {
        let first = Snapshot::new(1).with(CLUSTER, [resource(CLUSTER, "a", 1), resource(CLUSTER, "b", 1)]);
        let second = first.renumbered(2).with(CLUSTER, [resource(CLUSTER, "b", 2)]);
        assert_eq!((first.generation(), second.generation()), (1, 2));
        assert!(Arc::ptr_eq(&first.resources(CLUSTER)["a"], &second.resources(CLUSTER)["a"]));
        assert_eq!(first.resources(CLUSTER)["b"], resource(CLUSTER, "b", 1));
        assert_eq!(second.resources(CLUSTER)["b"], resource(CLUSTER, "b", 2));
    }
}
