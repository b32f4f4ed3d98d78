//! MeshTrafficPermission as Envoy RBAC on an inbound's mTLS filter chain.
//!
//! One DENY-action rule set names its policies after the decision's origin:
//! each MeshTrafficPermission whose `Deny` covers some callers, plus
//! [`NO_PERMISSION_ALLOWS`] for the callers no permission covers. The entries
//! are disjoint, so the policy Envoy reports for a denial is the one that
//! decided it. `AllowWithShadowDeny` callers go to the shadow rules (DENY),
//! keyed the same way. A denied HTTP request gets 403 with the header
//! [`DENIED_BY_HEADER`] naming the policy; a denied TCP connection is closed.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::accesslog::v3::{
    AccessLogFilter, ExtensionFilter, access_log_filter, extension_filter,
};
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption, header_value_option};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::rbac::v3::{Permission, Policy, Principal, Rbac, permission, principal, rbac};
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, LocalReplyConfig, ResponseMapper, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::Any;
use kodiak_policy::traffic_permission::{Action, Callers, InboundPermissions, TagCondition};
use prost::Message;
use prost::encoding::{btree_map, bytes, message, string};

use crate::names;

/// The response header of a request denied by MeshTrafficPermission; its
/// value is the name of the MeshTrafficPermission whose `Deny` matched the
/// caller, or [`NO_PERMISSION_ALLOWS`].
pub const DENIED_BY_HEADER: &str = "x-kodiak-denied-by";

/// The RBAC policy (and [`DENIED_BY_HEADER`] value) of callers that no
/// MeshTrafficPermission covers. The parentheses keep it apart from every
/// resource name.
pub const NO_PERMISSION_ALLOWS: &str = "(no-permission-allows)";

/// The tag whose value is a service name, checked against the caller's SPIFFE ID.
const SERVICE_TAG: &str = "kuma.io/service";

/// The CEL access-log filter, used to pick a local reply by its details.
pub(crate) const CEL_FILTER: &str = "envoy.access_loggers.extension_filters.cel";

/// The enforced and shadow DENY policies of one inbound, by name.
struct Policies {
    denied: BTreeMap<String, Policy>,
    shadow: BTreeMap<String, Policy>,
}

fn policies(mesh: &str, permissions: &InboundPermissions) -> Policies {
    let mut denied: BTreeMap<String, Vec<Principal>> = BTreeMap::new();
    let mut shadow: BTreeMap<String, Vec<Principal>> = BTreeMap::new();
    for rule in &permissions.rules {
        let target = match rule.action {
            Action::Allow => continue,
            Action::Deny => &mut denied,
            Action::AllowWithShadowDeny => &mut shadow,
        };
        target.entry(rule.policy.clone()).or_default().push(callers(mesh, &rule.callers));
    }
    if !permissions.rules.iter().any(|rule| rule.callers.0.is_empty()) {
        let covered: Vec<Principal> = permissions.rules.iter().map(|rule| callers(mesh, &rule.callers)).collect();
        let uncovered = match covered.is_empty() {
            true => any(),
            false => not(combine(covered, principal::Identifier::OrIds)),
        };
        denied.insert(NO_PERMISSION_ALLOWS.to_owned(), vec![uncovered]);
    }
    let policy = |(name, principals)| {
        let permissions = vec![Permission { rule: Some(permission::Rule::Any(true)) }];
        (name, Policy { permissions, principals, ..Default::default() })
    };
    Policies { denied: denied.into_iter().map(policy).collect(), shadow: shadow.into_iter().map(policy).collect() }
}

/// The principal of the callers meeting every condition.
fn callers(mesh: &str, callers: &Callers) -> Principal {
    let ids: Vec<Principal> = callers.0.iter().map(|condition| tag(mesh, condition)).collect();
    combine(ids, principal::Identifier::AndIds)
}

/// A caller whose certificate carries (or, negated, lacks) the tag.
fn tag(mesh: &str, condition: &TagCondition) -> Principal {
    let uri = match condition.key.as_str() {
        SERVICE_TAG => names::spiffe_id(mesh, &condition.value),
        key => names::tag_uri(key, &condition.value),
    };
    let authenticated = Principal {
        identifier: Some(principal::Identifier::Authenticated(principal::Authenticated {
            principal_name: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(uri)),
                ..Default::default()
            }),
        })),
    };
    if condition.negated { not(authenticated) } else { authenticated }
}

/// `ids` joined by `set` (and/or); one id stands alone, none is anyone.
fn combine(mut ids: Vec<Principal>, set: fn(principal::Set) -> principal::Identifier) -> Principal {
    match ids.len() {
        0 => any(),
        1 => ids.remove(0),
        _ => Principal { identifier: Some(set(principal::Set { ids })) },
    }
}

fn any() -> Principal {
    Principal { identifier: Some(principal::Identifier::Any(true)) }
}

