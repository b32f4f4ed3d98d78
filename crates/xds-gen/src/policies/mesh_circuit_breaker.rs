//! MeshCircuitBreaker: its conf and its effect on Envoy resources.
//!
//! Connection limits become the cluster's default-priority circuit breaker
//! thresholds; outlier detection (passive health checking) ejects the
//! endpoints that keep failing. The same conf shape serves `to` (the
//! outbound service cluster) and `from`/`rules` (the inbound cluster).
//!
//! The small readers at the bottom (`uint32`, `duration`, [`Decimal`]) are
//! shared by the other policy modules of this folder.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::circuit_breakers::Thresholds;
use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlierDetection,
};
use envoy_types::pb::envoy::config::core::v3::RoutingPriority;
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::UInt32Value;
use serde_json::Value;

use crate::envoy;

/// The typed reading of a merged MeshCircuitBreaker `default`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Conf {
    pub connection_limits: Option<ConnectionLimits>,
    pub outlier_detection: Option<OutlierDetection>,
}

/// Limits on what a proxy opens toward one cluster; an absent limit keeps
/// Envoy's default (1024 connections, pending requests and requests, 3
/// parallel retries, unlimited connection pools).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ConnectionLimits {
    pub max_connections: Option<u32>,
    pub max_connection_pools: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
}

/// Passive health checking: endpoints whose answers keep failing are
/// ejected for a while. An absent field keeps Envoy's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OutlierDetection {
    /// `true`: the whole section has no effect.
    pub disabled: bool,
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    pub max_ejection_percent: Option<u32>,
    pub split_external_and_local_errors: Option<bool>,
    pub detectors: Detectors,
    /// Below this share of healthy endpoints the cluster ignores health
    /// (panic mode); Envoy's default is 50, 0 turns panic mode off.
    pub healthy_panic_threshold: Option<Decimal>,
}

