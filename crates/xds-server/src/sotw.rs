//! State-of-the-world ADS as a synchronous state machine: requests and
//! snapshots in, `DiscoveryResponse`s and events out.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use crate::Transport;
use crate::stream::Protocol;
use crate::tracker::{Desired, Encode, Output, Reply, Tracker, TypeState};

/// One SotW stream's protocol state.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    tracker: Tracker,
}

impl Encode for Connection {
    type Response = DiscoveryResponse;

    /// Every subscribed resource that exists; a named one that does not is left
    /// out (xDS protocol, "Knowing When a Requested Resource Does Not Exist").
    fn encode(
        type_url: &str,
        desired: &Desired<'_>,
        _: &TypeState,
        version: String,
        nonce: String,
    ) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: version,
            resources: desired.values().map(|resource| resource.body.clone()).collect(),
            type_url: type_url.to_owned(),
            nonce,
            ..Default::default()
        }
    }
}

impl Protocol for Connection {
    type Request = DiscoveryRequest;
    const TRANSPORT: Transport = Transport::Sotw;

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn tracker(&mut self) -> &mut Tracker {
        &mut self.tracker
    }

    /// Handles one request: its ACK or NACK, then its resource names.
    fn on_request(&mut self, request: DiscoveryRequest) -> Output<DiscoveryResponse> {
        let DiscoveryRequest { version_info, resource_names, type_url, response_nonce, error_detail, .. } = request;
        let reply = self.tracker.reply(&type_url, &response_nonce, error_detail.as_ref());
        let (state, _) = self.tracker.type_state(&type_url);
        match reply {
            // xDS protocol, "Resource updates": no response to a stale nonce. Its
            // names come again with the reply to the latest response.
            Reply::Stale => return self.tracker.output(Vec::new()),
            // The type's first request; version_info is what the client holds from
            // a previous stream (xDS protocol, "ACK/NACK and resource type instance version").
            Reply::None => {
                state.restart(Some(version_info).filter(|version| !version.is_empty()));
                state.subscription.replace(&type_url, resource_names);
            }
            // xDS protocol, "How the client specifies what resources to return":
            // newly requested resources are sent even if they did not change.
            Reply::Latest => {
                let added = state.subscription.replace(&type_url, resource_names);
                state.forced.extend(added);
            }
        }
        self.tracker.push::<Self>()
    }

    fn sent(response: &DiscoveryResponse) -> (&str, &str) {
        (&response.type_url, &response.version_info)
    }
}
