//! Inspecting what policies do to proxies:
//!
//! - `GET /meshes/{mesh}/dataplanes/{name}/_rules`: the effective conf of
//!   every policy type for the proxy, each outbound and each inbound, with
//!   the policies it comes from (computed from the store, connected or not).
//! - `GET /meshes/{mesh}/dataplanes/{name}/_config`: the Envoy configuration
//!   last generated for the connected sidecar.
//! - `GET /meshes/{mesh}/dataplanes/{name}/xds`: the sidecar Envoy's own
//!   config dump, fetched from its admin API.
//! - `GET /meshes/{mesh}/{policy-plural}/{name}/_resources/dataplanes`: the
//!   Dataplanes a policy shapes.

mod admin;
mod affected;
mod config;
mod references;
mod rules;

use std::borrow::Cow;
use std::collections::HashMap;

use axum::Json;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use kodiak_api::mesh::MtlsView;
use kodiak_api::{Resource, ResourceKey, ResourceType, Violations};
use kodiak_policy::rules::{MeshPolicies, ProxyRules, proxy_rules, proxy_rules_with_shadow};
use kodiak_policy::traffic_permission::{EFFECT_LABEL, InboundPermissions, MeshTrafficPermission, proxy_permissions};
use kodiak_store::{ListQuery, ResourceStore, StoreError};

use super::ApiState;
use super::error::ApiError;
use super::paging;
use super::resources::not_found;
use crate::xds::proxy_id::ProxyId;

/// What `/meshes/{mesh}/dataplanes/{name}/...` shows of one Dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectView {
    /// `_rules`
    Rules,
    /// `_config`
    Config,
    /// `xds`
    ConfigDump,
}

/// Answers `/meshes/{mesh}/dataplanes/{name}/{_rules,_config,xds}`.
pub async fn dataplane(
    state: &ApiState,
    mesh: &str,
    name: &str,
    view: InspectView,
    uri: &Uri,
) -> Result<Response, ApiError> {
    let key = ResourceKey::new(ResourceType::Dataplane, Some(mesh), name);
    let dataplane = state.store.get(&key).await?.ok_or_else(|| not_found(&key))?;
    match view {
        InspectView::Rules => {
            let shadow = flag(uri.query(), "shadow")?;
            let policies = MeshView::load(state.store.as_ref(), mesh, shadow).await?;
            let mut answer = rules::response(&dataplane, &policies.inspect(&dataplane), shadow);
            rules::with_policy_problems(&mut answer, state.insights.problems(&ProxyId::new(mesh, name)));
            Ok(Json(answer).into_response())
        }
        InspectView::Config => {
            no_query(uri.query())?;
            let snapshot = state.cache.get(&ProxyId::new(mesh, name).node_id()).ok_or_else(|| {
                ApiError::not_found(format!(
                    "{key} has no generated Envoy configuration: its sidecar is not connected (the control plane generates configuration only for connected sidecars)"
                ))
            })?;
            Ok(Json(config::response(&dataplane, &snapshot)).into_response())
        }
        InspectView::ConfigDump => {
            let include_eds = flag(uri.query(), "include_eds")?;
            let dump = admin::config_dump(&dataplane, include_eds).await.map_err(|error| error.into_api_error(&key))?;
            Ok(Json(dump).into_response())
        }
    }
}

/// Answers `/meshes/{mesh}/{policy-plural}/{name}/_resources/dataplanes`.
pub async fn policy_dataplanes(
    state: &ApiState,
    key: &ResourceKey,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let params = paging::parse(uri.query())?;
    let policy = state.store.get(key).await?.ok_or_else(|| not_found(key))?;
    let mesh = key.mesh.as_deref().unwrap_or_default();
    // A shadow policy shapes nothing; asking about it means asking where it would.
    let shadow = is_shadow(&policy);
    let policies = MeshView::load(state.store.as_ref(), mesh, shadow).await?;
    // Every Dataplane of the mesh: the query's filters pick the listed
    // ones, while the services the policy names are checked against all.
    let all = list_all(state.store.as_ref(), ListQuery::in_mesh(ResourceType::Dataplane, mesh, 0)).await?;
    let query = super::resources::query(ResourceType::Dataplane, Some(mesh.to_owned()), &params);
    let affected: Vec<&Resource> = all
        .iter()
        .filter(|dataplane| query.matches(dataplane))
        .filter(|dataplane| affected::is_affected(&policies.inspect(dataplane), key.kind, &key.name))
        .collect();
    let total = affected.len();
    let items = affected.into_iter().skip(params.offset).take(params.size).map(affected::item).collect();
    let mut body = paging::page_body(total, items, &params, uri, headers);
    let warnings = references::unknown_services(&policy, &references::served(&all));
    if !warnings.is_empty() {
        body["warnings"] = warnings.into();
    }
    Ok(Json(body).into_response())
}

