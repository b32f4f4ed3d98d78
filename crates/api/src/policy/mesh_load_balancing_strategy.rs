//! MeshLoadBalancingStrategy: the load-balancing algorithm, hashing and
//! zone/locality preferences for outbound traffic.

use serde_json::Value;

use super::{
    MESH, MESH_GATEWAY, MESH_HTTP_ROUTE, MESH_MULTI_ZONE_SERVICE, MESH_SERVICE, NON_NEGATIVE_DECIMAL, POSITIVE_UINT32,
    TOP_KINDS, entries, items, limit_kinds, percentage_above_zero, top_kind,
};
use crate::schema::{Schema, optional, required};
use crate::violations::{FieldPath, Violations};

const HASH_POLICY: Schema = Schema::Union(
    &[
        ("Header", "header"),
        ("Cookie", "cookie"),
        ("Connection", "connection"),
        ("SourceIP", "connection"),
        ("QueryParameter", "queryParameter"),
        ("FilterState", "filterState"),
    ],
    &Schema::Object(&[
        required(
            "type",
            Schema::Enum(&["Header", "Cookie", "Connection", "SourceIP", "QueryParameter", "FilterState"]),
        ),
        optional("terminal", Schema::Bool),
        optional("header", Schema::Object(&[required("name", Schema::NonEmptyString)])),
        optional(
            "cookie",
            Schema::Object(&[
                required("name", Schema::NonEmptyString),
                optional("ttl", Schema::Duration),
                optional("path", Schema::Check(&Schema::String, absolute_path)),
            ]),
        ),
        optional("connection", Schema::Object(&[optional("sourceIP", Schema::Bool)])),
        optional("queryParameter", Schema::Object(&[required("name", Schema::NonEmptyString)])),
        optional("filterState", Schema::Object(&[required("key", Schema::NonEmptyString)])),
    ]),
);

const RING_SIZE: Schema = Schema::Int { min: 1, max: 8_000_000 };

const LOAD_BALANCER: Schema = Schema::Object(&[
    required("type", Schema::Enum(&["RoundRobin", "LeastRequest", "RingHash", "Random", "Maglev"])),
    optional("roundRobin", Schema::Object(&[])),
    optional(
        "leastRequest",
        Schema::Object(&[
            optional("choiceCount", Schema::Int { min: 2, max: 4_294_967_295 }),
            optional("activeRequestBias", NON_NEGATIVE_DECIMAL),
        ]),
    ),
    optional(
        "ringHash",
        Schema::Object(&[
            optional("hashFunction", Schema::Enum(&["XXHash", "MurmurHash2"])),
            optional("minRingSize", RING_SIZE),
            optional("maxRingSize", RING_SIZE),
            optional("hashPolicies", Schema::List(&HASH_POLICY)),
        ]),
    ),
    optional("random", Schema::Object(&[])),
    optional(
        "maglev",
        Schema::Object(&[
            optional("tableSize", Schema::Int { min: 1, max: 5_000_011 }),
            optional("hashPolicies", Schema::List(&HASH_POLICY)),
        ]),
    ),
]);

const ZONES: Schema = Schema::List(&Schema::NonEmptyString);

const FAILOVER: Schema = Schema::Object(&[
    optional("from", Schema::Object(&[required("zones", Schema::NonEmptyList(&Schema::NonEmptyString))])),
    required(
        "to",
        Schema::Check(
            &Schema::Object(&[
                required("type", Schema::Enum(&["None", "Only", "Any", "AnyExcept"])),
                optional("zones", ZONES),
            ]),
            failover_zones,
        ),
    ),
]);

const LOCALITY_AWARENESS: Schema = Schema::Object(&[
    optional("disabled", Schema::Bool),
    optional(
        "localZone",
        Schema::Object(&[optional(
            "affinityTags",
            Schema::Check(
                &Schema::List(&Schema::Object(&[
                    required("key", Schema::NonEmptyString),
                    optional("weight", POSITIVE_UINT32),
                ])),
                all_or_no_weights,
            ),
        )]),
    ),
    optional(
        "crossZone",
        Schema::Object(&[
            optional("failover", Schema::List(&FAILOVER)),
            optional(
                "failoverThreshold",
                Schema::Object(&[required("percentage", Schema::Check(&Schema::Percentage, percentage_above_zero))]),
            ),
        ]),
    ),
]);

