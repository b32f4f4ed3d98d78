//! Mesh: a set of proxies that share a certificate authority (mTLS), and
//! the mesh-wide logging, tracing, metrics, routing and membership
//! settings. Fields and rules follow Kuma 2.x's `Mesh`.

use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

use crate::address::{HOST_PORT, URL_PATH, URL_WITH_PORT};
use crate::resource_type::ResourceType;
use crate::rules::{check_backend_section, check_conf_by_type, check_unique};
use crate::schema::{Schema, optional, required};
use crate::secret::BASE64;
use crate::tags::SELECTOR;
use crate::violations::{FieldPath, Violations};

pub const SCHEMA: Schema = Schema::Check(
    &Schema::Object(&[
        optional("mtls", MTLS),
        optional("tracing", TRACING),
        optional("logging", LOGGING),
        optional("metrics", METRICS),
        optional("networking", NETWORKING),
        optional("routing", ROUTING),
        optional("constraints", CONSTRAINTS),
        optional("skipCreatingInitialPolicies", Schema::List(&INITIAL_POLICY)),
        optional("meshServices", MESH_SERVICES),
    ]),
    check_zone_egress,
);

/// A section that lists named `backends` and picks one of them by name in
/// its `$selector` field (`enabledBackend`, `defaultBackend`).
macro_rules! backend_section {
    ($selector:literal, $backend:expr $(, $extra:expr)*) => {
        Schema::Check(
            &Schema::Object(&[
                optional($selector, Schema::String),
                optional("backends", Schema::List(&$backend)),
                $($extra,)*
            ]),
            |value, path, out| check_backend_section(value, $selector, path, out),
        )
    };
}

const MTLS: Schema = backend_section!("enabledBackend", CA_BACKEND, optional("skipValidation", Schema::Bool));

/// A certificate authority: `builtin` (the control plane generates and
/// keeps the root) or `provided` (the user supplies certificate and key).
const CA_BACKEND: Schema = Schema::Check(
    &Schema::Object(&[
        required("name", BACKEND_NAME),
        required("type", Schema::Enum(&["builtin", "provided"])),
        optional(
            "dpCert",
            Schema::Object(&[
                optional("rotation", Schema::Object(&[optional("expiration", CERT_DURATION)])),
                optional("requestTimeout", Schema::Duration),
            ]),
        ),
        optional("conf", Schema::Any),
        optional("mode", Schema::Enum(&["STRICT", "PERMISSIVE"])),
        optional("rootChain", Schema::Object(&[optional("requestTimeout", Schema::Duration)])),
    ]),
    |value, path, out| check_conf_by_type(value, &[("builtin", &BUILTIN_CA), ("provided", &PROVIDED_CA)], path, out),
);

/// A CA backend name ends up in the names of the secrets that hold its
/// root, so it follows the resource naming rules.
const BACKEND_NAME: Schema = Schema::Check(&Schema::String, |value, path, out| {
    if let Err(reason) = crate::name::check_name(value.as_str().unwrap_or_default()) {
        out.add(path, reason);
    }
});

const BUILTIN_CA: Schema = Schema::Object(&[optional(
    "caCert",
    Schema::Object(&[optional("RSAbits", Schema::Int { min: 2048, max: 8192 }), optional("expiration", CERT_DURATION)]),
)]);

const PROVIDED_CA: Schema = Schema::Object(&[required("cert", DATA_SOURCE), required("key", DATA_SOURCE)]);

/// Where to read bytes from: a Secret of the mesh, a file on the control
/// plane, base64 bytes, or a plain string.
pub const DATA_SOURCE: Schema = Schema::ExactlyOneOf(
    &["secret", "file", "inline", "inlineString"],
    &Schema::Object(&[
        optional("secret", Schema::NonEmptyString),
        optional("file", Schema::NonEmptyString),
        optional("inline", BASE64),
        optional("inlineString", Schema::NonEmptyString),
    ]),
);

/// Certificate lifetimes use Kuma's own duration form: a whole number and
/// one unit of `y`, `w`, `d`, `h`, `m`, `s` or `ms` (`1y`, `30d`, `24h`).
const CERT_DURATION: Schema = Schema::Check(&Schema::String, |value, path, out| {
    if let Err(reason) = parse_cert_duration(value.as_str().unwrap_or_default()) {
        out.add(path, reason);
    }
});

pub fn parse_cert_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let seconds_per_unit: u64 = match unit {
        "y" => 365 * 86_400,
        "w" => 7 * 86_400,
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        "ms" => {
            return number.parse().map(Duration::from_millis).map_err(|_| cert_duration_error(text));
        }
        _ => return Err(cert_duration_error(text)),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(seconds_per_unit))
        .map(Duration::from_secs)
        .ok_or_else(|| cert_duration_error(text))
}

fn cert_duration_error(text: &str) -> String {
    format!(
        "{text:?} is not a certificate duration: expected a whole number and one unit of y, w, d, h, m, s or ms (such as 1y, 30d or 24h)"
    )
}

const TRACING: Schema = backend_section!("defaultBackend", TRACING_BACKEND);

const TRACING_BACKEND: Schema = Schema::Check(
    &Schema::Object(&[
        required("name", Schema::NonEmptyString),
        optional("sampling", Schema::Number { min: 0.0, max: 100.0 }),
        required("type", Schema::Enum(&["zipkin", "datadog"])),
        optional("conf", Schema::Any),
    ]),
    |value, path, out| check_conf_by_type(value, &[("zipkin", &ZIPKIN), ("datadog", &DATADOG)], path, out),
);

const ZIPKIN: Schema = Schema::Object(&[
    required("url", URL_WITH_PORT),
    optional("traceId128bit", Schema::Bool),
    optional("apiVersion", Schema::Enum(&["httpJsonV1", "httpJson", "httpProto"])),
    optional("sharedSpanContext", Schema::Bool),
]);

