//! Where each resource lives in the REST API. Pure functions, so the
//! layout (`/meshes/{mesh}/{plural}/{name}`, global types beside the meshes)
//! is tested without a server.

use kodiak_api::{ResourceKey, ResourceType, Scope};
use reqwest::Url;

/// One page of a list: how many items and from where. `None` leaves the
/// server's default (size 100, offset 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    pub size: Option<u32>,
    pub offset: Option<u32>,
}

impl Page {
    /// The most items the server puts in one page (Kuma's limit).
    pub const MAX_SIZE: u32 = kodiak_api::MAX_PAGE_SIZE;

    /// The largest page the server hands out; used when fetching everything
    /// so that few round trips are needed.
    pub const LARGEST: Page = Page { size: Some(Page::MAX_SIZE), offset: None };
}

/// The URL of one resource: `/meshes/{name}` for a Mesh, `/{plural}/{name}`
/// for the other global types, `/meshes/{mesh}/{plural}/{name}` otherwise.
/// A mesh-scoped key without a mesh has no URL.
pub(crate) fn resource_url(base: &Url, key: &ResourceKey) -> Option<Url> {
    let mut url = collection_url(base, key.kind, key.mesh.as_deref())?;
    push_segments(&mut url, &[&key.name]);
    Some(url)
}

/// The URL of a list: global types and cross-mesh lists (`mesh` = `None`)
/// hang off the root, the others under their mesh.
pub(crate) fn list_url(base: &Url, kind: ResourceType, mesh: Option<&str>, page: Page) -> Url {
    let mut url = match (kind.scope(), mesh) {
        (Scope::Mesh, Some(mesh)) => segments_url(base, &["meshes", mesh, &kind.plural()]),
        _ => segments_url(base, &[&kind.plural()]),
    };
    with_page(&mut url, page);
    url
}

/// `GET /meshes/{mesh}/dataplanes/_overview`.
pub(crate) fn overview_url(base: &Url, mesh: &str, page: Page) -> Url {
    let mut url = segments_url(base, &["meshes", mesh, &ResourceType::Dataplane.plural(), "_overview"]);
    with_page(&mut url, page);
    url
}

/// A fixed path below the base (`/`, `/_resources`).
pub(crate) fn root_url(base: &Url, path: &[&str]) -> Url {
    segments_url(base, path)
}

fn collection_url(base: &Url, kind: ResourceType, mesh: Option<&str>) -> Option<Url> {
    match kind.scope() {
        Scope::Global => Some(segments_url(base, &[&kind.plural()])),
        Scope::Mesh => Some(segments_url(base, &["meshes", mesh?, &kind.plural()])),
    }
}

/// Appends path segments to the base, percent-encoding each one, so a base
/// with a path prefix (`http://host/kodiak/`) keeps it.
fn segments_url(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    push_segments(&mut url, segments);
    url
}

fn push_segments(url: &mut Url, segments: &[&str]) {
    // `Client::new` refuses URLs that cannot be a base, so this always works.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
}

fn with_page(url: &mut Url, page: Page) {
    let mut query = url.query_pairs_mut();
    if let Some(size) = page.size {
        query.append_pair("size", &size.to_string());
    }
    if let Some(offset) = page.offset {
        query.append_pair("offset", &offset.to_string());
    }
    drop(query);
    if url.query() == Some("") {
        url.set_query(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:5681").unwrap()
    }

    #[test]
    fn global_resources_hang_off_the_root() {
        let mesh = ResourceKey::mesh("default");
        assert_eq!(resource_url(&base(), &mesh).unwrap().as_str(), "http://127.0.0.1:5681/meshes/default");
        let secret = ResourceKey::new(ResourceType::GlobalSecret, None, "admin-token");
        assert_eq!(
            resource_url(&base(), &secret).unwrap().as_str(),
            "http://127.0.0.1:5681/global-secrets/admin-token"
        );
    }

    #[test]
    fn mesh_scoped_resources_live_under_their_mesh() {
        let key = ResourceKey::new(ResourceType::MeshTimeout, Some("default"), "x");
        assert_eq!(
            resource_url(&base(), &key).unwrap().as_str(),
            "http://127.0.0.1:5681/meshes/default/meshtimeouts/x"
        );
        let no_mesh = ResourceKey::new(ResourceType::MeshTimeout, None, "x");
        assert_eq!(resource_url(&base(), &no_mesh), None);
    }

    #[test]
    fn lists_carry_paging_and_cross_mesh_lists_use_the_root() {
        let page = Page { size: Some(10), offset: Some(20) };
        let url = list_url(&base(), ResourceType::Dataplane, Some("default"), page);
        assert_eq!(url.as_str(), "http://127.0.0.1:5681/meshes/default/dataplanes?size=10&offset=20");
        let url = list_url(&base(), ResourceType::Dataplane, None, Page::default());
        assert_eq!(url.as_str(), "http://127.0.0.1:5681/dataplanes");
        let url = list_url(&base(), ResourceType::Zone, Some("ignored"), Page::default());
        assert_eq!(url.as_str(), "http://127.0.0.1:5681/zones");
    }

    #[test]
    fn a_base_path_is_kept_and_segments_are_encoded() {
        let base = Url::parse("http://cp.example:5681/kodiak/").unwrap();
        let key = ResourceKey::new(ResourceType::Dataplane, Some("a b"), "web/1");
        assert_eq!(
            resource_url(&base, &key).unwrap().as_str(),
            "http://cp.example:5681/kodiak/meshes/a%20b/dataplanes/web%2F1"
        );
        assert_eq!(
            overview_url(&base, "default", Page::default()).as_str(),
            "http://cp.example:5681/kodiak/meshes/default/dataplanes/_overview"
        );
        assert_eq!(root_url(&base, &[""]).as_str(), "http://cp.example:5681/kodiak/");
    }
}