/// Everything of one mesh that decides what its policies say for a proxy.
struct MeshView {
    name: String,
    mesh: Option<Resource>,
    /// Every policy other than MeshTrafficPermission.
    policies: MeshPolicies,
    permissions: Vec<MeshTrafficPermission>,
    /// MeshTrafficPermissions that cannot be read, which apply nowhere.
    unreadable_permissions: Vec<(ResourceKey, Violations)>,
    /// The policy resources by type and name, for their labels.
    resources: HashMap<(ResourceType, String), Resource>,
    shadow: bool,
}

/// What the policies of a mesh say for one proxy.
struct Inspected<'a> {
    rules: ProxyRules,
    /// Per inbound, in the Dataplane's order; `None` when the mesh has
    /// neither mTLS nor a MeshTrafficPermission in force.
    permissions: Option<Vec<InboundPermissions>>,
    view: &'a MeshView,
}

impl MeshView {
    /// Reads the mesh and its policies. With `shadow`, shadow-labelled
    /// policies count as if they were in force.
    async fn load(store: &dyn ResourceStore, mesh: &str, shadow: bool) -> Result<MeshView, StoreError> {
        let mut others = Vec::new();
        let mut permissions = Vec::new();
        let mut unreadable_permissions = Vec::new();
        let mut resources = HashMap::new();
        for kind in ResourceType::ALL.iter().copied().filter(|kind| kind.is_policy()) {
            for resource in list_all(store, ListQuery::in_mesh(kind, mesh, kodiak_api::MAX_PAGE_SIZE as usize)).await? {
                if kind == ResourceType::MeshTrafficPermission {
                    match read_permission(&resource, shadow) {
                        Ok(permission) => permissions.push(permission),
                        Err(violations) => unreadable_permissions.push((resource.key.clone(), violations)),
                    }
                } else {
                    others.push(resource.clone());
                }
                resources.insert((kind, resource.key.name.clone()), resource);
            }
        }
        let mesh_resource = store.get(&ResourceKey::mesh(mesh)).await?;
        Ok(MeshView {
            name: mesh.to_owned(),
            mesh: mesh_resource,
            policies: MeshPolicies::new(mesh, &others),
            permissions,
            unreadable_permissions,
            resources,
            shadow,
        })
    }

    fn inspect<'a>(&'a self, dataplane: &Resource) -> Inspected<'a> {
        let rules = match self.shadow {
            true => proxy_rules_with_shadow(dataplane, &self.policies),
            false => proxy_rules(dataplane, &self.policies),
        };
        // With mTLS on, permissions decide even when there are none (nobody is allowed).
        let decide = !self.permissions.is_empty() || self.mtls_enabled();
        let permissions = decide.then(|| proxy_permissions(&self.permissions, dataplane));
        Inspected { rules, permissions, view: self }
    }

    fn policies_mesh(&self) -> &str {
        &self.name
    }

    /// Every policy that cannot be read, with what is wrong.
    fn unreadable(&self) -> impl Iterator<Item = &(ResourceKey, Violations)> {
        self.policies.unreadable().iter().chain(&self.unreadable_permissions)
    }

    fn mtls_enabled(&self) -> bool {
        self.mesh.as_ref().is_some_and(|mesh| MtlsView::of(&mesh.body).enabled().is_some())
    }
}

/// A MeshTrafficPermission as the permission engine reads it; with
/// `shadow`, a shadow-labelled one is read as if in force.
fn read_permission(resource: &Resource, shadow: bool) -> Result<MeshTrafficPermission, Violations> {
    let mut resource = Cow::Borrowed(resource);
    if shadow && is_shadow(&resource) {
        resource.to_mut().labels.remove(EFFECT_LABEL);
    }
    MeshTrafficPermission::from_resource(&resource)
}