/// The outlier detectors; each one absent is switched off in Envoy (where
/// Envoy would otherwise enforce some by default), except that success rate
/// and failure percentage keep Envoy's defaults when `detectors` is absent
/// altogether.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Detectors {
    /// Whether the `detectors` object was given at all.
    pub present: bool,
    /// `totalFailures.consecutive`: 5xx answers (or connection failures) in a row.
    pub total_failures: Option<u32>,
    /// `gatewayFailures.consecutive`: 502, 503 or 504 answers in a row.
    pub gateway_failures: Option<u32>,
    /// `localOriginFailures.consecutive`: local errors (timeouts, resets) in
    /// a row, counted apart only with `splitExternalAndLocalErrors`.
    pub local_origin_failures: Option<u32>,
    pub success_rate: Option<SuccessRate>,
    pub failure_percentage: Option<FailurePercentage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SuccessRate {
    pub minimum_hosts: Option<u32>,
    pub request_volume: Option<u32>,
    pub standard_deviation_factor: Option<Decimal>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FailurePercentage {
    pub minimum_hosts: Option<u32>,
    pub request_volume: Option<u32>,
    pub threshold: Option<u32>,
}

/// Reads a merged `default` object; fields that are missing or malformed
/// (the schema refuses those before a conf is merged) are left unset.
pub fn read(conf: &Value) -> Conf {
    Conf {
        connection_limits: object(conf, "connectionLimits").map(|limits| ConnectionLimits {
            max_connections: uint32(limits, "maxConnections"),
            max_connection_pools: uint32(limits, "maxConnectionPools"),
            max_pending_requests: uint32(limits, "maxPendingRequests"),
            max_requests: uint32(limits, "maxRequests"),
            max_retries: uint32(limits, "maxRetries"),
        }),
        outlier_detection: object(conf, "outlierDetection").map(|outlier| OutlierDetection {
            disabled: boolean(outlier, "disabled").unwrap_or(false),
            interval: duration(outlier, "interval"),
            base_ejection_time: duration(outlier, "baseEjectionTime"),
            max_ejection_percent: uint32(outlier, "maxEjectionPercent"),
            split_external_and_local_errors: boolean(outlier, "splitExternalAndLocalErrors"),
            detectors: read_detectors(object(outlier, "detectors")),
            healthy_panic_threshold: Decimal::read(outlier, "healthyPanicThreshold"),
        }),
    }
}

fn read_detectors(detectors: Option<&Value>) -> Detectors {
    let Some(detectors) = detectors else { return Detectors::default() };
    let consecutive = |name: &str| object(detectors, name).and_then(|detector| uint32(detector, "consecutive"));
    Detectors {
        present: true,
        total_failures: consecutive("totalFailures"),
        gateway_failures: consecutive("gatewayFailures"),
        local_origin_failures: consecutive("localOriginFailures"),
        success_rate: object(detectors, "successRate").map(|rate| SuccessRate {
            minimum_hosts: uint32(rate, "minimumHosts"),
            request_volume: uint32(rate, "requestVolume"),
            standard_deviation_factor: Decimal::read(rate, "standardDeviationFactor"),
        }),
        failure_percentage: object(detectors, "failurePercentage").map(|failure| FailurePercentage {
            minimum_hosts: uint32(failure, "minimumHosts"),
            request_volume: uint32(failure, "requestVolume"),
            threshold: uint32(failure, "threshold"),
        }),
    }
}

/// Lays `conf` on a cluster: the outbound service cluster for a `to` conf,
/// the inbound cluster for a `from`/`rules` conf.
///
/// Every cluster's default threshold tracks its remaining capacity (stats
/// `remaining_*`), with or without limits, so `Conf::default()` may be
/// applied to clusters no policy covers. Outlier detection replaces any the
/// cluster had, unless it is absent or `disabled`.
pub fn apply_to_cluster(conf: &Conf, cluster: &mut Cluster) {
    let threshold = default_threshold(cluster);
    threshold.track_remaining = true;
    if let Some(limits) = &conf.connection_limits {
        let set = |field: &mut Option<UInt32Value>, value: Option<u32>| {
            if let Some(value) = value {
                *field = Some(UInt32Value { value });
            }
        };
        set(&mut threshold.max_connections, limits.max_connections);
        set(&mut threshold.max_connection_pools, limits.max_connection_pools);
        set(&mut threshold.max_pending_requests, limits.max_pending_requests);
        set(&mut threshold.max_requests, limits.max_requests);
        set(&mut threshold.max_retries, limits.max_retries);
    }
    let Some(outlier) = conf.outlier_detection.as_ref().filter(|outlier| !outlier.disabled) else { return };
    cluster.outlier_detection = Some(outlier_detection(outlier));
    if let Some(threshold) = &outlier.healthy_panic_threshold {
        set_healthy_panic_threshold(cluster, threshold);
    }
}

/// The thresholds of the default routing priority, added when missing.
fn default_threshold(cluster: &mut Cluster) -> &mut Thresholds {
    let thresholds = &mut cluster.circuit_breakers.get_or_insert_with(CircuitBreakers::default).thresholds;
    let default = RoutingPriority::Default as i32;
    let index = match thresholds.iter().position(|threshold| threshold.priority == default) {
        Some(index) => index,
        None => {
            thresholds.push(Thresholds { priority: default, ..Default::default() });
            thresholds.len() - 1
        }
    };
    &mut thresholds[index]
}

/// Envoy enforces some detectors by default (consecutive 5xx, gateway
/// failures with split errors, success rate); each detector the conf leaves
/// out is set to enforce 0 % so only the listed ones eject.
fn outlier_detection(outlier: &OutlierDetection) -> EnvoyOutlierDetection {
    const ON: Option<UInt32Value> = Some(UInt32Value { value: 100 });
    const OFF: Option<UInt32Value> = Some(UInt32Value { value: 0 });
    let uint = |value: Option<u32>| value.map(|value| UInt32Value { value });
    let detectors = &outlier.detectors;
    let mut envoy = EnvoyOutlierDetection {
        interval: outlier.interval.map(envoy::duration),
        base_ejection_time: outlier.base_ejection_time.map(envoy::duration),
        max_ejection_percent: uint(outlier.max_ejection_percent),
        split_external_local_origin_errors: outlier.split_external_and_local_errors.unwrap_or(false),
        enforcing_consecutive_5xx: if detectors.total_failures.is_some() { ON } else { OFF },
        consecutive_5xx: uint(detectors.total_failures),
        enforcing_consecutive_local_origin_failure: if detectors.local_origin_failures.is_some() { ON } else { OFF },
        consecutive_local_origin_failure: uint(detectors.local_origin_failures),
        enforcing_consecutive_gateway_failure: if detectors.gateway_failures.is_some() { ON } else { OFF },
        consecutive_gateway_failure: uint(detectors.gateway_failures),
        ..Default::default()
    };
    if !detectors.present {
        return envoy;
    }
    match &detectors.success_rate {
        Some(rate) => {
            (envoy.enforcing_success_rate, envoy.enforcing_local_origin_success_rate) = (ON, ON);
            envoy.success_rate_minimum_hosts = uint(rate.minimum_hosts);
            envoy.success_rate_request_volume = uint(rate.request_volume);
            // Envoy reads the factor in thousandths (1900 is 1.9).
            envoy.success_rate_stdev_factor = uint(rate.standard_deviation_factor.as_ref().map(Decimal::thousandths));
        }
        None => (envoy.enforcing_success_rate, envoy.enforcing_local_origin_success_rate) = (OFF, OFF),
    }
    match &detectors.failure_percentage {
        Some(failure) => {
            (envoy.enforcing_failure_percentage, envoy.enforcing_failure_percentage_local_origin) = (ON, ON);
            envoy.failure_percentage_minimum_hosts = uint(failure.minimum_hosts);
            envoy.failure_percentage_request_volume = uint(failure.request_volume);
            envoy.failure_percentage_threshold = uint(failure.threshold);
        }
        None => (envoy.enforcing_failure_percentage, envoy.enforcing_failure_percentage_local_origin) = (OFF, OFF),
    }
    envoy
}

/// Sets the cluster's panic threshold (a percentage; 0 turns panic mode off).
pub(crate) fn set_healthy_panic_threshold(cluster: &mut Cluster, threshold: &Decimal) {
    let common = cluster.common_lb_config.get_or_insert_with(Default::default);
    common.healthy_panic_threshold = Some(Percent { value: threshold.as_f64() });
}

/// A non-negative decimal from a manifest (`12.5`, `"12.5"`, `50`), kept
/// exactly to the millionth so confs stay comparable and hashable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Decimal {
    pub millionths: u64,
}