const DATADOG: Schema = Schema::Object(&[
    required("address", Schema::NonEmptyString),
    required("port", Schema::Port),
    optional("splitService", Schema::Bool),
]);

const LOGGING: Schema = backend_section!("defaultBackend", LOGGING_BACKEND);

const LOGGING_BACKEND: Schema = Schema::Check(
    &Schema::Object(&[
        required("name", Schema::NonEmptyString),
        optional("format", Schema::String),
        required("type", Schema::Enum(&["file", "tcp"])),
        optional("conf", Schema::Any),
    ]),
    |value, path, out| check_conf_by_type(value, &[("file", &FILE_LOG), ("tcp", &TCP_LOG)], path, out),
);

const FILE_LOG: Schema = Schema::Object(&[required("path", Schema::NonEmptyString)]);

const TCP_LOG: Schema = Schema::Object(&[required("address", HOST_PORT)]);

const METRICS: Schema = backend_section!("enabledBackend", METRICS_BACKEND);

/// A metrics backend; a Dataplane's `metrics` overrides the mesh's with
/// the same shape (usually without a name).
pub const METRICS_BACKEND: Schema = Schema::Check(
    &Schema::Object(&[
        optional("name", Schema::String),
        required("type", Schema::Enum(&["prometheus"])),
        optional("conf", Schema::Any),
    ]),
    |value, path, out| check_conf_by_type(value, &[("prometheus", &PROMETHEUS)], path, out),
);

const PROMETHEUS: Schema = Schema::Check(
    &Schema::Object(&[
        optional("port", Schema::Port),
        optional("path", URL_PATH),
        optional("tags", Schema::Map(&Schema::String)),
        optional("skipMTLS", Schema::Bool),
        optional(
            "aggregate",
            Schema::List(&Schema::Object(&[
                required("name", Schema::NonEmptyString),
                optional("port", Schema::Port),
                optional("path", URL_PATH),
                optional("enabled", Schema::Bool),
                optional("address", Schema::String),
            ])),
        ),
        optional(
            "envoy",
            Schema::Object(&[optional("filterRegex", Schema::String), optional("usedOnly", Schema::Bool)]),
        ),
        optional(
            "tls",
            Schema::Object(&[optional("mode", Schema::Enum(&["activeMTLSBackend", "providedTLS", "disabled"]))]),
        ),
    ]),
    check_prometheus,
);

/// `skipMTLS` is the older spelling of `tls.mode`; both may be given only
/// when they agree.
fn check_prometheus(value: &Value, path: &FieldPath, out: &mut Violations) {
    check_unique(value.get("aggregate"), "name", &path.field("aggregate"), out);
    let (Some(skip), Some(tls)) = (value.get("skipMTLS").and_then(Value::as_bool), value.get("tls")) else {
        return;
    };
    let mode = tls.get("mode").and_then(Value::as_str).unwrap_or("activeMTLSBackend");
    let agree = if skip { mode == "disabled" } else { mode == "activeMTLSBackend" };
    if !agree {
        out.add(path, format!("skipMTLS: {skip} contradicts tls.mode: {mode}; set only tls.mode"));
    }
}

const NETWORKING: Schema =
    Schema::Object(&[optional("outbound", Schema::Object(&[optional("passthrough", Schema::Bool)]))]);

const ROUTING: Schema = Schema::Object(&[
    optional("localityAwareLoadBalancing", Schema::Bool),
    optional("zoneEgress", Schema::Bool),
    optional("defaultForbidMeshExternalServiceAccess", Schema::Bool),
]);

/// Which proxies may join the mesh: one requirement must match, no
/// restriction may.
const CONSTRAINTS: Schema = Schema::Object(&[optional(
    "dataplaneProxy",
    Schema::Object(&[
        optional("requirements", Schema::List(&CONSTRAINT_RULE)),
        optional("restrictions", Schema::List(&CONSTRAINT_RULE)),
    ]),
)]);

const CONSTRAINT_RULE: Schema = Schema::Object(&[required("tags", SELECTOR)]);

const MESH_SERVICES: Schema =
    Schema::Object(&[optional("mode", Schema::Enum(&["Disabled", "Everywhere", "ReachableBackends", "Exclusive"]))]);

/// `*` skips every default policy; otherwise a policy type name.
const INITIAL_POLICY: Schema = Schema::Check(&Schema::NonEmptyString, |value, path, out| {
    let name = value.as_str().unwrap_or_default();
    if name != "*" && !ResourceType::from_str(name).is_ok_and(ResourceType::is_policy) {
        out.add(path, format!("{name:?} is not a policy type; use \"*\" or a name such as MeshTimeout, MeshRetry or MeshCircuitBreaker"));
    }
});

/// Traffic through a zone egress is carried over mesh mTLS, so the mesh
/// needs an enabled CA backend.
fn check_zone_egress(value: &Value, path: &FieldPath, out: &mut Violations) {
    let egress = value.pointer("/routing/zoneEgress").and_then(Value::as_bool).unwrap_or(false);
    let mtls = value.pointer("/mtls/enabledBackend").and_then(Value::as_str).is_some_and(|b| !b.is_empty());
    if egress && !mtls {
        out.add(&path.field("mtls"), "must enable a backend (mtls.enabledBackend) when routing.zoneEgress is on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_durations() {
        assert_eq!(parse_cert_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_cert_duration("1y"), Ok(Duration::from_secs(365 * 86_400)));
        assert_eq!(parse_cert_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_cert_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_cert_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "h", "1h30m", "1.5h", "-1h", "10x", "24 h"] {
            assert!(parse_cert_duration(bad).is_err(), "{bad:?}");
        }
    }
}
