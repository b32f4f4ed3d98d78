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

const MTLS: Schema = Schema::Check(
    &backend_section!("enabledBackend", CA_BACKEND, optional("skipValidation", Schema::Bool)),
    check_backend_count,
);

/// How many CA backends a mesh may list. A second backend would only matter
/// for a CA rotation, which needs both roots trusted at once; until then one.
pub const MAX_CA_BACKENDS: usize = 1;

fn check_backend_count(value: &Value, path: &FieldPath, out: &mut Violations) {
    let count = value.get("backends").and_then(Value::as_array).map_or(0, Vec::len);
    if count > MAX_CA_BACKENDS {
        out.add(
            &path.field("backends"),
            format!(
                "cannot have more than {MAX_CA_BACKENDS} backends (found {count}); to change the CA, disable mTLS (enabledBackend: \"\"), replace the backend, then enable it again"
            ),
        );
    }
}

/// A certificate authority: `builtin` (the control plane generates and
/// keeps the root) or `provided` (the user supplies certificate and key).
const CA_BACKEND: Schema = Schema::Check(
    &Schema::Object(&[
        required("name", BACKEND_NAME),
        required("type", Schema::Enum(&["builtin", "provided"])),
        optional(
            "dpCert",
            // A dpCert section must say how long certificates live.
            Schema::Object(&[
                required("rotation", Schema::Object(&[required("expiration", CERT_DURATION)])),
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
    Schema::Object(&[optional("RSAbits", RSA_BITS), optional("expiration", CERT_DURATION)]),
)]);

/// The RSA key sizes the builtin CA can generate; 0 means the default, 2048.
pub const RSA_KEY_SIZES: [u32; 3] = [2048, 3072, 4096];

const RSA_BITS: Schema = Schema::Check(&Schema::Int { min: 0, max: u32::MAX as i64 }, |value, path, out| {
    let bits = value.as_u64().unwrap_or_default();
    if bits != 0 && !RSA_KEY_SIZES.iter().any(|size| u64::from(*size) == bits) {
        out.add(path, format!("must be 0 (the default, 2048), 2048, 3072 or 4096, got {bits}"));
    }
});

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

/// The name of the Secret (in the mesh) that holds the root certificate of
/// the `builtin` CA backend `backend`, in PEM.
pub fn builtin_cert_secret(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-cert-{backend}")
}

/// The name of the Secret (in the mesh) that holds the private key of the
/// `builtin` CA backend `backend`, in PEM.
pub fn builtin_key_secret(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-key-{backend}")
}

/// How long workload certificates live when a backend has no `dpCert`.
pub const DEFAULT_WORKLOAD_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How long a builtin root CA lives when `caCert.expiration` is not given.
pub const DEFAULT_ROOT_CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A validated Mesh's `mtls` section, typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MtlsView {
    /// The enabled backend's name; `None` when mTLS is off.
    pub enabled_backend: Option<String>,
    /// `skipValidation`: a provided CA is not checked when the Mesh is stored.
    pub skip_validation: bool,
    pub backends: Vec<CaBackendView>,
}

/// One CA backend of a Mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBackendView {
    pub name: String,
    pub kind: CaKind,
    pub mode: MtlsMode,
    /// `dpCert.rotation.expiration`, or 24 h (a zero duration counts as unset).
    pub workload_cert_lifetime: Duration,
}

/// Where a backend's root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaKind {
    /// Generated by the control plane and kept in two Secrets of the mesh.
    Builtin {
        /// `caCert.RSAbits` (0 read as 2048); `None` means an ECDSA P-256 root.
        rsa_bits: Option<u32>,
        /// `caCert.expiration`, or 10 years.
        lifetime: Duration,
    },
    /// The user's CA certificate and key.
    Provided { cert: DataSource, key: DataSource },
}

/// Whether inbounds also accept plaintext while mTLS is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MtlsMode {
    /// Only mesh mTLS is accepted (the default).
    #[default]
    Strict,
    /// Mesh mTLS and plaintext are both accepted.
    Permissive,
}

/// Where a provided CA's bytes are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A Secret of the same mesh, by name.
    Secret(String),
    /// A file on the control plane's machine.
    File(String),
    /// Base64 text of the bytes.
    Inline(String),
    /// The text itself.
    InlineString(String),
}

impl DataSource {
    fn read(value: &Value) -> Option<DataSource> {
        let text = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_owned);
        text("secret")
            .map(DataSource::Secret)
            .or_else(|| text("file").map(DataSource::File))
            .or_else(|| text("inline").map(DataSource::Inline))
            .or_else(|| text("inlineString").map(DataSource::InlineString))
    }
}

impl MtlsView {
    /// Reads the `mtls` section of a validated Mesh body (empty when absent).
    pub fn of(mesh_body: &serde_json::Map<String, Value>) -> MtlsView {
        let Some(mtls) = mesh_body.get("mtls") else { return MtlsView::default() };
        let enabled_backend =
            mtls.get("enabledBackend").and_then(Value::as_str).filter(|name| !name.is_empty()).map(str::to_owned);
        let backends = mtls.get("backends").and_then(Value::as_array).into_iter().flatten();
        MtlsView {
            enabled_backend,
            skip_validation: mtls.get("skipValidation").and_then(Value::as_bool).unwrap_or(false),
            backends: backends.filter_map(CaBackendView::read).collect(),
        }
    }

