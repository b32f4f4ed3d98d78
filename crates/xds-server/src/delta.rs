//! Incremental (delta) ADS as a synchronous state machine: requests and
//! snapshots in, `DeltaDiscoveryResponse`s and events out.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as WireResource,
};

use crate::stream::Protocol;
use crate::tracker::{Desired, Encode, Output, Pairs, Tracker, TypeState};
use crate::{Transport, version};

/// One delta stream's protocol state.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    tracker: Tracker,
}

impl Encode for Connection {
    type Response = DeltaDiscoveryResponse;

    /// Only new or changed resources; gone ones, and subscribed ones that do not
    /// exist, in `removed_resources` (xDS protocol, "Deleting Resources" and
    /// "Knowing When a Requested Resource Does Not Exist").
    fn encode(
        type_url: &str,
        desired: &Desired<'_>,
        state: &TypeState,
        version: String,
        nonce: String,
    ) -> DeltaDiscoveryResponse {
        let resources = (desired.iter())
            .filter(|(name, resource)| {
                state.forced.contains(**name) || state.sent.get(**name) != Some(&resource.version)
            })
            .map(|(name, resource)| WireResource {
                name: name.to_string(),
                version: resource.version.clone(),
                resource: Some(resource.body.clone()),
                ..Default::default()
            })
            .collect();
        let removed: BTreeSet<&String> =
            state.sent.keys().chain(&state.forced).filter(|name| !desired.contains_key(name.as_str())).collect();
        DeltaDiscoveryResponse {
            system_version_info: version,
            resources,
            type_url: type_url.to_owned(),
            removed_resources: removed.into_iter().cloned().collect(),
            nonce,
            ..Default::default()
        }
    }
}

impl Protocol for Connection {
    type Request = DeltaDiscoveryRequest;
    const TRANSPORT: Transport = Transport::Delta;

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn tracker(&mut self) -> &mut Tracker {
        &mut self.tracker
    }

    /// Handles one request: its ACK or NACK, then its subscription changes.
    fn on_request(&mut self, request: DeltaDiscoveryRequest) -> Output<DeltaDiscoveryResponse> {
        let DeltaDiscoveryRequest {
            type_url,
            resource_names_subscribe: subscribe,
            resource_names_unsubscribe: unsubscribe,
            initial_resource_versions,
            response_nonce,
            error_detail,
            ..
        } = request;
        // xDS protocol, "Incremental xDS": subscription changes are honoured even
        // when the nonce is stale; only the ACK or NACK is dropped then.
        self.tracker.reply(&type_url, &response_nonce, error_detail.as_ref());
        let (state, first) = self.tracker.type_state(&type_url);
        if first {
            // On reconnect the client lists what it holds; send only what differs
            // and remove what no longer exists (xDS protocol, "Incremental xDS").
            let held: Pairs = initial_resource_versions.into_iter().collect();
            let claimed =
                (!held.is_empty()).then(|| version::of_pairs(held.iter().map(|(n, v)| (n.as_str(), v.as_str()))));
            state.restart(claimed);
            state.sent = held.clone();
            state.acked = held;
            state.subscription.start(&type_url, subscribe.is_empty() && unsubscribe.is_empty());
        }
        for name in subscribe {
            // A subscribed resource is sent even if the client should hold it
            // (xDS protocol, "Subscribing to Resources"), unless it said so itself just now.
            let held = first && state.sent.contains_key(&name);
            if let Some(name) = state.subscription.subscribe(name).filter(|_| !held) {
                state.forced.insert(name);
            }
        }
        for name in unsubscribe {
            if state.subscription.unsubscribe(&name) {
                state.sent.remove(&name);
                state.acked.remove(&name);
                // Still under the wildcard: tell the client whether to keep it
                // (xDS protocol, "Unsubscribing from Resources").
                if state.subscription.is_wildcard() {
                    state.forced.insert(name);
                }
            }
        }
        self.tracker.push::<Self>()
    }

    fn sent(response: &DeltaDiscoveryResponse) -> (&str, &str) {
        (&response.type_url, &response.system_version_info)
    }
}
