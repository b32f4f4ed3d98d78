//! What the control plane knows about each sidecar's xDS streams: online or
//! not, since when, to which control-plane instance, and per xDS type what
//! was sent, ACKed and NACKed (with Envoy's reason). Kept in memory: a
//! restarted control plane learns it again as sidecars reconnect.

use std::collections::HashMap;
use std::sync::Mutex;

use kodiak_store::now_rfc3339;
use serde::Serialize;
use serde_json::Value;

use super::proxy_id::ProxyId;

/// How many streams (current and past) are kept per Dataplane.
const HISTORY: usize = 5;

/// Insights of every Dataplane that connected to this instance.
#[derive(Debug)]
pub struct Insights {
    instance_id: String,
    proxies: Mutex<HashMap<ProxyId, Vec<Subscription>>>,
    mtls: Mutex<HashMap<ProxyId, MtlsInsight>>,
    /// What policies could not do to each proxy's newest configuration.
    policy_problems: Mutex<HashMap<ProxyId, Vec<String>>>,
}

/// A sidecar's mesh mTLS certificate, in Kuma's DataplaneInsight `mTLS`
/// shape, plus the certificate's serial number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MtlsInsight {
    pub certificate_expiration_time: String,
    pub last_certificate_regeneration: String,
    /// How many certificates the sidecar got before the current one.
    pub certificate_regenerations: u64,
    pub issued_backend: String,
    pub supported_backends: Vec<String>,
    /// The current certificate's serial number in hex, as logged at issue.
    pub serial: String,
    /// How the sidecar's inbounds treat callers in its newest configuration:
    /// `STRICT` (mTLS only) or `PERMISSIVE` (mTLS and plaintext). A mesh in
    /// STRICT mode shows PERMISSIVE until every caller uses mTLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_mode: Option<&'static str>,
}

impl MtlsInsight {
    pub fn of(cert: &super::certs::IssuedCert, mtls: &kodiak_api::mesh::MtlsView) -> MtlsInsight {
        MtlsInsight {
            certificate_expiration_time: humantime::format_rfc3339_seconds(cert.cert.not_after).to_string(),
            last_certificate_regeneration: humantime::format_rfc3339_seconds(cert.issued_at).to_string(),
            certificate_regenerations: cert.renewals,
            issued_backend: cert.spec.backend.clone(),
            supported_backends: mtls.backends.iter().map(|backend| backend.name.clone()).collect(),
            serial: cert.serial.clone(),
            inbound_mode: None,
        }
    }
}

/// One xDS stream of a sidecar, in Kuma's DataplaneInsight subscription
/// shape, with the last ACKed version and last NACK per type added.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub control_plane_instance_id: String,
    pub connect_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnect_time: Option<String>,
    pub xds_transport: &'static str,
    pub status: Status,
    pub version: Versions,
    /// The newest configuration generated for the sidecar, and the newest
    /// one it ACKed in full (every type).
    pub generation: Generation,
    #[serde(skip)]
    stream_id: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    pub total: Counters,
    pub cds: TypeStatus,
    pub eds: TypeStatus,
    pub lds: TypeStatus,
    pub rds: TypeStatus,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub responses_sent: u64,
    pub responses_acknowledged: u64,
    pub responses_rejected: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeStatus {
    #[serde(flatten)]
    pub counters: Counters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_acked_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_nack: Option<Nack>,
}

/// A configuration the sidecar refused, and why (Envoy's own words).
#[derive(Debug, Clone, Serialize)]
pub struct Nack {
    pub version: String,
    pub error: String,
    pub time: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    pub kodiak_dp: Version,
    pub envoy: Version,
}