    /// The enabled backend, when mTLS is on.
    pub fn enabled(&self) -> Option<&CaBackendView> {
        let name = self.enabled_backend.as_deref()?;
        self.backends.iter().find(|backend| backend.name == name)
    }

    /// The names of the mesh Secrets `backend` reads: the builtin CA's two, or
    /// the provided CA's `secret` sources.
    pub fn secrets_of(mesh: &str, backend: &CaBackendView) -> Vec<String> {
        match &backend.kind {
            CaKind::Builtin { .. } => {
                vec![builtin_cert_secret(mesh, &backend.name), builtin_key_secret(mesh, &backend.name)]
            }
            CaKind::Provided { cert, key } => [cert, key]
                .into_iter()
                .filter_map(|source| match source {
                    DataSource::Secret(name) => Some(name.clone()),
                    _ => None,
                })
                .collect(),
        }
    }
}

impl CaBackendView {
    fn read(value: &Value) -> Option<CaBackendView> {
        let name = value.get("name")?.as_str()?.to_owned();
        let conf = value.get("conf");
        let kind = match value.get("type")?.as_str()? {
            "builtin" => {
                let ca_cert = conf.and_then(|conf| conf.get("caCert"));
                let field = |name: &str| ca_cert.and_then(|ca_cert| ca_cert.get(name));
                CaKind::Builtin {
                    rsa_bits: field("RSAbits")
                        .and_then(Value::as_u64)
                        .map(|bits| if bits == 0 { 2048 } else { u32::try_from(bits).unwrap_or(u32::MAX) }),
                    lifetime: field("expiration")
                        .and_then(Value::as_str)
                        .and_then(|text| parse_cert_duration(text).ok())
                        .filter(|lifetime| !lifetime.is_zero())
                        .unwrap_or(DEFAULT_ROOT_CA_LIFETIME),
                }
            }
            "provided" => CaKind::Provided {
                cert: DataSource::read(conf?.get("cert")?)?,
                key: DataSource::read(conf?.get("key")?)?,
            },
            _ => return None,
        };
        let mode = match value.get("mode").and_then(Value::as_str) {
            Some("PERMISSIVE") => MtlsMode::Permissive,
            _ => MtlsMode::Strict,
        };
        let workload_cert_lifetime = value
            .pointer("/dpCert/rotation/expiration")
            .and_then(Value::as_str)
            .and_then(|text| parse_cert_duration(text).ok())
            .filter(|lifetime| !lifetime.is_zero())
            .unwrap_or(DEFAULT_WORKLOAD_CERT_LIFETIME);
        Some(CaBackendView { name, kind, mode, workload_cert_lifetime })
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

    fn mtls(yaml: &str) -> MtlsView {
        let document = crate::parse_document(yaml).unwrap();
        MtlsView::of(&crate::Resource::from_document(&document).unwrap().body)
    }

    #[test]
    fn the_mtls_view_applies_the_defaults() {
        let view = mtls("{type: Mesh, name: m, mtls: {enabledBackend: ca-1, backends: [{name: ca-1, type: builtin}]}}");
        assert_eq!(
            view.enabled(),
            Some(&CaBackendView {
                name: "ca-1".into(),
                kind: CaKind::Builtin { rsa_bits: None, lifetime: DEFAULT_ROOT_CA_LIFETIME },
                mode: MtlsMode::Strict,
                workload_cert_lifetime: DEFAULT_WORKLOAD_CERT_LIFETIME,
            })
        );
        assert_eq!(MtlsView::secrets_of("m", &view.backends[0]), ["m.ca-builtin-cert-ca-1", "m.ca-builtin-key-ca-1"]);
        assert_eq!(mtls("{type: Mesh, name: m}"), MtlsView::default());
        let off = mtls("{type: Mesh, name: m, mtls: {enabledBackend: '', backends: [{name: ca-1, type: builtin}]}}");
        assert_eq!(off.enabled(), None);
    }

    #[test]
    fn the_mtls_view_reads_every_setting() {
        let view = mtls(
            "{type: Mesh, name: m, mtls: {enabledBackend: ca-2, skipValidation: true, backends: [
               {name: ca-2, type: provided, mode: PERMISSIVE, dpCert: {rotation: {expiration: 10s}},
                conf: {cert: {secret: c}, key: {inlineString: k}}}]}}",
        );
        assert!(view.skip_validation);
        let backend = view.enabled().unwrap();
        assert_eq!(backend.mode, MtlsMode::Permissive);
        assert_eq!(backend.workload_cert_lifetime, Duration::from_secs(10));
        assert_eq!(
            backend.kind,
            CaKind::Provided { cert: DataSource::Secret("c".into()), key: DataSource::InlineString("k".into()) }
        );
        assert_eq!(MtlsView::secrets_of("m", backend), ["c"]);
        let rsa = mtls(
            "{type: Mesh, name: m, mtls: {backends: [{name: a, type: builtin, conf: {caCert: {RSAbits: 0, expiration: 1y}}}]}}",
        );
        assert_eq!(
            rsa.backends[0].kind,
            CaKind::Builtin { rsa_bits: Some(2048), lifetime: Duration::from_secs(365 * 86_400) }
        );
    }
}
