//! Helpers for the unit tests: Dataplanes and policies from YAML, as users write them.

use kodiak_api::Resource;
use kodiak_api::dataplane_view::DataplaneView;

/// A validated resource (a Dataplane, a policy) from a YAML document.
pub fn resource(yaml: &str) -> Resource {
    Resource::from_document(&kodiak_api::parse_document(yaml).unwrap()).unwrap_or_else(|e| panic!("{e}"))
}

/// A validated Dataplane view from a YAML document.
pub fn dataplane(yaml: &str) -> DataplaneView {
    DataplaneView::from_resource(&resource(yaml))
}

/// A Dataplane `name` at `address` with one inbound of `service` speaking `protocol`.
pub fn instance(name: &str, address: &str, service: &str, protocol: &str) -> DataplaneView {
    dataplane(&format!(
        "{{type: Dataplane, mesh: default, name: {name}, networking: {{address: {address}, inbound: [
            {{port: 10001, servicePort: 8080, serviceAddress: 127.0.0.1,
              tags: {{kuma.io/service: {service}, kuma.io/protocol: {protocol}}}}}]}}}}"
    ))
}
