//! MeshTrafficPermission: which callers may reach the selected proxies,
//! decided on the caller's mTLS identity.

use serde_json::Value;

use super::{CALLER_KINDS, MATCH, MESH, MESH_SERVICE, require_a_section, rules_replace};
use crate::schema::{Schema, optional, required};
use crate::violations::{FieldPath, Violations};

const ACTION: Schema = Schema::Object(&[required("action", Schema::Enum(&["Allow", "Deny", "AllowWithShadowDeny"]))]);

/// Lists of caller matches per decision; a caller that matches `deny` is
/// refused even when it also matches `allow`.
const RULE_CONF: Schema = Schema::AtLeastOneOf(
    &["allow", "allowWithShadowDeny", "deny"],
    &Schema::Object(&[
        optional("allow", Schema::List(&MATCH)),
        optional("allowWithShadowDeny", Schema::List(&MATCH)),
        optional("deny", Schema::List(&MATCH)),
    ]),
);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[
        optional("targetRef", Schema::TargetRef(&[MESH, "MeshSubset", MESH_SERVICE, "MeshServiceSubset", "Dataplane"])),
        optional("from", Schema::List(&section!(CALLER_KINDS, ACTION))),
        optional("rules", Schema::List(&Schema::Object(&[required("default", RULE_CONF)]))),
    ]),
    spec_rules,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);

fn spec_rules(spec: &Value, path: &FieldPath, out: &mut Violations) {
    require_a_section(spec, path, out, &["from", "rules"]);
    rules_replace(spec, path, out, &["from"]);
}
