//! Kodiak's resource model: the Kuma 2.x universal resource types, their
//! validation with Kuma's field paths, and reading and writing them as YAML
//! or JSON. No I/O happens here, so the control plane and `kodiakctl
//! validate` run exactly the same checks.

pub mod address;
pub mod dataplane;
pub mod document;
pub mod duration;
pub mod mesh;
pub mod name;
pub mod policy;
pub mod resource;
pub mod resource_type;
pub mod rules;
pub mod schema;
pub mod secret;
pub mod tags;
mod violations;
pub mod zone;

pub use document::{SyntaxError, parse_document, parse_documents, to_json, to_yaml};
pub use resource::{Resource, ResourceKey};
pub use resource_type::{ResourceType, Scope};
pub use violations::{FieldPath, Violation, Violations};
