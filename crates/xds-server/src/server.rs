//! The tonic `AggregatedDiscoveryService`: one task per stream.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Status, Streaming};

use crate::grpc::AdsService;
use crate::stream::{self, Protocol};
use crate::{Callbacks, SnapshotCache};

/// Responses a stream may have queued for a slow client; the connection holds
/// at most one unanswered response per type, so this is rarely reached.
const RESPONSE_BUFFER: usize = 8;

/// The responses of one stream, as the gRPC response body reads them.
pub type ResponseStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

/// An ADS server (SotW and delta) serving each node the newest snapshot in a [`SnapshotCache`].
pub struct AdsServer<C: Callbacks> {
    cache: Arc<SnapshotCache>,
    callbacks: Arc<C>,
    next_stream_id: AtomicU64,
    shutdown: Option<watch::Receiver<bool>>,
}

impl<C: Callbacks> AdsServer<C> {
    /// A server over `cache` that reports every stream to `callbacks`.
    pub fn new(cache: Arc<SnapshotCache>, callbacks: Arc<C>) -> Self {
        Self { cache, callbacks, next_stream_id: AtomicU64::new(1), shutdown: None }
    }

    /// Ends every stream (UNAVAILABLE, so proxies reconnect elsewhere or
    /// later) once `shutdown` turns true. Streams otherwise last as long as
    /// their proxy, so a server waiting for them to finish would wait forever.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// The tonic service, ready to add to a router: SotW
    /// (StreamAggregatedResources) and delta (DeltaAggregatedResources).
    pub fn into_service(self) -> AdsService<C> {
        AdsService::new(self)
    }

    /// Starts the task that runs one stream; its responses come out of the returned stream.
    pub(crate) fn open<P: Protocol>(&self, request: Request<Streaming<P::Request>>) -> ResponseStream<P::Response> {
        let (responses, body) = mpsc::channel(RESPONSE_BUFFER);
        let id = self.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let peer = request.remote_addr();
        let metadata = request.metadata().clone();
        let (cache, callbacks) = (self.cache.clone(), self.callbacks.clone());
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stream::run::<P, C>(id, peer, metadata, request.into_inner(), cache, callbacks, responses.clone()) => {}
                () = stream::shutting_down(shutdown) => {
                    let _ = responses.send(Box::new(Err(Status::unavailable("the control plane is shutting down")))).await;
                }
            }
        });
        Box::pin(ReceiverStream::new(body).map(|response| *response))
    }
}
