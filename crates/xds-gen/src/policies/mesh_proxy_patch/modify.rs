//! Each kind of modification applied to the working resources.

use prost_reflect::MessageDescriptor;
use serde_json::Value;

use super::conf::{JsonPatch, Match, Modification, Operation, Target};
use super::resources::{Entry, Failure, Kind, Working};
use super::{json_patch, message};

const HTTP_CONNECTION_MANAGER: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const NETWORK_FILTER: &str = "envoy.config.listener.v3.Filter";
const HTTP_FILTER: &str = "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter";
const VIRTUAL_HOST: &str = "envoy.config.route.v3.VirtualHost";
/// Where listeners carry the tags `listenerTags` and `tags` match.
const TAGS_METADATA: &str = "io.kuma.tags";

/// An edit of a list of filters or of virtual hosts.
type ListEdit<'a> = Box<dyn Fn(&mut Vec<Value>) -> Result<(), Failure> + 'a>;

/// A modification that did not apply to `resource` (`None`: to any).
pub(super) struct Failed {
    pub resource: Option<(Kind, String)>,
    pub failure: Failure,
}

fn everywhere(failure: impl Into<Failure>) -> Vec<Failed> {
    vec![Failed { resource: None, failure: failure.into() }]
}

/// Applies `modification` to `working`; what did not apply is returned
/// and left as it was, resource by resource.
pub(super) fn apply(modification: &Modification, working: &mut Working) -> Vec<Failed> {
    match modification.target {
        Target::Cluster => resources(modification, working, Kind::Cluster),
        Target::Listener => resources(modification, working, Kind::Listener),
        Target::NetworkFilter => filters(modification, working, Level::Network),
        Target::HttpFilter => filters(modification, working, Level::Http),
        Target::VirtualHost => virtual_hosts(modification, working),
        Target::Unknown => everywhere("names none of cluster, listener, networkFilter, httpFilter, virtualHost"),
    }
}

/// How a `Patch` changes a message: merged with `value`, or JSON patches.
enum Change<'a> {
    Merge(Value),
    JsonPatches(&'a [JsonPatch]),
}

impl Change<'_> {
    fn apply_to(&self, json: &mut Value, message: &MessageDescriptor) -> Result<(), Failure> {
        match self {
            Change::Merge(patch) => *json = message::merge_json(message, json, patch)?,
            Change::JsonPatches(patches) => json_patch::apply(json, patches)?,
        }
        Ok(())
    }
}

/// `value` read as a `message` in Envoy's JSON form.
fn value_as(modification: &Modification, message: &MessageDescriptor) -> Result<Value, Failure> {
    let text = modification
        .value
        .as_deref()
        .ok_or_else(|| format!("value must be defined with operation {}", modification.operation))?;
    let value = message::parse_value(text)?;
    Ok(message::canonical(message, &value).map_err(|reason| format!("value is {reason}"))?)
}

fn change<'a>(modification: &'a Modification, message: &MessageDescriptor) -> Result<Change<'a>, Failure> {
    if !modification.json_patches.is_empty() {
        Ok(Change::JsonPatches(&modification.json_patches))
    } else if modification.value.is_some() {
        value_as(modification, message).map(Change::Merge)
    } else {
        Err("operation Patch needs value or jsonPatches".into())
    }
}

fn unsupported(modification: &Modification, supported: &str) -> Vec<Failed> {
    everywhere(format!(
        "operation {} does not apply to a {} (use {supported})",
        modification.operation, modification.target
    ))
}

fn is_none_or_eq(condition: &Option<String>, actual: &str) -> bool {
    condition.as_deref().is_none_or(|wanted| wanted == actual)
}

fn origin_matches(condition: &Match, entry: &Entry) -> bool {
    condition.origin.as_deref().is_none_or(|wanted| entry.origin == Some(wanted))
}

/// Whether the listener has every tag of `condition` (`*`: any value): the
/// tags of what a generated listener serves, and those in its metadata (a
/// modification may have put them there).
fn tags_match(condition: &Match, entry: &mut Entry) -> Result<bool, String> {
    if condition.listener_tags.is_empty() {
        return Ok(true);
    }
    let mut tags = entry.tags.clone().unwrap_or_default();
    let json = entry.json()?;
    if let Some(Value::Object(metadata)) = json.pointer(&format!("/metadata/filterMetadata/{TAGS_METADATA}")) {
        tags.extend(metadata.iter().filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned()))));
    }
    Ok(condition
        .listener_tags
        .iter()
        .all(|(key, wanted)| tags.get(key).is_some_and(|actual| wanted == "*" || wanted == actual)))
}

/// The positions of the `kind` entries `selects` picks; a resource that
/// cannot be looked into is reported and left alone.
fn select(
    working: &mut Working,
    kind: Kind,
    failed: &mut Vec<Failed>,
    mut selects: impl FnMut(&mut Entry) -> Result<bool, String>,
) -> Vec<usize> {
    let mut positions = Vec::new();
    for (at, entry) in working.entries(kind).iter_mut().enumerate() {
        match selects(entry) {
            Ok(true) => positions.push(at),
            Ok(false) => {}
            Err(reason) => failed.push(Failed { resource: Some((kind, entry.name.clone())), failure: reason.into() }),
        }
    }
    positions
}

