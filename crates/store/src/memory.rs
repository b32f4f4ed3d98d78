//! The in-memory backend: for tests and for control planes that need no
//! durability (`kodiak-cp run --store memory`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use kodiak_api::{Resource, ResourceKey, ResourceType};
use tokio::sync::broadcast;

use crate::{ChangeEvent, ChangeKind, EVENT_BUFFER, ListQuery, Page, ResourceStore, StoreError, now_rfc3339};

/// Resources in a map ordered like `list` returns them (type, mesh, name).
///
/// Events are sent while the map is locked, so watchers see changes in the
/// order they happened and a `get` after an event sees that change.
pub struct MemoryStore {
    resources: Mutex<BTreeMap<ResourceKey, Resource>>,
    events: broadcast::Sender<ChangeEvent>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self { resources: Mutex::new(BTreeMap::new()), events: broadcast::channel(EVENT_BUFFER).0 }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, BTreeMap<ResourceKey, Resource>> {
        // A panic while holding the lock cannot leave the map half-changed:
        // every change is a single insert or remove.
        self.resources.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn announce(&self, kind: ChangeKind, resource: &Resource) {
        // Sending fails only when nobody watches, which is fine.
        let _ = self.events.send(ChangeEvent { kind, key: resource.key.clone(), version: resource.version });
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ResourceStore for MemoryStore {
    async fn create(&self, mut resource: Resource) -> Result<Resource, StoreError> {
        let mut resources = self.locked();
        if let Some(mesh) = &resource.key.mesh
            && !resources.contains_key(&ResourceKey::mesh(mesh))
        {
            return Err(StoreError::MeshNotFound(mesh.clone()));
        }
        if resources.contains_key(&resource.key) {
            return Err(StoreError::AlreadyExists(resource.key));
        }
        let now = now_rfc3339();
        resource.version = 1;
        resource.creation_time = Some(now.clone());
        resource.modification_time = Some(now);
        resources.insert(resource.key.clone(), resource.clone());
        self.announce(ChangeKind::Created, &resource);
        Ok(resource)
    }

    async fn update(&self, resource: Resource, expected_version: Option<u64>) -> Result<Resource, StoreError> {
        let mut resources = self.locked();
        let Some(stored) = resources.get_mut(&resource.key) else {
            return Err(StoreError::NotFound(resource.key));
        };
        if let Some(expected) = expected_version
            && expected != stored.version
        {
            return Err(StoreError::Conflict { key: resource.key, expected, actual: stored.version });
        }
        stored.labels = resource.labels;
        stored.body = resource.body;
        stored.version += 1;
        stored.modification_time = Some(now_rfc3339());
        let updated = stored.clone();
        self.announce(ChangeKind::Updated, &updated);
        Ok(updated)
    }

    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        let mut resources = self.locked();
        let Some(removed) = resources.remove(key) else {
            return Err(StoreError::NotFound(key.clone()));
        };
        if key.kind == ResourceType::Mesh {
            let inside: Vec<ResourceKey> =
                resources.keys().filter(|k| k.mesh.as_deref() == Some(key.name.as_str())).cloned().collect();
            for key in inside {
                if let Some(resource) = resources.remove(&key) {
                    self.announce(ChangeKind::Deleted, &resource);
                }
            }
        }
        // The Mesh goes last: a watcher that sees it gone knows its contents are gone too.
        self.announce(ChangeKind::Deleted, &removed);
        Ok(())
    }

    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StoreError> {
        Ok(self.locked().get(key).cloned())
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let resources = self.locked();
        let first_of_kind = ResourceKey::new(query.kind, None, "");
        let of_kind = resources.range(first_of_kind..).map(|(_, r)| r).take_while(|r| r.key.kind == query.kind);
        Ok(query.page(of_kind))
    }

    fn watch(&self) -> broadcast::Receiver<ChangeEvent> {
        self.events.subscribe()
    }
}
