//! MeshTCPRoute: sends TCP connections to weighted backends.

use super::{DESTINATION_KINDS, SOME_BACKEND_REFS, TOP_KINDS, at_most_one, route_destinations};
use crate::schema::{Schema, optional, required};

const RULE: Schema =
    Schema::Object(&[required("default", Schema::Object(&[required("backendRefs", SOME_BACKEND_REFS)]))]);

const TO: Schema = Schema::Object(&[
    required("targetRef", Schema::TargetRef(DESTINATION_KINDS)),
    // A TCP connection carries nothing to choose between rules by.
    required("rules", Schema::Check(&Schema::List(&RULE), at_most_one)),
]);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[optional("targetRef", Schema::TargetRef(TOP_KINDS)), optional("to", Schema::NonEmptyList(&TO))]),
    route_destinations,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);
