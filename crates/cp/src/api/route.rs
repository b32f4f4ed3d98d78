//! Maps a request path onto what it addresses, following Kuma's REST
//! layout. Kept pure so every path rule is unit-tested.

use kodiak_api::{ResourceKey, ResourceType, Scope};

use super::error::ApiError;
pub use super::inspect::InspectView;

/// What a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Index,
    Config,
    ResourceTypes,
    /// A list: of a global type, of a mesh-scoped type in one mesh, or of a
    /// mesh-scoped type across meshes (`mesh: None`).
    List {
        kind: ResourceType,
        mesh: Option<String>,
    },
    One(ResourceKey),
    /// `/meshes/{mesh}/dataplanes/_overview` (all) or
    /// `/meshes/{mesh}/dataplanes/{name}/_overview` (one).
    Overview {
        mesh: String,
        name: Option<String>,
    },
    /// `/meshes/{mesh}/dataplanes/{name}/_rules`, `.../_config` or `.../xds`.
    InspectDataplane {
        mesh: String,
        name: String,
        view: InspectView,
    },
    /// `/meshes/{mesh}/{policy-plural}/{name}/_resources/dataplanes`: the
    /// Dataplanes the policy shapes.
    PolicyDataplanes(ResourceKey),
    /// `POST /tokens/dataplane`: issue a dataplane token.
    DataplaneToken,
    /// `POST /tokens/user`: issue a user token.
    UserToken,
}

impl Route {
    /// The HTTP methods the route answers.
    pub fn methods(&self) -> &'static [axum::http::Method] {
        use axum::http::Method;
        match self {
            Route::One(_) => &[Method::GET, Method::PUT, Method::DELETE],
            Route::DataplaneToken | Route::UserToken => &[Method::POST],
            _ => &[Method::GET],
        }
    }
}

/// Parses a path such as `/meshes/default/meshtimeouts/t1`.
pub fn route(path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [] => Ok(Route::Index),
        ["config"] => Ok(Route::Config),
        ["_resources"] => Ok(Route::ResourceTypes),
        ["tokens", "dataplane"] => Ok(Route::DataplaneToken),
        ["tokens", "user"] => Ok(Route::UserToken),
        [plural] => Ok(Route::List { kind: any_type(plural)?, mesh: None }),
        [plural, name] => {
            let kind = any_type(plural)?;
            if kind.scope() == Scope::Mesh {
                return Err(ApiError::not_found(format!(
                    "{kind} belongs to a mesh: use /meshes/{{mesh}}/{plural}/{name}"
                )));
            }
            Ok(Route::One(ResourceKey::new(kind, None, name)))
        }
        ["meshes", mesh, "dataplanes", "_overview"] => Ok(Route::Overview { mesh: (*mesh).into(), name: None }),
        ["meshes", mesh, "dataplanes", name, "_overview"] => {
            Ok(Route::Overview { mesh: (*mesh).into(), name: Some((*name).into()) })
        }
        ["meshes", mesh, "dataplanes", name, view @ ("_rules" | "_config" | "xds")] => {
            let view = match *view {
                "_rules" => InspectView::Rules,
                "_config" => InspectView::Config,
                _ => InspectView::ConfigDump,
            };
            Ok(Route::InspectDataplane { mesh: (*mesh).into(), name: (*name).into(), view })
        }
        ["meshes", mesh, plural, name, "_resources", "dataplanes"] => {
            let kind = mesh_type(plural)?;
            if !kind.is_policy() {
                return Err(ApiError::not_found(format!(
                    "{kind} is not a policy: only policies list the Dataplanes they affect"
                )));
            }
            Ok(Route::PolicyDataplanes(ResourceKey::new(kind, Some(mesh), name)))
        }
        ["meshes", mesh, plural] => Ok(Route::List { kind: mesh_type(plural)?, mesh: Some((*mesh).into()) }),
        ["meshes", mesh, plural, name] => Ok(Route::One(ResourceKey::new(mesh_type(plural)?, Some(mesh), name))),
        _ => Err(ApiError::not_found(format!("no API endpoint at {path}"))),
    }
}

fn any_type(plural: &str) -> Result<ResourceType, ApiError> {
    ResourceType::from_plural(plural).ok_or_else(|| {
        let known: Vec<String> = ResourceType::ALL.iter().map(|t| t.plural()).collect();
        ApiError::not_found(format!("unknown resource collection {plural:?}; known: {}", known.join(", ")))
    })
}

fn mesh_type(plural: &str) -> Result<ResourceType, ApiError> {
    let kind = any_type(plural)?;
    if kind.scope() == Scope::Global {
        return Err(ApiError::not_found(format!("{kind} does not belong to a mesh: use /{plural}")));
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kuma_paths() {
        assert_eq!(route("/").unwrap(), Route::Index);
        assert_eq!(route("/meshes").unwrap(), Route::List { kind: ResourceType::Mesh, mesh: None });
        assert_eq!(route("/meshes/default").unwrap(), Route::One(ResourceKey::mesh("default")));
        assert_eq!(
            route("/meshes/default/meshtimeouts").unwrap(),
            Route::List { kind: ResourceType::MeshTimeout, mesh: Some("default".into()) }
        );
        assert_eq!(
            route("/meshes/default/dataplanes/web-1").unwrap(),
            Route::One(ResourceKey::new(ResourceType::Dataplane, Some("default"), "web-1"))
        );
        assert_eq!(route("/dataplanes").unwrap(), Route::List { kind: ResourceType::Dataplane, mesh: None });
        assert_eq!(route("/zones/z1").unwrap(), Route::One(ResourceKey::new(ResourceType::Zone, None, "z1")));
        assert_eq!(
            route("/meshes/default/dataplanes/_overview").unwrap(),
            Route::Overview { mesh: "default".into(), name: None }
        );
        assert_eq!(
            route("/meshes/default/dataplanes/web-1/_overview").unwrap(),
            Route::Overview { mesh: "default".into(), name: Some("web-1".into()) }
        );
        assert_eq!(
            route("/meshes/default/dataplanes/web-1/_rules").unwrap(),
            Route::InspectDataplane { mesh: "default".into(), name: "web-1".into(), view: InspectView::Rules }
        );
        assert_eq!(
            route("/meshes/default/dataplanes/web-1/xds").unwrap(),
            Route::InspectDataplane { mesh: "default".into(), name: "web-1".into(), view: InspectView::ConfigDump }
        );
        assert_eq!(
            route("/meshes/default/meshtimeouts/t1/_resources/dataplanes").unwrap(),
            Route::PolicyDataplanes(ResourceKey::new(ResourceType::MeshTimeout, Some("default"), "t1"))
        );
        let error = route("/meshes/default/secrets/s/_resources/dataplanes").unwrap_err().to_string();
        assert!(error.contains("Secret is not a policy"), "{error}");
        assert_eq!(route("/tokens/dataplane").unwrap(), Route::DataplaneToken);
        assert_eq!(route("/tokens/user").unwrap(), Route::UserToken);
        assert_eq!(Route::UserToken.methods(), [axum::http::Method::POST]);
    }

    #[test]
    fn wrong_paths_are_explained() {
        assert!(route("/dataplanes/web-1").is_err());
        assert!(route("/meshes/default/zones").is_err());
        assert!(route("/meshes/default/widgets").is_err());
        assert!(route("/a/b/c/d/e/f").is_err());
    }
}
