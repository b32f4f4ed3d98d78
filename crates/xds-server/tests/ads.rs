//! The real tonic server on 127.0.0.1:0, driven by the generated ADS client over
//! SotW and delta: subscribe, receive, ACK, update, NACK, and the callbacks seen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use kodiak_xds_server::type_url::{CLUSTER, LISTENER};
use kodiak_xds_server::{AdsServer, Callbacks, Resource, Snapshot, SnapshotCache, StreamInfo, Transport};
use prost::Message;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status, Streaming};

/// What the callbacks were told, in order.
#[derive(Clone, Debug, PartialEq)]
enum Call {
    Opened { node: String, transport: Transport, loopback_peer: bool },
    Closed { node: String },
    Sent { type_url: String, version: String },
    Acked { type_url: String, version: String },
    Nacked { type_url: String, version: String, error: String },
    Synced(u64),
}

/// Records every callback; refuses the node "unknown" the way a mesh layer would.
struct Recorder(mpsc::UnboundedSender<Call>);

impl Recorder {
    fn record(&self, call: Call) {
        self.0.send(call).unwrap();
    }
}

impl Callbacks for Recorder {
    /// The node id authentication accepted: what `Opened` and `Closed` record.
    type Identity = String;

    async fn authenticate(&self, stream: &StreamInfo, _: &MetadataMap) -> Result<String, Status> {
        match stream.node.id.as_str() {
            "unknown" => Err(Status::not_found("no Dataplane named unknown: apply it first")),
            id => Ok(id.to_owned()),
        }
    }

    fn stream_opened(&self, stream: &StreamInfo, node: &String) -> Result<(), Status> {
        let loopback_peer = stream.peer.is_some_and(|peer| peer.ip().is_loopback());
        self.record(Call::Opened { node: node.clone(), transport: stream.transport, loopback_peer });
        Ok(())
    }

    fn stream_closed(&self, _: &StreamInfo, node: &String) {
        self.record(Call::Closed { node: node.clone() });
    }

    fn response_sent(&self, _: &StreamInfo, _: &String, type_url: &str, version: &str) {
        self.record(Call::Sent { type_url: type_url.into(), version: version.into() });
    }

    fn acked(&self, _: &StreamInfo, _: &String, type_url: &str, version: &str) {
        self.record(Call::Acked { type_url: type_url.into(), version: version.into() });
    }

    fn nacked(&self, _: &StreamInfo, _: &String, type_url: &str, version: &str, error: &str) {
        self.record(Call::Nacked { type_url: type_url.into(), version: version.into(), error: error.into() });
    }

    fn synced(&self, _: &StreamInfo, _: &String, generation: u64) {
        self.record(Call::Synced(generation));
    }
}

const DEADLINE: Duration = Duration::from_secs(10);

struct Harness {
    address: SocketAddr,
    cache: Arc<SnapshotCache>,
    shutdown: tokio::sync::watch::Sender<bool>,
    calls: mpsc::UnboundedReceiver<Call>,
    client: AggregatedDiscoveryServiceClient<Channel>,
}

impl Harness {
    async fn start() -> Self {
        let (record, calls) = mpsc::unbounded_channel();
        let cache = Arc::new(SnapshotCache::new());
        let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let address = incoming.local_addr().unwrap();
        let (shutdown, stopping) = tokio::sync::watch::channel(false);
        let service = AdsServer::new(cache.clone(), Arc::new(Recorder(record))).with_shutdown(stopping).into_service();
        tokio::spawn(Server::builder().add_service(service).serve_with_incoming(incoming));
        let client = AggregatedDiscoveryServiceClient::connect(format!("http://{address}")).await.unwrap();
        Self { address, cache, shutdown, calls, client }
    }

    /// The next callback, within the deadline.
    async fn call(&mut self) -> Call {
        timeout(DEADLINE, self.calls.recv()).await.expect("a callback within the deadline").unwrap()
    }

    async fn calls(&mut self, count: usize) -> Vec<Call> {
        let mut calls = Vec::new();
        for _ in 0..count {
            calls.push(self.call().await);
        }
        calls
    }
}

