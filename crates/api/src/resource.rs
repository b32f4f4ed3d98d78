//! A resource: its identity (type, mesh, name), labels, the fields of its
//! type, and the bookkeeping a store adds (version, timestamps).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::name::{check_label_key, check_mesh_name, check_name};
use crate::resource_type::{ResourceType, Scope, known_types};
use crate::schema::expected;
use crate::violations::{FieldPath, Violations};

/// Fields every document may carry besides its type's own fields.
const META_FIELDS: &[&str] = &["type", "name", "mesh", "labels", "creationTime", "modificationTime"];

/// What identifies a resource: its type, its mesh (none for global types)
/// and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: ResourceType,
    pub mesh: Option<String>,
    pub name: String,
}

impl ResourceKey {
    pub fn new(kind: ResourceType, mesh: Option<&str>, name: &str) -> Self {
        Self { kind, mesh: mesh.map(str::to_owned), name: name.to_owned() }
    }

    /// The key of a Mesh.
    pub fn mesh(name: &str) -> Self {
        Self::new(ResourceType::Mesh, None, name)
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.mesh {
            Some(mesh) => write!(f, "{} {:?} in mesh {:?}", self.kind, self.name, mesh),
            None => write!(f, "{} {:?}", self.kind, self.name),
        }
    }
}

/// A validated resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub key: ResourceKey,
    pub labels: BTreeMap<String, String>,
    /// The type's own fields (for policies: `spec`), already validated
    /// against [`ResourceType::schema`].
    pub body: Map<String, Value>,
    /// Set by the store: 0 until first stored, then increased on every update.
    pub version: u64,
    /// RFC 3339 timestamps set by the store.
    pub creation_time: Option<String>,
    pub modification_time: Option<String>,
}

impl Resource {
    /// Reads and validates a document (`type`, `name`, `mesh`, `labels` and
    /// the type's fields). All violations are returned, with field paths.
    pub fn from_document(document: &Value) -> Result<Resource, Violations> {
        let root = FieldPath::root();
        let mut out = Violations::new();
        let Some(object) = document.as_object() else {
            out.add(&root, expected("a resource document (an object with type and name)", document));
            return Err(out);
        };

        let kind = match object.get("type") {
            Some(Value::String(text)) => match text.parse::<ResourceType>() {
                Ok(kind) => Some(kind),
                Err(reason) => {
                    out.add(&root.field("type"), reason);
                    None
                }
            },
            None | Some(Value::Null) => {
                out.add(&root.field("type"), format!("must be defined; known types: {}", known_types()));
                None
            }
            Some(other) => {
                out.add(&root.field("type"), expected("a string", other));
                None
            }
        };
        let name = required_name(object, "name", &mut out);
        if let (Some(ResourceType::Mesh), Some(name)) = (kind, &name)
            && let Err(reason) = check_mesh_name(name)
        {
            out.add(&root.field("name"), reason);
        }
        let mesh = match (kind.map(ResourceType::scope), object.get("mesh")) {
            (Some(Scope::Global), Some(v)) if !v.is_null() => {
                out.add(
                    &root.field("mesh"),
                    format!("must not be set: a {} does not belong to a mesh", kind.unwrap_or(ResourceType::Mesh)),
                );
                None
            }
            (Some(Scope::Mesh), _) => required_name(object, "mesh", &mut out),
            _ => None,
        };
        let labels = read_labels(object.get("labels"), &root.field("labels"), &mut out);
        // Timestamps are the store's to set: accepted (so a document read
        // back can be applied again) and ignored, but they must be text.
        for field in ["creationTime", "modificationTime"] {
            if let Some(value) = object.get(field).filter(|v| !v.is_null() && !v.is_string()) {
                out.add(&root.field(field), expected("an RFC 3339 timestamp string (it is ignored)", value));
            }
        }

        let mut body = object.clone();
        body.retain(|key, _| !META_FIELDS.contains(&key.as_str()));
        if let Some(kind) = kind {
            kind.schema().check(&Value::Object(body.clone()), &root, &mut out);
        }
        let (Some(kind), Some(name)) = (kind, name) else {
            return Err(out);
        };
        out.into_result(Resource {
            key: ResourceKey { kind, mesh, name },
            labels,
            body,
            version: 0,
            creation_time: None,
            modification_time: None,
        })
    }

