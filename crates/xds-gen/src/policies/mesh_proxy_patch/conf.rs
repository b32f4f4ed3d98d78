//! The typed reading of MeshProxyPatch's `default`: the list of
//! modifications, in the order they apply.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// The modifications one proxy gets, least specific policy first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Conf {
    pub modifications: Vec<Modification>,
}

/// One entry of `appendModifications`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Modification {
    /// Where the entry was written, for errors.
    pub source: Source,
    pub target: Target,
    pub operation: Operation,
    pub matcher: Match,
    /// The Envoy resource (YAML or JSON text) to add or to merge in.
    pub value: Option<String>,
    /// RFC 6902 operations, applied in order (operation `Patch` only).
    pub json_patches: Vec<JsonPatch>,
}

/// The policy and index an entry comes from: `policy` is `None` when the
/// conf was read from a merged `default`, and `index` then counts in the
/// merged list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Source {
    pub policy: Option<String>,
    pub index: usize,
}

/// What a modification works on: the key of the entry that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Cluster,
    Listener,
    NetworkFilter,
    HttpFilter,
    VirtualHost,
    /// An entry with none of the keys above (the schema refuses it).
    Unknown,
}

impl Target {
    const ALL: [Target; 5] =
        [Target::Cluster, Target::Listener, Target::NetworkFilter, Target::HttpFilter, Target::VirtualHost];

    /// The key in `appendModifications[*]`.
    pub fn key(self) -> &'static str {
        match self {
            Target::Cluster => "cluster",
            Target::Listener => "listener",
            Target::NetworkFilter => "networkFilter",
            Target::HttpFilter => "httpFilter",
            Target::VirtualHost => "virtualHost",
            Target::Unknown => "(unknown)",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operation {
    Add,
    Remove,
    Patch,
    AddFirst,
    AddLast,
    AddBefore,
    AddAfter,
    /// A name Kodiak does not know (the schema refuses it).
    Unknown(String),
}

impl Operation {
    fn read(name: &str) -> Operation {
        match name {
            "Add" => Operation::Add,
            "Remove" => Operation::Remove,
            "Patch" => Operation::Patch,
            "AddFirst" => Operation::AddFirst,
            "AddLast" => Operation::AddLast,
            "AddBefore" => Operation::AddBefore,
            "AddAfter" => Operation::AddAfter,
            other => Operation::Unknown(other.to_owned()),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Operation::Add => "Add",
            Operation::Remove => "Remove",
            Operation::Patch => "Patch",
            Operation::AddFirst => "AddFirst",
            Operation::AddLast => "AddLast",
            Operation::AddBefore => "AddBefore",
            Operation::AddAfter => "AddAfter",
            Operation::Unknown(name) => name,
        };
        f.write_str(name)
    }
}

/// The conditions of `match`; an absent one matches everything. Which
/// fields count depends on the target: `name` is the cluster's, the
/// listener's, the filter's or the virtual host's own name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Match {
    pub origin: Option<String>,
    pub name: Option<String>,
    /// Filters: the name of the listener holding them.
    pub listener_name: Option<String>,
    /// Listeners (`tags`) and filters (`listenerTags`): tags the listener
    /// carries; the value `*` matches any value of a present tag.
    pub listener_tags: BTreeMap<String, String>,
    /// Virtual hosts: the name of the route configuration holding them.
    pub route_configuration_name: Option<String>,
}

/// One RFC 6902 operation. `value` is kept as JSON text (so the conf stays
/// hashable).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonPatch {
    pub op: String,
    pub path: String,
    pub from: Option<String>,
    pub value: Option<String>,
}

/// Reads a merged MeshProxyPatch `default` (`{appendModifications: [...]}`).
/// Entries are numbered by their place in that list.
pub fn read(conf: &Value) -> Conf {
    Conf { modifications: read_list(conf, None) }
}

/// Reads the `default` of each applying policy, least specific first, with
/// each entry numbered in its own policy, so errors name the policy and the
/// entry the user wrote.
pub fn read_policies<'a>(policies: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Conf {
    let modifications = policies.into_iter().flat_map(|(name, conf)| read_list(conf, Some(name))).collect();
    Conf { modifications }
}

fn read_list(conf: &Value, policy: Option<&str>) -> Vec<Modification> {
    let entries = conf.get("appendModifications").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| read_modification(entry, Source { policy: policy.map(str::to_owned), index }))
        .collect()
}

fn read_modification(entry: &Value, source: Source) -> Modification {
    let found = Target::ALL.into_iter().find_map(|target| Some((target, entry.get(target.key())?)));
    let (target, body) = found.unwrap_or((Target::Unknown, &Value::Null));
    let matcher = body.get("match").map(|m| read_match(m, target)).unwrap_or_default();
    let value = match body.get("value") {
        Some(Value::String(text)) => Some(text.clone()),
        // Lenient: an object given in place of its YAML text.
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let json_patches = body.get("jsonPatches").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    Modification {
        source,
        target,
        operation: Operation::read(body.get("operation").and_then(Value::as_str).unwrap_or_default()),
        matcher,
        value,
        json_patches: json_patches.iter().map(read_json_patch).collect(),
    }
}

fn read_match(conf: &Value, target: Target) -> Match {
    let text = |key: &str| conf.get(key).and_then(Value::as_str).map(str::to_owned);
    let tags_key = if target == Target::Listener { "tags" } else { "listenerTags" };
    let listener_tags = conf
        .get(tags_key)
        .and_then(Value::as_object)
        .map(|tags| tags.iter().filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned()))).collect());
    Match {
        origin: text("origin"),
        name: text("name"),
        listener_name: text("listenerName"),
        listener_tags: listener_tags.unwrap_or_default(),
        route_configuration_name: text("routeConfigurationName"),
    }
}

fn read_json_patch(conf: &Value) -> JsonPatch {
    let text = |key: &str| conf.get(key).and_then(Value::as_str).map(str::to_owned);
    JsonPatch {
        op: text("op").unwrap_or_default(),
        path: text("path").unwrap_or_default(),
        from: text("from"),
        value: conf.get("value").map(Value::to_string),
    }
}