async fn next<T>(responses: &mut Streaming<T>) -> T {
    timeout(DEADLINE, responses.message()).await.expect("a response within the deadline").unwrap().unwrap()
}

fn node(id: &str) -> Option<Node> {
    Some(Node { id: id.into(), ..Default::default() })
}

/// Clusters named by `names`, each with `content` as its stats name, and one listener.
fn snapshot(generation: u64, names: &[&str], content: &str) -> Arc<Snapshot> {
    let cluster = |name: &&str| {
        Resource::new(*name, &Cluster { name: name.to_string(), alt_stat_name: content.into(), ..Default::default() })
    };
    let listener = Resource::new("l", &Listener { name: "l".into(), ..Default::default() });
    Arc::new(Snapshot::new(generation).with(CLUSTER, names.iter().map(cluster)).with(LISTENER, [listener]))
}

fn sent(type_url: &str, version: &str) -> Call {
    Call::Sent { type_url: type_url.into(), version: version.into() }
}

fn acked(type_url: &str, version: &str) -> Call {
    Call::Acked { type_url: type_url.into(), version: version.into() }
}

/// The SotW ACK of `response`.
fn ack(response: &DiscoveryResponse) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: response.version_info.clone(),
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        ..Default::default()
    }
}

fn rejected(message: &str) -> Option<RpcStatus> {
    Some(RpcStatus { code: Code::InvalidArgument as i32, message: message.into(), details: vec![] })
}

#[tokio::test]
async fn sotw_stream_subscribes_acks_updates_and_nacks() {
    let mut harness = Harness::start().await;
    harness.cache.set("node-1", snapshot(1, &["a", "b"], "1"));
    let (requests, request_stream) = mpsc::channel(8);
    let mut responses =
        harness.client.stream_aggregated_resources(ReceiverStream::new(request_stream)).await.unwrap().into_inner();
    requests
        .send(DiscoveryRequest { node: node("node-1"), type_url: CLUSTER.into(), ..Default::default() })
        .await
        .unwrap();
    let clusters = next(&mut responses).await;
    let names: Vec<String> =
        clusters.resources.iter().map(|any| Cluster::decode(any.value.as_slice()).unwrap().name).collect();
    assert_eq!(names, ["a", "b"]);
    let opened = Call::Opened { node: "node-1".into(), transport: Transport::Sotw, loopback_peer: true };
    assert_eq!(harness.calls(2).await, [opened, sent(CLUSTER, &clusters.version_info)]);
    requests.send(ack(&clusters)).await.unwrap();
    assert_eq!(harness.call().await, acked(CLUSTER, &clusters.version_info));

    requests.send(DiscoveryRequest { type_url: LISTENER.into(), ..Default::default() }).await.unwrap();
    let listeners = next(&mut responses).await;
    assert_eq!(harness.call().await, sent(LISTENER, &listeners.version_info));
    requests.send(ack(&listeners)).await.unwrap();
    assert_eq!(harness.calls(2).await, [acked(LISTENER, &listeners.version_info), Call::Synced(1)]);

    // An update the client rejects is recorded with its message, and not sent again.
    harness.cache.set("node-1", snapshot(2, &["a", "b"], "2"));
    let update = next(&mut responses).await;
    assert_eq!(harness.call().await, sent(CLUSTER, &update.version_info));
    let error = "cluster a: invalid stats name";
    let nack =
        DiscoveryRequest { version_info: clusters.version_info.clone(), error_detail: rejected(error), ..ack(&update) };
    requests.send(nack).await.unwrap();
    let nacked = Call::Nacked { type_url: CLUSTER.into(), version: update.version_info.clone(), error: error.into() };
    assert_eq!(harness.call().await, nacked);

    // The next change of the clusters is sent, and ACKed.
    harness.cache.set("node-1", snapshot(3, &["a"], "3"));
    let fixed = next(&mut responses).await;
    assert_eq!(fixed.resources.len(), 1);
    assert_eq!(harness.call().await, sent(CLUSTER, &fixed.version_info));
    requests.send(ack(&fixed)).await.unwrap();
    assert_eq!(harness.calls(2).await, [acked(CLUSTER, &fixed.version_info), Call::Synced(3)]);

    drop(requests);
    assert_eq!(harness.call().await, Call::Closed { node: "node-1".into() });
}

