//! Dataplane documents for the end-to-end tests and benchmarks.

use crate::TestService;

/// A Dataplane serving `service` (HTTP) and `<service>-tcp` (TCP) from one
/// test service instance; returns the document. Envoy's inbound ports are
/// picked free now.
pub fn backend(name: &str, service: &str, instance: &TestService) -> String {
    format!(
        "type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
  - port: {http_port}
    servicePort: {service_http}
    tags:
      kuma.io/service: {service}
      kuma.io/protocol: http
  - port: {tcp_port}
    servicePort: {service_tcp}
    tags:
      kuma.io/service: {service}-tcp
      kuma.io/protocol: tcp
",
        http_port = crate::free_port(),
        service_http = instance.http.port(),
        tcp_port = crate::free_port(),
        service_tcp = instance.tcp.port(),
    )
}

/// A client-only Dataplane calling `service` over HTTP on `http_port` and
/// `<service>-tcp` over TCP on `tcp_port`, both on 127.0.0.1.
pub fn client(name: &str, service: &str, http_port: u16, tcp_port: u16) -> String {
    format!(
        "type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  outbound:
  - port: {http_port}
    tags:
      kuma.io/service: {service}
  - port: {tcp_port}
    tags:
      kuma.io/service: {service}-tcp
"
    )
}
