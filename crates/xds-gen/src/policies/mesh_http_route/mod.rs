//! MeshHTTPRoute: the routes of a caller's outbound toward an HTTP service
//! (http, http2 or gRPC), and the clusters they send to.
//!
//! A caller with a MeshHTTPRoute conf toward a service gets, instead of the
//! shared route configuration `outbound:<service>` that sends everything
//! to the service, one built by [`route_configuration`] from the conf:
//!
//! - One Envoy route per match of each rule (two for a PathPrefix other
//!   than `/`: the exact path and the path followed by `/`), ordered by
//!   the Gateway API's precedence (see [`order`]), then a catch-all
//!   (`/` prefix) to the service itself unless a rule matches exactly `/`
//!   as a PathPrefix and nothing else. A match without a path matches every
//!   path.
//! - A rule's `backendRefs` are a weighted split: one cluster, or Envoy
//!   weighted clusters. A rule without any (or whose references all name
//!   what Kodiak does not route to yet, such as a MeshExternalService) sends
//!   to the service itself. Backends of weight 0 are left out, and so are
//!   services that do not speak HTTP (http, http2, gRPC) or that no
//!   Dataplane serves; a rule left without any backend gets no route, so
//!   its requests fall to the routes after it.
//! - A MeshService backend is the service's shared cluster; a
//!   MeshServiceSubset (or a MeshService with `tags`) is a cluster of the
//!   service's instances carrying those tags ([`BackendCluster`],
//!   [`subset_resources`]).
//! - Filters: `RequestHeaderModifier` and `ResponseHeaderModifier` set
//!   (overwrite), add (append) and remove headers (a request's `host` set
//!   or added is a Host rewrite; pseudo-headers such as `:path`, and
//!   removing `host`, are left out, as Envoy refuses them); `URLRewrite` replaces the
//!   Host header (`hostname`) and the path (`ReplaceFullPath`, or
//!   `ReplacePrefixMatch`, which replaces the matched segments: `/api` to
//!   `/v2` turns `/api/x` into `/v2/x`); `RequestRedirect` answers with a
//!   redirect (302 unless `statusCode` says otherwise) to the request's URL
//!   with the scheme, host name, port and path changed as given, and then
//!   the rule's backends and other filters but the header modifiers do not
//!   apply; `RequestMirror` also sends a copy of the requests (a
//!   `percentage` of them, all by default) to another backend, whose
//!   answers are dropped.

mod backends;
mod conf;
pub mod order;
mod route;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};

pub use backends::{BackendCluster, BackendRef, subset_resources};
pub(crate) use backends::{read_backend_ref, resolves, split};
pub use conf::{
    Conf, Filter, HeaderMatch, HeaderMatchKind, HeaderModifier, Match, Mirror, PathMatch, PathMatchKind, PathRewrite,
    QueryParamMatch, Redirect, Rule, UrlRewrite, read, read_with_origins,
};

use crate::names;
use crate::services::ServiceView;

/// The routes of the outbound toward `destination` under `conf`, in the
/// order Envoy must try them, and the clusters they send or mirror to
/// (each once, sorted), which the caller's proxy must have.
///
/// `services` are the mesh's services ([`crate::services`]): a backend must
/// be among them and speak HTTP. `destination` itself is always a usable
/// backend.
pub fn routes(
    conf: &Conf,
    destination: &str,
    services: &BTreeMap<String, ServiceView>,
) -> (Vec<Route>, Vec<BackendCluster>) {
    let usable = |cluster: &BackendCluster| {
        cluster.service == destination || services.get(&cluster.service).is_some_and(|s| s.protocol.is_http())
    };
    let own = [BackendRef { cluster: Some(BackendCluster::service(destination)), weight: 1 }];
    let catch_all =
        Match { path: Some(PathMatch { kind: PathMatchKind::PathPrefix, value: "/".into() }), ..Default::default() };

    let mut entries: Vec<(String, &Match, Option<&Rule>)> = conf
        .rules
        .iter()
        .flat_map(|rule| {
            let name = order::route_name(&rule.matches);
            rule.matches.iter().map(move |m| (name.clone(), m, Some(rule)))
        })
        .collect();
    entries.sort_by(|(_, a, _), (_, b, _)| order::compare(a, b));
    if !entries.iter().any(|(_, m, _)| **m == catch_all) {
        entries.push((order::route_name(std::slice::from_ref(&catch_all)), &catch_all, None));
    }

    let mut routes = Vec::new();
    let mut clusters = BTreeSet::new();
    for (name, m, rule) in entries {
        let (filters, refs) = match rule {
            Some(rule) if resolves(&rule.backend_refs) => (rule.filters.as_slice(), rule.backend_refs.as_slice()),
            Some(rule) => (rule.filters.as_slice(), own.as_slice()),
            None => (&[][..], own.as_slice()),
        };
        let split = split(refs, usable);
        if split.is_empty() {
            continue;
        }
        let mirrors: Vec<(BackendCluster, u32)> = filters
            .iter()
            .filter_map(|filter| match filter {
                Filter::RequestMirror(mirror) => {
                    let cluster = mirror.backend.cluster.as_ref().filter(|cluster| usable(cluster))?;
                    Some((cluster.clone(), mirror.per_million))
                }
                _ => None,
            })
            .collect();
        if !filters.iter().any(|filter| matches!(filter, Filter::RequestRedirect(_))) {
            clusters.extend(split.iter().chain(&mirrors).map(|(cluster, _)| cluster.clone()));
        }
        let with_path = match m.path {
            Some(_) => m.clone(),
            None => Match { path: catch_all.path.clone(), ..m.clone() },
        };
        let action = route::Action { split: &split, mirrors: &mirrors, filters };
        routes.extend(route::envoy_routes(&name, &with_path, &action));
    }
    (routes, clusters.into_iter().collect())
}

/// The origin (see [`Rule::origin`]) of the Envoy routes built from each
/// rule, by route name: routes are named after their rule's matches, and
/// the first rule of a name is the one Envoy tries first.
pub fn route_origins(conf: &Conf) -> HashMap<String, &str> {
    let mut origins = HashMap::new();
    for rule in &conf.rules {
        origins.entry(order::route_name(&rule.matches)).or_insert(rule.origin.as_deref());
    }
    origins.into_iter().filter_map(|(name, origin)| Some((name, origin?))).collect()
}

/// The route configuration `outbound:<destination>` for a caller whose
/// MeshHTTPRoute conf toward `destination` is `conf`: one virtual host
/// (named after the service, any domain) with [`routes`]; and the clusters
/// they use.
pub fn route_configuration(
    conf: &Conf,
    destination: &str,
    services: &BTreeMap<String, ServiceView>,
) -> (RouteConfiguration, Vec<BackendCluster>) {
    let (routes, clusters) = routes(conf, destination, services);
    let configuration = RouteConfiguration {
        name: names::outbound_route(destination),
        virtual_hosts: vec![VirtualHost {
            name: destination.to_owned(),
            domains: vec!["*".to_owned()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    };
    (configuration, clusters)
}

#[cfg(test)]
mod tests;
