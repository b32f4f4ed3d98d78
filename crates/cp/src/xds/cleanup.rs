//! Removes Dataplanes that kodiak-dp registered from a dataplane file once
//! their sidecar has been gone for `dpServer.inlineDataplaneCleanupDelay`.
//! Dataplanes applied by users are never removed here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kodiak_api::ResourceType;
use kodiak_api::bootstrap::{REGISTERED_BY_KODIAK_DP, REGISTERED_BY_LABEL};
use kodiak_store::{ResourceStore, StoreError};

use super::connections::Connections;
use super::proxy_id::ProxyId;
use super::sync::list_all;

#[derive(Clone)]
pub struct Cleanup {
    store: Arc<dyn ResourceStore>,
    connections: Arc<Connections>,
    delay: Duration,
    /// Each departure gets a number; a timer only acts if no later
    /// departure (or arrival) replaced it.
    departures: Arc<Mutex<HashMap<ProxyId, u64>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl Cleanup {
    pub fn new(store: Arc<dyn ResourceStore>, connections: Arc<Connections>, delay: Duration) -> Self {
        Self { store, connections, delay, departures: Arc::default(), next: Arc::default() }
    }

    /// At start no sidecar is connected yet: every registered Dataplane
    /// gets the same grace period to come back as if it had just left.
    pub async fn schedule_registered(&self) -> Result<(), StoreError> {
        for dataplane in list_all(self.store.as_ref(), ResourceType::Dataplane).await? {
            if is_registered_by_kodiak_dp(&dataplane.labels)
                && let Some(proxy) = ProxyId::of(&dataplane.key)
            {
                self.departed(proxy);
            }
        }
        Ok(())
    }

    pub fn arrived(&self, proxy: &ProxyId) {
        self.departures.lock().unwrap().remove(proxy);
    }

    pub fn departed(&self, proxy: ProxyId) {
        let ticket = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.departures.lock().unwrap().insert(proxy.clone(), ticket);
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.delay).await;
            let current = this.departures.lock().unwrap().get(&proxy) == Some(&ticket);
            if current && !this.connections.is_connected(&proxy) {
                this.departures.lock().unwrap().remove(&proxy);
                this.remove(&proxy).await;
            }
        });
    }

    async fn remove(&self, proxy: &ProxyId) {
        let key = proxy.resource_key();
        match self.store.get(&key).await {
            Ok(Some(dataplane)) if is_registered_by_kodiak_dp(&dataplane.labels) => {
                match self.store.delete(&key).await {
                    Ok(()) | Err(StoreError::NotFound(_)) => {
                        tracing::info!(dataplane = %proxy, after = ?self.delay, "removed a Dataplane registered by kodiak-dp: its sidecar did not come back");
                    }
                    Err(error) => tracing::warn!(dataplane = %proxy, %error, "cannot remove a departed Dataplane"),
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(dataplane = %proxy, %error, "cannot read a departed Dataplane"),
        }
    }
}

pub fn is_registered_by_kodiak_dp(labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.get(REGISTERED_BY_LABEL).is_some_and(|value| value == REGISTERED_BY_KODIAK_DP)
}
