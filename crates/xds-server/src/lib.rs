//! A generic ADS server: a snapshot cache and the state-of-the-world and
//! delta xDS protocols over one gRPC service, with ACK/NACK tracking.
//!
//! It knows nothing about meshes. A caller puts a [`Snapshot`] per node into
//! the [`SnapshotCache`]; every stream of that node sends what changed, in
//! make-before-break order, and reports to [`Callbacks`]. Protocol rules live in
//! synchronous state machines (`sotw.rs`, `delta.rs`, sharing `tracker.rs`);
//! `stream.rs` is the async shell around them.

mod cache;
mod callbacks;
mod delta;
mod resource;
mod server;
mod snapshot;
mod sotw;
mod stream;
mod subscription;
#[cfg(test)]
mod testing;
mod tracker;
pub mod type_url;
mod version;

pub use cache::SnapshotCache;
pub use callbacks::{Callbacks, StreamInfo, Transport};
pub use resource::Resource;
pub use server::AdsServer;
pub use snapshot::{Resources, Snapshot};
