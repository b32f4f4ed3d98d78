//! A policy read once from its resource, in the shape the per-proxy work
//! needs: its top-level target, its rank, and its `to`, `from`/`rules` and
//! `default` sections with each entry's conf ready to merge.

use std::collections::BTreeMap;

use kodiak_api::tags::SERVICE_TAG;
use kodiak_api::{FieldPath, Resource, ResourceType, Violations};
use serde_json::{Map, Value, json};

use crate::fields::{list, string, string_map};
use crate::order::Rank;
use crate::target::Target;

/// One policy of any type.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub name: String,
    pub target: Target,
    /// The MeshHTTPRoute the policy configures, when its top-level
    /// targetRef names one: it applies where that route does.
    pub route: Option<String>,
    pub rank: Rank,
    pub to: Vec<ToEntry>,
    /// Its `rules` when it has some, else its `from` entries.
    pub from: Vec<FromEntry>,
    /// `spec.default` of a policy without `to`, `from` and `rules`.
    pub default: Option<Value>,
}

/// What a `to` entry configures.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Destination {
    /// Traffic toward any destination.
    Mesh,
    /// Traffic toward the service with this `kuma.io/service`.
    Service(String),
    /// Traffic through the MeshHTTPRoute of this name.
    Route(String),
    /// A destination Kodiak does not model (MeshExternalService,
    /// MeshMultiZoneService, MeshService picked by labels): nothing.
    Elsewhere,
}

/// One `to` entry: its destination, the kind of its targetRef (for the order
/// of route confs) and its conf, shaped for merging.
#[derive(Debug, Clone)]
pub(crate) struct ToEntry {
    pub destination: Destination,
    pub kind: ToKind,
    pub conf: Value,
}

/// `to` targetRef kinds, least specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ToKind {
    Mesh,
    Service,
    Route,
}

/// Which callers a `from` or `rules` entry speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Callers {
    /// Every caller (`from` of kind Mesh, `rules` without matches).
    All,
    /// Callers carrying all these tags.
    Tags(BTreeMap<String, String>),
    /// Callers meeting any of these matches (SPIFFE ID, SNI).
    Matched(Vec<Value>),
    /// No caller (a MeshServiceSubset whose tags name another service).
    Nobody,
}

/// One `from` or `rules` entry.
#[derive(Debug, Clone)]
pub(crate) struct FromEntry {
    pub callers: Callers,
    pub conf: Value,
}

/// How the `to` confs of a policy type are shaped and added up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A `default` per entry, merged as patches.
    Default,
    /// MeshHTTPRoute: `rules` per entry, merged rule by rule by `matches`.
    HttpRoute,
    /// MeshTCPRoute: one rule per entry, merged as a patch.
    TcpRoute,
}

impl Shape {
    pub fn of(kind: ResourceType) -> Shape {
        match kind {
            ResourceType::MeshHTTPRoute => Shape::HttpRoute,
            ResourceType::MeshTCPRoute => Shape::TcpRoute,
            _ => Shape::Default,
        }
    }
}

impl Policy {
    /// Reads a stored policy. A resource that passed validation always
    /// reads; otherwise the errors name the fields.
    pub fn read(resource: &Resource) -> Result<Policy, Violations> {
        let mut out = Violations::new();
        let spec_path = FieldPath::root().field("spec");
        let kind = resource.key.kind;
        let empty = Map::new();
        let spec = match resource.body.get("spec") {
            Some(Value::Object(spec)) => spec,
            _ => {
                out.add(&spec_path, "must be an object");
                &empty
            }
        };
        let (target, route) =
            Target::read_with_routes(spec.get("targetRef"), kind.name(), &spec_path.field("targetRef"), &mut out);
        let shape = Shape::of(kind);
        let to = list(spec, "to")
            .iter()
            .enumerate()
            .map(|(i, entry)| read_to(entry, shape, route.as_deref(), &spec_path.field("to").index(i), &mut out))
            .collect();
        let rules = list(spec, "rules");
        let from = if rules.is_empty() {
            let path = spec_path.field("from");
            list(spec, "from").iter().enumerate().map(|(i, entry)| read_from(entry, &path.index(i), &mut out)).collect()
        } else {
            let path = spec_path.field("rules");
            rules.iter().enumerate().map(|(i, entry)| read_rule(entry, &path.index(i), &mut out)).collect()
        };
        let default = match spec.get("default") {
            None | Some(Value::Null) => None,
            Some(conf) => Some(object(conf, &spec_path.field("default"), &mut out).clone()),
        };
        let policy = Policy {
            name: resource.key.name.clone(),
            target,
            route,
            rank: Rank::from_resource(resource),
            to,
            from,
            default,
        };
        out.into_result(policy)
    }
}

