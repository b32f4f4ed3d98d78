//! The mesh's services as callers see them: which protocol each speaks and
//! where its ready endpoints are, gathered from every Dataplane's inbounds.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kodiak_api::dataplane_view::{DataplaneView, Protocol};

/// Where one instance of a service is reached, and its tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
    /// The tags of the instance's inbound (`kuma.io/service` among them),
    /// which route subsets select instances by.
    pub tags: BTreeMap<String, String>,
}

/// One service of a mesh. Comparable, so the caller can tell which services
/// changed between two mesh views and rebuild only those.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ServiceView {
    pub protocol: Protocol,
    /// Sorted, and each address and port once.
    pub endpoints: Vec<Endpoint>,
    /// `Some(mesh)` when callers reach the service over mesh `mesh`'s mTLS:
    /// its mesh has mTLS on and every instance accepts mTLS callers. The
    /// caller of [`services`] decides; [`services`] leaves it `None`.
    pub mtls: Option<String>,
}

impl ServiceView {
    /// The same service with only the endpoints whose tags include all of
    /// `tags` (a route's subset backend).
    pub fn subset(&self, tags: &BTreeMap<String, String>) -> ServiceView {
        let selected = |endpoint: &&Endpoint| tags.iter().all(|(key, value)| endpoint.tags.get(key) == Some(value));
        ServiceView { endpoints: self.endpoints.iter().filter(selected).cloned().collect(), ..self.clone() }
    }
}

