//! Checks of a MeshProxyPatch's `default` that need Envoy's message types,
//! so a policy with a value Envoy's messages cannot hold is refused when it
//! is applied rather than reported for every proxy.

use kodiak_api::{FieldPath, Resource, ResourceType, Violations};
use serde_json::Value;

use super::conf::{Modification, Operation, Target, read};
use super::{json_patch, message};

/// What is wrong with a resource beyond its schema, in its Envoy parts:
/// for a MeshProxyPatch, [`validate`] of its `spec.default`; nothing for
/// other resources. The control plane refuses such a resource at apply
/// time, and `kodiakctl validate` finds the same offline.
pub fn check_resource(resource: &Resource) -> Violations {
    let mut violations = Violations::new();
    if resource.key.kind == ResourceType::MeshProxyPatch
        && let Some(default) = resource.body.get("spec").and_then(|spec| spec.get("default"))
    {
        validate(default, &FieldPath::root().field("spec").field("default"), &mut violations);
    }
    violations
}

/// Checks one policy's `spec.default` (`at` is its path): each `value` must
/// be an Envoy message of the modification's type (a Cluster, Listener,
/// network Filter, HttpFilter or VirtualHost, with field names as in
/// Envoy's JSON or protos and `@type`s Kodiak knows), anything added must
/// have a name, and each JSON patch a known op, valid pointers and what its
/// op needs. What a patch does to a particular proxy's resources is only
/// known when it is applied ([`super::apply`]).
pub fn validate(default: &Value, at: &FieldPath, out: &mut Violations) {
    for modification in read(default).modifications {
        let path = at.field("appendModifications").index(modification.source.index).field(modification.target.key());
        check_value(&modification, &path, out);
        for (i, patch) in modification.json_patches.iter().enumerate() {
            if let Err(reason) = json_patch::check(patch) {
                out.add(&path.field("jsonPatches").index(i), reason);
            }
        }
    }
}

fn check_value(modification: &Modification, path: &FieldPath, out: &mut Violations) {
    let Some(text) = &modification.value else { return };
    let path = path.field("value");
    let type_name = match modification.target {
        Target::Cluster => "envoy.config.cluster.v3.Cluster",
        Target::Listener => "envoy.config.listener.v3.Listener",
        Target::NetworkFilter => "envoy.config.listener.v3.Filter",
        Target::HttpFilter => "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
        Target::VirtualHost => "envoy.config.route.v3.VirtualHost",
        Target::Unknown => return,
    };
    let checked = message::parse_value(text)
        .map_err(|reason| reason.strip_prefix("value ").unwrap_or(&reason).to_owned())
        .and_then(|value| {
            let message = message::descriptor(type_name)?;
            message::from_json(&message, &value).map_err(|reason| format!("is {reason}"))?;
            Ok(value)
        });
    let value = match checked {
        Ok(value) => value,
        Err(reason) => return out.add(&path, reason),
    };
    let adds = !matches!(modification.operation, Operation::Remove | Operation::Patch | Operation::Unknown(_));
    let named = value.get("name").and_then(Value::as_str).is_some_and(|name| !name.is_empty());
    if adds && !named {
        out.add(&path, format!("the {} to add must have a name", modification.target));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(yaml: &str) -> Vec<String> {
        let default = kodiak_api::parse_document(yaml).unwrap();
        let mut out = Violations::new();
        validate(&default, &FieldPath::root().field("spec").field("default"), &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn valid_values_and_patches_pass() {
        let yaml = r#"{appendModifications: [
            {cluster: {operation: Add, value: "{name: audit, connect_timeout: 1s}"}},
            {listener: {operation: Patch, value: "perConnectionBufferLimitBytes: 10"}},
            {httpFilter: {operation: AddFirst, value: "{name: x, typedConfig: {'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"}},
            {virtualHost: {operation: Add, match: {origin: inbound}, value: "{name: h, domains: ['*']}"}},
            {cluster: {operation: Patch, jsonPatches: [{op: replace, path: /connectTimeout, value: 2s}, {op: move, from: /a, path: /b}]}}]}"#;
        assert_eq!(violations(yaml), Vec::<String>::new());
    }

    #[test]
    fn wrong_values_and_patches_are_refused_with_their_paths() {
        let yaml = r#"{appendModifications: [
            {cluster: {operation: Add, value: "{connectTimeout: 1s}"}},
            {listener: {operation: Patch, value: "noSuchField: 1"}},
            {networkFilter: {operation: AddLast, value: "{name: x, typedConfig: {'@type': type.googleapis.com/no.Such}}"}},
            {virtualHost: {operation: Patch, match: {name: h}, value: "[1]"}},
            {cluster: {operation: Patch, jsonPatches: [{op: add, path: /a, value: 1}, {op: remove, path: ''}]}}]}"#;
        let found = violations(yaml);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert_eq!(found[0], "spec.default.appendModifications[0].cluster.value: the cluster to add must have a name");
        assert!(
            found[1].starts_with(
                "spec.default.appendModifications[1].listener.value: is not a valid envoy.config.listener.v3.Listener"
            ),
            "{}",
            found[1]
        );
        assert!(found[1].contains("noSuchField"), "{}", found[1]);
        assert!(found[2].starts_with("spec.default.appendModifications[2].networkFilter.value: is not a valid envoy.config.listener.v3.Filter"), "{}", found[2]);
        assert!(found[2].contains("no.Such"), "{}", found[2]);
        assert_eq!(
            found[3],
            "spec.default.appendModifications[3].virtualHost.value: must be an Envoy resource written as a YAML or JSON object"
        );
        assert_eq!(found[4], "spec.default.appendModifications[4].cluster.jsonPatches[1]: the root cannot be removed");
    }
}
