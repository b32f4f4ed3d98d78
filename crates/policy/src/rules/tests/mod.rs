//! Scenario tests (YAML policies and a Dataplane in, merged confs out) and
//! property tests against a plain re-reading of the rules.

mod from;
mod properties;
mod proxy;
mod routes;
mod to;

use kodiak_api::{Resource, ResourceType};
use serde_json::Value;

use super::*;
use crate::test_support::resources;

/// A sidecar of service `web`, version v1, labelled `team: core`, with a
/// second inbound of service `web-admin` named `admin`.
const WEB: &str = "
type: Dataplane
mesh: default
name: web-1
labels: {team: core}
networking:
  address: 10.0.0.1
  inbound:
  - port: 10001
    tags: {kuma.io/service: web, version: v1}
  - port: 10002
    name: admin
    tags: {kuma.io/service: web-admin, version: v1}
";

fn web() -> Resource {
    resources(WEB).remove(0)
}

/// The rules of `dataplane` under the policies of a YAML stream.
fn rules_for(dataplane: &Resource, policies: &str) -> ProxyRules {
    let policies = resources(policies);
    proxy_rules(dataplane, &MeshPolicies::new("default", &policies))
}

/// The rules of one type for the `web-1` sidecar (empty when none apply).
fn type_rules(kind: ResourceType, policies: &str) -> TypeRules {
    rules_for(&web(), policies).types.remove(&kind).unwrap_or_default()
}

fn conf(conf: Value, origins: &[&str]) -> Option<Conf> {
    Some(Conf { conf, origins: origins.iter().map(|name| (*name).to_owned()).collect(), rule_origins: Vec::new() })
}