fn not(id: Principal) -> Principal {
    Principal { identifier: Some(principal::Identifier::NotId(Box::new(id))) }
}

/// `base` with its `rules` (field 1) and `shadow_rules` (field 2), both
/// DENY: the HTTP and network RBAC filters number them alike. The policy
/// maps are encoded in name order, so equal permissions give equal bytes
/// (and versions), which a `HashMap` field would not.
fn with_rules<M: Message + prost::Name>(base: &M, policies: &Policies) -> Any {
    let mut value = base.encode_to_vec();
    let deny = |policies: &BTreeMap<String, Policy>| {
        let mut rules = Rbac { action: rbac::Action::Deny.into(), ..Default::default() }.encode_to_vec();
        btree_map::encode(
            string::encode,
            string::encoded_len,
            message::encode,
            message::encoded_len,
            2,
            policies,
            &mut rules,
        );
        rules
    };
    bytes::encode(1, &deny(&policies.denied), &mut value);
    if !policies.shadow.is_empty() {
        bytes::encode(2, &deny(&policies.shadow), &mut value);
    }
    Any { type_url: M::type_url(), value }
}

/// Adds MeshTrafficPermission to the HTTP connection manager of inbound
/// listener `listener`: the RBAC filter first, the header naming the
/// denying policy on its 403s, and a log line for each denial.
pub(crate) fn protect_http(
    manager: &mut HttpConnectionManager,
    mesh: &str,
    permissions: &InboundPermissions,
    listener: &str,
) {
    let policies = policies(mesh, permissions);
    let filter = HttpFilter {
        name: crate::envoy::names::HTTP_RBAC.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(with_rules(&HttpRbac::default(), &policies))),
        ..Default::default()
    };
    manager.http_filters.insert(0, filter);
    manager.access_log.push(crate::refusals::denied_requests(listener));
    let mappers: Vec<ResponseMapper> = policies.denied.keys().map(|name| denied_by(name)).collect();
    if !mappers.is_empty() {
        manager.local_reply_config = Some(LocalReplyConfig { mappers, ..Default::default() });
    }
}

/// The network RBAC filter that closes connections of denied callers.
pub(crate) fn network_filter(mesh: &str, permissions: &InboundPermissions, stat_prefix: &str) -> Filter {
    let base = NetworkRbac { stat_prefix: format!("{stat_prefix}."), ..Default::default() };
    Filter {
        name: crate::envoy::names::NETWORK_RBAC.to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(with_rules(&base, &policies(mesh, permissions)))),
    }
}