#[tokio::test]
async fn delta_stream_sends_changes_and_removals() {
    let mut harness = Harness::start().await;
    harness.cache.set("node-2", snapshot(1, &["a", "b"], "1"));
    let (requests, request_stream) = mpsc::channel(8);
    let mut responses =
        harness.client.delta_aggregated_resources(ReceiverStream::new(request_stream)).await.unwrap().into_inner();
    let ack = |response: &DeltaDiscoveryResponse| DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        ..Default::default()
    };
    let changes = |response: &DeltaDiscoveryResponse| {
        let names = response.resources.iter().map(|resource| resource.name.clone()).collect::<Vec<_>>();
        (names, response.removed_resources.clone())
    };

    let subscribe = |type_url: &str| DeltaDiscoveryRequest { type_url: type_url.into(), ..Default::default() };
    requests.send(DeltaDiscoveryRequest { node: node("node-2"), ..subscribe(CLUSTER) }).await.unwrap();
    let clusters = next(&mut responses).await;
    assert_eq!(changes(&clusters), (vec!["a".into(), "b".into()], vec![]));
    let opened = Call::Opened { node: "node-2".into(), transport: Transport::Delta, loopback_peer: true };
    assert_eq!(harness.calls(2).await, [opened, sent(CLUSTER, &clusters.system_version_info)]);
    requests.send(ack(&clusters)).await.unwrap();
    requests.send(subscribe(LISTENER)).await.unwrap();
    let listeners = next(&mut responses).await;
    requests.send(ack(&listeners)).await.unwrap();
    let expected = [
        acked(CLUSTER, &clusters.system_version_info),
        sent(LISTENER, &listeners.system_version_info),
        acked(LISTENER, &listeners.system_version_info),
        Call::Synced(1),
    ];
    assert_eq!(harness.calls(4).await, expected);

    // Only what changed goes out: a new content of a, b removed.
    harness.cache.set("node-2", snapshot(2, &["a"], "2"));
    let update = next(&mut responses).await;
    assert_eq!(changes(&update), (vec!["a".into()], vec!["b".into()]));
    assert_eq!(harness.call().await, sent(CLUSTER, &update.system_version_info));
    requests.send(DeltaDiscoveryRequest { error_detail: rejected("cluster a: bad"), ..ack(&update) }).await.unwrap();
    let nacked = Call::Nacked {
        type_url: CLUSTER.into(),
        version: update.system_version_info.clone(),
        error: "cluster a: bad".into(),
    };
    assert_eq!(harness.call().await, nacked);

    // The next change of the clusters (c added, the rejected a still there) is
    // made against what the client accepted: a goes again and b is removed again.
    harness.cache.set("node-2", snapshot(3, &["a", "c"], "2"));
    let fixed = next(&mut responses).await;
    assert_eq!(changes(&fixed), (vec!["a".into(), "c".into()], vec!["b".into()]));
    requests.send(ack(&fixed)).await.unwrap();
    let expected =
        [sent(CLUSTER, &fixed.system_version_info), acked(CLUSTER, &fixed.system_version_info), Call::Synced(3)];
    assert_eq!(harness.calls(3).await, expected);

    drop(requests);
    assert_eq!(harness.call().await, Call::Closed { node: "node-2".into() });
}

#[tokio::test]
async fn a_client_that_vanishes_mid_stream_is_closed() {
    let mut harness = Harness::start().await;
    harness.cache.set("node-3", snapshot(1, &["a"], "1"));
    let address = harness.address;
    // The client runs on a runtime of its own; dropping that runtime drops its
    // connection mid-stream, like a proxy that crashed.
    let client = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let open_stream = runtime.block_on(async {
            let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{address}")).await.unwrap();
            let (requests, request_stream) = mpsc::channel(1);
            let first = DiscoveryRequest { node: node("node-3"), type_url: CLUSTER.into(), ..Default::default() };
            requests.send(first).await.unwrap();
            let stream = client.stream_aggregated_resources(ReceiverStream::new(request_stream));
            let mut responses = stream.await.unwrap().into_inner();
            next(&mut responses).await;
            (client, requests, responses)
        });
        drop(runtime);
        drop(open_stream);
    });
    timeout(DEADLINE, client).await.expect("the client within the deadline").unwrap();
    let calls = harness.calls(3).await;
    assert!(matches!(&calls[..], [Call::Opened { .. }, Call::Sent { .. }, Call::Closed { node }] if node == "node-3"));
}

