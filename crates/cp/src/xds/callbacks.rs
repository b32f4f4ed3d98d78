//! The mesh-aware side of the ADS server: who may open a stream, and what
//! each stream event means for insights, presence and the sync loop.

use kodiak_api::bootstrap::node_metadata;
use kodiak_xds_server::{Callbacks, StreamInfo, Transport};

use super::Xds;
use super::connections::Presence;
use super::insights::{StreamEvent, StreamStart};
use super::proxy_id::ProxyId;
use super::register::register_inline;
use super::sync::{Signal, deleted};

pub struct XdsCallbacks {
    pub xds: Xds,
}

impl XdsCallbacks {
    /// The Dataplane a node id names: the reading that names a known
    /// Dataplane (mesh names may hold dots), else the plain one.
    fn proxy_of(&self, node_id: &str) -> Result<ProxyId, String> {
        let plain = ProxyId::parse(node_id)?;
        Ok(ProxyId::readings(node_id).find(|proxy| self.xds.known.contains(proxy)).unwrap_or(plain))
    }

    fn proxy(&self, stream: &StreamInfo) -> Option<ProxyId> {
        self.proxy_of(&stream.node.id).ok()
    }
}

impl Callbacks for XdsCallbacks {
    fn authenticate(&self, stream: &StreamInfo) -> impl Future<Output = Result<(), tonic::Status>> + Send {
        let inline = metadata_text(&stream.node, node_metadata::DATAPLANE);
        super::auth::authenticate_stream(&self.xds, self.proxy_of(&stream.node.id), inline, stream)
    }

    fn stream_opened(&self, stream: &StreamInfo) -> Result<(), tonic::Status> {
        let node = &stream.node;
        let proxy = self.proxy_of(&node.id).map_err(tonic::Status::invalid_argument)?;
        let inline = metadata_text(node, node_metadata::DATAPLANE);
        if self.xds.known.was_deleted_while_connected(&proxy) {
            return Err(deleted(&proxy));
        }
        let known = self.xds.known.contains(&proxy);
        if !known && inline.is_none() {
            tracing::warn!(dataplane = %proxy, "refused an xDS stream for a Dataplane that does not exist");
            return Err(tonic::Status::not_found(format!(
                "Dataplane {proxy} does not exist: apply it first (kodiakctl apply -f dataplane.yaml) or start kodiak-dp with --dataplane-file"
            )));
        }
        let instance = metadata_text(node, node_metadata::SIDECAR_INSTANCE);
        let presence = self.xds.connections.opened(&proxy, instance.as_deref()).map_err(|reason| {
            tracing::warn!(dataplane = %proxy, %reason, "refused an xDS stream");
            tonic::Status::already_exists(reason)
        })?;
        if let (false, Some(inline)) = (known, inline) {
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

    fn stream_closed(&self, stream: &StreamInfo) {
        let Some(proxy) = self.proxy(stream) else { return };
        self.xds.insights.stream_closed(&proxy, stream.id);
        tracing::info!(dataplane = %proxy, stream = stream.id, "sidecar disconnected");
        if self.xds.connections.closed(&proxy) == Presence::Left {
            // A sidecar that comes back gets a snapshot made for it then,
            // not the one left from before it went away.
            self.xds.cache.remove(&stream.node.id);
            self.xds.cleanup.departed(proxy.clone());
            let _ = self.xds.signals.send(Signal::Departed(proxy));
        }
    }

    fn response_sent(&self, stream: &StreamInfo, type_url: &str, _version: &str) {
        if let Some(proxy) = self.proxy(stream) {
            self.xds.insights.record(&proxy, stream.id, StreamEvent::Sent { type_url });
        }
    }

    fn acked(&self, stream: &StreamInfo, type_url: &str, version: &str) {
        if let Some(proxy) = self.proxy(stream) {
            self.xds.insights.record(&proxy, stream.id, StreamEvent::Acked { type_url, version });
        }
    }

    fn nacked(&self, stream: &StreamInfo, type_url: &str, version: &str, error: &str) {
        if let Some(proxy) = self.proxy(stream) {
            self.xds.insights.record(&proxy, stream.id, StreamEvent::Nacked { type_url, version, error });
        }
    }

    fn synced(&self, stream: &StreamInfo, generation: u64) {
        if let Some(proxy) = self.proxy(stream) {
            self.xds.insights.record(&proxy, stream.id, StreamEvent::Synced { generation });
            if self.xds.acks.wants(&proxy) {
                let _ = self.xds.signals.send(Signal::Synced(proxy, generation));
            }
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
