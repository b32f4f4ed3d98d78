//! Builders for the state machine tests: real Envoy messages whose content
//! (and so version) is chosen by a small number.

use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{CertificateValidationContext, Secret, secret};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use prost::Message;

use crate::tracker::{Event, Output};
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};
use crate::{Resource, Snapshot};

/// A resource of `type_url` named `name` whose content is determined by `content`.
pub(crate) fn resource(type_url: &str, name: &str, content: u32) -> Arc<Resource> {
    let name = name.to_owned();
    match type_url {
        CLUSTER => Resource::new(
            &name,
            &Cluster { alt_stat_name: content.to_string(), name: name.clone(), ..Default::default() },
        ),
        ENDPOINT => Resource::new(
            &name,
            &ClusterLoadAssignment {
                endpoints: vec![LocalityLbEndpoints { priority: content, ..Default::default() }],
                cluster_name: name.clone(),
                ..Default::default()
            },
        ),
        LISTENER => Resource::new(
            &name,
            &Listener { stat_prefix: content.to_string(), name: name.clone(), ..Default::default() },
        ),
        ROUTE => Resource::new(
            &name,
            &RouteConfiguration {
                virtual_hosts: vec![VirtualHost { name: content.to_string(), ..Default::default() }],
                name: name.clone(),
                ..Default::default()
            },
        ),
        SECRET => Resource::new(
            &name,
            &Secret {
                name: name.clone(),
                r#type: Some(secret::Type::ValidationContext(CertificateValidationContext {
                    max_verify_depth: Some(UInt32Value { value: content }),
                    ..Default::default()
                })),
            },
        ),
        other => panic!("no test resource for {other}"),
    }
}

/// A snapshot of `generation` holding, per type, (name, content) pairs.
pub(crate) fn snapshot(generation: u64, types: &[(&str, &[(&str, u32)])]) -> Arc<Snapshot> {
    let snapshot = types.iter().fold(Snapshot::new(generation), |snapshot, (type_url, resources)| {
        snapshot.with(type_url, resources.iter().map(|(name, content)| resource(type_url, name, *content)))
    });
    Arc::new(snapshot)
}

/// The resource name inside an encoded message, read back the way Envoy would.
pub(crate) fn name_of(body: &Any) -> String {
    let bytes = body.value.as_slice();
    match body.type_url.as_str() {
        CLUSTER => Cluster::decode(bytes).unwrap().name,
        ENDPOINT => ClusterLoadAssignment::decode(bytes).unwrap().cluster_name,
        LISTENER => Listener::decode(bytes).unwrap().name,
        ROUTE => RouteConfiguration::decode(bytes).unwrap().name,
        SECRET => Secret::decode(bytes).unwrap().name,
        other => panic!("no test resource for {other}"),
    }
}

pub(crate) fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| name.to_string()).collect()
}

pub(crate) fn acked(type_url: &str, version: &str) -> Event {
    Event::Acked { type_url: type_url.to_owned(), version: version.to_owned() }
}

/// Asserts an output has no responses and returns its events.
pub(crate) fn quiet<R: std::fmt::Debug>(output: Output<R>) -> Vec<Event> {
    assert!(output.responses.is_empty(), "expected no responses, got {:?}", output.responses);
    output.events
}
