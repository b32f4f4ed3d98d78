//! Kodiak's resource model: the Kuma 2.x universal resource types, their
//! validation with Kuma's field paths, and reading and writing them as YAML
//! or JSON. No I/O happens here, so the control plane and `kodiakctl
//! validate` run exactly the same checks.

pub mod address;
pub mod bootstrap;
pub mod dataplane;
pub mod dataplane_view;
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
pub mod template;
mod violations;
pub mod zone;

/// The most resources one page of a REST list holds (Kuma's limit); the
/// control plane enforces it and clients ask for it to fetch everything.
pub const MAX_PAGE_SIZE: u32 = 1000;

pub use document::{SyntaxError, parse_document, parse_documents, to_json, to_yaml};
pub use resource::{Resource, ResourceKey};
pub use resource_type::{ResourceType, Scope};
pub use violations::{FieldPath, Violation, Violations};
