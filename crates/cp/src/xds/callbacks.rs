//! The mesh-aware side of the ADS server: who may open a stream, and what
//! each stream event means for insights, presence and the sync loop.

use kodiak_api::bootstrap::node_metadata;
use kodiak_xds_server::{Callbacks, StreamInfo, Transport};
use tonic::metadata::MetadataMap;

use super::Xds;
use super::auth::StreamDataplane;
use super::connections::Presence;
use super::insights::{StreamEvent, StreamStart};
use super::register::register_inline;
use super::sync::{Signal, deleted};

pub struct XdsCallbacks {
    pub xds: Xds,
}

impl Callbacks for XdsCallbacks {
    type Identity = StreamDataplane;

    fn authenticate(
        &self,
        stream: &StreamInfo,
        metadata: &MetadataMap,
    ) -> impl Future<Output = Result<StreamDataplane, tonic::Status>> + Send {
        let inline = metadata_text(&stream.node, node_metadata::DATAPLANE);
        super::auth::authenticate_stream(&self.xds, &stream.node.id, inline, metadata)
    }

    fn stream_opened(&self, stream: &StreamInfo, found: &StreamDataplane) -> Result<(), tonic::Status> {
        let node = &stream.node;
        let (proxy, stored) = (found.proxy.clone(), found.stored);
        let inline = metadata_text(node, node_metadata::DATAPLANE);
        if self.xds.known.was_deleted_while_connected(&proxy) {
            return Err(deleted(&proxy));
        }
        let instance = metadata_text(node, node_metadata::SIDECAR_INSTANCE);
        let presence = self.xds.connections.opened(&proxy, instance.as_deref()).map_err(|reason| {
            tracing::warn!(dataplane = %proxy, %reason, "refused an xDS stream");
            tonic::Status::already_exists(reason)
        })?;
        self.xds.connections.set_access_log_pipe(&proxy, metadata_text(node, node_metadata::ACCESS_LOG_PIPE));
        if let (false, Some(inline)) = (stored, inline) {
            // Known to the sidecar but not to this control plane (an
            // in-memory store that restarted): register it again.
            let (store, known, cache) = (self.xds.store.clone(), self.xds.known.clone(), self.xds.cache.clone());
            let (again, node_id) = (proxy.clone(), node.id.clone());
            tokio::spawn(async move {
                match register_inline(store.as_ref(), &again, &inline).await {
                    Ok(_) => known.insert(again),
                    Err(error) => {
                        tracing::warn!(dataplane = %again, %error, "cannot register the Dataplane the sidecar carries");
                        let reason = format!("cannot register Dataplane {again}: {error}");
                        cache.close(&node_id, tonic::Status::failed_precondition(reason));
                    }
                }
            });
        }
        self.xds.insights.stream_opened(
            &proxy,
            StreamStart {
                stream_id: stream.id,
                xds_transport: match stream.transport {
                    Transport::Delta => "delta",
                    Transport::Sotw => "sotw",
                },
                kodiak_dp_version: metadata_text(node, node_metadata::KODIAK_DP_VERSION).unwrap_or_default(),
                envoy_version: metadata_text(node, node_metadata::ENVOY_VERSION).unwrap_or_default(),
            },
        );
        tracing::info!(dataplane = %proxy, stream = stream.id, transport = ?stream.transport, "sidecar connected");
        if presence == Presence::Arrived {
            self.xds.cleanup.arrived(&proxy);
        }
        let _ = self.xds.signals.send(Signal::Arrived(proxy));
        Ok(())
    }

    fn stream_closed(&self, stream: &StreamInfo, found: &StreamDataplane) {
        let proxy = &found.proxy;
        self.xds.insights.stream_closed(proxy, stream.id);
        tracing::info!(dataplane = %proxy, stream = stream.id, "sidecar disconnected");
        if self.xds.connections.closed(proxy) == Presence::Left {
            // A sidecar that comes back gets a snapshot made for it then,
            // not the one left from before it went away.
            self.xds.cache.remove(&stream.node.id);
            self.xds.cleanup.departed(proxy.clone());
            let _ = self.xds.signals.send(Signal::Departed(proxy.clone()));
        }
    }

    fn response_sent(&self, stream: &StreamInfo, found: &StreamDataplane, type_url: &str, _version: &str) {
        self.xds.insights.record(&found.proxy, stream.id, StreamEvent::Sent { type_url });
    }

    fn acked(&self, stream: &StreamInfo, found: &StreamDataplane, type_url: &str, version: &str) {
        self.xds.insights.record(&found.proxy, stream.id, StreamEvent::Acked { type_url, version });
    }

