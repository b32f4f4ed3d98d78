//! What `kodiak-dp` and the control plane's dp-server say to each other
//! before Envoy starts: `POST /bootstrap` on the dp-server port (5678).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The body of `POST /bootstrap`. Its Debug form hides the token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapRequest {
    /// The mesh of the Dataplane this sidecar serves.
    pub mesh: String,
    /// The Dataplane's name.
    pub name: String,
    /// The Dataplane itself (JSON text, after `-v` substitution) when
    /// `kodiak-dp` registers it; absent when it was applied beforehand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_resource: Option<String>,
    /// Envoy's admin port on 127.0.0.1; 0 lets the kernel choose one.
    #[serde(default)]
    pub admin_port: u16,
    /// Which flavour of ADS Envoy speaks.
    #[serde(default)]
    pub xds_transport: XdsTransport,
    pub version: Versions,
    /// The dataplane token (a JWT) proving which Dataplane this sidecar may
    /// serve; Envoy sends it again on every ADS stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_token: Option<String>,
    /// The CA certificates (PEM) the sidecar trusts for the control plane
    /// (`kodiak-dp --ca-cert-file`); Envoy's ADS connection trusts them too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// The named pipe on the sidecar's host from which kodiak-dp sends
    /// TCP access-log entries on (MeshAccessLog `tcp` backends); absent
    /// when the sidecar forwards none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_pipe: Option<String>,
}

impl fmt::Debug for BootstrapRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapRequest")
            .field("mesh", &self.mesh)
            .field("name", &self.name)
            .field("dataplane_resource", &self.dataplane_resource)
            .field("admin_port", &self.admin_port)
            .field("xds_transport", &self.xds_transport)
            .field("version", &self.version)
            .field("dataplane_token", &Redacted(&self.dataplane_token))
            .field("ca_cert", &self.ca_cert.as_ref().map(|pem| format!("{} bytes of PEM", pem.len())))
            .field("access_log_pipe", &self.access_log_pipe)
            .finish()
    }
}

/// A secret in Debug output: whether it is there, never its text, so a
/// token cannot leak into logs through `{:?}`.
pub struct Redacted<'a>(pub &'a Option<String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some(<redacted>)"),
            None => f.write_str("None"),
        }
    }
}

/// The ADS variants of the xDS protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum XdsTransport {
    /// Incremental xDS (`DELTA_GRPC`): only changed resources are sent.
    #[default]
    #[serde(rename = "delta")]
    Delta,
    /// State of the world (`GRPC`): every response carries all resources of its type.
    #[serde(rename = "sotw")]
    Sotw,
}

/// Versions of the programs beside the workload, shown in insights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Versions {
    pub kodiak_dp: String,
    pub envoy: String,
}

/// The answer to `POST /bootstrap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapResponse {
    /// Envoy's bootstrap configuration, in Envoy's JSON form.
    pub bootstrap: serde_json::Value,
    /// The Dataplane as the control plane stores it (a resource document).
    pub dataplane: serde_json::Value,
}

/// The body of `POST /drain`: the sidecar is shutting down, so callers
/// should stop choosing it now rather than when its connection drops.
/// Its Debug form hides the token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainRequest {
    pub mesh: String,
    pub name: String,
    /// The sidecar's dataplane token, the one its bootstrap carried: only
    /// the sidecar serving a Dataplane may drain it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_token: Option<String>,
}

impl fmt::Debug for DrainRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainRequest")
            .field("mesh", &self.mesh)
            .field("name", &self.name)
            .field("dataplane_token", &Redacted(&self.dataplane_token))
            .finish()
    }
}

/// Node metadata keys the bootstrap sets and the ADS server reads back.
pub mod node_metadata {
    /// The inline Dataplane (JSON text), so a control plane that lost it
    /// (in-memory store, restart) can register it again when Envoy reconnects.
    pub const DATAPLANE: &str = "kodiak.io/dataplane";
    /// The kodiak-dp version.
    pub const KODIAK_DP_VERSION: &str = "kodiak.io/kodiak-dp-version";
    /// The Envoy version kodiak-dp found.
    pub const ENVOY_VERSION: &str = "kodiak.io/envoy-version";
    /// Which bootstrap this Envoy started from: one Dataplane is served by
    /// one sidecar, so streams from another sidecar's Envoy are refused.
    pub const SIDECAR_INSTANCE: &str = "kodiak.io/sidecar-instance";
    /// The named pipe kodiak-dp forwards TCP access-log entries from.
    pub const ACCESS_LOG_PIPE: &str = "kodiak.io/access-log-pipe";
}

/// How often a sidecar's Envoy sends an HTTP/2 PING on its connection to
/// the control plane (the bootstrap's `connection_keepalive`), to notice a
/// control plane that stopped answering. A dead host is noticed sooner, by
/// TCP keepalive; every PING costs the control plane a wake-up and two TLS
/// records, so with thousands of sidecars it is most of what an idle
/// control plane does.
pub const ADS_KEEPALIVE_INTERVAL_SECONDS: u64 = 60;

/// The label the control plane puts on Dataplanes that `kodiak-dp`
/// registered from a dataplane file: those are removed again a while after
/// their sidecar goes away; applied ones are never removed by the control plane.
pub const REGISTERED_BY_LABEL: &str = "kodiak.io/registered-by";
pub const REGISTERED_BY_KODIAK_DP: &str = "kodiak-dp";

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.claims.signature";

    #[test]
    fn debug_output_hides_the_token() {
        let request = BootstrapRequest {
            mesh: "default".into(),
            name: "web-1".into(),
            dataplane_resource: None,
            admin_port: 0,
            xds_transport: XdsTransport::Delta,
            version: Versions { kodiak_dp: "1".into(), envoy: "1.40.0".into() },
            dataplane_token: Some(TOKEN.into()),
            ca_cert: None,
            access_log_pipe: None,
        };
        let drain = DrainRequest { mesh: "default".into(), name: "web-1".into(), dataplane_token: Some(TOKEN.into()) };
        for debug in [format!("{request:?}"), format!("{drain:?}")] {
            assert!(!debug.contains("claims"), "{debug}");
            assert!(debug.contains("dataplane_token: Some(<redacted>)") && debug.contains("web-1"), "{debug}");
        }
    }
}
