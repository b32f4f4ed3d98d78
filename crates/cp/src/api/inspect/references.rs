//! Services a policy names that no Dataplane of its mesh serves. Such a
//! policy is valid (the service may come later) but shapes nothing toward
//! it yet, which is worth telling whoever inspects the policy: a typo in a
//! service name is otherwise silent.

use std::collections::BTreeSet;

use kodiak_api::Resource;
use kodiak_api::dataplane_view::DataplaneView;
use serde_json::Value;

/// Kinds whose `name` is a service name.
const SERVICE_KINDS: &[&str] = &["MeshService", "MeshServiceSubset"];

/// The services the Dataplanes serve (their inbounds' `kuma.io/service`).
pub fn served(dataplanes: &[Resource]) -> BTreeSet<String> {
    dataplanes
        .iter()
        .flat_map(|dataplane| DataplaneView::from_resource(dataplane).inbounds)
        .map(|inbound| inbound.service)
        .collect()
}

/// One warning per reference in `policy`'s spec (targetRefs and
/// backendRefs) to a service not in `served`, naming its field path.
pub fn unknown_services(policy: &Resource, served: &BTreeSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(spec) = policy.body.get("spec") {
        references(spec, "spec".to_owned(), &mut found);
    }
    found
        .into_iter()
        .filter(|(_, service)| !served.contains(service))
        .map(|(path, service)| {
            let effect = if path.starts_with("spec.targetRef") {
                "the policy selects no proxy through it"
            } else if path.starts_with("spec.from") || path.starts_with("spec.rules") {
                "no caller is matched through it"
            } else {
                "nothing is shaped toward it"
            };
            format!("{path}: no Dataplane of the mesh serves service {service:?}: {effect} until one does")
        })
        .collect()
}

/// Every `{kind: MeshService|MeshServiceSubset, name}` under `value`, with its path.
fn references(value: &Value, path: String, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            let kind = object.get("kind").and_then(Value::as_str);
            if let (Some(kind), Some(name)) = (kind, object.get("name").and_then(Value::as_str))
                && SERVICE_KINDS.contains(&kind)
            {
                found.push((path.clone(), name.to_owned()));
            }
            for (key, child) in object {
                references(child, format!("{path}.{key}"), found);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                references(child, format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_reference_to_a_service_no_dataplane_serves() {
        let policy = Resource::from_document(&serde_json::json!({
            "type": "MeshHTTPRoute", "mesh": "default", "name": "canary",
            "spec": {"targetRef": {"kind": "MeshService", "name": "web"}, "to": [{
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "default": {"backendRefs": [
                        {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v2"}},
                        {"kind": "MeshService", "name": "backnd"}]}}]}]}
        }))
        .unwrap();
        let served: BTreeSet<String> = ["web".to_owned(), "backend".to_owned()].into();
        assert_eq!(
            unknown_services(&policy, &served),
            [
                "spec.to[0].rules[0].default.backendRefs[1]: no Dataplane of the mesh serves service \"backnd\": nothing is shaped toward it until one does"
            ]
        );
        let all = unknown_services(&policy, &BTreeSet::new());
        assert_eq!(all.len(), 4, "every reference when nothing is served");
        assert!(
            all[0].starts_with("spec.targetRef: ")
                && all[0].ends_with("the policy selects no proxy through it until one does"),
            "{all:?}"
        );
    }
}
