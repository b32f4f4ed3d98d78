//! The `to` half of a policy type: the conf toward any destination, each
//! named service and each named route.

use std::collections::{BTreeMap, BTreeSet};

use super::ToRules;
use super::merge_rules::Acc;
use super::read::{Destination, Policy, Shape};

/// The `to` confs of the `applying` policies (least specific first, each
/// with its class number); `route_applies` tells which routes reach the
/// proxy.
pub(super) fn to_rules(shape: Shape, applying: &[(&Policy, u32)], route_applies: impl Fn(&str) -> bool) -> ToRules {
    let mut mesh: Option<Acc> = None;
    let mut services: BTreeMap<&str, Acc> = BTreeMap::new();
    let mut route_entries = Vec::new();
    for (position, (policy, class)) in applying.iter().enumerate() {
        for entry in &policy.to {
            match &entry.destination {
                Destination::Mesh => {
                    // Toward any destination, so toward every named service too.
                    mesh.get_or_insert_with(Acc::new).add(shape, &entry.conf, &policy.name);
                    for acc in services.values_mut() {
                        acc.add(shape, &entry.conf, &policy.name);
                    }
                    route_entries.push((*class, entry.kind, position, None, entry));
                }
                Destination::Service(service) => {
                    let acc = services.entry(service).or_insert_with(|| mesh.clone().unwrap_or_else(Acc::new));
                    acc.add(shape, &entry.conf, &policy.name);
                }
                Destination::Route(route) if route_applies(route) => {
                    route_entries.push((*class, entry.kind, position, Some(route.as_str()), entry));
                }
                Destination::Route(_) | Destination::Elsewhere => {}
            }
        }
    }
    // Entries toward routes rank by policy class, then entry kind, then
    // policy position; a stable sort keeps each policy's entries in order.
    route_entries.sort_by_key(|(class, kind, position, ..)| (*class, *kind, *position));
    let named: BTreeSet<&str> = route_entries.iter().filter_map(|(.., route, _)| *route).collect();
    let routes = named
        .into_iter()
        .map(|route| {
            let mut acc = Acc::new();
            for (.., position, covers, entry) in &route_entries {
                if covers.is_none_or(|covered| covered == route) {
                    acc.add(shape, &entry.conf, &applying[*position].0.name);
                }
            }
            (route.to_owned(), acc.finish(shape))
        })
        .collect();
    ToRules {
        mesh: mesh.map(|acc| acc.finish(shape)),
        services: services.into_iter().map(|(service, acc)| (service.to_owned(), acc.finish(shape))).collect(),
        routes,
    }
}
