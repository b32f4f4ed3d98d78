//! The async shell around one ADS stream: reads requests, follows the node's
//! snapshots, writes responses and tells the callbacks. All protocol
//! decisions are made by the synchronous connection it drives.

use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};
use tracing::{debug, warn};

use crate::tracker::{Encode, Event, Output, Tracker};
use crate::{Callbacks, Snapshot, SnapshotCache, StreamInfo, Transport};

/// A protocol variant's synchronous state machine, as the shell drives it.
pub(crate) trait Protocol: Encode<Response: Send + 'static> + Default + Send + 'static {
    type Request: Send + 'static;
    const TRANSPORT: Transport;

    /// Moves the node out of a request (nothing after the first request reads it).
    fn take_node(request: &mut Self::Request) -> Option<Node>;
    fn tracker(&mut self) -> &mut Tracker;
    /// Handles one request: its ACK or NACK, then its subscription.
    fn on_request(&mut self, request: Self::Request) -> Output<Self::Response>;
    /// The type URL and version a response carries, for `Callbacks::response_sent`.
    fn sent(response: &Self::Response) -> (&str, &str);

    /// Takes the newest snapshot and sends what changed.
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<Self::Response> {
        self.tracker().set_snapshot(snapshot);
        self.tracker().push::<Self>()
    }
}

/// Where a stream's responses go: a bounded channel read by the gRPC response
/// body. Its items are boxed: a channel allocates its slots in blocks of 32
/// whatever its capacity, and a response or status inline would make each
/// idle stream hold several kilobytes.
pub(crate) type Responses<P> = mpsc::Sender<Box<Result<<P as Encode>::Response, Status>>>;

/// Runs one stream to its end.
pub(crate) async fn run<P: Protocol, C: Callbacks>(
    id: u64,
    peer: Option<SocketAddr>,
    metadata: tonic::metadata::MetadataMap,
    mut requests: Streaming<P::Request>,
    cache: Arc<SnapshotCache>,
    callbacks: Arc<C>,
    responses: Responses<P>,
) {
    // Only the first request is sure to carry the node (xDS protocol, "Basic
    // Protocol Overview"); Envoy sends it there alone (set_node_on_first_message_only).
    let mut first = match requests.next().await {
        Some(Ok(request)) => request,
        Some(Err(status)) => return debug!(id, %status, "ADS stream failed before its first request"),
        None => return,
    };
    let Some(mut node) = P::take_node(&mut first).filter(|node| !node.id.is_empty()) else {
        let status = Status::invalid_argument("the first request of an ADS stream must carry node.id");
        let _ = responses.send(Box::new(Err(status))).await;
        return;
    };
    // Envoy lists every extension compiled into it (hundreds): kept for the
    // stream's life they would cost more than everything else it holds.
    node.extensions = Vec::new();
    let stream = StreamInfo { id, node, transport: P::TRANSPORT, peer };
    let identity = match callbacks.authenticate(&stream, &metadata).await {
        Ok(identity) => identity,
        Err(status) => {
            debug!(id, node = %stream.node.id, %status, "ADS stream refused");
            let _ = responses.send(Box::new(Err(status))).await;
            return;
        }
    };
    drop(metadata);
    // Watched before `stream_opened`, so a `SnapshotCache::close` issued after
    // the stream was accepted, even while `stream_opened` runs, ends it.
    let mut node_watch = cache.watch(&stream.node.id);
    if let Err(status) = callbacks.stream_opened(&stream, &identity) {
        debug!(id, node = %stream.node.id, %status, "ADS stream refused");
        let _ = responses.send(Box::new(Err(status))).await;
        return;
    }
    let _closed = Closed { callbacks: &*callbacks, stream: &stream, identity: &identity };
    debug!(id, node = %stream.node.id, transport = ?P::TRANSPORT, "ADS stream opened");

    let mut connection = P::default();
    let current = node_watch.snapshots.borrow_and_update().clone();
    if let Some(snapshot) = current {
        let output = connection.on_snapshot(snapshot);
        if deliver::<P, C>(&stream, &identity, &callbacks, output, &responses).await.is_err() {
            return;
        }
    }
    let mut output = Some(connection.on_request(first));
    loop {
        if let Some(output) = output.take()
            && deliver::<P, C>(&stream, &identity, &callbacks, output, &responses).await.is_err()
        {
            return;
        }
        output = tokio::select! {
            request = requests.next() => match request {
                Some(Ok(mut request)) => {
                    // The stream was authorized for its first node: it may not become another.
                    if let Some(node) = P::take_node(&mut request).filter(|node| node.id != stream.node.id && !node.id.is_empty()) {
                        let status = Status::invalid_argument(format!(
                            "the node id changed within the stream from {:?} to {:?}; open a new stream", stream.node.id, node.id
                        ));
                        warn!(id, node = %stream.node.id, %status, "ADS stream ended");
                        let _ = responses.send(Box::new(Err(status))).await;
                        return;
                    }
                    Some(connection.on_request(request))
                }
                Some(Err(status)) => return debug!(id, %status, "ADS stream ended by the client"),
                None => return,
            },
            // The cache keeps a node's senders while streams watch it, so these never err.
            Ok(()) = node_watch.snapshots.changed() => {
                // Release the watch's lock before the work, so `SnapshotCache::set` never waits on it.
                let snapshot = node_watch.snapshots.borrow_and_update().clone();
                snapshot.map(|snapshot| connection.on_snapshot(snapshot))
            }
            Ok(()) = node_watch.close.changed() => {
                let status = node_watch.close.borrow_and_update().clone();
                let status = status.unwrap_or_else(|| Status::unavailable("the stream was closed"));
                debug!(id, node = %stream.node.id, %status, "ADS stream closed by the server");
                let _ = responses.send(Box::new(Err(status))).await;
                return;
            }
            () = responses.closed() => return,
        };
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone); never without one.
pub(crate) async fn shutting_down(shutdown: Option<tokio::sync::watch::Receiver<bool>>) {
    match shutdown {
        Some(mut shutdown) => {
            let _ = shutdown.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

/// Hands events to the callbacks and responses to the transport, in order.
async fn deliver<P: Protocol, C: Callbacks>(
    stream: &StreamInfo,
    identity: &C::Identity,
    callbacks: &C,
    output: Output<P::Response>,
    responses: &Responses<P>,
) -> Result<(), ()> {
    for event in output.events {
        match event {
            Event::Acked { type_url, version } => callbacks.acked(stream, identity, &type_url, &version),
            Event::Nacked { type_url, version, error } => {
                warn!(node = %stream.node.id, %type_url, %version, %error, "proxy rejected configuration");
                callbacks.nacked(stream, identity, &type_url, &version, &error);
            }
            Event::Synced(generation) => callbacks.synced(stream, identity, generation),
        }
    }
    for response in output.responses {
        let (type_url, version) = P::sent(&response);
        let (type_url, version) = (type_url.to_owned(), version.to_owned());
        responses.send(Box::new(Ok(response))).await.map_err(drop)?;
        callbacks.response_sent(stream, identity, &type_url, &version);
    }
    Ok(())
}

/// Calls `stream_closed` however the stream ends, including when its task is dropped.
struct Closed<'a, C: Callbacks> {
    callbacks: &'a C,
    stream: &'a StreamInfo,
    identity: &'a C::Identity,
}

impl<C: Callbacks> Drop for Closed<'_, C> {
    fn drop(&mut self) {
        debug!(id = self.stream.id, node = %self.stream.node.id, "ADS stream closed");
        self.callbacks.stream_closed(self.stream, self.identity);
    }
}