impl Decimal {
    /// The decimal in field `key` of `object`, a number or a decimal string.
    pub(crate) fn read(object: &Value, key: &str) -> Option<Decimal> {
        match object.get(key)? {
            Value::Number(number) => Decimal::parse(&number.to_string()),
            Value::String(text) => Decimal::parse(text.trim()),
            _ => None,
        }
    }

    /// Digits after the sixth decimal are dropped; negative or malformed
    /// text is `None`.
    pub fn parse(text: &str) -> Option<Decimal> {
        let text = text.strip_prefix('+').unwrap_or(text);
        if text.contains(['e', 'E']) {
            let value: f64 = text.parse().ok()?;
            return (value.is_finite() && value >= 0.0).then(|| Decimal { millionths: (value * 1e6).round() as u64 });
        }
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
            return None;
        }
        let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let fraction: String = fraction.chars().chain(std::iter::repeat('0')).take(6).collect();
        let millionths = whole.checked_mul(1_000_000)?.checked_add(fraction.parse().ok()?)?;
        Some(Decimal { millionths })
    }

    pub fn as_f64(&self) -> f64 {
        self.millionths as f64 / 1e6
    }

    /// The value times 1000, the fraction beyond dropped.
    pub fn thousandths(&self) -> u32 {
        u32::try_from(self.millionths / 1000).unwrap_or(u32::MAX)
    }
}

/// The object in field `key`, if it is one.
pub(crate) fn object<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.get(key).filter(|field| field.is_object())
}

pub(crate) fn uint32(value: &Value, key: &str) -> Option<u32> {
    value.get(key).and_then(Value::as_u64).and_then(|number| u32::try_from(number).ok())
}

pub(crate) fn boolean(value: &Value, key: &str) -> Option<bool> {
    value.get(key).and_then(Value::as_bool)
}

