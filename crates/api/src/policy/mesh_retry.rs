//! MeshRetry: how outbound TCP connections, HTTP requests and gRPC calls
//! are retried.

use serde_json::Value;

use super::{
    DESTINATION_OR_ROUTE_KINDS, GATEWAY_DESTINATION_KINDS, HEADER_MATCH, MESH_GATEWAY, MESH_HTTP_ROUTE,
    POSITIVE_DURATION, POSITIVE_UINT32, TOP_KINDS_WITH_ROUTE, UINT32, items, limit_kinds, top_kind,
};
use crate::duration::parse_duration;
use crate::schema::{Schema, optional, required};
use crate::violations::{FieldPath, Violations};

/// Named HTTP retry conditions; a status code such as `"503"` is accepted too.
const HTTP_RETRY_ON: &[&str] = &[
    "5xx",
    "GatewayError",
    "Reset",
    "Retriable4xx",
    "ConnectFailure",
    "EnvoyRatelimited",
    "RefusedStream",
    "Http3PostConnectFailure",
    "HttpMethodConnect",
    "HttpMethodDelete",
    "HttpMethodGet",
    "HttpMethodHead",
    "HttpMethodOptions",
    "HttpMethodPatch",
    "HttpMethodPost",
    "HttpMethodPut",
    "HttpMethodTrace",
];

const BACK_OFF: Schema = Schema::Check(
    &Schema::AtLeastOneOf(
        &["baseInterval", "maxInterval"],
        &Schema::Object(&[optional("baseInterval", Schema::Duration), optional("maxInterval", Schema::Duration)]),
    ),
    ceiling_above_base,
);

/// Back off as the upstream asks in a rate-limit response header.
const RATE_LIMITED_BACK_OFF: Schema = Schema::Object(&[
    required(
        "resetHeaders",
        Schema::List(&Schema::Object(&[
            required("name", Schema::NonEmptyString),
            required("format", Schema::Enum(&["Seconds", "UnixTimestamp"])),
        ])),
    ),
    optional("maxInterval", POSITIVE_DURATION),
]);

const HOST_SELECTION: Schema = Schema::Check(
    &Schema::List(&Schema::Object(&[
        required("predicate", Schema::Enum(&["OmitPreviousHosts", "OmitHostsWithTags", "OmitPreviousPriorities"])),
        optional("tags", Schema::Map(&Schema::String)),
        optional("updateFrequency", Schema::Int { min: -2_147_483_648, max: 2_147_483_647 }),
    ])),
    host_selection,
);

const HTTP: Schema = Schema::AtLeastOneOf(
    &[
        "numRetries",
        "perTryTimeout",
        "backOff",
        "rateLimitedBackOff",
        "retryOn",
        "retriableResponseHeaders",
        "retriableRequestHeaders",
        "hostSelection",
    ],
    &Schema::Object(&[
        optional("numRetries", UINT32),
        optional("perTryTimeout", Schema::Duration),
        optional("backOff", BACK_OFF),
        optional("rateLimitedBackOff", RATE_LIMITED_BACK_OFF),
        optional("retryOn", Schema::List(&Schema::Check(&Schema::String, http_retry_on))),
        optional("retriableResponseHeaders", Schema::List(&HEADER_MATCH)),
        optional("retriableRequestHeaders", Schema::List(&HEADER_MATCH)),
        optional("hostSelection", HOST_SELECTION),
        optional("hostSelectionMaxAttempts", Schema::Int { min: 0, max: i64::MAX }),
    ]),
);

const GRPC: Schema = Schema::AtLeastOneOf(
    &["numRetries", "perTryTimeout", "backOff", "rateLimitedBackOff", "retryOn"],
    &Schema::Object(&[
        optional("numRetries", UINT32),
        optional("perTryTimeout", Schema::Duration),
        optional("backOff", BACK_OFF),
        optional("rateLimitedBackOff", RATE_LIMITED_BACK_OFF),
        optional(
            "retryOn",
            Schema::List(&Schema::Enum(&[
                "Canceled",
                "DeadlineExceeded",
                "Internal",
                "ResourceExhausted",
                "Unavailable",
            ])),
        ),
    ]),
);

const CONF: Schema = Schema::AtLeastOneOf(
    &["tcp", "http", "grpc"],
    &Schema::Object(&[
        optional("tcp", Schema::Object(&[required("maxConnectAttempt", POSITIVE_UINT32)])),
        optional("http", HTTP),
        optional("grpc", GRPC),
    ]),
);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[
        optional("targetRef", Schema::TargetRef(TOP_KINDS_WITH_ROUTE)),
        optional("to", Schema::List(&section!(DESTINATION_OR_ROUTE_KINDS, CONF))),
    ]),
    spec_rules,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);

fn spec_rules(spec: &Value, path: &FieldPath, out: &mut Violations) {
    let top = top_kind(spec);
    if top == MESH_HTTP_ROUTE || top == MESH_GATEWAY {
        let why = format!("when the top-level targetRef is a {top}");
        limit_kinds(spec, path, out, "to", GATEWAY_DESTINATION_KINDS, &why);
    }
}

fn http_retry_on(value: &Value, path: &FieldPath, out: &mut Violations) {
    let Some(text) = value.as_str() else { return };
    let status = text.parse::<u16>().is_ok_and(|code| (100..=599).contains(&code));
    if !HTTP_RETRY_ON.contains(&text) && !status {
        out.add(
            path,
            format!("unknown retry condition {text:?}: use an HTTP status code or one of {}", HTTP_RETRY_ON.join(", ")),
        );
    }
}

fn host_selection(value: &Value, path: &FieldPath, out: &mut Violations) {
    let mut priorities = 0;
    for (i, predicate) in items(value).iter().enumerate() {
        let at = path.index(i);
        match predicate["predicate"].as_str() {
            Some("OmitHostsWithTags") if predicate.get("tags").is_none_or(Value::is_null) => {
                out.add(&at.field("tags"), "must be defined with predicate OmitHostsWithTags");
            }
            Some("OmitPreviousPriorities") => {
                priorities += 1;
                if priorities > 1 {
                    out.add(&at.field("predicate"), "OmitPreviousPriorities must only be specified once");
                }
                if predicate.get("updateFrequency").and_then(Value::as_i64).is_none_or(|n| n <= 0) {
                    out.add(&at.field("updateFrequency"), "must be defined and greater than 0");
                }
            }
            _ => {}
        }
    }
}

/// Envoy refuses a back-off whose `maxInterval` is below its `baseInterval`.
fn ceiling_above_base(value: &Value, path: &FieldPath, out: &mut Violations) {
    let interval = |key: &str| value.get(key).and_then(Value::as_str).and_then(|text| parse_duration(text).ok());
    if let (Some(base), Some(max)) = (interval("baseInterval"), interval("maxInterval"))
        && max < base
    {
        out.add(&path.field("maxInterval"), "must not be less than baseInterval");
    }
}