#[derive(Debug, Clone, Serialize)]
pub struct Version {
    pub version: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Generation {
    pub latest: u64,
    pub acked: u64,
}

/// What a stream said about itself when it opened.
#[derive(Debug, Clone)]
pub struct StreamStart {
    pub stream_id: u64,
    pub xds_transport: &'static str,
    pub kodiak_dp_version: String,
    pub envoy_version: String,
}

/// Something that happened on an open stream.
#[derive(Debug, Clone, Copy)]
pub enum StreamEvent<'a> {
    Sent { type_url: &'a str },
    Acked { type_url: &'a str, version: &'a str },
    Nacked { type_url: &'a str, version: &'a str, error: &'a str },
    Synced { generation: u64 },
}

impl Insights {
    pub fn new(instance_id: impl Into<String>) -> Self {
        Self {
            instance_id: instance_id.into(),
            proxies: Mutex::default(),
            mtls: Mutex::default(),
            policy_problems: Mutex::default(),
        }
    }

    pub fn stream_opened(&self, proxy: &ProxyId, start: StreamStart) {
        let subscription = Subscription {
            id: format!("{}-{}", self.instance_id, start.stream_id),
            control_plane_instance_id: self.instance_id.clone(),
            connect_time: now_rfc3339(),
            disconnect_time: None,
            xds_transport: start.xds_transport,
            status: Status::default(),
            version: Versions {
                kodiak_dp: Version { version: start.kodiak_dp_version },
                envoy: Version { version: start.envoy_version },
            },
            generation: Generation::default(),
            stream_id: start.stream_id,
        };
        let mut proxies = self.proxies.lock().unwrap();
        let history = proxies.entry(proxy.clone()).or_default();
        history.push(subscription);
        if history.len() > HISTORY {
            history.remove(0);
        }
    }

    pub fn stream_closed(&self, proxy: &ProxyId, stream_id: u64) {
        self.update(proxy, stream_id, |subscription| subscription.disconnect_time = Some(now_rfc3339()));
    }

    pub fn record(&self, proxy: &ProxyId, stream_id: u64, event: StreamEvent<'_>) {
        self.update(proxy, stream_id, |subscription| subscription.record(event));
    }

    /// Forgets a deleted Dataplane (a new one of that name starts afresh).
    pub fn forget(&self, proxy: &ProxyId) {
        self.proxies.lock().unwrap().remove(proxy);
        self.mtls.lock().unwrap().remove(proxy);
        self.policy_problems.lock().unwrap().remove(proxy);
    }

    /// What policies could not do to the proxy's newest configuration (a
    /// MeshProxyPatch modification that does not fit it), as shown to users;
    /// empty when everything applied.
    pub fn policy_problems(&self, proxy: &ProxyId, problems: Vec<String>) {
        let mut all = self.policy_problems.lock().unwrap();
        if problems.is_empty() {
            all.remove(proxy);
        } else {
            all.insert(proxy.clone(), problems);
        }
    }

    /// What policies could not do to the proxy's newest configuration.
    pub fn problems(&self, proxy: &ProxyId) -> Vec<String> {
        self.policy_problems.lock().unwrap().get(proxy).cloned().unwrap_or_default()
    }

    /// The proxy's current mesh mTLS certificate (none: mTLS is off for it).
    pub fn mtls(&self, proxy: &ProxyId, insight: Option<MtlsInsight>) {
        let mut all = self.mtls.lock().unwrap();
        match insight {
            Some(mut insight) => {
                insight.inbound_mode = all.get(proxy).and_then(|before| before.inbound_mode);
                all.insert(proxy.clone(), insight);
            }
            None => {
                all.remove(proxy);
            }
        }
    }

    /// How the proxy's inbounds treat callers in its newest configuration.
    pub fn mtls_mode(&self, proxy: &ProxyId, mode: &'static str) {
        if let Some(insight) = self.mtls.lock().unwrap().get_mut(proxy) {
            insight.inbound_mode = Some(mode);
        }
    }

    /// A new configuration generation was published for the proxy.
    pub fn generated(&self, proxy: &ProxyId, generation: u64) {
        let mut proxies = self.proxies.lock().unwrap();
        let open =
            proxies.get_mut(proxy).and_then(|history| history.iter_mut().rev().find(|s| s.disconnect_time.is_none()));
        if let Some(subscription) = open {
            subscription.generation.latest = generation;
        }
    }

    /// The DataplaneInsight document of a Dataplane (no subscriptions when
    /// its sidecar never connected to this instance; `mTLS` while it holds a
    /// mesh certificate).
    pub fn document(&self, proxy: &ProxyId) -> Value {
        let subscriptions = self.proxies.lock().unwrap().get(proxy).cloned().unwrap_or_default();
        let mut document = serde_json::json!({ "subscriptions": subscriptions });
        if let Some(mtls) = self.mtls.lock().unwrap().get(proxy) {
            document["mTLS"] = serde_json::json!(mtls);
        }
        if let Some(problems) = self.policy_problems.lock().unwrap().get(proxy) {
            document["policyProblems"] = serde_json::json!(problems);
        }
        document
    }

    fn update(&self, proxy: &ProxyId, stream_id: u64, change: impl FnOnce(&mut Subscription)) {
        let mut proxies = self.proxies.lock().unwrap();
        let subscription =
            proxies.get_mut(proxy).and_then(|history| history.iter_mut().find(|s| s.stream_id == stream_id));
        if let Some(subscription) = subscription {
            change(subscription);
        }
    }
}

impl Subscription {
    fn record(&mut self, event: StreamEvent<'_>) {
        let now = now_rfc3339();
        self.status.last_update_time = Some(now.clone());
        match event {
            StreamEvent::Sent { type_url } => {
                self.status.total.responses_sent += 1;
                if let Some(status) = self.status.of(type_url) {
                    status.counters.responses_sent += 1;
                }
            }
            StreamEvent::Acked { type_url, version } => {
                self.status.total.responses_acknowledged += 1;
                if let Some(status) = self.status.of(type_url) {
                    status.counters.responses_acknowledged += 1;
                    status.last_acked_version = Some(version.to_owned());
                }
            }
            StreamEvent::Nacked { type_url, version, error } => {
                self.status.total.responses_rejected += 1;
                if let Some(status) = self.status.of(type_url) {
                    status.counters.responses_rejected += 1;
                    status.last_nack = Some(Nack { version: version.to_owned(), error: error.to_owned(), time: now });
                }
            }
            StreamEvent::Synced { generation } => self.generation.acked = self.generation.acked.max(generation),
        }
    }
}

impl Status {
    /// The per-type status of a type URL (the last part names the type).
    fn of(&mut self, type_url: &str) -> Option<&mut TypeStatus> {
        match type_url.rsplit('.').next()? {
            "Cluster" => Some(&mut self.cds),
            "ClusterLoadAssignment" => Some(&mut self.eds),
            "Listener" => Some(&mut self.lds),
            "RouteConfiguration" => Some(&mut self.rds),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

    fn start(stream_id: u64) -> StreamStart {
        StreamStart {
            stream_id,
            xds_transport: "delta",
            kodiak_dp_version: "0.1.0".into(),
            envoy_version: "1.40.0".into(),
        }
    }

    #[test]
    fn a_stream_is_followed_from_connect_to_disconnect() {
        let insights = Insights::new("cp-1");
        let web = ProxyId::new("default", "web");
        insights.stream_opened(&web, start(7));
        insights.generated(&web, 3);
        insights.record(&web, 7, StreamEvent::Sent { type_url: CLUSTER });
        insights.record(&web, 7, StreamEvent::Nacked { type_url: CLUSTER, version: "v1", error: "bad cluster" });
        insights.generated(&web, 4);
        insights.record(&web, 7, StreamEvent::Sent { type_url: CLUSTER });
        insights.record(&web, 7, StreamEvent::Acked { type_url: CLUSTER, version: "v2" });
        insights.record(&web, 7, StreamEvent::Synced { generation: 4 });

        let document = insights.document(&web);
        let subscription = &document["subscriptions"][0];
        assert_eq!(subscription["controlPlaneInstanceId"], "cp-1");
        assert!(subscription.get("disconnectTime").is_none());
        let cds = &subscription["status"]["cds"];
        assert_eq!(cds["responsesSent"], 2);
        assert_eq!(cds["responsesRejected"], 1);
        assert_eq!(cds["lastAckedVersion"], "v2");
        assert_eq!(cds["lastNack"]["error"], "bad cluster");
        assert_eq!(subscription["generation"], serde_json::json!({"latest": 4, "acked": 4}));

        insights.stream_closed(&web, 7);
        assert!(insights.document(&web)["subscriptions"][0]["disconnectTime"].is_string());
    }

    #[test]
    fn the_mtls_section_follows_the_certificate_and_keeps_the_inbound_mode() {
        let insights = Insights::new("cp-1");
        let web = ProxyId::new("default", "web");
        let insight = |serial: &str| MtlsInsight {
            certificate_expiration_time: "2026-11-30T16:00:00Z".into(),
            last_certificate_regeneration: "2026-11-29T16:00:00Z".into(),
            certificate_regenerations: 0,
            issued_backend: "ca-1".into(),
            supported_backends: vec!["ca-1".into()],
            serial: serial.into(),
            inbound_mode: None,
        };
        assert!(insights.document(&web).get("mTLS").is_none());
        insights.mtls_mode(&web, "STRICT");
        assert!(insights.document(&web).get("mTLS").is_none(), "no certificate, no section");
        insights.mtls(&web, Some(insight("01")));
        insights.mtls_mode(&web, "PERMISSIVE");
        insights.mtls(&web, Some(insight("02")));
        let mtls = &insights.document(&web)["mTLS"];
        assert_eq!(mtls["serial"], "02");
        assert_eq!(mtls["issuedBackend"], "ca-1");
        assert_eq!(mtls["inboundMode"], "PERMISSIVE", "a renewal keeps the mode");
        insights.mtls(&web, None);
        assert!(insights.document(&web).get("mTLS").is_none());
    }

    #[test]
    fn history_is_bounded_and_unknown_proxies_have_none() {
        let insights = Insights::new("cp-1");
        let web = ProxyId::new("default", "web");
        for stream in 0..(HISTORY as u64 + 3) {
            insights.stream_opened(&web, start(stream));
        }
        let subscriptions = insights.document(&web)["subscriptions"].as_array().unwrap().clone();
        assert_eq!(subscriptions.len(), HISTORY);
        assert!(subscriptions.last().unwrap()["id"].as_str().unwrap().ends_with(&format!("-{}", HISTORY + 2)));
        assert_eq!(insights.document(&ProxyId::new("default", "db"))["subscriptions"], serde_json::json!([]));
        insights.forget(&web);
        assert_eq!(insights.document(&web)["subscriptions"], serde_json::json!([]));
    }
}