/// `conf` when it is an object; null, which merges as nothing, and a
/// violation otherwise.
fn object<'a>(conf: &'a Value, path: &FieldPath, out: &mut Violations) -> &'a Value {
    static EMPTY: Value = Value::Null;
    if conf.is_object() {
        conf
    } else {
        out.add(path, "must be an object");
        &EMPTY
    }
}

fn read_to(entry: &Value, shape: Shape, top_route: Option<&str>, path: &FieldPath, out: &mut Violations) -> ToEntry {
    let reference = entry.get("targetRef").unwrap_or(&Value::Null);
    let reference_path = path.field("targetRef");
    let named = |out: &mut Violations, what: &str| match string(reference, "name").filter(|name| !name.is_empty()) {
        Some(name) => Some(name.to_owned()),
        None => {
            out.add(&reference_path.field("name"), format!("must name the {what}"));
            None
        }
    };
    let (destination, kind) = match string(reference, "kind").unwrap_or_default() {
        "Mesh" => (Destination::Mesh, ToKind::Mesh),
        "MeshService" if string(reference, "name").is_none() && reference.get("labels").is_some() => {
            (Destination::Elsewhere, ToKind::Service)
        }
        "MeshService" => {
            (named(out, "destination service").map_or(Destination::Elsewhere, Destination::Service), ToKind::Service)
        }
        "MeshHTTPRoute" => (named(out, "route").map_or(Destination::Elsewhere, Destination::Route), ToKind::Route),
        "MeshExternalService" | "MeshMultiZoneService" => (Destination::Elsewhere, ToKind::Service),
        other => {
            out.add(
                &reference_path.field("kind"),
                format!("{other:?} cannot name a destination; expected Mesh, MeshService, MeshExternalService, MeshMultiZoneService or MeshHTTPRoute"),
            );
            (Destination::Elsewhere, ToKind::Mesh)
        }
    };
    // A policy that targets a route configures that route, whatever its
    // entries' destination.
    let destination = match (top_route, destination) {
        (Some(route), Destination::Mesh) => Destination::Route(route.to_owned()),
        (Some(_), _) => Destination::Elsewhere,
        (None, destination) => destination,
    };
    let conf = match shape {
        Shape::Default => object(entry.get("default").unwrap_or(&Value::Null), &path.field("default"), out).clone(),
        Shape::HttpRoute => json!({ "rules": entry.get("rules").cloned().unwrap_or_else(|| json!([])) }),
        Shape::TcpRoute => match entry.get("rules").and_then(|rules| rules.get(0)) {
            Some(rule) => rule.clone(),
            // No rule: connections go to the destination itself.
            None => {
                let mut backend = reference.as_object().cloned().unwrap_or_default();
                backend.insert("weight".into(), json!(1));
                json!({ "default": { "backendRefs": [backend] } })
            }
        },
    };
    ToEntry { destination, kind, conf }
}

fn read_from(entry: &Value, path: &FieldPath, out: &mut Violations) -> FromEntry {
    let reference = entry.get("targetRef").unwrap_or(&Value::Null);
    let reference_path = path.field("targetRef");
    let tags =
        |out: &mut Violations| string_map(reference, "tags", &reference_path.field("tags"), out).unwrap_or_default();
    let callers = match string(reference, "kind").unwrap_or_default() {
        "Mesh" => Callers::All,
        "MeshSubset" => Callers::Tags(tags(out)),
        "MeshService" | "MeshServiceSubset" => {
            let service = string(reference, "name").unwrap_or_else(|| {
                out.add(&reference_path.field("name"), "must name the calling service");
                ""
            });
            let mut tags = tags(out);
            // A service tag among the tags must agree with the name, else
            // the entry describes no caller.
            match tags.insert(SERVICE_TAG.to_owned(), service.to_owned()) {
                Some(tagged) if tagged != service => Callers::Nobody,
                _ => Callers::Tags(tags),
            }
        }
        other => {
            out.add(
                &reference_path.field("kind"),
                format!("{other:?} cannot name callers; expected Mesh, MeshSubset, MeshService or MeshServiceSubset"),
            );
            Callers::Nobody
        }
    };
    let conf = object(entry.get("default").unwrap_or(&Value::Null), &path.field("default"), out).clone();
    FromEntry { callers, conf }
}

fn read_rule(entry: &Value, path: &FieldPath, out: &mut Violations) -> FromEntry {
    let matches = entry.get("matches").and_then(Value::as_array).filter(|matches| !matches.is_empty());
    let callers = matches.map_or(Callers::All, |matches| Callers::Matched(matches.clone()));
    let conf = object(entry.get("default").unwrap_or(&Value::Null), &path.field("default"), out).clone();
    FromEntry { callers, conf }
}
