//! What the mesh-aware layer learns from, and decides about, each ADS stream.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3::Node;

/// Which ADS variant a stream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// State of the world: `StreamAggregatedResources`.
    Sotw,
    /// Incremental: `DeltaAggregatedResources`.
    Delta,
}

/// One ADS stream as the callbacks see it.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    /// Unique per server, increasing.
    pub id: u64,
    /// The node from the stream's first request, without its `extensions`
    /// list (Envoy sends hundreds; keeping them would cost more than the stream).
    pub node: Node,
    /// SotW or delta.
    pub transport: Transport,
    /// The client's address, when the server that accepted the connection recorded it.
    pub peer: Option<SocketAddr>,
}

/// What the mesh-aware layer wants to know and decide. Called synchronously
/// from the stream's task: must not block.
///
/// For one stream, calls come in order: `stream_opened`, then the others, then
/// `stream_closed` exactly once if and only if `stream_opened` returned `Ok`.
pub trait Callbacks: Send + Sync + 'static {
    /// What `authenticate` learned about the client (say, which proxy it
    /// is), handed to every later callback of the stream so they all speak
    /// of the client authentication judged.
    type Identity: Send + Sync + 'static;
    /// Before `stream_opened`, and free to wait (e.g. on a store): whether the
    /// client may open this stream, judged from its node and the gRPC metadata
    /// (request headers, where call credentials such as `authorization`
    /// travel; seen only here, so they are not kept for the stream's life).
    /// An `Err` ends the stream with that status (UNAUTHENTICATED,
    /// PERMISSION_DENIED, NOT_FOUND).
    fn authenticate(
        &self,
        stream: &StreamInfo,
        metadata: &tonic::metadata::MetadataMap,
    ) -> impl Future<Output = Result<Self::Identity, tonic::Status>> + Send;
    /// Before anything is sent, with what `authenticate` found. An `Err` ends
    /// the stream with that status (e.g. ALREADY_EXISTS for a second client).
    fn stream_opened(&self, stream: &StreamInfo, identity: &Self::Identity) -> Result<(), tonic::Status>;
    /// The stream ended, also when the client went away without a word.
    fn stream_closed(&self, stream: &StreamInfo, identity: &Self::Identity);
    /// A response was handed to the transport (SotW `version_info` or delta `system_version_info`).
    fn response_sent(&self, stream: &StreamInfo, identity: &Self::Identity, type_url: &str, version: &str);
    /// The client accepted `version` of `type_url`, or reconnected already holding it.
    fn acked(&self, stream: &StreamInfo, identity: &Self::Identity, type_url: &str, version: &str);
    /// The client rejected `rejected_version`; `error` is its `error_detail.message`, verbatim.
    fn nacked(
        &self,
        stream: &StreamInfo,
        identity: &Self::Identity,
        type_url: &str,
        rejected_version: &str,
        error: &str,
    );
    /// Every type of snapshot `generation` has been ACKed.
    fn synced(&self, stream: &StreamInfo, identity: &Self::Identity, generation: u64);
}