/// Every service of a mesh from its Dataplanes' ready inbounds, by name.
///
/// The caller leaves out Dataplanes it knows are offline or draining. The
/// protocol is the `kuma.io/protocol` of the service's inbounds (tcp by
/// default); inbounds that disagree fall back to what both speak (Kuma's
/// protocol stacks: gRPC with http2 is http2, any other mix is tcp).
/// Inbounds that are not ready still decide the protocol, so a service's
/// listeners do not flip between HTTP and TCP as its instances come and go.
///
/// Endpoint addresses must be IP addresses (an EDS endpoint is never
/// resolved by Envoy); an endpoint whose address is a host name is left out,
/// so the caller resolves Dataplane host names beforehand
/// ([`DataplaneView::resolve_addresses`]).
pub fn services<'a>(dataplanes: impl IntoIterator<Item = &'a DataplaneView>) -> BTreeMap<String, ServiceView> {
    let mut protocols: BTreeMap<&str, Protocol> = BTreeMap::new();
    let mut endpoints: BTreeMap<&str, Vec<Endpoint>> = BTreeMap::new();
    for dataplane in dataplanes {
        for inbound in &dataplane.inbounds {
            if inbound.service.is_empty() {
                continue;
            }
            protocols
                .entry(&inbound.service)
                .and_modify(|protocol| *protocol = protocol.common(inbound.protocol))
                .or_insert(inbound.protocol);
            let list = endpoints.entry(&inbound.service).or_default();
            if !inbound.ready {
                continue;
            }
            if let Ok(address) = dataplane.endpoint_address(inbound).parse() {
                list.push(Endpoint { address, port: inbound.port, tags: inbound.tags.clone() });
            }
        }
    }
    endpoints
        .into_iter()
        .map(|(name, mut endpoints)| {
            endpoints.sort_unstable();
            endpoints.dedup_by(|a, b| (a.address, a.port) == (b.address, b.port));
            (name.to_owned(), ServiceView { protocol: protocols[name], endpoints, mtls: None })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{dataplane, instance};

    fn endpoint(address: &str, port: u16, tags: &[(&str, &str)]) -> Endpoint {
        let tags = tags.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        Endpoint { address: address.parse().unwrap(), port, tags }
    }

    const BACKEND_HTTP: &[(&str, &str)] = &[("kuma.io/service", "backend"), ("kuma.io/protocol", "http")];

    #[test]
    fn endpoints_are_sorted_and_deduplicated() {
        let b = instance("backend-b", "127.0.0.4", "backend", "http");
        let a = instance("backend-a", "127.0.0.3", "backend", "http");
        let services = services([&b, &a, &b]);
        assert_eq!(
            services["backend"],
            ServiceView {
                protocol: Protocol::Http,
                endpoints: vec![endpoint("127.0.0.3", 10001, BACKEND_HTTP), endpoint("127.0.0.4", 10001, BACKEND_HTTP)],
                mtls: None,
            }
        );
        assert_eq!(services, super::services([&a, &b]), "order of the Dataplanes does not matter");
    }

    #[test]
    fn protocol_defaults_to_tcp_and_mixed_protocols_fall_back() {
        let plain = dataplane(
            "{type: Dataplane, mesh: default, name: db-1, networking: {address: 127.0.0.3, inbound: [
                {port: 10001, tags: {kuma.io/service: db}}]}}",
        );
        let cases = [
            (vec![("http", "http")], Protocol::Http),
            (vec![("grpc", "grpc")], Protocol::Grpc),
            (vec![("http", "http2")], Protocol::Tcp),
            (vec![("http", "grpc")], Protocol::Tcp),
            (vec![("grpc", "http2")], Protocol::Http2),
            (vec![("http", "tcp")], Protocol::Tcp),
            (vec![("kafka", "kafka")], Protocol::Tcp),
        ];
        for (pairs, expected) in cases {
            let (first, second) = pairs[0];
            let dataplanes = [instance("s-1", "127.0.0.3", "s", first), instance("s-2", "127.0.0.4", "s", second)];
            assert_eq!(services(&dataplanes)["s"].protocol, expected, "{first} and {second}");
        }
        assert_eq!(services([&plain])["db"].protocol, Protocol::Tcp);
    }

    #[test]
    fn not_ready_inbounds_are_no_endpoints_but_keep_the_service() {
        let down = dataplane(
            "{type: Dataplane, mesh: default, name: backend-1, networking: {address: 127.0.0.3, inbound: [
                {port: 10001, tags: {kuma.io/service: backend, kuma.io/protocol: http}, health: {ready: false}},
                {port: 10002, tags: {kuma.io/service: backend, kuma.io/protocol: http}, state: NotReady},
                {port: 10003, tags: {kuma.io/service: backend, kuma.io/protocol: http}, state: Ignored}]}}",
        );
        assert_eq!(
            services([&down])["backend"],
            ServiceView { protocol: Protocol::Http, endpoints: vec![], mtls: None }
        );
    }

    #[test]
    fn endpoints_use_the_advertised_address_and_skip_host_names() {
        let advertised = dataplane(
            "{type: Dataplane, mesh: default, name: b-1, networking: {address: 10.0.0.3, advertisedAddress: 192.168.1.3,
                inbound: [{port: 10001, tags: {kuma.io/service: b}}]}}",
        );
        let named = dataplane(
            "{type: Dataplane, mesh: default, name: b-2, networking: {address: b-2.internal,
                inbound: [{port: 10001, tags: {kuma.io/service: b}}]}}",
        );
        assert_eq!(
            services([&advertised, &named])["b"].endpoints,
            [endpoint("192.168.1.3", 10001, &[("kuma.io/service", "b")])]
        );
    }

    #[test]
    fn an_address_serving_twice_is_one_endpoint() {
        let twice = dataplane(
            "{type: Dataplane, mesh: default, name: b-1, networking: {address: 127.0.0.3, inbound: [
                {port: 10001, tags: {kuma.io/service: b, version: v2}},
                {port: 10001, tags: {kuma.io/service: b, version: v1}}]}}",
        );
        let endpoints = &services([&twice])["b"].endpoints;
        assert_eq!(endpoints, &[endpoint("127.0.0.3", 10001, &[("kuma.io/service", "b"), ("version", "v1")])]);
    }

    #[test]
    fn a_subset_keeps_the_endpoints_carrying_all_its_tags() {
        let tagged = |name: &str, address: &str, tags: &str| {
            dataplane(&format!(
                "{{type: Dataplane, mesh: default, name: {name}, networking: {{address: {address}, inbound: [
                    {{port: 10001, tags: {{kuma.io/service: b, kuma.io/protocol: http, {tags}}}}}]}}}}"
            ))
        };
        let dataplanes = [
            tagged("b-1", "127.0.0.3", "version: v1, zone: a"),
            tagged("b-2", "127.0.0.4", "version: v1, zone: b"),
            tagged("b-3", "127.0.0.5", "version: v2, zone: a"),
        ];
        let mut view = services(&dataplanes)["b"].clone();
        view.mtls = Some("default".into());
        let addresses = |tags: &[(&str, &str)]| {
            let tags = tags.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
            let subset = view.subset(&tags);
            assert_eq!((subset.protocol, &subset.mtls), (view.protocol, &view.mtls));
            subset.endpoints.iter().map(|endpoint| endpoint.address.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(addresses(&[("version", "v1")]), ["127.0.0.3", "127.0.0.4"]);
        assert_eq!(addresses(&[("version", "v1"), ("zone", "a")]), ["127.0.0.3"]);
        assert_eq!(addresses(&[("version", "v3")]), Vec::<String>::new());
        assert_eq!(addresses(&[]).len(), 3);
    }
}
