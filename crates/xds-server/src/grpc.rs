//! The ADS gRPC service, written out rather than generated for one reason:
//! its codec. Each stream keeps an encode and a decode buffer for as long as
//! its proxy is connected. The generated service's codec starts both at
//! 8 KiB, while ADS requests are small and most responses a few KiB, so
//! every idle sidecar held 16 KiB it did not use. Here both start at 1 KiB
//! and grow only when a message needs more.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::{ProstDecoder, ProstEncoder};

use crate::server::{AdsServer, ResponseStream};
use crate::stream::Protocol;
use crate::{Callbacks, delta, sotw};

const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Where a stream's codec buffers start; tonic's default yield threshold
/// (32 KiB) is kept.
fn buffer_settings() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

/// Prost encoding with [`buffer_settings`].
struct SmallBuffers<T, U>(PhantomData<(T, U)>);

impl<T: Message + Send + 'static, U: Message + Default + Send + 'static> Codec for SmallBuffers<T, U> {
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(buffer_settings())
    }
}

/// The tonic service of an [`AdsServer`]: SotW (StreamAggregatedResources)
/// and delta (DeltaAggregatedResources); any other method is UNIMPLEMENTED.
pub struct AdsService<C: Callbacks>(Arc<AdsServer<C>>);

impl<C: Callbacks> AdsService<C> {
    pub(crate) fn new(server: AdsServer<C>) -> Self {
        Self(Arc::new(server))
    }
}

impl<C: Callbacks> Clone for AdsService<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C: Callbacks> NamedService for AdsService<C> {
    const NAME: &'static str = SERVICE;
}

impl<C, B> Service<http::Request<B>> for AdsService<C>
where
    C: Callbacks,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let server = self.0.clone();
        match request.uri().path() {
            SOTW_PATH => Box::pin(Method::<C, sotw::Connection>::serve(server, request)),
            DELTA_PATH => Box::pin(Method::<C, delta::Connection>::serve(server, request)),
            path => {
                let status = Status::unimplemented(format!("{SERVICE} has no method {path}"));
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// One streaming method, spoken in protocol `P`.
struct Method<C: Callbacks, P>(Arc<AdsServer<C>>, PhantomData<P>);

impl<C, P> Method<C, P>
where
    C: Callbacks,
    P: Protocol<Request: Message + Default, Response: Message>,
{
    async fn serve<B>(
        server: Arc<AdsServer<C>>,
        request: http::Request<B>,
    ) -> Result<http::Response<tonic::body::Body>, Infallible>
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        let mut grpc = Grpc::new(SmallBuffers::<P::Response, P::Request>(PhantomData));
        Ok(grpc.streaming(Method::<C, P>(server, PhantomData), request).await)
    }
}

impl<C, P> StreamingService<P::Request> for Method<C, P>
where
    C: Callbacks,
    P: Protocol,
{
    type Response = P::Response;
    type ResponseStream = ResponseStream<P::Response>;
    type Future = std::future::Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<P::Request>>) -> Self::Future {
        std::future::ready(Ok(Response::new(self.0.open::<P>(request))))
    }
}
