use std::borrow::Borrow;
use std::collections::BTreeMap;

use kodiak_api::{Resource, ResourceType};

/// Which resources a `list` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub kind: ResourceType,
    /// Only this mesh; `None` lists across meshes (or global types).
    pub mesh: Option<String>,
    /// Only names containing this text.
    pub name_contains: Option<String>,
    /// Only resources carrying every one of these labels.
    pub labels: BTreeMap<String, String>,
    pub offset: usize,
    pub size: usize,
}

impl ListQuery {
    /// Every resource of a type (first page of up to `size`).
    pub fn all(kind: ResourceType, size: usize) -> Self {
        Self { kind, mesh: None, name_contains: None, labels: BTreeMap::new(), offset: 0, size }
    }

    pub fn in_mesh(kind: ResourceType, mesh: &str, size: usize) -> Self {
        Self { mesh: Some(mesh.to_owned()), ..Self::all(kind, size) }
    }

    /// Whether a resource passes the filters (not the paging).
    pub fn matches(&self, resource: &Resource) -> bool {
        resource.key.kind == self.kind
            && self.mesh.as_ref().is_none_or(|m| resource.key.mesh.as_ref() == Some(m))
            && self.name_contains.as_ref().is_none_or(|n| resource.key.name.contains(n.as_str()))
            && self.labels.iter().all(|(k, v)| resource.labels.get(k) == Some(v))
    }

    /// Filters resources given in list order (mesh, then name) and cuts out
    /// the requested page, so every backend pages the same way.
    pub fn page<R: Borrow<Resource>>(&self, ordered: impl IntoIterator<Item = R>) -> Page {
        let mut page = Page { total: 0, items: Vec::new() };
        for resource in ordered {
            let resource = resource.borrow();
            if !self.matches(resource) {
                continue;
            }
            if page.total >= self.offset && page.items.len() < self.size {
                page.items.push(resource.clone());
            }
            page.total += 1;
        }
        page
    }
}

/// One page of a list, and how many matched in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub total: usize,
    pub items: Vec<Resource>,
}

/// The current time in RFC 3339 with milliseconds, as stores stamp resources.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
