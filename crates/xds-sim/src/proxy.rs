//! One simulated proxy: an ADS stream that behaves like Envoy's. It
//! subscribes to every Cluster and Listener, then to the endpoints, route
//! configurations and secrets those name; it ACKs every response (or NACKs
//! a chosen share of them) and reports to the [`Fleet`]. A stream that
//! fails is opened again after a pause, as Envoy does.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::config_view::{CLUSTER, ENDPOINT, Incoming, LISTENER, ProxyConfig, ROUTE, SECRET};
use crate::fleet::Fleet;

/// The types a proxy asks for by name once it knows the names.
const NAMED: [&str; 3] = [SECRET, ENDPOINT, ROUTE];
/// How long a proxy waits before opening a failed stream again.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// gRPC `INVALID_ARGUMENT`, the code Envoy puts in a NACK.
const INVALID_ARGUMENT: i32 = 3;

/// Which xDS variant the streams speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// State of the world: every response of a type carries all of it.
    Sotw,
    /// Incremental: only what changed, and what was removed.
    Delta,
}

/// Who a simulated proxy is and how it talks.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Its index in the [`Fleet`].
    pub index: usize,
    pub mesh: String,
    pub name: String,
    /// The Dataplane it carries, registered when the control plane lacks it.
    pub inline_dataplane: Option<String>,
    pub token: Option<Arc<str>>,
    pub variant: Variant,
    /// The share of responses it NACKs, 0.0 to 1.0.
    pub nack_share: f64,
}