const CONF: Schema = Schema::Object(&[
    optional("localityAwareness", LOCALITY_AWARENESS),
    optional("loadBalancer", LOAD_BALANCER),
    optional("hashPolicies", Schema::List(&HASH_POLICY)),
]);

const TO: Schema =
    Schema::Check(&section!(&[MESH, MESH_SERVICE, MESH_MULTI_ZONE_SERVICE, MESH_HTTP_ROUTE], CONF), to_entry);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[optional("targetRef", Schema::TargetRef(TOP_KINDS)), optional("to", Schema::List(&TO))]),
    spec_rules,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);

fn spec_rules(spec: &Value, path: &FieldPath, out: &mut Violations) {
    if top_kind(spec) != MESH_GATEWAY {
        return;
    }
    let why = "when the top-level targetRef is a MeshGateway";
    limit_kinds(spec, path, out, "to", &[MESH, MESH_SERVICE, MESH_MULTI_ZONE_SERVICE], why);
    // A gateway has one load balancer for all its routes.
    for (i, to) in entries(spec, "to").iter().enumerate() {
        let kind = to.pointer("/targetRef/kind").and_then(Value::as_str).unwrap_or_default();
        let balancer = to.pointer("/default/loadBalancer").is_some_and(|lb| !lb.is_null());
        if balancer && kind != MESH && kind != MESH_HTTP_ROUTE {
            out.add(
                &path.field("to").index(i).field("targetRef").field("kind"),
                format!("value {kind:?} is not supported {why} and loadBalancer is set; only Mesh is allowed"),
            );
        }
    }
}

fn to_entry(to: &Value, path: &FieldPath, out: &mut Violations) {
    let default = &to["default"];
    let at = path.field("default");
    let kind = to.pointer("/targetRef/kind").and_then(Value::as_str).unwrap_or_default();
    if kind == MESH_HTTP_ROUTE {
        for field in ["loadBalancer", "localityAwareness"] {
            if default.get(field).is_some_and(|v| !v.is_null()) {
                out.add(
                    &at.field(field),
                    "must not be set when targetRef.kind is MeshHTTPRoute; only hashPolicies apply to a route",
                );
            }
        }
        return;
    }
    if default.get("hashPolicies").is_some_and(|v| !v.is_null()) {
        for algorithm in ["ringHash", "maglev"] {
            if default.pointer(&format!("/loadBalancer/{algorithm}/hashPolicies")).is_some_and(|v| !v.is_null()) {
                let field = at.field("loadBalancer").field(algorithm).field("hashPolicies");
                out.add(&field, "must not be set: hashPolicies is already set at the top of default");
            }
        }
    }
    let targets_one_section = to.pointer("/targetRef/sectionName").is_some_and(|v| !v.is_null())
        || to.pointer("/targetRef/labels").is_some_and(|v| !v.is_null());
    if kind == MESH_SERVICE
        && targets_one_section
        && default.pointer("/localityAwareness/crossZone").is_some_and(|v| !v.is_null())
    {
        out.add(
            &at.field("localityAwareness").field("crossZone"),
            "must not be set: MeshService traffic is local to its zone",
        );
    }
}

fn absolute_path(value: &Value, path: &FieldPath, out: &mut Violations) {
    if value.as_str().is_some_and(|text| !text.starts_with('/')) {
        out.add(path, "must be an absolute path");
    }
}

fn failover_zones(to: &Value, path: &FieldPath, out: &mut Violations) {
    let kind = to["type"].as_str().unwrap_or_default();
    let has_zones = !entries(to, "zones").is_empty();
    match kind {
        "Any" | "None" if has_zones => out.add(&path.field("zones"), format!("must be empty when type is {kind}")),
        "Only" | "AnyExcept" if !has_zones => {
            out.add(&path.field("zones"), format!("must not be empty when type is {kind}"))
        }
        _ => {}
    }
}

/// Either every affinity tag has a weight or none has (weights are then
/// derived from the tag order).
fn all_or_no_weights(value: &Value, path: &FieldPath, out: &mut Violations) {
    let tags = items(value);
    let weighted = tags.iter().filter(|tag| tag.get("weight").is_some_and(|w| !w.is_null())).count();
    if weighted > 0 && weighted != tags.len() {
        out.add(path, "all or none of the affinity tags should have a weight");
    }
}