/// A local reply mapper that adds [`DENIED_BY_HEADER`]`: <policy>` to the
/// 403 the RBAC filter sends when `policy` matched. Envoy records the match
/// in the reply's details as `rbac_access_denied_matched_policy[<policy>]`.
fn denied_by(policy: &str) -> ResponseMapper {
    let details = format!("rbac_access_denied_matched_policy[{policy}]");
    let expression = format!("response.code_details == '{}'", details.replace('\\', "\\\\").replace('\'', "\\'"));
    let filter = ExtensionFilter {
        name: CEL_FILTER.to_owned(),
        config_type: Some(extension_filter::ConfigType::TypedConfig(crate::envoy::any(&ExpressionFilter {
            expression,
            ..Default::default()
        }))),
    };
    ResponseMapper {
        filter: Some(AccessLogFilter {
            filter_specifier: Some(access_log_filter::FilterSpecifier::ExtensionFilter(filter)),
        }),
        headers_to_add: vec![HeaderValueOption {
            header: Some(HeaderValue {
                key: DENIED_BY_HEADER.to_owned(),
                value: policy.to_owned(),
                ..Default::default()
            }),
            append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use kodiak_policy::traffic_permission::PermissionRule;
    use serde_json::{Value, json};

    use super::*;

    fn condition(key: &str, value: &str, negated: bool) -> TagCondition {
        TagCondition { key: key.into(), value: value.into(), negated }
    }

    fn rule(policy: &str, action: Action, conditions: &[TagCondition]) -> PermissionRule {
        PermissionRule { callers: Callers(conditions.to_vec()), action, policy: policy.into() }
    }

    fn rendered(principal: &Principal) -> Value {
        let any = crate::envoy::any(principal);
        crate::try_render(&any).unwrap()
    }

    fn spiffe(service: &str) -> Value {
        json!({"authenticated": {"principalName": {"exact": format!("spiffe://default/{service}")}}})
    }

    #[test]
    fn callers_become_principals_on_the_certificate_sans() {
        let service = condition(SERVICE_TAG, "web", false);
        let version = condition("version", "v1", true);
        assert_eq!(rendered(&callers("default", &Callers(vec![]))), json!({"any": true}));
        assert_eq!(rendered(&callers("default", &Callers(vec![service.clone()]))), spiffe("web"));
        assert_eq!(
            rendered(&callers("default", &Callers(vec![service, version]))),
            json!({"andIds": {"ids": [
                spiffe("web"),
                {"notId": {"authenticated": {"principalName": {"exact": "kuma://version/v1"}}}},
            ]}})
        );
    }

    /// The policies' names and principals.
    fn summary(policies: &BTreeMap<String, Policy>) -> Vec<(String, Vec<Value>)> {
        policies.iter().map(|(name, policy)| (name.clone(), policy.principals.iter().map(rendered).collect())).collect()
    }

    #[test]
    fn deny_rules_are_named_after_their_policy_and_the_rest_after_no_permission() {
        let permissions = InboundPermissions {
            rules: vec![
                rule("allow-web", Action::Allow, &[condition(SERVICE_TAG, "web", false)]),
                rule("deny-db", Action::Deny, &[condition(SERVICE_TAG, "db", false)]),
                rule("deny-db", Action::Deny, &[condition(SERVICE_TAG, "cache", false)]),
                rule("shadow-api", Action::AllowWithShadowDeny, &[condition(SERVICE_TAG, "api", false)]),
            ],
        };
        let Policies { denied, shadow } = policies("default", &permissions);
        let uncovered =
            json!({"notId": {"orIds": {"ids": [spiffe("web"), spiffe("db"), spiffe("cache"), spiffe("api")]}}});
        assert_eq!(
            summary(&denied),
            [
                (NO_PERMISSION_ALLOWS.to_owned(), vec![uncovered]),
                ("deny-db".to_owned(), vec![spiffe("db"), spiffe("cache")]),
            ]
        );
        assert_eq!(summary(&shadow), [("shadow-api".to_owned(), vec![spiffe("api")])]);
        assert!(denied.values().all(|policy| rendered_permissions(policy) == [json!({"any": true})]));
    }

    fn rendered_permissions(policy: &Policy) -> Vec<Value> {
        policy.permissions.iter().map(|p| crate::try_render(&crate::envoy::any(p)).unwrap()).collect()
    }

    #[test]
    fn no_rule_denies_everyone_and_a_rule_for_everyone_leaves_no_one_uncovered() {
        let none = policies("default", &InboundPermissions::default());
        assert_eq!(summary(&none.denied), [(NO_PERMISSION_ALLOWS.to_owned(), vec![json!({"any": true})])]);
        let allow_all = InboundPermissions { rules: vec![rule("allow-all-default", Action::Allow, &[])] };
        let all = policies("default", &allow_all);
        assert!(all.denied.is_empty() && all.shadow.is_empty());
    }

    fn many_policies() -> InboundPermissions {
        let rules = (0..12)
            .map(|i| rule(&format!("deny-{i}"), Action::Deny, &[condition(SERVICE_TAG, &format!("s{i}"), false)]))
            .collect();
        InboundPermissions { rules }
    }

    #[test]
    fn the_http_filter_goes_first_and_its_403_names_the_policy() {
        let mut manager = HttpConnectionManager {
            http_filters: vec![HttpFilter { name: "envoy.filters.http.router".into(), ..Default::default() }],
            ..Default::default()
        };
        protect_http(&mut manager, "default", &many_policies(), "inbound:127.0.0.1:10001");
        let names: Vec<&str> = manager.http_filters.iter().map(|filter| filter.name.as_str()).collect();
        assert_eq!(names, ["envoy.filters.http.rbac", "envoy.filters.http.router"]);
        let mappers = &manager.local_reply_config.as_ref().unwrap().mappers;
        assert_eq!(mappers.len(), 13, "one per deny policy and one for no permission");
        let rendered: Vec<Value> = mappers.iter().map(|m| crate::try_render(&crate::envoy::any(m)).unwrap()).collect();
        let deny_3 = rendered.iter().find(|m| m["headersToAdd"][0]["header"]["value"] == "deny-3").unwrap();
        assert_eq!(
            deny_3["filter"]["extensionFilter"]["typedConfig"]["expression"],
            "response.code_details == 'rbac_access_denied_matched_policy[deny-3]'"
        );
        assert_eq!(deny_3["headersToAdd"][0]["header"], json!({"key": DENIED_BY_HEADER, "value": "deny-3"}));
    }

    #[test]
    fn a_filter_is_encoded_the_same_every_time() {
        let filter = || network_filter("default", &many_policies(), "inbound_127_0_0_1_10001");
        let first = filter();
        assert!((0..20).all(|_| filter() == first));
        let Some(filter::ConfigType::TypedConfig(any)) = &first.config_type else { panic!("typed") };
        let decoded = NetworkRbac::decode(any.value.as_slice()).unwrap();
        assert_eq!(decoded.stat_prefix, "inbound_127_0_0_1_10001.");
        let rules = decoded.rules.unwrap();
        assert_eq!(rules.action, i32::from(rbac::Action::Deny));
        assert_eq!(rules.policies.len(), 13);
        assert!(decoded.shadow_rules.is_none());
    }
}