/// The status a stream ends with, whether it comes before or after the response headers.
async fn refusal(harness: &mut Harness, first: DiscoveryRequest) -> Status {
    let (requests, request_stream) = mpsc::channel(1);
    requests.send(first).await.unwrap();
    match harness.client.stream_aggregated_resources(ReceiverStream::new(request_stream)).await {
        Err(status) => status,
        Ok(response) => timeout(DEADLINE, response.into_inner().message()).await.unwrap().unwrap_err(),
    }
}

#[tokio::test]
async fn refused_streams_end_with_the_callbacks_status_and_no_close() {
    let mut harness = Harness::start().await;
    let unknown = DiscoveryRequest { node: node("unknown"), type_url: CLUSTER.into(), ..Default::default() };
    let status = refusal(&mut harness, unknown).await;
    assert_eq!((status.code(), status.message()), (Code::NotFound, "no Dataplane named unknown: apply it first"));

    let status = refusal(&mut harness, DiscoveryRequest { type_url: CLUSTER.into(), ..Default::default() }).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(harness.calls.try_recv().is_err(), "a refused stream is neither opened nor closed");
}

#[tokio::test]
async fn shutdown_ends_open_streams_as_unavailable() {
    let mut harness = Harness::start().await;
    harness.cache.set("node-4", snapshot(1, &["a"], "1"));
    let (requests, mut responses) = open_sotw(&mut harness, "node-4").await;
    harness.calls(3).await;

    harness.shutdown.send(true).unwrap();
    let status = timeout(DEADLINE, responses.message()).await.expect("the stream ends").unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert_eq!(harness.call().await, Call::Closed { node: "node-4".into() });
    drop(requests);
}

/// Opens a SotW stream for `node_id` asking for clusters, and ACKs the first
/// response: three callbacks, Opened, Sent and Acked.
async fn open_sotw(
    harness: &mut Harness,
    node_id: &str,
) -> (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>) {
    let (requests, request_stream) = mpsc::channel(8);
    let first = DiscoveryRequest { node: node(node_id), type_url: CLUSTER.into(), ..Default::default() };
    requests.send(first).await.unwrap();
    let mut responses =
        harness.client.stream_aggregated_resources(ReceiverStream::new(request_stream)).await.unwrap().into_inner();
    let response = next(&mut responses).await;
    requests.send(ack(&response)).await.unwrap();
    (requests, responses)
}

#[tokio::test]
async fn close_ends_every_open_stream_of_the_node_with_its_status() {
    let mut harness = Harness::start().await;
    harness.cache.set("node-5", snapshot(1, &["a"], "1"));
    harness.cache.set("node-6", snapshot(1, &["a"], "1"));
    let (_sotw_requests, mut sotw) = open_sotw(&mut harness, "node-5").await;
    let (delta_requests, delta_stream) = mpsc::channel(8);
    let first = DeltaDiscoveryRequest { node: node("node-5"), type_url: CLUSTER.into(), ..Default::default() };
    delta_requests.send(first).await.unwrap();
    let mut delta =
        harness.client.delta_aggregated_resources(ReceiverStream::new(delta_stream)).await.unwrap().into_inner();
    next(&mut delta).await;
    let (_other_requests, mut other) = open_sotw(&mut harness, "node-6").await;
    // Opened, Sent (and Acked for SotW) for each of the three streams.
    harness.calls(8).await;

    harness.cache.close("node-5", Status::permission_denied("the node was deleted"));
    let status = timeout(DEADLINE, sotw.message()).await.expect("the SotW stream ends").unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::PermissionDenied, "the node was deleted"));
    let status = timeout(DEADLINE, delta.message()).await.expect("the delta stream ends").unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::PermissionDenied, "the node was deleted"));
    let closed = Call::Closed { node: "node-5".into() };
    assert_eq!(harness.calls(2).await, [closed.clone(), closed]);
    // The snapshot stays; only the streams ended.
    assert!(harness.cache.get("node-5").is_some());

    // Another node's stream carries on.
    harness.cache.set("node-6", snapshot(2, &["a", "b"], "2"));
    assert_eq!(next(&mut other).await.resources.len(), 2);
    assert!(matches!(harness.call().await, Call::Sent { .. }));

    // A stream the node opens after the close is served as usual.
    let (_again_requests, mut again) = open_sotw(&mut harness, "node-5").await;
    assert!(matches!(harness.calls(3).await[..], [Call::Opened { .. }, Call::Sent { .. }, Call::Acked { .. }]));
    harness.cache.set("node-5", snapshot(2, &["a", "b"], "2"));
    assert_eq!(next(&mut again).await.resources.len(), 2);
}

