//! The newest snapshot of every node, shared between the generator and the ADS streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tonic::Status;

use crate::Snapshot;

/// One node's entry: its snapshot, how its open streams are told to end, and how many streams watch it.
#[derive(Debug)]
struct Slot {
    snapshot: watch::Sender<Option<Arc<Snapshot>>>,
    /// The status of the latest [`SnapshotCache::close`]; only streams already
    /// watching when it is sent see it change.
    close: watch::Sender<Option<Status>>,
    watchers: usize,
}

impl Slot {
    fn new(snapshot: Option<Arc<Snapshot>>) -> Self {
        Self { snapshot: watch::channel(snapshot).0, close: watch::channel(None).0, watchers: 0 }
    }
}

/// The newest snapshot per node id. Setting one wakes that node's streams; a
/// slow stream skips intermediate snapshots and gets only the newest
/// (a `tokio::sync::watch` per node).
///
/// A node takes memory only while it has a snapshot or an open stream: its
/// entry goes with [`remove`](Self::remove) when no stream is open, else when
/// its last stream closes. So the cache does not grow with every node id ever seen.
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
                slot.snapshot.send_replace(Some(snapshot));
            }
            None => {
                nodes.insert(node_id.to_owned(), Slot::new(Some(snapshot)));
            }
        }
    }

    /// Forgets the snapshot of `node_id`. Open streams keep what they have and
    /// resume with the next [`set`](Self::set).
    pub fn remove(&self, node_id: &str) {
        let mut nodes = self.nodes.lock().unwrap();
        if let Some(slot) = nodes.get(node_id) {
            if slot.watchers == 0 {
                nodes.remove(node_id);
            } else {
                slot.snapshot.send_replace(None);
            }
        }
    }

    /// The current snapshot of `node_id`.
    pub fn get(&self, node_id: &str) -> Option<Arc<Snapshot>> {
        self.nodes.lock().unwrap().get(node_id).and_then(|slot| slot.snapshot.borrow().clone())
    }

    /// Ends every open stream of `node_id` with `status`, which the client
    /// receives as the stream's gRPC status; each gets
    /// [`Callbacks::stream_closed`](crate::Callbacks::stream_closed). Streams
    /// the node opens afterwards are not affected: whether to accept them is
    /// for [`Callbacks::stream_opened`](crate::Callbacks::stream_opened) to
    /// decide. A stream counts as open from its first request on, including
    /// while `stream_opened` runs. The snapshot is left as it is.
    pub fn close(&self, node_id: &str, status: Status) {
        if let Some(slot) = self.nodes.lock().unwrap().get(node_id) {
            slot.close.send_replace(Some(status));
        }
    }

    /// How many nodes the cache holds: those with a snapshot or an open stream.
    pub fn node_count(&self) -> usize {
        self.nodes.lock().unwrap().len()
    }

    /// Follows `node_id`'s snapshots and closes; the node's entry stays while the watch lives.
    pub(crate) fn watch(&self, node_id: &str) -> Watch<'_> {
        let mut nodes = self.nodes.lock().unwrap();
        let slot = nodes.entry(node_id.to_owned()).or_insert_with(|| Slot::new(None));
        slot.watchers += 1;
        Watch {
            cache: self,
            node_id: node_id.to_owned(),
            snapshots: slot.snapshot.subscribe(),
            close: slot.close.subscribe(),
        }
    }
}

/// One stream's view of its node. Dropping it drops the node's entry if it
/// was the last watcher and the node has no snapshot.
#[derive(Debug)]
pub(crate) struct Watch<'a> {
    cache: &'a SnapshotCache,
    node_id: String,
    /// The current value is the newest snapshot. Never closed while the watch lives.
    pub(crate) snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    /// Changes when the node's open streams are to end, to the status to end them with.
    pub(crate) close: watch::Receiver<Option<Status>>,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut nodes = self.cache.nodes.lock().unwrap();
        let Some(slot) = nodes.get_mut(&self.node_id) else { return };
        slot.watchers -= 1;
        if slot.watchers == 0 && slot.snapshot.borrow().is_none() {
            nodes.remove(&self.node_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_see_only_the_newest_snapshot_and_survive_remove() {
        let cache = SnapshotCache::new();
        let mut watch = cache.watch("a");
        assert!(watch.snapshots.borrow_and_update().is_none());
        cache.set("a", Arc::new(Snapshot::new(1)));
        cache.set("a", Arc::new(Snapshot::new(2)));
        assert!(watch.snapshots.has_changed().unwrap());
        assert_eq!(watch.snapshots.borrow_and_update().as_ref().unwrap().generation(), 2);
        cache.remove("a");
        assert!(cache.get("a").is_none());
        cache.set("a", Arc::new(Snapshot::new(3)));
        assert_eq!(watch.snapshots.borrow_and_update().as_ref().unwrap().generation(), 3);
        drop(watch);
        cache.remove("a");
        assert_eq!(cache.node_count(), 0);
    }

    #[test]
    fn close_reaches_the_watchers_of_that_node_only_and_not_later_ones() {
        let cache = SnapshotCache::new();
        let (mut first, mut second, other) = (cache.watch("a"), cache.watch("a"), cache.watch("b"));
        cache.close("a", Status::not_found("gone"));
        for watch in [&mut first, &mut second] {
            assert!(watch.close.has_changed().unwrap());
            let status = watch.close.borrow_and_update().clone().unwrap();
            assert_eq!((status.code(), status.message()), (tonic::Code::NotFound, "gone"));
        }
        assert!(!other.close.has_changed().unwrap());
        let later = cache.watch("a");
        assert!(!later.close.has_changed().unwrap(), "a stream opened after the close is not affected");
        // Closing a node nobody watches leaves nothing behind.
        cache.close("c", Status::not_found("gone"));
        assert_eq!(cache.node_count(), 2);
    }

    /// The rule of the type's doc: an entry lives while the node has a snapshot or a watcher.
    #[test]
    fn a_node_is_dropped_once_it_has_no_snapshot_and_no_watcher() {
        let cache = SnapshotCache::new();
        // Removed while watched: kept for the watchers, dropped with the last one.
        cache.set("a", Arc::new(Snapshot::new(1)));
        let (first, second) = (cache.watch("a"), cache.watch("a"));
        cache.remove("a");
        assert_eq!(cache.node_count(), 1);
        drop(first);
        assert_eq!(cache.node_count(), 1);
        drop(second);
        assert_eq!(cache.node_count(), 0);
        // Watched without ever having a snapshot (a stream of a node the caller does not know).
        drop(cache.watch("b"));
        assert_eq!(cache.node_count(), 0);
        // A snapshot keeps the node after its last watcher; remove then drops it.
        cache.set("c", Arc::new(Snapshot::new(1)));
        drop(cache.watch("c"));
        assert_eq!(cache.node_count(), 1);
        assert!(cache.get("c").is_some());
        cache.remove("c");
        assert_eq!(cache.node_count(), 0);
        // A watcher that outlives a remove and a new set keeps the node with its snapshot.
        let watch = cache.watch("d");
        cache.set("d", Arc::new(Snapshot::new(1)));
        cache.remove("d");
        cache.set("d", Arc::new(Snapshot::new(2)));
        drop(watch);
        assert_eq!(cache.get("d").map(|snapshot| snapshot.generation()), Some(2));
    }
}
