//! The simulated mesh: services, their instances (one Dataplane each) and
//! whom each instance calls. Pure: it only builds documents.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The shape of the simulated mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub mesh: String,
    pub services: usize,
    pub instances: usize,
    /// Services each instance calls.
    pub outbounds: usize,
    pub mtls: bool,
}

/// The port every instance serves on; callers reach services on
/// `OUTBOUND_BASE + n` for their n-th outbound.
const INBOUND_PORT: u16 = 10_001;
const SERVICE_PORT: u16 = 8_080;
const OUTBOUND_BASE: u16 = 20_001;
/// The mesh's CA backend and the Secrets it reads.
const CA_BACKEND: &str = "ca-1";
const CA_CERT_SECRET: &str = "sim-ca-cert";
const CA_KEY_SECRET: &str = "sim-ca-key";

impl Topology {
    /// Proxies in the mesh as first deployed.
    pub fn proxies(&self) -> usize {
        self.services * self.instances
    }

    pub fn service(index: usize) -> String {
        format!("svc-{index:05}")
    }

    /// Proxy `index` is instance `index / services` of service `index % services`,
    /// so the first `services` proxies are one instance of every service.
    pub fn proxy_name(&self, index: usize) -> String {
        format!("{}-{}", Self::service(index % self.services), index / self.services)
    }

    /// The services the instances of `service` call: the next `outbounds`
    /// services, so each service has `outbounds × instances` callers.
    pub fn callees(&self, service: usize) -> Vec<usize> {
        (1..=self.outbounds.min(self.services.saturating_sub(1))).map(|step| (service + step) % self.services).collect()
    }

    /// The services whose instances call `service`.
    pub fn callers(&self, service: usize) -> Vec<usize> {
        (0..self.services).filter(|caller| self.callees(*caller).contains(&service)).collect()
    }

    /// The Mesh, with mTLS from a provided CA whose certificate and key
    /// are the Secrets [`Topology::ca_secrets`] when on.
    pub fn mesh_document(&self) -> Value {
        let mut mesh = json!({"type": "Mesh", "name": self.mesh});
        if self.mtls {
            mesh["mtls"] = json!({
                "enabledBackend": CA_BACKEND,
                "backends": [{
                    "name": CA_BACKEND,
                    "type": "provided",
                    "conf": {"cert": {"secret": CA_CERT_SECRET}, "key": {"secret": CA_KEY_SECRET}},
                }],
            });
        }
        mesh
    }

    /// The Secrets of the provided CA: its root certificate and key (PEM).
    /// Replacing both with another root is a CA rotation.
    pub fn ca_secrets(&self, cert_pem: &str, key_pem: &str) -> [Value; 2] {
        [(CA_CERT_SECRET, cert_pem), (CA_KEY_SECRET, key_pem)]
            .map(|(name, pem)| json!({"type": "Secret", "mesh": self.mesh, "name": name, "data": STANDARD.encode(pem)}))
    }

    /// The Dataplane of instance `instance` of `service`, whatever the
    /// deployed instance count (a scaled-out service has more).
    pub fn dataplane(&self, service: usize, instance: usize) -> Value {
        let index = instance * self.services + service;
        let outbound: Vec<Value> = (self.callees(service).iter().zip(OUTBOUND_BASE..))
            .map(|(callee, port)| json!({"port": port, "tags": {"kuma.io/service": Self::service(*callee)}}))
            .collect();
        json!({
            "type": "Dataplane",
            "mesh": self.mesh,
            "name": format!("{}-{instance}", Self::service(service)),
            "networking": {
                "address": address(index),
                "inbound": [{
                    "port": INBOUND_PORT,
                    "servicePort": SERVICE_PORT,
                    "tags": {"kuma.io/service": Self::service(service), "kuma.io/protocol": "http"},
                }],
                "outbound": outbound,
            },
        })
    }

    /// The Dataplane of proxy `index` (see [`Topology::proxy_name`]).
    pub fn dataplane_of(&self, index: usize) -> Value {
        self.dataplane(index % self.services, index / self.services)
    }
}

/// A distinct loopback address per instance (no traffic is ever sent to it).
fn address(index: usize) -> String {
    let index = index + 1;
    format!("127.{}.{}.{}", 1 + (index >> 16) % 254, (index >> 8) & 0xff, index & 0xff)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn topology() -> Topology {
        Topology { mesh: "default".into(), services: 10, instances: 2, outbounds: 3, mtls: true }
    }

    #[test]
    fn every_service_has_outbounds_times_instances_callers() {
        let topology = topology();
        for service in 0..topology.services {
            assert_eq!(topology.callers(service).len(), 3, "service {service}");
            assert!(!topology.callees(service).contains(&service), "nobody calls itself");
        }
        assert_eq!(topology.callees(9), vec![0, 1, 2]);
    }

    #[test]
    fn proxies_have_distinct_names_and_addresses() {
        let topology = Topology { services: 1000, instances: 70, ..topology() };
        let documents: Vec<Value> = (0..topology.proxies()).map(|index| topology.dataplane_of(index)).collect();
        let names: BTreeSet<&str> = documents.iter().map(|d| d["name"].as_str().unwrap()).collect();
        let addresses: BTreeSet<&str> =
            documents.iter().map(|d| d["networking"]["address"].as_str().unwrap()).collect();
        assert_eq!((names.len(), addresses.len()), (70_000, 70_000));
        assert_eq!(documents[1001]["name"], "svc-00001-1");
        assert_eq!(topology.proxy_name(1001), "svc-00001-1");
    }

    #[test]
    fn a_dataplane_serves_its_service_and_calls_its_callees() {
        let dataplane = topology().dataplane(4, 1);
        assert_eq!(dataplane["networking"]["inbound"][0]["tags"]["kuma.io/service"], "svc-00004");
        let callees: Vec<&str> = dataplane["networking"]["outbound"]
            .as_array()
            .unwrap()
            .iter()
            .map(|outbound| outbound["tags"]["kuma.io/service"].as_str().unwrap())
            .collect();
        assert_eq!(callees, ["svc-00005", "svc-00006", "svc-00007"]);
    }

    #[test]
    fn the_mesh_reads_its_ca_from_two_secrets_only_with_mtls() {
        let topology = topology();
        let mesh = topology.mesh_document();
        let backend = &mesh["mtls"]["backends"][0];
        assert_eq!(
            (mesh["mtls"]["enabledBackend"].as_str(), backend["type"].as_str()),
            (Some("ca-1"), Some("provided"))
        );
        let [cert, key] = topology.ca_secrets("CERT", "KEY");
        assert_eq!((&cert["name"], &backend["conf"]["cert"]["secret"]), (&json!("sim-ca-cert"), &json!("sim-ca-cert")));
        assert_eq!((&key["name"], &backend["conf"]["key"]["secret"]), (&json!("sim-ca-key"), &json!("sim-ca-key")));
        assert_eq!(STANDARD.decode(key["data"].as_str().unwrap()).unwrap(), b"KEY");
        let plain = Topology { mtls: false, ..topology };
        assert!(plain.mesh_document().get("mtls").is_none());
    }
}