    fn nacked(&self, stream: &StreamInfo, found: &StreamDataplane, type_url: &str, version: &str, error: &str) {
        self.xds.insights.record(&found.proxy, stream.id, StreamEvent::Nacked { type_url, version, error });
    }

    fn synced(&self, stream: &StreamInfo, found: &StreamDataplane, generation: u64) {
        self.xds.insights.record(&found.proxy, stream.id, StreamEvent::Synced { generation });
        if self.xds.acks.wants(&found.proxy) {
            let _ = self.xds.signals.send(Signal::Synced(found.proxy.clone(), generation));
        }
    }
}

/// A text value of the node's metadata.
fn metadata_text(node: &envoy_types::pb::envoy::config::core::v3::Node, key: &str) -> Option<String> {
    use envoy_types::pb::google::protobuf::value::Kind;
    match node.metadata.as_ref()?.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use envoy_types::pb::envoy::config::core::v3::Node;
    use kodiak_api::Resource;
    use kodiak_store::{MemoryStore, ResourceStore};
    use kodiak_xds_server::SnapshotCache;
    use serde_json::json;

    use super::*;
    use crate::config::DpProxyAuthn;
    use crate::tokens::{DataplaneTokenRequest, Tokens};
    use crate::xds::connections::Connections;
    use crate::xds::insights::Insights;
    use crate::xds::proxy_id::ProxyId;
    use crate::xds::sync::{AwaitedAcks, KnownDataplanes};

    /// Callbacks whose sync loop has not run: `known` is whatever a test puts there.
    fn callbacks(store: &Arc<dyn ResourceStore>) -> XdsCallbacks {
        let (signals, _) = tokio::sync::mpsc::unbounded_channel();
        let connections = Arc::new(Connections::default());
        let cleanup = crate::xds::cleanup::Cleanup::new(store.clone(), connections.clone(), Duration::from_secs(60));
        let xds = Xds {
            store: store.clone(),
            cache: Arc::new(SnapshotCache::new()),
            known: Arc::new(KnownDataplanes::default()),
            insights: Arc::new(Insights::new("cp-test")),
            acks: Arc::new(AwaitedAcks::default()),
            dp_authn: DpProxyAuthn::DpToken,
            connections,
            cleanup,
            signals,
        };
        XdsCallbacks { xds }
    }

    fn stream(node_id: &str) -> StreamInfo {
        let node = Node { id: node_id.into(), ..Default::default() };
        StreamInfo { id: 1, node, transport: Transport::Sotw, peer: None }
    }

    fn metadata(token: Option<&str>) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        if let Some(token) = token {
            metadata.insert("authorization", token.parse().unwrap());
        }
        metadata
    }

    async fn store_with_mesh() -> Arc<dyn ResourceStore> {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        store.create(Resource::from_document(&json!({"type": "Mesh", "name": "default"})).unwrap()).await.unwrap();
        store
    }

    #[tokio::test]
    async fn a_dataplane_that_is_not_stored_is_refused_by_authentication() {
        let store = store_with_mesh().await;
        let callbacks = callbacks(&store);
        // Never stored, or deleted from the store before the sync loop noticed.
        let refused = callbacks.authenticate(&stream("default.web-1"), &metadata(None)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
        assert!(refused.message().contains("Dataplane default/web-1 does not exist: apply it first"), "{refused:?}");
    }

    #[tokio::test]
    async fn the_dataplane_authentication_found_is_the_one_the_stream_opens_for() {
        let store = store_with_mesh().await;
        let dataplane = json!({
            "type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {"address": "127.0.0.2", "inbound": [{"port": 10001, "tags": {"kuma.io/service": "web"}}]}
        });
        store.create(Resource::from_document(&dataplane).unwrap()).await.unwrap();
        let request = DataplaneTokenRequest {
            mesh: "default".into(),
            name: "web-1".into(),
            valid_for: Duration::from_secs(60),
            ..Default::default()
        };
        let token = Tokens::new(store.clone()).issue_dataplane(request).await.unwrap();
        let callbacks = callbacks(&store);
        let stream = stream("default.web-1");
        // Stored, though the sync loop has not seen it yet.
        let found = callbacks.authenticate(&stream, &metadata(Some(&token))).await.unwrap();
        assert_eq!((&found.proxy, found.stored), (&ProxyId::new("default", "web-1"), true));
        callbacks.stream_opened(&stream, &found).unwrap();
        assert!(callbacks.xds.connections.is_connected(&found.proxy));
        // The later callbacks speak of the same Dataplane: closing it leaves.
        callbacks.stream_closed(&stream, &found);
        assert!(!callbacks.xds.connections.is_connected(&found.proxy));
    }
}
