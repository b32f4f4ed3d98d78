//! The mesh-aware xDS layer: turns the store's Dataplanes into snapshots
//! for the generic ADS server, and keeps track of every sidecar's stream.

pub mod auth;
pub mod callbacks;
pub mod certs;
pub mod cleanup;
pub mod connections;
pub mod insights;
pub mod mesh_ca;
pub mod proxy_id;
pub mod register;
pub mod sync;
pub mod tls_ready;

use std::sync::Arc;

use kodiak_store::ResourceStore;
use kodiak_xds_server::{AdsServer, SnapshotCache};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use callbacks::XdsCallbacks;
use cleanup::Cleanup;
use connections::Connections;
use insights::Insights;
use sync::{AwaitedAcks, KnownDataplanes, Signal, Sync};

/// The shared parts of the xDS layer (cheap to clone: handles only).
#[derive(Clone)]
pub struct Xds {
    pub store: Arc<dyn ResourceStore>,
    pub cache: Arc<SnapshotCache>,
    pub connections: Arc<Connections>,
    pub known: Arc<KnownDataplanes>,
    pub insights: Arc<Insights>,
    pub cleanup: Cleanup,
    pub signals: mpsc::UnboundedSender<Signal>,
    /// The proxies whose ACKs the sync loop waits for.
    pub acks: Arc<AwaitedAcks>,
    /// Whether sidecars must show a dataplane token (bootstrap and ADS).
    pub dp_authn: crate::config::DpProxyAuthn,
}

impl Xds {
    /// Starts the sync loop and the clean-up of departed registered
    /// Dataplanes; returns the parts and the ADS gRPC routes.
    pub async fn start(
        store: Arc<dyn ResourceStore>,
        config: &Config,
        instance_id: &str,
        stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<(Self, axum::Router)> {
        let (signals, signal_rx) = mpsc::unbounded_channel();
        let connections = Arc::new(Connections::default());
        let cleanup = Cleanup::new(store.clone(), connections.clone(), config.inline_dataplane_cleanup_delay());
        cleanup.schedule_registered().await?;
        let xds = Self {
            store: store.clone(),
            cache: Arc::new(SnapshotCache::new()),
            connections,
            known: Arc::new(KnownDataplanes::default()),
            insights: Arc::new(Insights::new(instance_id)),
            cleanup,
            signals,
            acks: Arc::new(AwaitedAcks::default()),
            dp_authn: config.dp_server.authn.dp_proxy.kind,
        };
        let events = store.watch();
        let mut sync = Sync::new(&xds, config.sync_debounce());
        sync.reload().await?;
        tokio::spawn(sync.run(events, signal_rx, stopped.clone()));
        let callbacks = XdsCallbacks { xds: xds.clone() };
        let ads = AdsServer::new(xds.cache.clone(), Arc::new(callbacks)).with_shutdown(stopped).into_service();
        let routes = tonic::service::Routes::new(ads).into_axum_router();
        Ok((xds, routes))
    }
}
