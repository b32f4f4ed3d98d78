//! The resources of a mesh's services, each built once per service and per
//! distinct set of policies its callers have toward it, and shared by every
//! proxy that calls it with those policies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kodiak_xds_server::Resource;

use crate::policies::ToPolicies;
use crate::service::{ServiceResources, service_endpoints, service_resources_for};
use crate::services::ServiceView;

/// A mesh's services and the resources built for them so far.
#[derive(Debug, Default)]
pub struct SharedServices {
    views: BTreeMap<String, ServiceView>,
    /// Each service's assignment, the same for every caller.
    endpoints: BTreeMap<String, Arc<Resource>>,
    /// By service, then by the callers' policies toward it.
    built: HashMap<String, HashMap<ToPolicies, Arc<ServiceResources>>>,
}

impl SharedServices {
    /// Takes the mesh's services as they are now (see [`crate::services`]) and
    /// returns the names of those that came, went or changed; what was built
    /// for them is dropped.
    pub fn update(&mut self, views: BTreeMap<String, ServiceView>) -> BTreeSet<String> {
        let mut changed: BTreeSet<String> =
            self.views.keys().filter(|name| !views.contains_key(*name)).cloned().collect();
        for (name, view) in &views {
            if self.views.get(name) != Some(view) {
                changed.insert(name.clone());
                self.endpoints.insert(name.clone(), service_endpoints(name, view));
            }
        }
        self.endpoints.retain(|name, _| views.contains_key(name));
        self.built.retain(|name, _| !changed.contains(name));
        for by_policies in self.built.values_mut() {
            by_policies.retain(|to, _| to.route_backends().iter().all(|backend| !changed.contains(*backend)));
        }
        self.views = views;
        changed
    }

    /// Drops everything built: the policies changed, and resources built for
    /// policies no caller has any more would otherwise stay.
    pub fn forget_built(&mut self) {
        self.built.clear();
    }

    pub fn views(&self) -> &BTreeMap<String, ServiceView> {
        &self.views
    }

    /// The resources of `name` for callers with policies `to`, built on first
    /// use. A service the mesh does not have (yet) gets a cluster without
    /// endpoints.
    pub fn get(&mut self, name: &str, to: &ToPolicies) -> Arc<ServiceResources> {
        if let Some(built) = self.built.get(name).and_then(|by_policies| by_policies.get(to)) {
            return built.clone();
        }
        let unknown = ServiceView::default();
        let view = self.views.get(name).unwrap_or(&unknown);
        let endpoints = self.endpoints.get(name).cloned().unwrap_or_else(|| service_endpoints(name, view));
        let built = Arc::new(service_resources_for(name, view, to, endpoints, &self.views));
        if self.views.contains_key(name) {
            self.built.entry(name.to_owned()).or_default().insert(to.clone(), built.clone());
        }
        built
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::mesh_timeout;
    use crate::services::services;
    use crate::test_support::instance;

    fn with_timeout(seconds: u64) -> ToPolicies {
        let conf = mesh_timeout::Conf {
            connection_timeout: Some(std::time::Duration::from_secs(seconds)),
            ..Default::default()
        };
        ToPolicies { timeout: Some(conf), ..Default::default() }
    }

    #[test]
    fn callers_with_equal_policies_share_and_others_get_their_own() {
        let mut shared = SharedServices::default();
        shared.update(services([&instance("backend-1", "127.0.0.4", "backend", "http")]));
        let plain = shared.get("backend", &ToPolicies::default());
        assert!(Arc::ptr_eq(&plain, &shared.get("backend", &ToPolicies::default())));
        let timed = shared.get("backend", &with_timeout(2));
        assert!(Arc::ptr_eq(&timed, &shared.get("backend", &with_timeout(2))));
        assert_ne!(plain.cluster.version, timed.cluster.version);
        assert!(Arc::ptr_eq(&plain.endpoints, &timed.endpoints), "one assignment for every caller");
    }

    #[test]
    fn a_changed_service_is_rebuilt_and_reported() {
        let mut shared = SharedServices::default();
        let one = instance("backend-1", "127.0.0.4", "backend", "http");
        let two = instance("backend-2", "127.0.0.5", "backend", "http");
        let db = instance("db-1", "127.0.0.6", "db", "tcp");
        assert_eq!(shared.update(services([&one, &db])), BTreeSet::from(["backend".into(), "db".into()]));
        let before = shared.get("backend", &ToPolicies::default());
        let db_before = shared.get("db", &ToPolicies::default());
        assert_eq!(shared.update(services([&one, &two, &db])), BTreeSet::from(["backend".into()]));
        let after = shared.get("backend", &ToPolicies::default());
        assert_ne!(before.endpoints.version, after.endpoints.version);
        assert!(Arc::ptr_eq(&db_before, &shared.get("db", &ToPolicies::default())));
        assert_eq!(shared.update(services([&one, &two])), BTreeSet::from(["db".into()]));
    }

    #[test]
    fn an_unknown_service_gets_an_empty_assignment_and_is_not_kept() {
        let mut shared = SharedServices::default();
        let unknown = shared.get("ghost", &ToPolicies::default());
        assert_eq!(crate::render(&unknown.endpoints), serde_json::json!({"clusterName": "ghost"}));
        assert!(shared.built.is_empty());
    }
}