impl Identity {
    fn node(&self) -> Node {
        let mut fields = std::collections::BTreeMap::new();
        let text = |text: &str| Value { kind: Some(value::Kind::StringValue(text.to_owned())) };
        fields.insert(kodiak_api::bootstrap::node_metadata::ENVOY_VERSION.to_owned(), text("kodiak-xds-sim"));
        if let Some(dataplane) = &self.inline_dataplane {
            fields.insert(kodiak_api::bootstrap::node_metadata::DATAPLANE.to_owned(), text(dataplane));
        }
        Node {
            id: format!("{}.{}", self.mesh, self.name),
            cluster: self.name.clone(),
            metadata: Some(Struct { fields: fields.into_iter().collect() }),
            user_agent_name: "kodiak-xds-sim".into(),
            ..Default::default()
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token
            && let Ok(value) = token.parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

/// Runs the proxy until `stop` turns true: its stream, opened again after
/// each failure.
pub async fn run(identity: Identity, channel: Channel, fleet: Arc<Fleet>, mut stop: watch::Receiver<bool>) {
    let dice = 0x9E37_79B9_7F4A_7C15 ^ (identity.index as u64 + 1);
    let mut proxy = Proxy { identity, fleet, config: ProxyConfig::default(), first_secrets: HashMap::new(), dice };
    loop {
        let client = AggregatedDiscoveryServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
        let outcome = tokio::select! {
            outcome = proxy.stream(client) => outcome,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        if let Err(error) = outcome {
            report_stream_end(&proxy.identity, &error);
        }
        proxy.fleet.record(proxy.identity.index).reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Says why a stream ended, when `KODIAK_XDS_SIM_VERBOSE` is set (reconnects
/// are counted either way).
fn report_stream_end(identity: &Identity, error: &anyhow::Error) {
    if std::env::var_os("KODIAK_XDS_SIM_VERBOSE").is_some() {
        eprintln!("{}.{}: stream ended: {error:#}", identity.mesh, identity.name);
    }
}

struct Proxy {
    identity: Identity,
    fleet: Arc<Fleet>,
    config: ProxyConfig,
    /// Each secret's fingerprint when the proxy first held a complete configuration.
    first_secrets: HashMap<String, u64>,
    /// xorshift state choosing which responses to NACK.
    dice: u64,
}

/// Where a stream stands with one type.
#[derive(Debug, Default)]
struct Subscription {
    started: bool,
    names: BTreeSet<String>,
    /// SotW: the last version accepted and the last nonce received.
    version: String,
    nonce: String,
}

impl Proxy {
    fn nack_this_one(&mut self) -> bool {
        if self.identity.nack_share <= 0.0 {
            return false;
        }
        self.dice ^= self.dice << 13;
        self.dice ^= self.dice >> 7;
        self.dice ^= self.dice << 17;
        ((self.dice >> 11) as f64 / (1u64 << 53) as f64) < self.identity.nack_share
    }

    /// Counts a response, decides on ACK or NACK, applies it when ACKed.
    /// Returns the NACK's reason, if NACKed.
    fn take(
        &mut self,
        type_url: &str,
        bytes: usize,
        resources: &[Incoming<'_>],
        removed: &[String],
        whole: bool,
    ) -> Option<String> {
        let fleet = self.fleet.clone();
        let record = fleet.record(self.identity.index);
        record.responses.fetch_add(1, Ordering::Relaxed);
        record.resources.fetch_add(resources.len() as u64, Ordering::Relaxed);
        record.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let refusal = if self.nack_this_one() {
            Some("refused by kodiak-xds-sim (--nack-share)".to_owned())
        } else {
            self.config.apply(type_url, resources, removed, whole).err()
        };
        if refusal.is_some() {
            record.nacks.fetch_add(1, Ordering::Relaxed);
        }
        refusal
    }

    /// After a response was answered: stamps what the fleet waits for.
    fn observe(&mut self) {
        let first_secrets = &self.first_secrets;
        let first = self.fleet.observe(self.identity.index, &self.config, &|name| first_secrets.get(name).copied());
        if first {
            for name in self.config.wanted(SECRET) {
                if let Some(fingerprint) = self.config.secret(&name) {
                    self.first_secrets.insert(name, fingerprint);
                }
            }
        }
    }

    async fn stream(&mut self, client: AggregatedDiscoveryServiceClient<Channel>) -> anyhow::Result<()> {
        match self.identity.variant {
            Variant::Sotw => self.sotw(client).await,
            Variant::Delta => self.delta(client).await,
        }
    }

    async fn sotw(&mut self, mut client: AggregatedDiscoveryServiceClient<Channel>) -> anyhow::Result<()> {
        let (requests, outgoing) = mpsc::channel::<DiscoveryRequest>(8);
        let mut subscriptions: HashMap<&'static str, Subscription> = HashMap::new();
        let node = self.identity.node();
        for (first, type_url) in [(true, CLUSTER), (false, LISTENER)] {
            subscriptions.entry(type_url).or_default().started = true;
            let node = first.then(|| node.clone());
            requests.send(DiscoveryRequest { node, type_url: type_url.into(), ..Default::default() }).await?;
        }
        let request = self.identity.request(ReceiverStream::new(outgoing));
        let mut responses = client.stream_aggregated_resources(request).await?.into_inner();
        while let Some(response) = responses.message().await? {
            let DiscoveryResponse { version_info, resources, type_url, nonce, .. } = &response;
            let incoming: Vec<Incoming<'_>> = resources.iter().map(|any| Incoming { name: "", body: any }).collect();
            let whole = type_url == CLUSTER || type_url == LISTENER;
            let refusal = self.take(type_url, response.encoded_len(), &incoming, &[], whole);
            let Some(type_key) = [CLUSTER, LISTENER, SECRET, ENDPOINT, ROUTE].into_iter().find(|t| t == type_url)
            else {
                anyhow::bail!("the control plane sent resources of type {type_url}, which no proxy asked for");
            };
            let subscription = subscriptions.entry(type_key).or_default();
            subscription.nonce.clone_from(nonce);
            if refusal.is_none() {
                subscription.version.clone_from(version_info);
            }
            requests.send(sotw_request(type_key, subscription, refusal)).await?;
            for type_url in NAMED {
                let wanted = self.config.wanted(type_url);
                let subscription = subscriptions.entry(type_url).or_default();
                if wanted != subscription.names || (!subscription.started && !wanted.is_empty()) {
                    subscription.names = wanted;
                    subscription.started = true;
                    requests.send(sotw_request(type_url, subscription, None)).await?;
                }
            }
            self.observe();
        }
        anyhow::bail!("the control plane ended the stream")
    }

    async fn delta(&mut self, mut client: AggregatedDiscoveryServiceClient<Channel>) -> anyhow::Result<()> {
        let (requests, outgoing) = mpsc::channel::<DeltaDiscoveryRequest>(8);
        let mut subscribed: HashMap<&'static str, BTreeSet<String>> = HashMap::new();
        let node = self.identity.node();
        for (first, type_url) in [(true, CLUSTER), (false, LISTENER)] {
            let node = first.then(|| node.clone());
            requests.send(DeltaDiscoveryRequest { node, type_url: type_url.into(), ..Default::default() }).await?;
        }
        let request = self.identity.request(ReceiverStream::new(outgoing));
        let mut responses = client.delta_aggregated_resources(request).await?.into_inner();
        while let Some(response) = responses.message().await? {
            let DeltaDiscoveryResponse { resources, type_url, removed_resources, nonce, .. } = &response;
            let incoming: Vec<Incoming<'_>> = resources
                .iter()
                .filter_map(|resource| Some(Incoming { name: &resource.name, body: resource.resource.as_ref()? }))
                .collect();
            let refusal = self.take(type_url, response.encoded_len(), &incoming, removed_resources, false);
            requests
                .send(DeltaDiscoveryRequest {
                    type_url: type_url.clone(),
                    response_nonce: nonce.clone(),
                    error_detail: refusal.map(nack_status),
                    ..Default::default()
                })
                .await?;
            for type_url in NAMED {
                let wanted = self.config.wanted(type_url);
                let held = subscribed.entry(type_url).or_default();
                if wanted != *held {
                    let subscribe = wanted.difference(held).cloned().collect();
                    let unsubscribe = held.difference(&wanted).cloned().collect();
                    *held = wanted;
                    requests
                        .send(DeltaDiscoveryRequest {
                            type_url: type_url.into(),
                            resource_names_subscribe: subscribe,
                            resource_names_unsubscribe: unsubscribe,
                            ..Default::default()
                        })
                        .await?;
                }
            }
            self.observe();
        }
        anyhow::bail!("the control plane ended the stream")
    }
}

fn sotw_request(type_url: &str, subscription: &Subscription, refusal: Option<String>) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: subscription.version.clone(),
        resource_names: subscription.names.iter().cloned().collect(),
        type_url: type_url.into(),
        response_nonce: subscription.nonce.clone(),
        error_detail: refusal.map(nack_status),
        ..Default::default()
    }
}

fn nack_status(message: String) -> RpcStatus {
    RpcStatus { code: INVALID_ARGUMENT, message, details: Vec::new() }
}
