//! The shapes the REST API answers with.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// `GET /`: which control plane answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Index {
    pub hostname: String,
    pub tagline: String,
    pub product: String,
    pub version: String,
    pub instance_id: String,
    pub based_on_kuma: String,
}

/// One entry of `GET /_resources`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    pub name: String,
    pub path: String,
    /// `Mesh` or `Global`.
    pub scope: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub singular_display_name: String,
    #[serde(default)]
    pub plural_display_name: String,
    /// Policy details for targetRef policies, `None` for other types.
    #[serde(default)]
    pub policy: Option<Value>,
}

/// A resource as read back: its document and the version for `If-Match`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub document: Value,
    pub version: Option<String>,
}

/// What a `PUT` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
}

/// One page of a list, as the server sends it.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct ListPage<T = Value> {
    pub total: u64,
    pub items: Vec<T>,
    /// The absolute URL of the next page; `None` on the last one.
    pub next: Option<String>,
}

/// One item of `GET /meshes/{mesh}/dataplanes/_overview`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneOverview {
    pub mesh: String,
    pub name: String,
    #[serde(default)]
    pub creation_time: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The Dataplane's own fields (`networking`, ...).
    #[serde(default)]
    pub dataplane: Value,
    #[serde(default)]
    pub dataplane_insight: DataplaneInsight,
}

/// What the control plane knows about a dataplane's xDS connections and
/// its mesh mTLS certificate.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DataplaneInsight {
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    /// Present while the dataplane holds a mesh mTLS certificate.
    #[serde(default, rename = "mTLS")]
    pub mtls: Option<MtlsInsight>,
}

/// A dataplane's mesh mTLS certificate (`DataplaneInsight.mTLS`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MtlsInsight {
    /// RFC 3339.
    pub certificate_expiration_time: Option<String>,
    /// RFC 3339: when the current certificate was issued.
    pub last_certificate_regeneration: Option<String>,
    /// How many certificates the dataplane got before the current one.
    pub certificate_regenerations: u64,
    /// The mesh CA backend that issued the certificate.
    pub issued_backend: String,
    pub supported_backends: Vec<String>,
    /// The certificate's serial number in hex.
    pub serial: String,
    /// How its inbounds treat callers: `STRICT` or `PERMISSIVE`.
    pub inbound_mode: Option<String>,
}

/// One xDS stream of a dataplane, from connect to disconnect.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub connect_time: Option<String>,
    pub disconnect_time: Option<String>,
    #[serde(default)]
    pub control_plane_instance_id: Option<String>,
    #[serde(default)]
    pub status: SubscriptionStatus,
}

/// What was sent on a stream and how the sidecar answered, in all and per
/// xDS type (`cds`, `eds`, `lds`, `rds`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStatus {
    #[serde(default)]
    pub total: Counters,
    #[serde(flatten)]
    pub types: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    #[serde(default)]
    pub responses_sent: u64,
    #[serde(default)]
    pub responses_acknowledged: u64,
    #[serde(default)]
    pub responses_rejected: u64,
}

impl DataplaneInsight {
    /// Online while a stream is open: connected and not yet disconnected
    /// (Kuma's rule).
    pub fn is_online(&self) -> bool {
        self.subscriptions.iter().any(|s| s.connect_time.is_some() && s.disconnect_time.is_none())
    }

    /// The newest stream; subscriptions are kept oldest first.
    pub fn latest(&self) -> Option<&Subscription> {
        self.subscriptions.last()
    }

    /// The newest refusal of a configuration on the newest stream, as
    /// `<type>: <Envoy's reason>`.
    pub fn last_nack(&self) -> Option<String> {
        let status = &self.latest()?.status;
        status
            .types
            .iter()
            .filter_map(|(kind, value)| {
                let nack = value.get("lastNack")?;
                Some((nack.get("time")?.as_str()?, format!("{kind}: {}", nack.get("error")?.as_str()?)))
            })
            .max()
            .map(|(_, reason)| reason)
    }

    /// When the newest stream connected; subscriptions are kept oldest first.
    pub fn last_connected(&self) -> Option<&str> {
        self.subscriptions.iter().rev().find_map(|s| s.connect_time.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_needs_an_open_stream() {
        let insight: DataplaneInsight = serde_json::from_str(
            r#"{"subscriptions":[
                {"connectTime":"2025-01-01T00:00:00Z","disconnectTime":"2025-01-01T01:00:00Z"},
                {"connectTime":"2025-01-01T02:00:00Z"}]}"#,
        )
        .unwrap();
        assert!(insight.is_online());
        assert_eq!(insight.last_connected(), Some("2025-01-01T02:00:00Z"));
        assert!(!DataplaneInsight::default().is_online());
        assert_eq!(DataplaneInsight::default().last_connected(), None);
        assert!(insight.mtls.is_none());
    }

    #[test]
    fn the_mtls_section_is_read() {
        let insight: DataplaneInsight = serde_json::from_str(
            r#"{"subscriptions":[],"mTLS":{"certificateExpirationTime":"2025-01-02T00:00:00Z",
                "lastCertificateRegeneration":"2025-01-01T00:00:00Z","certificateRegenerations":3,
                "issuedBackend":"ca-1","supportedBackends":["ca-1","ca-2"],"serial":"0a","inboundMode":"STRICT"}}"#,
        )
        .unwrap();
        let mtls = insight.mtls.unwrap();
        assert_eq!(mtls.certificate_expiration_time.as_deref(), Some("2025-01-02T00:00:00Z"));
        assert_eq!((mtls.certificate_regenerations, mtls.issued_backend.as_str()), (3, "ca-1"));
        assert_eq!((mtls.serial.as_str(), mtls.inbound_mode.as_deref()), ("0a", Some("STRICT")));
        assert_eq!(mtls.supported_backends, ["ca-1", "ca-2"]);
    }
}

/// The body of `POST /tokens/dataplane`: every field that is set restricts
/// which Dataplane may use the token.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneTokenRequest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub mesh: String,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub proxy_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub workload: String,
    /// A Go-style duration (`720h`); empty: ten years.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub valid_for: String,
}

/// The body of `POST /tokens/user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserTokenRequest {
    pub name: String,
    pub groups: Vec<String>,
    /// A Go-style duration (`24h`).
    pub valid_for: String,
}
