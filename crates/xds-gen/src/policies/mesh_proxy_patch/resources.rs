//! A proxy's clusters, listeners and route configurations while the
//! modifications apply: each is rendered to Envoy JSON only once a
//! modification looks inside it, and encoded again only if it changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kodiak_xds_server::Resource;
use prost_reflect::MessageDescriptor;
use serde_json::Value;

use super::message;
use crate::ProxyResources;

/// The origin of inbound listeners and clusters (`inbound:...`) and of
/// the route configurations inside inbound listeners.
pub(super) const INBOUND: &str = "inbound";
/// The origin of outbound listeners and route configurations
/// (`outbound:...`) and of the clusters of the services a proxy calls.
pub(super) const OUTBOUND: &str = "outbound";
/// The origin of clusters and listeners a MeshProxyPatch added.
pub(super) const ADDED: &str = "mesh-proxy-patch";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Cluster,
    Listener,
    Route,
}

impl Kind {
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Listener => "listener",
            Kind::Route => "route configuration",
        }
    }

    pub fn descriptor(self) -> Result<MessageDescriptor, String> {
        message::descriptor(match self {
            Kind::Cluster => "envoy.config.cluster.v3.Cluster",
            Kind::Listener => "envoy.config.listener.v3.Listener",
            Kind::Route => "envoy.config.route.v3.RouteConfiguration",
        })
    }
}

/// The origin of a generated resource, by its name (see `names`): a
/// cluster is outbound when the proxy gets endpoints of that name over EDS.
fn origin(kind: Kind, name: &str, eds: &BTreeSet<&str>) -> Option<&'static str> {
    if name.starts_with("inbound:") {
        Some(INBOUND)
    } else if name.starts_with("outbound:") || (kind == Kind::Cluster && eds.contains(name)) {
        Some(OUTBOUND)
    } else {
        None
    }
}

/// Why a modification did not apply to a resource (or at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    /// The failing operation among the modification's `jsonPatches`.
    pub json_patch: Option<usize>,
    pub reason: String,
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure { json_patch: None, reason }
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
}

impl From<super::json_patch::Failure> for Failure {
    fn from(failure: super::json_patch::Failure) -> Self {
        Failure { json_patch: Some(failure.index), reason: failure.reason }
    }
}

pub(super) struct Entry {
    pub name: String,
    pub origin: Option<&'static str>,
    /// The tags of what a generated listener serves (see [`super::ListenerTags`]).
    pub tags: Option<BTreeMap<String, String>>,
    /// The resource as generated, then as the last change left it.
    resource: Arc<Resource>,
    changed: bool,
    /// Its Envoy JSON, once rendered.
    json: Option<Value>,
}

impl Entry {
    fn generated(kind: Kind, resource: &Arc<Resource>, eds: &BTreeSet<&str>) -> Entry {
        let origin = origin(kind, &resource.name, eds);
        Entry {
            name: resource.name.clone(),
            origin,
            tags: None,
            resource: resource.clone(),
            changed: false,
            json: None,
        }
    }

    /// A resource a modification adds, from its Envoy JSON.
    fn added(kind: Kind, name: String, json: Value) -> Result<Entry, String> {
        let resource = message::resource(&name, &kind.descriptor()?, &json)?;
        Ok(Entry { name, origin: Some(ADDED), tags: None, resource, changed: true, json: Some(json) })
    }

    /// The resource's Envoy JSON.
    pub fn json(&mut self) -> Result<&Value, String> {
        if self.json.is_none() {
            let rendered = crate::try_render(&self.resource.body).map_err(|error| error.to_string())?;
            self.json = Some(rendered);
        }
        Ok(self.json.as_ref().expect("rendered above"))
    }

    /// Runs `change` on a copy of the resource's JSON and keeps the result
    /// only if `change` succeeds and it is still a valid `kind` message
    /// (encoded at once, so nothing can fail later).
    pub fn change(
        &mut self,
        kind: Kind,
        change: impl FnOnce(&mut Value) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let mut next = self.json()?.clone();
        change(&mut next)?;
        let message = kind.descriptor()?;
        let next = message::canonical(&message, &next).map_err(|reason| format!("the result is {reason}"))?;
        if self.json.as_ref() != Some(&next) {
            self.resource = message::resource(&self.name, &message, &next)?;
            self.json = Some(next);
            self.changed = true;
        }
        Ok(())
    }
}

/// The resources modifications work on.
pub(super) struct Working {
    pub clusters: Vec<Entry>,
    pub listeners: Vec<Entry>,
    pub routes: Vec<Entry>,
    original_listeners: Vec<Arc<Resource>>,
    removed_clusters: BTreeSet<String>,
}

