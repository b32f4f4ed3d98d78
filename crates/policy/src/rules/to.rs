//! The `to` half of a policy type: the conf toward any destination, each
//! named service and each named route.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use super::merge_rules::Acc;
use super::read::{Destination, Policy, Shape, ToEntry, ToKind};
use super::{Conf, ToRules};

/// A service's conf being added up, and how many of the `Mesh` entries met
/// so far it holds: the others are laid over it when its own next entry
/// comes, or at the end.
struct Open<'p> {
    acc: Acc<'p>,
    seen: usize,
}

/// The `to` confs of the `applying` policies (least specific first, each
/// with its class number); `route_applies` tells which routes reach the
/// proxy.
pub(super) fn to_rules(shape: Shape, applying: &[(&Policy, u32)], route_applies: impl Fn(&str) -> bool) -> ToRules {
    let mut mesh: Option<Acc> = None;
    let mut mesh_entries: Vec<(&str, &Value)> = Vec::new();
    let mut services: BTreeMap<&str, Open> = BTreeMap::new();
    let mut route_entries = Vec::new();
    // Entries rank by their policy's class, then by their own kind (an entry
    // naming a service outranks a `Mesh` one of an equally specific
    // policy), then by policy position; a stable sort keeps each policy's
    // entries of one kind in order.
    let mut entries: Vec<(u32, ToKind, usize, &Policy, &ToEntry)> = applying
        .iter()
        .enumerate()
        .flat_map(|(position, (policy, class))| {
            policy.to.iter().map(move |entry| (*class, entry.kind, position, *policy, entry))
        })
        .collect();
    entries.sort_by_key(|(class, kind, position, ..)| (*class, *kind, *position));
    for (class, _, position, policy, entry) in entries {
        match &entry.destination {
            Destination::Mesh => {
                // Toward any destination, so toward every named service
                // too, which catch up later.
                mesh.get_or_insert_with(Acc::new).add(shape, &entry.conf, &policy.name);
                mesh_entries.push((&policy.name, &entry.conf));
                route_entries.push((class, entry.kind, position, None, entry));
            }
            Destination::Service(service) => {
                let open = services
                    .entry(service)
                    .or_insert_with(|| Open { acc: mesh.clone().unwrap_or_else(Acc::new), seen: mesh_entries.len() });
                for (name, conf) in &mesh_entries[open.seen..] {
                    open.acc.add(shape, conf, name);
                }
                open.seen = mesh_entries.len();
                open.acc.add(shape, &entry.conf, &policy.name);
            }
            Destination::Route(route) if route_applies(route) => {
                route_entries.push((class, entry.kind, position, Some(route.as_str()), entry));
            }
            Destination::Route(_) | Destination::Elsewhere => {}
        }
    }
    let services = catch_up(shape, services, &mesh_entries);
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
    ToRules { mesh: mesh.map(|acc| acc.finish(shape)), services, routes }
}

/// Lays over each service's conf the `Mesh` entries that came after its own
/// last entry, and finishes them. Patches merge associatively, so services
/// that missed the same run of entries share one merge of that run; route
/// rules, which merge by matches, take the entries one by one.
fn catch_up<'p>(
    shape: Shape,
    services: BTreeMap<&'p str, Open<'p>>,
    mesh_entries: &[(&'p str, &Value)],
) -> BTreeMap<String, Conf> {
    let mut runs: HashMap<usize, Acc> = HashMap::new();
    services
        .into_iter()
        .map(|(service, mut open)| {
            let missed = &mesh_entries[open.seen..];
            match shape {
                _ if missed.is_empty() => {}
                Shape::HttpRoute => {
                    for (name, conf) in missed {
                        open.acc.add(shape, conf, name);
                    }
                }
                Shape::Default | Shape::TcpRoute => {
                    let run = runs.entry(open.seen).or_insert_with(|| {
                        let mut run = Acc::new();
                        for (name, conf) in missed {
                            run.add(shape, conf, name);
                        }
                        run
                    });
                    open.acc.absorb(run);
                }
            }
            (service.to_owned(), open.acc.finish(shape))
        })
        .collect()
}
