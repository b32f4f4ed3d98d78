//! MeshTrace: where proxies report traces (Zipkin, Datadog, OpenTelemetry),
//! how much they sample and which tags they add.

use serde_json::Value;

use super::{OTEL_BACKEND_REF, OTEL_ENDPOINT, TOP_KINDS, at_most_one, no_gateway_listener_tags};
use crate::schema::{Schema, optional, required};
use crate::violations::{FieldPath, Violations};

const BACKEND: Schema = Schema::Union(
    &[("Zipkin", "zipkin"), ("Datadog", "datadog"), ("OpenTelemetry", "openTelemetry")],
    &Schema::Object(&[
        required("type", Schema::Enum(&["Zipkin", "Datadog", "OpenTelemetry"])),
        optional(
            "zipkin",
            Schema::Object(&[
                required("url", Schema::Check(&Schema::NonEmptyString, url)),
                optional("traceId128bit", Schema::Bool),
                optional("apiVersion", Schema::Enum(&["httpJson", "httpProto"])),
                optional("sharedSpanContext", Schema::Bool),
            ]),
        ),
        optional(
            "datadog",
            Schema::Object(&[
                required("url", Schema::Check(&Schema::NonEmptyString, datadog_url)),
                optional("splitService", Schema::Bool),
            ]),
        ),
        optional(
            "openTelemetry",
            Schema::ExactlyOneOf(
                &["endpoint", "backendRef"],
                &Schema::Object(&[optional("endpoint", OTEL_ENDPOINT), optional("backendRef", OTEL_BACKEND_REF)]),
            ),
        ),
    ]),
);

/// A span tag: a fixed value or one taken from a request header.
const TAG: Schema = Schema::ExactlyOneOf(
    &["literal", "header"],
    &Schema::Object(&[
        required("name", Schema::NonEmptyString),
        optional("literal", Schema::String),
        optional(
            "header",
            Schema::Object(&[required("name", Schema::NonEmptyString), optional("default", Schema::String)]),
        ),
    ]),
);

const CONF: Schema = Schema::Object(&[
    required("backends", Schema::Check(&Schema::List(&BACKEND), at_most_one)),
    optional(
        "sampling",
        Schema::Object(&[
            optional("overall", Schema::Percentage),
            optional("client", Schema::Percentage),
            optional("random", Schema::Percentage),
        ]),
    ),
    optional("tags", Schema::List(&TAG)),
]);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[optional("targetRef", Schema::TargetRef(TOP_KINDS)), required("default", CONF)]),
    no_gateway_listener_tags,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);

/// Splits `scheme://authority/rest` into its parts.
fn url_parts(text: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let (authority, rest) = rest.find(['/', '?', '#']).map_or((rest, ""), |at| rest.split_at(at));
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (scheme_ok && !authority.is_empty() && !authority.contains(char::is_whitespace) && !rest.contains(' '))
        .then_some((scheme, authority, rest))
}

fn url(value: &Value, path: &FieldPath, out: &mut Violations) {
    let text = value.as_str().unwrap_or_default();
    if url_parts(text).is_none() {
        out.add(path, format!("{text:?} is not a valid URL such as http://jaeger-collector:9411/api/v2/spans"));
    }
}

/// The Datadog agent address: `http://host:port` and nothing more.
fn datadog_url(value: &Value, path: &FieldPath, out: &mut Violations) {
    let text = value.as_str().unwrap_or_default();
    let Some((scheme, authority, rest)) = url_parts(text) else {
        out.add(path, format!("{text:?} is not a valid URL such as http://datadog-agent:8126"));
        return;
    };
    let port = authority.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
    let problem = if scheme != "http" {
        "scheme must be http"
    } else if authority.contains('@') || !rest.is_empty() {
        "must not have a user, path, query or fragment"
    } else {
        match port {
            None => "port must be defined",
            Some(Ok(port)) if port > 0 => return,
            Some(_) => "port must be valid (1-65535)",
        }
    };
    out.add(path, problem);
}
