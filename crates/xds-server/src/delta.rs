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

    fn take_node(request: &mut DeltaDiscoveryRequest) -> Option<Node> {
        request.node.take()
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
                state.forget(&name);
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use envoy_types::pb::google::rpc::Status as RpcStatus;

    use super::*;
    use crate::testing::{self, acked, quiet, resource, snapshot};
    use crate::tracker::Event;
    use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, SECRET};

    fn request(type_url: &str, subscribe: &[&str], unsubscribe: &[&str]) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.into(),
            resource_names_subscribe: testing::names(subscribe),
            resource_names_unsubscribe: testing::names(unsubscribe),
            ..Default::default()
        }
    }

    fn ack(response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest { response_nonce: response.nonce.clone(), ..request(&response.type_url, &[], &[]) }
    }

    fn single(output: Output<DeltaDiscoveryResponse>) -> (DeltaDiscoveryResponse, Vec<Event>) {
        assert_eq!(output.responses.len(), 1, "expected one response: {output:?}");
        (output.responses.into_iter().next().unwrap(), output.events)
    }

    /// (names sent, names removed)
    fn changes(response: &DeltaDiscoveryResponse) -> (Vec<&str>, Vec<&str>) {
        let sent = response.resources.iter().map(|resource| resource.name.as_str()).collect();
        (sent, response.removed_resources.iter().map(String::as_str).collect())
    }

    fn clusters(generation: u64, resources: &[(&str, u32)]) -> Arc<crate::Snapshot> {
        snapshot(generation, &[(CLUSTER, resources)])
    }

    #[test]
    fn wildcard_gets_everything_then_only_changes_and_removals() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(clusters(1, &[("a", 1), ("b", 1)])));
        let (response, _) = single(connection.on_request(request(CLUSTER, &[], &[])));
        assert_eq!(changes(&response), (vec!["a", "b"], vec![]));
        let a = resource(CLUSTER, "a", 1);
        assert_eq!(response.resources[0].version, a.version);
        assert_eq!(response.resources[0].resource.as_ref(), Some(&a.body));
        let events = quiet(connection.on_request(ack(&response)));
        assert_eq!(events, vec![acked(CLUSTER, &response.system_version_info), Event::Synced(1)]);
        let (response, _) = single(connection.on_snapshot(clusters(2, &[("a", 2), ("c", 1)])));
        assert_eq!(changes(&response), (vec!["a", "c"], vec!["b"]));
    }

    #[test]
    fn an_empty_first_answer_is_still_sent() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(snapshot(1, &[(CLUSTER, &[])])));
        let (response, _) = single(connection.on_request(request(CLUSTER, &[], &[])));
        assert_eq!(changes(&response), (vec![], vec![]));
    }

    #[test]
    fn named_subscriptions_send_what_is_asked_and_say_what_does_not_exist() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(snapshot(1, &[(ENDPOINT, &[("a", 1), ("b", 1)])])));
        let (response, _) = single(connection.on_request(request(ENDPOINT, &["a", "missing"], &[])));
        assert_eq!(changes(&response), (vec!["a"], vec!["missing"]));
        quiet(connection.on_request(ack(&response)));
        // Unsubscribing needs no answer (xDS protocol, "Unsubscribing from Resources").
        assert!(quiet(connection.on_request(request(ENDPOINT, &[], &["a"]))).is_empty());
        // Subscribing again gets the resource again, unchanged as it is.
        let (response, _) = single(connection.on_request(request(ENDPOINT, &["a", "b"], &[])));
        assert_eq!(changes(&response), (vec!["a", "b"], vec![]));
    }

    #[test]
    fn unsubscribing_a_name_also_under_the_wildcard_is_answered() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(clusters(1, &[("a", 1)])));
        let (response, _) = single(connection.on_request(request(CLUSTER, &["*", "a", "gone"], &[])));
        assert_eq!(changes(&response), (vec!["a"], vec!["gone"]));
        quiet(connection.on_request(ack(&response)));
        let (response, _) = single(connection.on_request(request(CLUSTER, &[], &["a", "gone"])));
        assert_eq!(changes(&response), (vec!["a"], vec!["gone"]));
    }

    #[test]
    fn reconnect_sends_only_what_differs_and_removes_what_is_gone() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(clusters(1, &[("a", 1), ("b", 2), ("c", 1)])));
        let held = |name: &str, content| (name.to_owned(), resource(CLUSTER, name, content).version.clone());
        let initial_resource_versions: HashMap<String, String> = [held("a", 1), held("b", 1), held("old", 1)].into();
        let reconnect = DeltaDiscoveryRequest { initial_resource_versions, ..request(CLUSTER, &[], &[]) };
        let (response, events) = single(connection.on_request(reconnect));
        assert!(events.is_empty());
        assert_eq!(changes(&response), (vec!["b", "c"], vec!["old"]));
    }

    #[test]
    fn reconnect_holding_everything_is_not_resent_and_counts_as_acked() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(clusters(1, &[("a", 1)])));
        let initial_resource_versions = [("a".to_owned(), resource(CLUSTER, "a", 1).version.clone())].into();
        let reconnect = DeltaDiscoveryRequest { initial_resource_versions, ..request(CLUSTER, &[], &[]) };
        let version = crate::version::of_pairs([("a", resource(CLUSTER, "a", 1).version.as_str())]);
        assert_eq!(quiet(connection.on_request(reconnect)), vec![acked(CLUSTER, &version), Event::Synced(1)]);
    }

    #[test]
    fn a_stale_nonce_drops_the_ack_but_keeps_the_subscription() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(snapshot(1, &[(ENDPOINT, &[("a", 1), ("b", 1)])])));
        let (first, _) = single(connection.on_request(request(ENDPOINT, &["a"], &[])));
        quiet(connection.on_request(ack(&first)));
        let (second, _) = single(connection.on_snapshot(snapshot(2, &[(ENDPOINT, &[("a", 2), ("b", 1)])])));
        // Subscribing to b while replying to `first`: b is due, but waits for the ACK of `second`.
        let stale = DeltaDiscoveryRequest { response_nonce: first.nonce.clone(), ..request(ENDPOINT, &["b"], &[]) };
        assert!(quiet(connection.on_request(stale)).is_empty());
        let (third, events) = single(connection.on_request(ack(&second)));
        assert_eq!(events, vec![acked(ENDPOINT, &second.system_version_info)]);
        assert_eq!(changes(&third), (vec!["b"], vec![]));
    }

    fn nack(response: &DeltaDiscoveryResponse, error: &str) -> DeltaDiscoveryRequest {
        let error_detail = Some(RpcStatus { code: 3, message: error.into(), details: vec![] });
        DeltaDiscoveryRequest { error_detail, ..ack(response) }
    }

    /// Subscribes to `type_url` (wildcard) and ACKs the answer.
    fn holding(connection: &mut Connection, type_url: &str) {
        let (response, _) = single(connection.on_request(request(type_url, &[], &[])));
        quiet(connection.on_request(ack(&response)));
    }

    #[test]
    fn secrets_go_before_the_clusters_that_use_them() {
        let generation =
            |generation, content| snapshot(generation, &[(SECRET, &[("s", content)]), (CLUSTER, &[("a", content)])]);
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(generation(1, 1)));
        holding(&mut connection, CLUSTER);
        let (response, _) = single(connection.on_request(request(SECRET, &["s"], &[])));
        quiet(connection.on_request(ack(&response)));
        let output = connection.on_snapshot(generation(2, 2));
        let types: Vec<&str> = output.responses.iter().map(|response| response.type_url.as_str()).collect();
        assert_eq!(types, [SECRET, CLUSTER]);
    }

    #[test]
    fn a_changed_cluster_gets_its_unchanged_endpoints_again_and_only_those() {
        let generation = |generation, a| {
            snapshot(generation, &[(CLUSTER, &[("a", a), ("b", 1)]), (ENDPOINT, &[("a", 1), ("b", 1)])])
        };
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(generation(1, 1)));
        holding(&mut connection, CLUSTER);
        let (response, _) = single(connection.on_request(request(ENDPOINT, &["a", "b"], &[])));
        quiet(connection.on_request(ack(&response)));
        let output = connection.on_snapshot(generation(2, 2));
        let changed: Vec<_> =
            output.responses.iter().map(|response| (response.type_url.as_str(), changes(response))).collect();
        assert_eq!(changed, [(CLUSTER, (vec!["a"], vec![])), (ENDPOINT, (vec!["a"], vec![]))]);
    }

    #[test]
    fn nack_is_recorded_and_not_looped() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(clusters(1, &[("a", 1)])));
        let (response, _) = single(connection.on_request(request(CLUSTER, &[], &[])));
        let events = quiet(connection.on_request(nack(&response, "bad a")));
        let version = response.system_version_info.clone();
        assert_eq!(events, vec![Event::Nacked { type_url: CLUSTER.into(), version, error: "bad a".into() }]);
        // Neither a newer generation with the same clusters nor another request resends a.
        assert!(quiet(connection.on_snapshot(clusters(2, &[("a", 1)]))).is_empty());
        assert!(quiet(connection.on_request(nack(&response, "bad a"))).is_empty());
        // The next change of the clusters sends a again with it: the client never accepted a.
        let (response, _) = single(connection.on_snapshot(clusters(3, &[("a", 1), ("b", 1)])));
        assert_eq!(changes(&response), (vec!["a", "b"], vec![]));
        let events = quiet(connection.on_request(ack(&response)));
        assert_eq!(events, vec![acked(CLUSTER, &response.system_version_info), Event::Synced(3)]);
    }

    /// The review's case: a rejected listener stays in the snapshot while another is added.
    #[test]
    fn a_nacked_resource_goes_again_with_the_next_change_of_its_type_then_syncs() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(snapshot(1, &[(LISTENER, &[("l", 1)])])));
        holding(&mut connection, LISTENER);
        let (update, _) = single(connection.on_snapshot(snapshot(2, &[(LISTENER, &[("l", 2)])])));
        assert_eq!(changes(&update), (vec!["l"], vec![]));
        quiet(connection.on_request(nack(&update, "listener l: bad filter chain")));
        let (response, _) = single(connection.on_snapshot(snapshot(3, &[(LISTENER, &[("l", 2), ("m", 1)])])));
        assert_eq!(changes(&response), (vec!["l", "m"], vec![]));
        assert_eq!(response.resources[0].version, resource(LISTENER, "l", 2).version);
        let events = quiet(connection.on_request(ack(&response)));
        assert_eq!(events, vec![acked(LISTENER, &response.system_version_info), Event::Synced(3)]);
        // From then on only changes again.
        let (response, _) = single(connection.on_snapshot(snapshot(4, &[(LISTENER, &[("l", 2), ("m", 2)])])));
        assert_eq!(changes(&response), (vec!["m"], vec![]));
    }

    #[test]
    fn after_a_nack_what_the_rejected_response_changed_is_sent_or_removed_again() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(clusters(1, &[("a", 1), ("k", 1), ("r", 1)])));
        holding(&mut connection, CLUSTER);
        // Changes a, adds x, removes r, keeps k: rejected.
        let (update, _) = single(connection.on_snapshot(clusters(2, &[("a", 2), ("k", 1), ("x", 1)])));
        assert_eq!(changes(&update), (vec!["a", "x"], vec!["r"]));
        quiet(connection.on_request(nack(&update, "bad x")));
        // Back to a as accepted, x and r gone, b new: a goes again (the client may have
        // taken its new content), x and r are removed again, k the client surely holds.
        let (response, _) = single(connection.on_snapshot(clusters(3, &[("a", 1), ("b", 1), ("k", 1)])));
        assert_eq!(changes(&response), (vec!["a", "b"], vec!["r", "x"]));
        let events = quiet(connection.on_request(ack(&response)));
        assert_eq!(events, vec![acked(CLUSTER, &response.system_version_info), Event::Synced(3)]);
    }

    #[test]
    fn unsubscribing_after_a_nack_does_not_resend_the_rejected_rest() {
        let mut connection = Connection::default();
        let endpoints = |generation, a, b, c| snapshot(generation, &[(ENDPOINT, &[("a", a), ("b", b), ("c", c)])]);
        quiet(connection.on_snapshot(endpoints(1, 1, 1, 1)));
        let (response, _) = single(connection.on_request(request(ENDPOINT, &["a", "b", "c"], &[])));
        quiet(connection.on_request(ack(&response)));
        let (update, _) = single(connection.on_snapshot(endpoints(2, 2, 2, 1)));
        quiet(connection.on_request(nack(&update, "bad a")));
        assert!(quiet(connection.on_request(request(ENDPOINT, &[], &["b"]))).is_empty());
        // A change of b alone is no change of what the client subscribes to.
        assert!(quiet(connection.on_snapshot(endpoints(3, 2, 3, 1))).is_empty());
        // One of c is, and a, rejected, goes again with it.
        let (response, _) = single(connection.on_snapshot(endpoints(4, 2, 3, 2)));
        assert_eq!(changes(&response), (vec!["a", "c"], vec![]));
    }

    #[test]
    fn stale_clusters_are_removed_after_the_new_listeners_are_acked() {
        let mut connection = Connection::default();
        let generation_1 = snapshot(1, &[(CLUSTER, &[("a", 1), ("b", 1)]), (LISTENER, &[("l", 1)])]);
        quiet(connection.on_snapshot(generation_1));
        for type_url in [CLUSTER, LISTENER] {
            let (response, _) = single(connection.on_request(request(type_url, &[], &[])));
            quiet(connection.on_request(ack(&response)));
        }
        let generation_2 = snapshot(2, &[(CLUSTER, &[("a", 1)]), (LISTENER, &[("l", 2)])]);
        let (listeners, _) = single(connection.on_snapshot(generation_2));
        assert_eq!(listeners.type_url, LISTENER);
        let (clusters, _) = single(connection.on_request(ack(&listeners)));
        assert_eq!(changes(&clusters), (vec![], vec!["b"]));
        let events = quiet(connection.on_request(ack(&clusters)));
        assert_eq!(events, vec![acked(CLUSTER, &clusters.system_version_info), Event::Synced(2)]);
    }
}
