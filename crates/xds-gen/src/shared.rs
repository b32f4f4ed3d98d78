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

/// What [`SharedServices::update`] found changed.
#[derive(Debug, Default, PartialEq)]
pub struct ServiceChanges {
    /// Services that came, went, or changed how they are called (protocol,
    /// mTLS): what was built for them, and routes toward them, is dropped.
    pub rebuilt: BTreeSet<String>,
    /// Services whose endpoints alone changed, with their new assignment,
    /// which replaces the old one in what was built for them: a caller's
    /// configuration needs only the new assignment, unless its routes cut
    /// subsets out of the service.
    pub endpoints: BTreeMap<String, Arc<Resource>>,
}

impl SharedServices {
    /// Takes the mesh's services as they are now (see [`crate::services`]) and
    /// says which came, went or changed.
    pub fn update(&mut self, views: BTreeMap<String, ServiceView>) -> ServiceChanges {
        let gone: BTreeSet<String> = self.views.keys().filter(|name| !views.contains_key(*name)).cloned().collect();
        self.apply(views, gone)
    }

    /// Like [`SharedServices::update`] for the services named in `scope`
    /// only: `views` are those of them the mesh still has; the others in
    /// `scope` are gone. Services outside `scope` stay as they are.
    pub fn update_some(&mut self, scope: &BTreeSet<String>, views: BTreeMap<String, ServiceView>) -> ServiceChanges {
        let gone = scope.iter().filter(|name| !views.contains_key(*name) && self.views.contains_key(*name)).cloned();
        let gone = gone.collect();
        self.apply(views, gone)
    }

    fn apply(&mut self, views: BTreeMap<String, ServiceView>, gone: BTreeSet<String>) -> ServiceChanges {
        let mut changes = ServiceChanges { rebuilt: gone, ..ServiceChanges::default() };
        for name in &changes.rebuilt {
            self.views.remove(name);
            self.endpoints.remove(name);
        }
        for (name, view) in views {
            let before = self.views.get(&name);
            if before == Some(&view) {
                continue;
            }
            let assignment = service_endpoints(&name, &view);
            self.endpoints.insert(name.clone(), assignment.clone());
            match before {
                Some(before) if before.protocol == view.protocol && before.mtls == view.mtls => {
                    changes.endpoints.insert(name.clone(), assignment);
                }
                _ => {
                    changes.rebuilt.insert(name.clone());
                }
            }
            self.views.insert(name, view);
        }
        self.built.retain(|name, _| !changes.rebuilt.contains(name));
        for (name, by_policies) in &mut self.built {
            if let Some(assignment) = changes.endpoints.get(name) {
                for built in by_policies.values_mut() {
                    *built =
                        Arc::new(ServiceResources { endpoints: assignment.clone(), ..ServiceResources::clone(built) });
                }
            }
        }
        for by_policies in self.built.values_mut() {
            by_policies.retain(|to, _| to.route_backends().iter().all(|backend| !changes.rebuilt.contains(*backend)));
        }
        changes
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

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn services_that_come_go_or_change_how_they_are_called_are_rebuilt() {
        let mut shared = SharedServices::default();
        let one = instance("backend-1", "127.0.0.4", "backend", "http");
        let db = instance("db-1", "127.0.0.6", "db", "tcp");
        let changes = shared.update(services([&one, &db]));
        assert_eq!((changes.rebuilt, changes.endpoints.len()), (names(&["backend", "db"]), 0));
        let before = shared.get("backend", &ToPolicies::default());
        let db_before = shared.get("db", &ToPolicies::default());

        let mut with_mtls = services([&one, &db]);
        with_mtls.get_mut("backend").unwrap().mtls = Some("default".into());
        assert_eq!(shared.update(with_mtls).rebuilt, names(&["backend"]));
        let after = shared.get("backend", &ToPolicies::default());
        assert_ne!(before.cluster.version, after.cluster.version, "the cluster now has mTLS");
        assert!(Arc::ptr_eq(&db_before, &shared.get("db", &ToPolicies::default())));

        let grpc = instance("backend-1", "127.0.0.4", "backend", "grpc");
        assert_eq!(shared.update(services([&grpc, &db])).rebuilt, names(&["backend"]));
        assert_eq!(shared.update(services([&grpc])).rebuilt, names(&["db"]));
    }

    #[test]
    fn new_endpoints_only_replace_the_assignment_in_what_was_built() {
        let mut shared = SharedServices::default();
        let one = instance("backend-1", "127.0.0.4", "backend", "http");
        let two = instance("backend-2", "127.0.0.5", "backend", "http");
        shared.update(services([&one]));
        let before = shared.get("backend", &ToPolicies::default());
        let timed_before = shared.get("backend", &with_timeout(2));

        let changes = shared.update(services([&one, &two]));
        assert!(changes.rebuilt.is_empty(), "{changes:?}");
        let assignment = &changes.endpoints["backend"];
        assert_ne!(assignment.version, before.endpoints.version);
        for (was, to) in [(before, ToPolicies::default()), (timed_before, with_timeout(2))] {
            let now = shared.get("backend", &to);
            assert!(Arc::ptr_eq(&now.endpoints, assignment), "every caller gets the new assignment");
            assert!(Arc::ptr_eq(&now.cluster, &was.cluster) && now.route == was.route, "the rest is kept");
        }
    }

    #[test]
    fn a_scoped_update_touches_only_the_services_it_names() {
        let mut shared = SharedServices::default();
        let one = instance("backend-1", "127.0.0.4", "backend", "http");
        let two = instance("backend-2", "127.0.0.5", "backend", "http");
        let db = instance("db-1", "127.0.0.6", "db", "tcp");
        let web = instance("web-1", "127.0.0.7", "web", "http");
        shared.update(services([&one, &db, &web]));
        let db_before = shared.get("db", &ToPolicies::default());

        // backend got an instance and db went; web, outside the scope, is not looked at.
        let changes = shared.update_some(&names(&["backend", "db"]), services([&one, &two]));
        assert_eq!(
            (changes.rebuilt, changes.endpoints.keys().cloned().collect()),
            (names(&["db"]), names(&["backend"]))
        );
        assert_eq!(shared.views().keys().cloned().collect::<BTreeSet<_>>(), names(&["backend", "web"]));
        assert_eq!(shared.views()["backend"], services([&one, &two])["backend"]);
        assert!(!Arc::ptr_eq(&db_before, &shared.get("db", &ToPolicies::default())), "db is built anew, empty");
        assert!(shared.update_some(&names(&["web"]), services([&web])) == ServiceChanges::default());
    }

    #[test]
    fn an_unknown_service_gets_an_empty_assignment_and_is_not_kept() {
        let mut shared = SharedServices::default();
        let unknown = shared.get("ghost", &ToPolicies::default());
        assert_eq!(crate::render(&unknown.endpoints), serde_json::json!({"clusterName": "ghost"}));
        assert!(shared.built.is_empty());
    }
}