pub(crate) fn string(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// A Go-style duration (`300ms`, `1m30s`).
pub(crate) fn duration(value: &Value, key: &str) -> Option<Duration> {
    value.get(key).and_then(Value::as_str).and_then(|text| kodiak_api::duration::parse_duration(text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render;
    use kodiak_xds_server::Resource;
    use serde_json::json;

    fn applied(conf: Value) -> Value {
        let mut cluster = Cluster { name: "backend".into(), ..Default::default() };
        apply_to_cluster(&read(&conf), &mut cluster);
        render(&Resource::new("backend", &cluster))
    }

    #[test]
    fn reads_every_field() {
        let conf = read(&json!({
            "connectionLimits": {"maxConnections": 2, "maxConnectionPools": 3, "maxPendingRequests": 4,
                "maxRequests": 5, "maxRetries": 6},
            "outlierDetection": {"disabled": false, "interval": "5s", "baseEjectionTime": "30s",
                "maxEjectionPercent": 20, "splitExternalAndLocalErrors": true, "healthyPanicThreshold": "12.5",
                "detectors": {"totalFailures": {"consecutive": 10}, "gatewayFailures": {"consecutive": 7},
                    "localOriginFailures": {"consecutive": 3},
                    "successRate": {"minimumHosts": 5, "requestVolume": 100, "standardDeviationFactor": "1.9"},
                    "failurePercentage": {"minimumHosts": 6, "requestVolume": 50, "threshold": 85}}}
        }));
        assert_eq!(
            conf,
            Conf {
                connection_limits: Some(ConnectionLimits {
                    max_connections: Some(2),
                    max_connection_pools: Some(3),
                    max_pending_requests: Some(4),
                    max_requests: Some(5),
                    max_retries: Some(6),
                }),
                outlier_detection: Some(OutlierDetection {
                    disabled: false,
                    interval: Some(Duration::from_secs(5)),
                    base_ejection_time: Some(Duration::from_secs(30)),
                    max_ejection_percent: Some(20),
                    split_external_and_local_errors: Some(true),
                    healthy_panic_threshold: Some(Decimal { millionths: 12_500_000 }),
                    detectors: Detectors {
                        present: true,
                        total_failures: Some(10),
                        gateway_failures: Some(7),
                        local_origin_failures: Some(3),
                        success_rate: Some(SuccessRate {
                            minimum_hosts: Some(5),
                            request_volume: Some(100),
                            standard_deviation_factor: Some(Decimal { millionths: 1_900_000 }),
                        }),
                        failure_percentage: Some(FailurePercentage {
                            minimum_hosts: Some(6),
                            request_volume: Some(50),
                            threshold: Some(85),
                        }),
                    },
                }),
            }
        );
    }

    #[test]
    fn reads_an_empty_or_odd_conf_as_nothing_set() {
        assert_eq!(read(&json!({})), Conf::default());
        assert_eq!(read(&json!(null)), Conf::default());
        let odd = read(&json!({"connectionLimits": {"maxConnections": -1, "maxRequests": "x"},
            "outlierDetection": "yes"}));
        assert_eq!(odd, Conf { connection_limits: Some(ConnectionLimits::default()), outlier_detection: None });
    }

    #[test]
    fn decimals_are_exact() {
        for (text, millionths) in [("1.9", 1_900_000), ("50", 50_000_000), (".5", 500_000), ("0.0000019", 1)] {
            assert_eq!(Decimal::parse(text), Some(Decimal { millionths }), "{text}");
        }
        for bad in ["", ".", "-1", "1.2.3", "abc", "1,5"] {
            assert_eq!(Decimal::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Decimal::read(&json!({"x": 1.9}), "x").unwrap().thousandths(), 1900);
        assert_eq!(Decimal::read(&json!({"x": 1e2}), "x").unwrap().as_f64(), 100.0);
    }

    #[test]
    fn no_conf_only_tracks_remaining() {
        assert_eq!(
            applied(json!({})),
            json!({"name": "backend", "circuitBreakers": {"thresholds": [{"trackRemaining": true}]}})
        );
    }

    #[test]
    fn limits_become_the_default_threshold() {
        let limits = json!({"connectionLimits": {"maxConnections": 2, "maxConnectionPools": 3,
            "maxPendingRequests": 4, "maxRequests": 5, "maxRetries": 6}});
        assert_eq!(
            applied(limits)["circuitBreakers"],
            json!({"thresholds": [{"maxConnections": 2, "maxPendingRequests": 4, "maxRequests": 5, "maxRetries": 6,
                "trackRemaining": true, "maxConnectionPools": 3}]})
        );
        // A high-priority threshold is left alone; the default one is added beside it.
        let mut cluster = Cluster::default();
        let high = Thresholds { priority: RoutingPriority::High as i32, ..Default::default() };
        cluster.circuit_breakers = Some(CircuitBreakers { thresholds: vec![high], ..Default::default() });
        apply_to_cluster(&read(&json!({"connectionLimits": {"maxRequests": 1}})), &mut cluster);
        let thresholds = &cluster.circuit_breakers.unwrap().thresholds;
        assert_eq!(thresholds.len(), 2);
        assert_eq!((thresholds[0].max_requests, thresholds[1].max_requests), (None, Some(UInt32Value { value: 1 })));
    }

    #[test]
    fn outlier_detection_switches_off_what_it_does_not_list() {
        let conf = json!({"outlierDetection": {"interval": "5s", "baseEjectionTime": "30s", "maxEjectionPercent": 20,
            "detectors": {"totalFailures": {"consecutive": 3}}}});
        assert_eq!(
            applied(conf)["outlierDetection"],
            json!({"consecutive5xx": 3, "interval": "5s", "baseEjectionTime": "30s", "maxEjectionPercent": 20,
                "enforcingConsecutive5xx": 100, "enforcingSuccessRate": 0, "enforcingConsecutiveGatewayFailure": 0,
                "enforcingConsecutiveLocalOriginFailure": 0, "enforcingLocalOriginSuccessRate": 0,
                "enforcingFailurePercentage": 0, "enforcingFailurePercentageLocalOrigin": 0})
        );
    }

    #[test]
    fn every_detector_and_the_panic_threshold() {
        let conf = json!({"outlierDetection": {"splitExternalAndLocalErrors": true, "healthyPanicThreshold": "12.5",
            "detectors": {"gatewayFailures": {"consecutive": 7}, "localOriginFailures": {"consecutive": 2},
                "successRate": {"minimumHosts": 5, "requestVolume": 100, "standardDeviationFactor": 1.9},
                "failurePercentage": {"minimumHosts": 6, "requestVolume": 50, "threshold": 85}}}});
        let cluster = applied(conf);
        assert_eq!(
            cluster["outlierDetection"],
            json!({"enforcingConsecutive5xx": 0, "enforcingSuccessRate": 100, "successRateMinimumHosts": 5,
                "successRateRequestVolume": 100, "successRateStdevFactor": 1900, "consecutiveGatewayFailure": 7,
                "enforcingConsecutiveGatewayFailure": 100, "splitExternalLocalOriginErrors": true,
                "consecutiveLocalOriginFailure": 2, "enforcingConsecutiveLocalOriginFailure": 100,
                "enforcingLocalOriginSuccessRate": 100, "failurePercentageThreshold": 85,
                "enforcingFailurePercentage": 100, "enforcingFailurePercentageLocalOrigin": 100,
                "failurePercentageMinimumHosts": 6, "failurePercentageRequestVolume": 50})
        );
        assert_eq!(cluster["commonLbConfig"], json!({"healthyPanicThreshold": {"value": 12.5}}));
    }

    #[test]
    fn without_detectors_rate_based_ones_keep_envoy_defaults() {
        let cluster = applied(json!({"outlierDetection": {"interval": "1s"}}));
        assert_eq!(
            cluster["outlierDetection"],
            json!({"interval": "1s", "enforcingConsecutive5xx": 0, "enforcingConsecutiveGatewayFailure": 0,
                "enforcingConsecutiveLocalOriginFailure": 0})
        );
    }

    #[test]
    fn disabled_outlier_detection_does_nothing() {
        let conf = json!({"outlierDetection": {"disabled": true, "healthyPanicThreshold": 0,
            "detectors": {"totalFailures": {"consecutive": 3}}}});
        let cluster = applied(conf);
        assert_eq!(cluster.get("outlierDetection"), None);
        assert_eq!(cluster.get("commonLbConfig"), None);
        // A panic threshold of 0 (panic mode off) is set, not dropped.
        let off = applied(json!({"outlierDetection": {"healthyPanicThreshold": 0}}));
        assert_eq!(off["commonLbConfig"], json!({"healthyPanicThreshold": {}}));
    }
}