#[tokio::test]
async fn a_node_leaves_the_cache_with_its_last_stream_when_it_has_no_snapshot() {
    let mut harness = Harness::start().await;
    // A refused stream leaves nothing behind.
    let unknown = DiscoveryRequest { node: node("unknown"), type_url: CLUSTER.into(), ..Default::default() };
    refusal(&mut harness, unknown).await;
    assert_eq!(harness.cache.node_count(), 0);

    harness.cache.set("node-7", snapshot(1, &["a"], "1"));
    let (requests, _responses) = open_sotw(&mut harness, "node-7").await;
    harness.calls(3).await;
    // Removed while its stream is open: the stream keeps the node until it ends.
    harness.cache.remove("node-7");
    assert_eq!(harness.cache.node_count(), 1);
    drop(requests);
    assert_eq!(harness.call().await, Call::Closed { node: "node-7".into() });
    timeout(DEADLINE, async {
        while harness.cache.node_count() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the node leaves the cache with its last stream");
}

/// The codec's buffers start small; a response and a request far larger
/// than that still arrive whole.
#[tokio::test]
async fn messages_larger_than_the_codec_buffers_arrive_whole() {
    let mut harness = Harness::start().await;
    let large = "x".repeat(300_000);
    harness.cache.set("node-1", snapshot(1, &["a", "b"], &large));
    let (requests, request_stream) = mpsc::channel(8);
    let mut responses =
        harness.client.stream_aggregated_resources(ReceiverStream::new(request_stream)).await.unwrap().into_inner();
    let first = DiscoveryRequest {
        node: node("node-1"),
        type_url: CLUSTER.into(),
        // About 100 KiB of names: a and b, and many the snapshot does not have.
        resource_names: ["a".to_owned(), "b".to_owned()]
            .into_iter()
            .chain((0..10_000).map(|i| format!("name-{i:05}")))
            .collect(),
        ..Default::default()
    };
    requests.send(first).await.unwrap();
    let clusters = next(&mut responses).await;
    let stats_names: Vec<usize> = (clusters.resources.iter())
        .map(|any| Cluster::decode(any.value.as_slice()).unwrap().alt_stat_name.len())
        .collect();
    assert_eq!(stats_names, [300_000, 300_000]);
    let opened = Call::Opened { node: "node-1".into(), transport: Transport::Sotw, loopback_peer: true };
    assert_eq!(harness.calls(2).await, [opened, sent(CLUSTER, &clusters.version_info)]);
}

#[tokio::test]
async fn a_method_the_service_does_not_have_is_unimplemented() {
    let harness = Harness::start().await;
    let channel = Channel::from_shared(format!("http://{}", harness.address)).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/FetchClusters",
    );
    let request = tonic::Request::new(DiscoveryRequest::default());
    let codec = tonic_prost::ProstCodec::<DiscoveryRequest, DiscoveryResponse>::default();
    let status = grpc.unary(request, path, codec).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("FetchClusters"), "{status:?}");
}