impl Working {
    pub fn new(resources: &ProxyResources, listener_tags: &super::ListenerTags) -> Working {
        let eds: BTreeSet<&str> = resources.endpoints.iter().map(|r| r.name.as_str()).collect();
        let entries = |kind, list: &[Arc<Resource>]| list.iter().map(|r| Entry::generated(kind, r, &eds)).collect();
        let mut listeners: Vec<Entry> = entries(Kind::Listener, &resources.listeners);
        for listener in &mut listeners {
            listener.tags = listener_tags.get(&listener.name).cloned();
        }
        Working {
            clusters: entries(Kind::Cluster, &resources.clusters),
            listeners,
            routes: entries(Kind::Route, &resources.routes),
            original_listeners: resources.listeners.clone(),
            removed_clusters: BTreeSet::new(),
        }
    }

    pub fn entries(&mut self, kind: Kind) -> &mut Vec<Entry> {
        match kind {
            Kind::Cluster => &mut self.clusters,
            Kind::Listener => &mut self.listeners,
            Kind::Route => &mut self.routes,
        }
    }

    /// Adds a resource, replacing one of the same name.
    pub fn add(&mut self, kind: Kind, name: String, json: Value) -> Result<(), String> {
        let entry = Entry::added(kind, name, json)?;
        let entries = self.entries(kind);
        entries.retain(|other| other.name != entry.name);
        entries.push(entry);
        Ok(())
    }

    /// Removes the resources at `positions` (ascending).
    pub fn remove(&mut self, kind: Kind, positions: &[usize]) {
        for &at in positions.iter().rev() {
            let entry = self.entries(kind).remove(at);
            if kind == Kind::Cluster {
                self.removed_clusters.insert(entry.name);
            }
        }
    }

    /// Writes the resources back into `resources`, sorted by name, and
    /// drops endpoints and route configurations that only removed or
    /// changed clusters and listeners referred to (a snapshot must not hold
    /// what nothing asks for).
    pub fn finish(mut self, resources: &mut ProxyResources) {
        let listeners_changed =
            self.listeners.iter().any(|entry| entry.changed) || self.listeners.len() != self.original_listeners.len();
        let unreferenced_routes = if listeners_changed { self.unreferenced_routes() } else { BTreeSet::new() };
        let unreferenced_endpoints = self.unreferenced_endpoints();
        let sorted = |entries: Vec<Entry>| -> Vec<Arc<Resource>> {
            let by_name: BTreeMap<String, Arc<Resource>> =
                entries.into_iter().map(|entry| (entry.name, entry.resource)).collect();
            by_name.into_values().collect()
        };
        resources.clusters = sorted(self.clusters);
        resources.listeners = sorted(self.listeners);
        resources.routes = sorted(self.routes);
        resources.routes.retain(|route| !unreferenced_routes.contains(&route.name));
        resources.endpoints.retain(|endpoints| !unreferenced_endpoints.contains(&endpoints.name));
    }

    /// Route configurations the generated listeners fetched over RDS that
    /// no listener fetches any more.
    fn unreferenced_routes(&mut self) -> BTreeSet<String> {
        let mut before = BTreeSet::new();
        for listener in &self.original_listeners {
            if let Ok(json) = crate::try_render(&listener.body) {
                collect_rds(&json, &mut before);
            }
        }
        let mut after = BTreeSet::new();
        for entry in &mut self.listeners {
            if let Ok(json) = entry.json() {
                collect_rds(json, &mut after);
            }
        }
        before.difference(&after).cloned().collect()
    }

    /// Endpoints of removed clusters that no remaining cluster uses.
    fn unreferenced_endpoints(&mut self) -> BTreeSet<String> {
        if self.removed_clusters.is_empty() {
            return BTreeSet::new();
        }
        let mut used = BTreeSet::new();
        for entry in &mut self.clusters {
            used.insert(entry.name.clone());
            if let Ok(json) = entry.json() {
                let service = json.pointer("/edsClusterConfig/serviceName").and_then(Value::as_str);
                used.extend(service.filter(|name| !name.is_empty()).map(str::to_owned));
            }
        }
        self.removed_clusters.difference(&used).cloned().collect()
    }
}

/// The route configuration names `json` fetches over RDS.
fn collect_rds(json: &Value, names: &mut BTreeSet<String>) {
    match json {
        Value::Object(object) => {
            if let Some(name) = object.get("rds").and_then(|rds| rds.get("routeConfigName")).and_then(Value::as_str) {
                names.insert(name.to_owned());
            }
            object.values().for_each(|value| collect_rds(value, names));
        }
        Value::Array(items) => items.iter().for_each(|item| collect_rds(item, names)),
        _ => {}
    }
}
