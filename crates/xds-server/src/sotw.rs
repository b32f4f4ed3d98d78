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

    fn take_node(request: &mut DiscoveryRequest) -> Option<Node> {
        request.node.take()
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
            // The type's first request, also when it carries a nonce of an earlier
            // stream; version_info is what the client holds from a previous stream
            // (xDS protocol, "ACK/NACK and resource type instance version"). Its
            // names, or the wildcard, become the subscription.
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use envoy_types::pb::google::rpc::Status as RpcStatus;

    use super::*;
    use crate::Snapshot;
    use crate::testing::{self, acked, name_of, quiet, snapshot};
    use crate::tracker::Event;
    use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};

    fn request(type_url: &str, names: &[&str]) -> DiscoveryRequest {
        DiscoveryRequest { type_url: type_url.into(), resource_names: testing::names(names), ..Default::default() }
    }

    fn ack(response: &DiscoveryResponse, names: &[&str]) -> DiscoveryRequest {
        let version_info = response.version_info.clone();
        DiscoveryRequest { version_info, response_nonce: response.nonce.clone(), ..request(&response.type_url, names) }
    }

    fn nack(response: &DiscoveryResponse, names: &[&str], error: &str) -> DiscoveryRequest {
        let error_detail = Some(RpcStatus { code: 3, message: error.into(), details: vec![] });
        DiscoveryRequest { error_detail, version_info: String::new(), ..ack(response, names) }
    }

    fn sent(response: &DiscoveryResponse) -> Vec<String> {
        response.resources.iter().map(name_of).collect()
    }

    /// The only response of `output`, with the events.
    fn single(output: Output<DiscoveryResponse>) -> (DiscoveryResponse, Vec<Event>) {
        assert_eq!(output.responses.len(), 1, "expected one response: {output:?}");
        (output.responses.into_iter().next().unwrap(), output.events)
    }

    /// Everything a type subscribes to: nothing (wildcard) for CDS and LDS, the snapshot's names otherwise.
    fn subscription(snapshot: &Snapshot, type_url: &str) -> Vec<String> {
        match type_url {
            CLUSTER | LISTENER => vec![],
            _ => snapshot.resources(type_url).keys().cloned().collect(),
        }
    }

    fn ack_names(connection: &mut Connection, response: &DiscoveryResponse, names: &[String]) -> Vec<Event> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        quiet(connection.on_request(ack(response, &names)))
    }

    /// A connection that holds `snapshot` entirely, every type requested and ACKed in Envoy's order.
    fn holding(snapshot: Arc<Snapshot>) -> Connection {
        let mut connection = Connection::default();
        assert!(quiet(connection.on_snapshot(snapshot.clone())).is_empty());
        let mut events = vec![];
        for type_url in [CLUSTER, ENDPOINT, LISTENER, ROUTE] {
            let names = subscription(&snapshot, type_url);
            let (response, _) = single(
                connection.on_request(DiscoveryRequest { resource_names: names.clone(), ..request(type_url, &[]) }),
            );
            events = ack_names(&mut connection, &response, &names);
        }
        assert_eq!(events.last(), Some(&Event::Synced(snapshot.generation())));
        connection
    }

    fn generation_1() -> Arc<Snapshot> {
        snapshot(
            1,
            &[
                (CLUSTER, &[("a", 1), ("b", 1)]),
                (ENDPOINT, &[("a", 1), ("b", 1)]),
                (LISTENER, &[("l", 1)]),
                (ROUTE, &[("r", 1)]),
            ],
        )
    }

    /// Generation 1 with cluster a's content replaced, nothing else changed.
    fn cluster_a(generation: u64, content: u32) -> Arc<Snapshot> {
        snapshot(
            generation,
            &[
                (CLUSTER, &[("a", content), ("b", 1)]),
                (ENDPOINT, &[("a", 1), ("b", 1)]),
                (LISTENER, &[("l", 1)]),
                (ROUTE, &[("r", 1)]),
            ],
        )
    }

    /// Generation 2 without cluster b and its endpoints, listener and route content as given.
    fn without_b(listener_and_route: u32) -> Arc<Snapshot> {
        let content = listener_and_route;
        snapshot(
            2,
            &[
                (CLUSTER, &[("a", 1)]),
                (ENDPOINT, &[("a", 1)]),
                (LISTENER, &[("l", content)]),
                (ROUTE, &[("r", content)]),
            ],
        )
    }

    /// Takes a snapshot that changes cluster a only: the clusters go, and a's
    /// unchanged endpoints right behind them (Envoy's updated cluster warms
    /// until it gets them again). Returns both responses.
    fn changed_cluster_a(
        connection: &mut Connection,
        snapshot: Arc<Snapshot>,
    ) -> (DiscoveryResponse, DiscoveryResponse) {
        let output = connection.on_snapshot(snapshot);
        assert_eq!(type_urls(&output), [CLUSTER, ENDPOINT]);
        let mut responses = output.responses.into_iter();
        let (clusters, endpoints) = (responses.next().unwrap(), responses.next().unwrap());
        // State of the world: every endpoint subscribed to, a's among them.
        assert_eq!(sent(&endpoints), testing::names(&["a", "b"]));
        (clusters, endpoints)
    }

    fn type_urls(output: &Output<DiscoveryResponse>) -> Vec<&str> {
        output.responses.iter().map(|response| response.type_url.as_str()).collect()
    }

    #[test]
    fn first_request_waits_for_a_snapshot_then_gets_every_cluster() {
        let mut connection = Connection::default();
        assert!(quiet(connection.on_request(request(CLUSTER, &[]))).is_empty());
        let (response, events) = single(connection.on_snapshot(generation_1()));
        assert!(events.is_empty());
        assert_eq!((response.type_url.as_str(), sent(&response)), (CLUSTER, testing::names(&["a", "b"])));
        assert_eq!(response.nonce, "1");
        let cluster_versions =
            generation_1().resources(CLUSTER).values().map(|r| r.version.clone()).collect::<Vec<_>>();
        let expected =
            crate::version::of_pairs([("a", cluster_versions[0].as_str()), ("b", cluster_versions[1].as_str())]);
        assert_eq!(response.version_info, expected);
    }

    #[test]
    fn a_type_waits_for_its_first_request() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(generation_1()));
        let (response, _) = single(connection.on_request(request(CLUSTER, &[])));
        assert_eq!(response.type_url, CLUSTER);
        quiet(connection.on_request(ack(&response, &[])));
        let (response, _) = single(connection.on_request(request(LISTENER, &[])));
        assert_eq!((response.type_url.as_str(), sent(&response)), (LISTENER, testing::names(&["l"])));
    }

    #[test]
    fn ack_is_recorded_once_and_nothing_is_resent() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(generation_1()));
        let (response, _) = single(connection.on_request(request(CLUSTER, &[])));
        assert_eq!(quiet(connection.on_request(ack(&response, &[]))), vec![acked(CLUSTER, &response.version_info)]);
        assert!(quiet(connection.on_request(ack(&response, &[]))).is_empty());
    }

    #[test]
    fn a_stale_nonce_is_ignored_with_its_names() {
        let mut connection = holding(generation_1());
        let (first, endpoints) = changed_cluster_a(&mut connection, cluster_a(2, 2));
        // A reply to the response before `first`, NACKing and asking for other names: ignored.
        let stale = DiscoveryRequest { response_nonce: "1".into(), ..nack(&first, &["zzz"], "old") };
        assert!(quiet(connection.on_request(stale)).is_empty());
        let events = quiet(connection.on_request(ack(&first, &[])));
        assert_eq!(events, vec![acked(CLUSTER, &first.version_info)]);
        let events = quiet(connection.on_request(ack(&endpoints, &["a", "b"])));
        assert_eq!(events, vec![acked(ENDPOINT, &endpoints.version_info), Event::Synced(2)]);
    }

    #[test]
    fn nack_is_recorded_verbatim_and_the_same_content_not_resent() {
        let mut connection = holding(generation_1());
        let (response, endpoints) = changed_cluster_a(&mut connection, cluster_a(2, 9));
        quiet(connection.on_request(ack(&endpoints, &["a", "b"])));
        let error = "Proto constraint validation failed (ClusterValidationError.Name: value length must be at least 1)";
        let events = quiet(connection.on_request(nack(&response, &[], error)));
        let version = response.version_info.clone();
        assert_eq!(events, vec![Event::Nacked { type_url: CLUSTER.into(), version, error: error.into() }]);
        // A newer generation with the same clusters: not sent again.
        assert!(quiet(connection.on_snapshot(cluster_a(3, 9))).is_empty());
        // One that changes the clusters is.
        let (response, endpoints) = changed_cluster_a(&mut connection, cluster_a(4, 4));
        assert_eq!(sent(&response), testing::names(&["a", "b"]));
        quiet(connection.on_request(ack(&endpoints, &["a", "b"])));
        let events = quiet(connection.on_request(ack(&response, &[])));
        assert_eq!(events, vec![acked(CLUSTER, &response.version_info), Event::Synced(4)]);
    }

    /// A client reconnecting from an earlier stream may still carry that
    /// stream's nonce; it is the type's first request, not a stale one, else the
    /// type would be left with an empty subscription and the next push would be
    /// an empty CDS wiping the client's clusters.
    #[test]
    fn a_first_request_with_a_nonce_of_an_earlier_stream_is_an_initial_request() {
        let earlier = |request| DiscoveryRequest { response_nonce: "42".into(), ..request };
        let mut connection = Connection::default();
        assert!(quiet(connection.on_request(earlier(request(CLUSTER, &[])))).is_empty());
        let (clusters, events) = single(connection.on_snapshot(generation_1()));
        assert!(events.is_empty());
        assert_eq!((clusters.type_url.as_str(), sent(&clusters)), (CLUSTER, testing::names(&["a", "b"])));
        // A named type takes its names from such a request too.
        let (endpoints, _) = single(connection.on_request(earlier(request(ENDPOINT, &["b"]))));
        assert_eq!(sent(&endpoints), testing::names(&["b"]));
        // Once the stream answered the type, a nonce it did not issue last is stale again.
        assert!(quiet(connection.on_request(earlier(request(CLUSTER, &["zzz"])))).is_empty());

        // The version such a request claims to hold counts, as on any first request.
        let mut reconnected = Connection::default();
        quiet(reconnected.on_snapshot(generation_1()));
        let claim = DiscoveryRequest { version_info: clusters.version_info.clone(), ..earlier(request(CLUSTER, &[])) };
        assert_eq!(quiet(reconnected.on_request(claim)), vec![acked(CLUSTER, &clusters.version_info)]);
    }

    #[test]
    fn after_a_nack_the_accepted_content_again_is_sent_and_synced() {
        let mut connection = holding(generation_1());
        let (rejected, endpoints) = changed_cluster_a(&mut connection, cluster_a(2, 9));
        quiet(connection.on_request(ack(&endpoints, &["a", "b"])));
        quiet(connection.on_request(nack(&rejected, &[], "bad a")));
        let (response, endpoints) = changed_cluster_a(&mut connection, cluster_a(3, 1));
        assert_eq!(sent(&response), testing::names(&["a", "b"]));
        quiet(connection.on_request(ack(&endpoints, &["a", "b"])));
        let events = quiet(connection.on_request(ack(&response, &[])));
        assert_eq!(events, vec![acked(CLUSTER, &response.version_info), Event::Synced(3)]);
    }

    #[test]
    fn reconnect_with_the_current_version_is_not_resent_and_counts_as_acked() {
        let mut first = Connection::default();
        quiet(first.on_snapshot(generation_1()));
        let (clusters, _) = single(first.on_request(request(CLUSTER, &[])));
        let (endpoints, _) = single(first.on_request(request(ENDPOINT, &["a"])));

        let mut second = Connection::default();
        quiet(second.on_snapshot(generation_1()));
        let reconnect = DiscoveryRequest { version_info: clusters.version_info.clone(), ..request(CLUSTER, &[]) };
        assert_eq!(quiet(second.on_request(reconnect)), vec![acked(CLUSTER, &clusters.version_info)]);
        let reconnect = DiscoveryRequest { version_info: endpoints.version_info.clone(), ..request(ENDPOINT, &["a"]) };
        assert_eq!(quiet(second.on_request(reconnect)), vec![acked(ENDPOINT, &endpoints.version_info)]);
        // A client that holds something else gets the current state.
        let outdated = DiscoveryRequest { version_info: "0123456789abcdef".into(), ..request(LISTENER, &[]) };
        let (listeners, events) = single(second.on_request(outdated));
        assert!(events.is_empty());
        assert_eq!(sent(&listeners), testing::names(&["l"]));
    }

    #[test]
    fn named_types_send_what_is_asked_for_and_answer_a_changed_list_at_once() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(generation_1()));
        let (response, _) = single(connection.on_request(request(ENDPOINT, &["a", "missing"])));
        assert_eq!(sent(&response), testing::names(&["a"]));
        quiet(connection.on_request(ack(&response, &["a", "missing"])));
        let (response, _) = single(connection.on_request(ack(&response, &["a", "b"])));
        assert_eq!(sent(&response), testing::names(&["a", "b"]));
        quiet(connection.on_request(ack(&response, &["a", "b"])));
        // Unsubscribing from b: the answer leaves it out.
        let (response, _) = single(connection.on_request(ack(&response, &["a"])));
        assert_eq!(sent(&response), testing::names(&["a"]));
        // Asking only for what does not exist still gets an answer, an empty one.
        quiet(connection.on_request(ack(&response, &["a"])));
        let (response, _) = single(connection.on_request(ack(&response, &["missing"])));
        assert!(response.resources.is_empty());
    }

    #[test]
    fn wildcard_ends_when_the_client_names_resources() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(generation_1()));
        let (response, _) = single(connection.on_request(request(CLUSTER, &["*"])));
        assert_eq!(sent(&response), testing::names(&["a", "b"]));
        let (response, _) = single(connection.on_request(ack(&response, &["b"])));
        assert_eq!(sent(&response), testing::names(&["b"]));
    }

    #[test]
    fn a_push_goes_cds_eds_lds_rds() {
        let mut connection = holding(generation_1());
        let generation_2 = snapshot(
            2,
            &[
                (CLUSTER, &[("a", 2), ("b", 1)]),
                (ENDPOINT, &[("a", 2), ("b", 1)]),
                (LISTENER, &[("l", 2)]),
                (ROUTE, &[("r", 2)]),
            ],
        );
        let output = connection.on_snapshot(generation_2);
        assert_eq!(type_urls(&output), [CLUSTER, ENDPOINT, LISTENER, ROUTE]);
    }

    #[test]
    fn secrets_go_before_the_clusters_that_use_them() {
        let generation =
            |generation, content| snapshot(generation, &[(SECRET, &[("s", content)]), (CLUSTER, &[("a", content)])]);
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(generation(1, 1)));
        // Envoy asks for a secret once a cluster it received names it.
        for (type_url, names) in [(CLUSTER, &[][..]), (SECRET, &["s"][..])] {
            let (response, _) = single(connection.on_request(request(type_url, names)));
            quiet(connection.on_request(ack(&response, names)));
        }
        let output = connection.on_snapshot(generation(2, 2));
        assert_eq!(type_urls(&output), [SECRET, CLUSTER]);
    }

    #[test]
    fn a_type_awaiting_its_ack_holds_back_the_later_types() {
        let mut connection = holding(generation_1());
        let change = |generation, content| {
            snapshot(
                generation,
                &[
                    (CLUSTER, &[("a", content), ("b", 1)]),
                    (ENDPOINT, &[("a", content), ("b", 1)]),
                    (LISTENER, &[("l", 1)]),
                    (ROUTE, &[("r", 1)]),
                ],
            )
        };
        let output = connection.on_snapshot(change(2, 2));
        let (clusters, endpoints) = (&output.responses[0], &output.responses[1]);
        quiet(connection.on_request(ack(endpoints, &["a", "b"])));
        // Clusters change again while the last CDS response awaits its ACK: nothing
        // goes out, EDS included, until that ACK.
        assert!(quiet(connection.on_snapshot(change(3, 3))).is_empty());
        let output = connection.on_request(ack(clusters, &[]));
        assert_eq!(type_urls(&output), [CLUSTER, ENDPOINT]);
    }

    #[test]
    fn stale_clusters_go_only_after_the_new_listeners_and_routes_are_acked() {
        let mut connection = holding(generation_1());
        // b is no longer used: the new route points elsewhere.
        let output = connection.on_snapshot(without_b(2));
        // CDS and EDS still hold b, so only LDS and RDS change.
        assert_eq!(type_urls(&output), [LISTENER, ROUTE]);
        let (listeners, routes) = (&output.responses[0], &output.responses[1]);
        quiet(connection.on_request(ack(listeners, &[])));
        let output = connection.on_request(ack(routes, &["r"]));
        assert_eq!(output.events, vec![acked(ROUTE, &routes.version_info)]);
        let [clusters, endpoints] = &output.responses[..] else { panic!("expected CDS and EDS: {output:?}") };
        assert_eq!((clusters.type_url.as_str(), sent(clusters)), (CLUSTER, testing::names(&["a"])));
        assert_eq!((endpoints.type_url.as_str(), sent(endpoints)), (ENDPOINT, testing::names(&["a"])));
        assert_eq!(quiet(connection.on_request(ack(clusters, &[]))), vec![acked(CLUSTER, &clusters.version_info)]);
        // Envoy drops its interest in b's endpoints with the cluster.
        let events = quiet(connection.on_request(ack(endpoints, &["a"])));
        assert_eq!(events, vec![acked(ENDPOINT, &endpoints.version_info), Event::Synced(2)]);
    }

    #[test]
    fn unused_clusters_go_at_once_when_listeners_and_routes_do_not_change() {
        let mut connection = holding(generation_1());
        let output = connection.on_snapshot(without_b(1));
        assert_eq!(sent(&output.responses[0]), testing::names(&["a"]));
    }

    #[test]
    fn the_newest_snapshot_wins() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(generation_1()));
        quiet(connection.on_snapshot(snapshot(2, &[(CLUSTER, &[("c", 1)])])));
        let (first, _) = single(connection.on_request(request(CLUSTER, &[])));
        assert_eq!(sent(&first), testing::names(&["c"]));
        // Two snapshots while the response awaits its ACK: only the newest is sent.
        quiet(connection.on_snapshot(snapshot(3, &[(CLUSTER, &[("d", 1)])])));
        quiet(connection.on_snapshot(snapshot(4, &[(CLUSTER, &[("e", 1)])])));
        let (response, events) = single(connection.on_request(ack(&first, &[])));
        assert_eq!(events, vec![acked(CLUSTER, &first.version_info)]);
        assert_eq!(sent(&response), testing::names(&["e"]));
    }

    #[test]
    fn synced_waits_for_every_type_and_fires_once() {
        let mut connection = Connection::default();
        quiet(connection.on_snapshot(generation_1()));
        let mut responses = vec![];
        for type_url in [CLUSTER, ENDPOINT, LISTENER, ROUTE] {
            let names = subscription(&generation_1(), type_url);
            let output = connection.on_request(DiscoveryRequest { resource_names: names, ..request(type_url, &[]) });
            responses.extend(output.responses);
        }
        for (index, response) in responses.iter().enumerate() {
            let names = subscription(&generation_1(), &response.type_url);
            let events = ack_names(&mut connection, response, &names);
            let synced = events.contains(&Event::Synced(1));
            assert_eq!(synced, index == 3, "synced after ACK {index}: {events:?}");
        }
        let names = subscription(&generation_1(), ROUTE);
        assert!(ack_names(&mut connection, &responses[3], &names).is_empty());
        // The same generation again is not reported again.
        assert!(quiet(connection.on_snapshot(generation_1())).is_empty());
    }
}
