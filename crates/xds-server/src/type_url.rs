//! Type URLs of the resources Kodiak serves, and the order a push sends them in.

/// `envoy.config.cluster.v3.Cluster` (CDS).
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// `envoy.config.endpoint.v3.ClusterLoadAssignment` (EDS).
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// `envoy.config.listener.v3.Listener` (LDS).
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// `envoy.config.route.v3.RouteConfiguration` (RDS).
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// `envoy.extensions.transport_sockets.tls.v3.Secret` (SDS).
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Make-before-break order: SDS, CDS, EDS, LDS, RDS, then any other type by
/// URL (xDS protocol, "Eventual consistency considerations"). Secrets go
/// first: a renewed certificate or a new CA bundle reaches the proxy before
/// the clusters and listeners that come with it.
pub(crate) fn push_order(type_url: &str) -> (u8, &str) {
    let rank = match type_url {
        SECRET => 0,
        CLUSTER => 1,
        ENDPOINT => 2,
        LISTENER => 3,
        ROUTE => 4,
        _ => 5,
    };
    (rank, type_url)
}

/// Listener and Cluster are the types with a wildcard subscription, and the
/// ones a request with no names subscribes to as a whole (xDS protocol, "How
/// the client specifies what resources to return").
pub(crate) fn has_implicit_wildcard(type_url: &str) -> bool {
    type_url == CLUSTER || type_url == LISTENER
}

#[cfg(test)]
mod tests {
    use prost::Name;

    use super::*;

    #[test]
    fn constants_match_the_generated_messages() {
        use envoy_types::pb::envoy::{config, extensions::transport_sockets::tls};
        assert_eq!(CLUSTER, config::cluster::v3::Cluster::type_url());
        assert_eq!(ENDPOINT, config::endpoint::v3::ClusterLoadAssignment::type_url());
        assert_eq!(LISTENER, config::listener::v3::Listener::type_url());
        assert_eq!(ROUTE, config::route::v3::RouteConfiguration::type_url());
        assert_eq!(SECRET, tls::v3::Secret::type_url());
    }
}
