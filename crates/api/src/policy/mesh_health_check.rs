//! MeshHealthCheck: active health checks (TCP, HTTP or gRPC) a proxy runs
//! against the endpoints of its outbound destinations.

use super::{
    DESTINATION_KINDS, HEADER_SET_ADD, PERCENT_INT, POSITIVE_DURATION, POSITIVE_INT32, STATUS_CODE, TOP_KINDS,
};
use crate::address::FILE_PATH;
use crate::schema::{Schema, optional, required};

const TCP: Schema = Schema::Object(&[
    optional("disabled", Schema::Bool),
    optional("send", Schema::String),
    optional("receive", Schema::List(&Schema::String)),
]);

const HTTP: Schema = Schema::Object(&[
    optional("disabled", Schema::Bool),
    optional("path", Schema::NonEmptyString),
    optional("requestHeadersToAdd", HEADER_SET_ADD),
    optional("expectedStatuses", Schema::List(&STATUS_CODE)),
]);

const GRPC: Schema = Schema::Object(&[
    optional("disabled", Schema::Bool),
    optional("serviceName", Schema::String),
    optional("authority", Schema::String),
]);

const CONF: Schema = Schema::AtLeastOneOf(
    &["http", "tcp", "grpc"],
    &Schema::Object(&[
        optional("interval", POSITIVE_DURATION),
        optional("timeout", POSITIVE_DURATION),
        optional("unhealthyThreshold", POSITIVE_INT32),
        optional("healthyThreshold", POSITIVE_INT32),
        optional("initialJitter", POSITIVE_DURATION),
        optional("intervalJitter", POSITIVE_DURATION),
        optional("intervalJitterPercent", PERCENT_INT),
        optional("healthyPanicThreshold", Schema::Percentage),
        optional("failTrafficOnPanic", Schema::Bool),
        optional("eventLogPath", FILE_PATH),
        optional("alwaysLogHealthCheckFailures", Schema::Bool),
        optional("noTrafficInterval", POSITIVE_DURATION),
        optional("tcp", TCP),
        optional("http", HTTP),
        optional("grpc", GRPC),
        optional("reuseConnection", Schema::Bool),
    ]),
);

const SPEC: Schema = Schema::Object(&[
    optional("targetRef", Schema::TargetRef(TOP_KINDS)),
    optional("to", Schema::List(&section!(DESTINATION_KINDS, CONF))),
]);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);
