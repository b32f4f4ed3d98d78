//! Names of the generated resources. They are part of Kodiak's contract
//! with users (they appear in Envoy's stats and config dumps), and they
//! follow Kuma's so dashboards and habits carry over.

/// The cluster of a service is named after the service.
pub fn service_cluster(service: &str) -> String {
    service.to_owned()
}

/// The route configuration an outbound HTTP listener fetches over RDS.
pub fn outbound_route(service: &str) -> String {
    format!("outbound:{service}")
}

/// The cluster that forwards an inbound's traffic to the application.
pub fn inbound_cluster(service_address: &str, service_port: u16) -> String {
    format!("inbound:{service_address}:{service_port}")
}

pub fn inbound_listener(address: &str, port: u16) -> String {
    format!("inbound:{address}:{port}")
}

pub fn outbound_listener(address: &str, port: u16) -> String {
    format!("outbound:{address}:{port}")
}

/// The route configuration inside an inbound listener.
pub fn inbound_route(service: &str) -> String {
    format!("inbound:{service}")
}

/// The SDS secret with a proxy's certificate and key in mesh `mesh`.
pub fn identity_secret(mesh: &str) -> String {
    format!("identity_cert:secret:{mesh}")
}

/// The SDS secret with the CA certificates a proxy of mesh `mesh` trusts.
pub fn mesh_ca_secret(mesh: &str) -> String {
    format!("mesh_ca:secret:{mesh}")
}

/// The SPIFFE ID in the certificates of `service`'s instances.
pub fn spiffe_id(mesh: &str, service: &str) -> String {
    format!("spiffe://{mesh}/{service}")
}

/// The URI SAN a workload certificate carries for each of its tags.
pub fn tag_uri(key: &str, value: &str) -> String {
    format!("kuma://{key}/{value}")
}

/// The TLS server name a caller sends to `service` over mesh mTLS.
pub fn sni(mesh: &str, service: &str) -> String {
    format!("{service}{{mesh={mesh}}}")
}