    /// The document a user reads back: meta fields first, then the body.
    pub fn to_document(&self) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), self.key.kind.name().into());
        if let Some(mesh) = &self.key.mesh {
            out.insert("mesh".into(), mesh.clone().into());
        }
        out.insert("name".into(), self.key.name.clone().into());
        if let Some(time) = &self.creation_time {
            out.insert("creationTime".into(), time.clone().into());
        }
        if let Some(time) = &self.modification_time {
            out.insert("modificationTime".into(), time.clone().into());
        }
        if !self.labels.is_empty() {
            let labels = self.labels.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect();
            out.insert("labels".into(), Value::Object(labels));
        }
        out.extend(self.body.clone());
        Value::Object(out)
    }

    /// The body as one JSON value (what a store persists).
    pub fn body_value(&self) -> Value {
        Value::Object(self.body.clone())
    }
}

fn required_name(object: &Map<String, Value>, field: &str, out: &mut Violations) -> Option<String> {
    let path = FieldPath::root().field(field);
    match object.get(field) {
        Some(Value::String(text)) => match check_name(text) {
            Ok(()) => Some(text.clone()),
            Err(reason) => {
                out.add(&path, reason);
                None
            }
        },
        None | Some(Value::Null) => {
            out.add(&path, "must be defined");
            None
        }
        Some(other) => {
            out.add(&path, expected("a string", other));
            None
        }
    }
}

fn read_labels(value: Option<&Value>, path: &FieldPath, out: &mut Violations) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            for (key, value) in entries {
                if let Err(reason) = check_label_key(key) {
                    out.add(&path.key(key), reason);
                }
                match value {
                    Value::String(text) => {
                        labels.insert(key.clone(), text.clone());
                    }
                    other => out.add(&path.key(key), expected("a string", other)),
                }
            }
        }
        Some(other) => out.add(path, expected("an object of string labels", other)),
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_writes_a_mesh() {
        let doc = json!({"type": "Mesh", "name": "default", "labels": {"team": "core"}});
        let resource = Resource::from_document(&doc).unwrap();
        assert_eq!(resource.key, ResourceKey::mesh("default"));
        assert_eq!(resource.to_document(), doc);
    }

    #[test]
    fn reports_every_meta_violation() {
        let doc = json!({"type": "Dataplane", "name": "Bad Name", "labels": {"x": 1}});
        let err = Resource::from_document(&doc).unwrap_err();
        let fields: Vec<String> = err.iter().map(|v| v.field.clone()).collect();
        assert!(fields.contains(&"name".to_owned()), "{err}");
        assert!(fields.contains(&"mesh".to_owned()), "{err}");
        assert!(fields.contains(&"labels[\"x\"]".to_owned()), "{err}");
    }

    #[test]
    fn unknown_type_is_named() {
        let err = Resource::from_document(&json!({"type": "Meshh", "name": "x"})).unwrap_err();
        assert!(err.to_string().contains("unknown resource type \"Meshh\""), "{err}");
    }

    #[test]
    fn a_mesh_name_is_at_most_63_characters() {
        assert!(Resource::from_document(&json!({"type": "Mesh", "name": "m".repeat(63)})).is_ok());
        let err = Resource::from_document(&json!({"type": "Mesh", "name": "m".repeat(64)})).unwrap_err();
        let violation = err.iter().next().unwrap();
        assert_eq!((violation.field.as_str(), err.iter().count()), ("name", 1), "{err}");
        assert!(violation.reason.contains("cannot be longer than 63 characters"), "{err}");
        // Other resources keep the general 253-character limit.
        let secret = json!({"type": "Secret", "mesh": "default", "name": "s".repeat(64), "data": "c2VjcmV0"});
        assert!(Resource::from_document(&secret).is_ok());
    }

    #[test]
    fn global_types_refuse_a_mesh() {
        let err = Resource::from_document(&json!({"type": "Mesh", "name": "x", "mesh": "y"})).unwrap_err();
        assert_eq!(err.iter().next().unwrap().field, "mesh");
    }
}