/// Runs `change` on each selected entry, reporting those it fails on.
fn change_each(
    working: &mut Working,
    kind: Kind,
    positions: &[usize],
    failed: &mut Vec<Failed>,
    mut change: impl FnMut(&mut Value) -> Result<(), Failure>,
) {
    for &at in positions {
        let entry = &mut working.entries(kind)[at];
        if let Err(failure) = entry.change(kind, &mut change) {
            failed.push(Failed { resource: Some((kind, entry.name.clone())), failure });
        }
    }
}

/// Clusters and listeners: `Add`, `Remove`, `Patch` of whole resources.
fn resources(modification: &Modification, working: &mut Working, kind: Kind) -> Vec<Failed> {
    let message = match kind.descriptor() {
        Ok(message) => message,
        Err(reason) => return everywhere(reason),
    };
    let condition = &modification.matcher;
    let mut failed = Vec::new();
    let selected = |working: &mut Working, failed: &mut Vec<Failed>| {
        select(working, kind, failed, |entry| {
            Ok(is_none_or_eq(&condition.name, &entry.name)
                && origin_matches(condition, entry)
                && (kind != Kind::Listener || tags_match(condition, entry)?))
        })
    };
    match modification.operation {
        Operation::Add => {
            let value = match value_as(modification, &message) {
                Ok(value) => value,
                Err(failure) => return everywhere(failure),
            };
            match value.get("name").and_then(Value::as_str).filter(|name| !name.is_empty()) {
                Some(name) => {
                    if let Err(reason) = working.add(kind, name.to_owned(), value.clone()) {
                        return everywhere(reason);
                    }
                }
                None => return everywhere(format!("the {} to add has no name", kind.noun())),
            }
        }
        Operation::Remove => {
            let positions = selected(working, &mut failed);
            working.remove(kind, &positions);
        }
        Operation::Patch => {
            let change = match change(modification, &message) {
                Ok(change) => change,
                Err(failure) => return everywhere(failure),
            };
            let positions = selected(working, &mut failed);
            change_each(working, kind, &positions, &mut failed, |json| change.apply_to(json, &message));
        }
        _ => return unsupported(modification, "Add, Remove or Patch"),
    }
    failed
}

/// Network filters (in each filter chain of a listener) or HTTP filters
/// (in each HTTP connection manager of a listener).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Network,
    Http,
}