fn is_shadow(resource: &Resource) -> bool {
    resource.labels.get(EFFECT_LABEL).is_some_and(|value| value == "shadow")
}

/// Every resource `query` matches, page after page.
async fn list_all(store: &dyn ResourceStore, mut query: ListQuery) -> Result<Vec<Resource>, StoreError> {
    query.size = kodiak_api::MAX_PAGE_SIZE as usize;
    let mut found: Vec<Resource> = Vec::new();
    loop {
        let page = store.list(&query).await?;
        let count = page.items.len();
        found.extend(page.items);
        if count == 0 || found.len() >= page.total {
            return Ok(found);
        }
        query.offset += count;
    }
}

/// The boolean query parameter `name` (`true` or `false`, default false),
/// the only one the endpoint takes.
fn flag(query: Option<&str>, name: &str) -> Result<bool, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("cannot read the query string: {e}")))?;
    let mut value = false;
    for (key, given) in pairs {
        let reason = match (key == name, given.as_str()) {
            (true, "true") => {
                value = true;
                continue;
            }
            (true, "false") => {
                value = false;
                continue;
            }
            (true, other) => format!("must be true or false, got {other:?}"),
            (false, _) => format!("unknown query parameter; known: {name}"),
        };
        let violation = kodiak_api::Violation { field: key, reason };
        return Err(ApiError::bad_parameters("invalid query parameters", vec![violation]));
    }
    Ok(value)
}

/// `_config` takes no query parameters.
fn no_query(query: Option<&str>) -> Result<(), ApiError> {
    match query.filter(|query| !query.is_empty()) {
        None => Ok(()),
        Some(query) => Err(ApiError::bad_request(format!("this endpoint takes no query parameters, got {query:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(document: serde_json::Value) -> Resource {
        Resource::from_document(&document).unwrap()
    }

    /// A stored policy the engines cannot read (stored before a rule was
    /// tightened): bypasses validation on purpose.
    fn unreadable(kind: ResourceType, spec: serde_json::Value) -> Resource {
        let mut body = serde_json::Map::new();
        body.insert("spec".into(), spec);
        Resource {
            key: ResourceKey::new(kind, Some("default"), "broken"),
            labels: Default::default(),
            body,
            version: 1,
            creation_time: None,
            modification_time: None,
        }
    }

    #[test]
    fn unreadable_policies_are_named_in_their_types_warnings() {
        let dataplane = resource(serde_json::json!({"type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {"address": "127.0.0.1", "inbound": [{"port": 10001, "servicePort": 8080,
                "tags": {"kuma.io/service": "web"}}]}}));
        let timeout = unreadable(ResourceType::MeshTimeout, serde_json::json!("not an object"));
        let permission = unreadable(ResourceType::MeshTrafficPermission, serde_json::json!({"from": [{}]}));
        let view = MeshView {
            name: "default".into(),
            mesh: None,
            policies: MeshPolicies::new("default", [&timeout]),
            permissions: Vec::new(),
            unreadable_permissions: vec![(permission.key.clone(), read_permission(&permission, false).unwrap_err())],
            resources: HashMap::new(),
            shadow: false,
        };
        let answer = rules::response(&dataplane, &view.inspect(&dataplane), false);
        let rules = answer["rules"].as_array().unwrap();
        let kinds: Vec<&str> = rules.iter().map(|rule| rule["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["MeshTimeout", "MeshTrafficPermission"], "{answer:#}");
        for rule in rules {
            let warning = rule["warnings"][0].as_str().unwrap();
            assert!(
                warning.contains("\"broken\" in mesh \"default\" cannot be read and applies nowhere: "),
                "{warning}"
            );
        }
    }

    #[test]
    fn shadow_is_a_boolean_and_the_only_parameter() {
        assert!(!flag(None, "shadow").unwrap());
        assert!(flag(Some("shadow=true"), "shadow").unwrap());
        assert!(!flag(Some("shadow=false"), "shadow").unwrap());
        assert!(flag(Some("shadow=yes"), "shadow").unwrap_err().to_string().contains("must be true or false"));
        assert!(flag(Some("size=1"), "shadow").unwrap_err().to_string().contains("known: shadow"));
        assert!(flag(Some("include_eds=true"), "include_eds").unwrap());
        assert!(no_query(Some("")).is_ok() && no_query(Some("a=b")).is_err());
    }
}
