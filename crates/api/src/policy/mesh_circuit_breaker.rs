//! MeshCircuitBreaker: connection limits and outlier detection (ejecting
//! failing endpoints) for outbound and inbound traffic.

use serde_json::Value;

use super::{
    DESTINATION_KINDS, MESH_ONLY, PERCENT_INT, POSITIVE_DECIMAL, POSITIVE_DURATION, POSITIVE_UINT32, TOP_KINDS,
    require_a_section, rules_replace,
};
use crate::schema::{Schema, optional, required};
use crate::violations::{FieldPath, Violations};

const CONNECTION_LIMITS: Schema = Schema::Object(&[
    optional("maxConnections", POSITIVE_UINT32),
    optional("maxConnectionPools", POSITIVE_UINT32),
    optional("maxPendingRequests", POSITIVE_UINT32),
    optional("maxRetries", POSITIVE_UINT32),
    optional("maxRequests", POSITIVE_UINT32),
]);

/// Eject after this many consecutive errors of one class.
const CONSECUTIVE: Schema = Schema::Object(&[optional("consecutive", POSITIVE_UINT32)]);

const DETECTORS: Schema = Schema::AtLeastOneOf(
    &["totalFailures", "gatewayFailures", "localOriginFailures", "successRate", "failurePercentage"],
    &Schema::Object(&[
        optional("totalFailures", CONSECUTIVE),
        optional("gatewayFailures", CONSECUTIVE),
        optional("localOriginFailures", CONSECUTIVE),
        optional(
            "successRate",
            Schema::Object(&[
                optional("minimumHosts", POSITIVE_UINT32),
                optional("requestVolume", POSITIVE_UINT32),
                optional("standardDeviationFactor", POSITIVE_DECIMAL),
            ]),
        ),
        optional(
            "failurePercentage",
            Schema::Object(&[
                optional("minimumHosts", POSITIVE_UINT32),
                optional("requestVolume", POSITIVE_UINT32),
                optional("threshold", PERCENT_INT),
            ]),
        ),
    ]),
);

const OUTLIER_DETECTION: Schema = Schema::Object(&[
    optional("disabled", Schema::Bool),
    optional("interval", POSITIVE_DURATION),
    optional("baseEjectionTime", POSITIVE_DURATION),
    optional("maxEjectionPercent", PERCENT_INT),
    optional("splitExternalAndLocalErrors", Schema::Bool),
    required("detectors", DETECTORS),
    optional("healthyPanicThreshold", Schema::Percentage),
]);

const CONF: Schema = Schema::AtLeastOneOf(
    &["connectionLimits", "outlierDetection"],
    &Schema::Object(&[
        optional("connectionLimits", CONNECTION_LIMITS),
        optional("outlierDetection", OUTLIER_DETECTION),
    ]),
);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[
        optional("targetRef", Schema::TargetRef(TOP_KINDS)),
        optional("to", Schema::List(&section!(DESTINATION_KINDS, CONF))),
        optional("from", Schema::List(&section!(MESH_ONLY, CONF))),
        optional("rules", Schema::List(&Schema::Object(&[required("default", CONF)]))),
    ]),
    spec_rules,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);

fn spec_rules(spec: &Value, path: &FieldPath, out: &mut Violations) {
    require_a_section(spec, path, out, &["to", "from", "rules"]);
    rules_replace(spec, path, out, &["to", "from"]);
}