impl Level {
    fn filter_message(self) -> &'static str {
        match self {
            Level::Network => NETWORK_FILTER,
            Level::Http => HTTP_FILTER,
        }
    }

    /// Calls `edit` with each list of filters of this level in `listener`.
    fn for_each_list(
        self,
        listener: &mut Value,
        edit: &mut dyn FnMut(&mut Vec<Value>) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let Some(chains) = listener.get_mut("filterChains").and_then(Value::as_array_mut) else { return Ok(()) };
        for chain in chains {
            let filters = list_field(chain, "filters");
            match self {
                Level::Network => edit(filters)?,
                Level::Http => {
                    for filter in filters.iter_mut().filter(|filter| is_http_connection_manager(filter)) {
                        edit(list_field(&mut filter["typedConfig"], "httpFilters"))?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn is_http_connection_manager(filter: &Value) -> bool {
    filter.pointer("/typedConfig/@type").and_then(Value::as_str) == Some(HTTP_CONNECTION_MANAGER)
}

/// The list `key` of `object`, made empty when absent (an empty list is
/// left out again when the resource is written back).
fn list_field<'a>(object: &'a mut Value, key: &str) -> &'a mut Vec<Value> {
    if !object.get(key).is_some_and(Value::is_array) {
        object[key] = Value::Array(Vec::new());
    }
    object[key].as_array_mut().expect("made an array above")
}

fn filters(modification: &Modification, working: &mut Working, level: Level) -> Vec<Failed> {
    let message = match message::descriptor(level.filter_message()) {
        Ok(message) => message,
        Err(reason) => return everywhere(reason),
    };
    let condition = &modification.matcher;
    let name_matches = |filter: &Value| is_none_or_eq(&condition.name, filter["name"].as_str().unwrap_or_default());
    let position = |filters: &[Value]| {
        let name = condition.name.as_deref()?;
        filters.iter().position(|filter| filter["name"] == name)
    };
    let edit: ListEdit<'_> = match &modification.operation {
        Operation::AddFirst | Operation::AddLast | Operation::AddBefore | Operation::AddAfter => {
            let filter = match value_as(modification, &message) {
                Ok(filter) => filter,
                Err(failure) => return everywhere(failure),
            };
            let operation = modification.operation.clone();
            Box::new(move |filters: &mut Vec<Value>| {
                let at = match operation {
                    Operation::AddFirst => Some(0),
                    Operation::AddLast => Some(filters.len()),
                    Operation::AddBefore => position(filters),
                    _ => position(filters).map(|at| at + 1),
                };
                // Before or after a filter the list does not hold: nothing to do.
                if let Some(at) = at {
                    filters.insert(at, filter.clone());
                }
                Ok(())
            })
        }
        Operation::Remove => Box::new(|filters: &mut Vec<Value>| {
            filters.retain(|filter| !name_matches(filter));
            Ok(())
        }),
        Operation::Patch => {
            let change = match change(modification, &message) {
                Ok(change) => change,
                Err(failure) => return everywhere(failure),
            };
            Box::new(move |filters: &mut Vec<Value>| {
                for filter in filters.iter_mut().filter(|filter| name_matches(filter)) {
                    patch_typed_config(filter, &change)?;
                }
                Ok(())
            })
        }
        _ => return unsupported(modification, "AddFirst, AddLast, AddBefore, AddAfter, Remove or Patch"),
    };
    let mut failed = Vec::new();
    let positions = select(working, Kind::Listener, &mut failed, |entry| {
        Ok(is_none_or_eq(&condition.listener_name, &entry.name)
            && origin_matches(condition, entry)
            && tags_match(condition, entry)?)
    });
    change_each(working, Kind::Listener, &positions, &mut failed, |listener| {
        level.for_each_list(listener, &mut |filters| edit(filters))
    });
    failed
}

/// Patches a filter's `typedConfig`: merged with the `typedConfig` of the
/// value (same type only), or JSON patches on the config message itself
/// (paths such as `/statPrefix`, without the `@type`).
fn patch_typed_config(filter: &mut Value, change: &Change<'_>) -> Result<(), Failure> {
    let current = filter.get("typedConfig");
    let patched = match (change, current) {
        (Change::Merge(value), _) => match (current, value.get("typedConfig")) {
            (_, None) => return Ok(()),
            (None, Some(config)) => config.clone(),
            (Some(current), Some(config)) => message::merge_any(current, config)?,
        },
        (Change::JsonPatches(patches), Some(current)) => {
            let (message, mut fields) = message::split_any(current)?;
            json_patch::apply(&mut fields, patches)?;
            message::from_json(&message, &fields)?;
            message::join_any(&message, fields)
        }
        (Change::JsonPatches(_), None) => return Err("the filter has no typedConfig to patch".into()),
    };
    filter["typedConfig"] = patched;
    Ok(())
}

/// Virtual hosts in route configurations: those fetched over RDS and those
/// inline in the HTTP connection managers of listeners.
fn virtual_hosts(modification: &Modification, working: &mut Working) -> Vec<Failed> {
    let message = match message::descriptor(VIRTUAL_HOST) {
        Ok(message) => message,
        Err(reason) => return everywhere(reason),
    };
    let condition = &modification.matcher;
    let name_matches = |host: &Value| is_none_or_eq(&condition.name, host["name"].as_str().unwrap_or_default());
    let edit: ListEdit<'_> = match modification.operation {
        Operation::Add => {
            let host = match value_as(modification, &message) {
                Ok(host) => host,
                Err(failure) => return everywhere(failure),
            };
            Box::new(move |hosts: &mut Vec<Value>| {
                hosts.push(host.clone());
                Ok(())
            })
        }
        Operation::Remove => Box::new(|hosts: &mut Vec<Value>| {
            hosts.retain(|host| !name_matches(host));
            Ok(())
        }),
        Operation::Patch => {
            let change = match change(modification, &message) {
                Ok(change) => change,
                Err(failure) => return everywhere(failure),
            };
            let message = message.clone();
            Box::new(move |hosts: &mut Vec<Value>| {
                hosts.iter_mut().filter(|host| name_matches(host)).try_for_each(|host| change.apply_to(host, &message))
            })
        }
        _ => return unsupported(modification, "Add, Remove or Patch"),
    };
    let route_matches =
        |route: &Value| is_none_or_eq(&condition.route_configuration_name, route["name"].as_str().unwrap_or_default());
    let mut edit_route = |route: &mut Value| -> Result<(), Failure> {
        if route_matches(route) { edit(list_field(route, "virtualHosts")) } else { Ok(()) }
    };
    let mut failed = Vec::new();
    let routes = select(working, Kind::Route, &mut failed, |entry| Ok(origin_matches(condition, entry)));
    change_each(working, Kind::Route, &routes, &mut failed, &mut edit_route);
    let listeners = select(working, Kind::Listener, &mut failed, |entry| Ok(origin_matches(condition, entry)));
    change_each(working, Kind::Listener, &listeners, &mut failed, |listener| {
        let Some(chains) = listener.get_mut("filterChains").and_then(Value::as_array_mut) else { return Ok(()) };
        let managers = chains
            .iter_mut()
            .filter_map(|chain| chain.get_mut("filters").and_then(Value::as_array_mut))
            .flatten()
            .filter(|filter| is_http_connection_manager(filter));
        for manager in managers {
            if let Some(route) = manager.pointer_mut("/typedConfig/routeConfig") {
                edit_route(route)?;
            }
        }
        Ok(())
    });
    failed
}
