//! The newest snapshot of every node, shared between the generator and the ADS streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::Snapshot;

type Slot = watch::Sender<Option<Arc<Snapshot>>>;

/// The newest snapshot per node id. Setting one wakes that node's streams; a
/// slow stream skips intermediate snapshots and gets only the newest
/// (a `tokio::sync::watch` per node).
#[derive(Debug, Default)]
pub struct SnapshotCache {
    nodes: Mutex<HashMap<String, Slot>>,
}

impl SnapshotCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the snapshot of `node_id`; its open streams push what changed.
    pub fn set(&self, node_id: &str, snapshot: Arc<Snapshot>) {
        let mut nodes = self.nodes.lock().unwrap();
        match nodes.get(node_id) {
            Some(slot) => {
                slot.send_replace(Some(snapshot));
            }
            None => {
                nodes.insert(node_id.to_owned(), watch::channel(Some(snapshot)).0);
            }
        }
    }

    /// Forgets the snapshot of `node_id`. Open streams keep what they have and
    /// resume with the next [`set`](Self::set).
    pub fn remove(&self, node_id: &str) {
        let mut nodes = self.nodes.lock().unwrap();
        if let Some(slot) = nodes.get(node_id) {
            if slot.receiver_count() == 0 {
                nodes.remove(node_id);
            } else {
                slot.send_replace(None);
            }
        }
    }

    /// The current snapshot of `node_id`.
    pub fn get(&self, node_id: &str) -> Option<Arc<Snapshot>> {
        self.nodes.lock().unwrap().get(node_id).and_then(|slot| slot.borrow().clone())
    }

    /// Follows `node_id`'s snapshots; the receiver's current value is the newest one.
    pub(crate) fn watch(&self, node_id: &str) -> watch::Receiver<Option<Arc<Snapshot>>> {
        let mut nodes = self.nodes.lock().unwrap();
        nodes.entry(node_id.to_owned()).or_insert_with(|| watch::channel(None).0).subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_see_only_the_newest_snapshot_and_survive_remove() {
        let cache = SnapshotCache::new();
        let mut watcher = cache.watch("a");
        assert!(watcher.borrow_and_update().is_none());
        cache.set("a", Arc::new(Snapshot::new(1)));
        cache.set("a", Arc::new(Snapshot::new(2)));
        assert!(watcher.has_changed().unwrap());
        assert_eq!(watcher.borrow_and_update().as_ref().unwrap().generation(), 2);
        cache.remove("a");
        assert!(cache.get("a").is_none());
        cache.set("a", Arc::new(Snapshot::new(3)));
        assert_eq!(watcher.borrow_and_update().as_ref().unwrap().generation(), 3);
        drop(watcher);
        cache.remove("a");
        assert!(cache.nodes.lock().unwrap().is_empty());
    }
}
