//! Helpers for the unit tests: Dataplanes from YAML, as users write them.

use kodiak_api::Resource;
use kodiak_api::dataplane_view::DataplaneView;

/// A validated Dataplane view from a YAML document.
pub fn dataplane(yaml: &str) -> DataplaneView {
    let document = kodiak_api::parse_document(yaml).unwrap();
    DataplaneView::from_resource(&Resource::from_document(&document).unwrap_or_else(|e| panic!("{e}")))
}

/// A Dataplane `name` at `address` with one inbound of `service` speaking `protocol`.
pub fn instance(name: &str, address: &str, service: &str, protocol: &str) -> DataplaneView {
    dataplane(&format!(
        "{{type: Dataplane, mesh: default, name: {name}, networking: {{address: {address}, inbound: [
            {{port: 10001, servicePort: 8080, serviceAddress: 127.0.0.1,
              tags: {{kuma.io/service: {service}, kuma.io/protocol: {protocol}}}}}]}}}}"
    ))
}
