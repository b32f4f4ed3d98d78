//! The resource store contract every Kodiak backend implements, an
//! in-memory backend, and the conformance suite that every backend passes.
//!
//! The contract assumes nothing about running in one process: versions give
//! optimistic concurrency, and change events carry enough (key, version,
//! kind of change) for a watcher to refetch what it needs.

mod error;
mod memory;
mod query;

pub mod conformance;

use async_trait::async_trait;
use kodiak_api::{Resource, ResourceKey};
use tokio::sync::broadcast;

pub use error::StoreError;
pub use memory::MemoryStore;
pub use query::{ListQuery, Page, now_rfc3339};

/// What happened to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One change, announced after it is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    pub kind: ChangeKind,
    pub key: ResourceKey,
    /// The resource's version after the change (for a delete, the last one).
    pub version: u64,
}

/// How many events a watcher may fall behind before it gets
/// `RecvError::Lagged`; every backend's broadcast channel holds this many.
pub const EVENT_BUFFER: usize = 4096;

/// A place where resources live.
///
/// Rules every backend follows (the [`conformance`] suite checks them):
/// - `create` refuses a key that exists, and a mesh-scoped resource whose
///   mesh does not exist.
/// - `update` refuses a missing key; with `expected_version` it refuses a
///   resource whose stored version differs ([`StoreError::Conflict`]).
/// - Versions start at 1 and grow by one on every update.
/// - Deleting a Mesh deletes every resource in it, each with its own event.
/// - `list` orders by mesh, then name, and pages with offset and size.
#[async_trait]
pub trait ResourceStore: Send + Sync + 'static {
    /// Stores a new resource; returns it with version and timestamps set.
    async fn create(&self, resource: Resource) -> Result<Resource, StoreError>;

    /// Replaces an existing resource's labels and body.
    async fn update(&self, resource: Resource, expected_version: Option<u64>) -> Result<Resource, StoreError>;

    /// Deletes a resource (and, for a Mesh, everything in it).
    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError>;

    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StoreError>;

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Subscribes to change events from now on. A receiver that falls
    /// behind gets `RecvError::Lagged` and should re-list what it watches.
    fn watch(&self) -> broadcast::Receiver<ChangeEvent>;
}
