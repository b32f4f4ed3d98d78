//! Whether a dataplane token allows a Dataplane. Every claim is optional:
//! a token for a mesh lets any of its Dataplanes in, a token for a name
//! only that one, a token with tags only Dataplanes whose every value of
//! those tags it lists.

use std::collections::{BTreeMap, BTreeSet};

use crate::DataplaneClaims;

/// What the check needs to know of a Dataplane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataplaneIdentity {
    pub mesh: String,
    pub name: String,
    /// Every tag of every inbound: name → values.
    pub tags: BTreeMap<String, BTreeSet<String>>,
    /// Its `kuma.io/workload` label, if it has one.
    pub workload: Option<String>,
}

/// `Ok` when the token's claims allow `dataplane`; else the first mismatch.
pub fn check_dataplane(claims: &DataplaneClaims, dataplane: &DataplaneIdentity) -> Result<(), String> {
    if !claims.name.is_empty() && claims.name != dataplane.name {
        return Err(format!(
            "proxy name from requestor: {} is different than in token: {}",
            dataplane.name, claims.name
        ));
    }
    if !claims.mesh.is_empty() && claims.mesh != dataplane.mesh {
        return Err(format!(
            "proxy mesh from requestor: {} is different than in token: {}",
            dataplane.mesh, claims.mesh
        ));
    }
    if !matches!(claims.proxy_type.as_str(), "" | "dataplane") {
        return Err(format!("the token is for a proxy of type {:?}, not a dataplane", claims.proxy_type));
    }
    for (tag, allowed) in &claims.tags {
        let Some(values) = dataplane.tags.get(tag) else {
            return Err(format!("dataplane has no tag {tag:?} required by the token"));
        };
        if let Some(value) = values.iter().find(|value| !allowed.contains(value)) {
            return Err(format!(
                "dataplane contains tag {tag:?} with value {value:?} which is not allowed with this token. Allowed values in token are {allowed:?}"
            ));
        }
    }
    if !claims.workload.is_empty() && dataplane.workload.as_deref() != Some(claims.workload.as_str()) {
        return Err(format!(
            "the token is bound to workload {:?} but the dataplane's kuma.io/workload label is {}",
            claims.workload,
            dataplane.workload.as_deref().map_or("missing".to_owned(), |w| format!("{w:?}"))
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registered;

    fn claims(name: &str, mesh: &str, tags: &[(&str, &[&str])]) -> DataplaneClaims {
        DataplaneClaims {
            name: name.into(),
            mesh: mesh.into(),
            tags: tags.iter().map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect())).collect(),
            proxy_type: String::new(),
            workload: String::new(),
            registered: Registered { jti: "id".into(), iat: 0, nbf: 0, exp: 1 },
        }
    }

    fn web(services: &[&str]) -> DataplaneIdentity {
        DataplaneIdentity {
            mesh: "default".into(),
            name: "web-1".into(),
            tags: [
                ("kuma.io/service".to_owned(), services.iter().map(|s| (*s).to_owned()).collect()),
                ("version".to_owned(), ["v1".to_owned()].into()),
            ]
            .into(),
            workload: None,
        }
    }

    #[test]
    fn empty_claims_allow_any_dataplane() {
        assert_eq!(check_dataplane(&claims("", "", &[]), &web(&["web"])), Ok(()));
        assert_eq!(check_dataplane(&claims("web-1", "default", &[]), &web(&["web"])), Ok(()));
    }

    #[test]
    fn another_name_or_mesh_is_refused() {
        assert_eq!(
            check_dataplane(&claims("web-2", "", &[]), &web(&["web"])).unwrap_err(),
            "proxy name from requestor: web-1 is different than in token: web-2"
        );
        assert_eq!(
            check_dataplane(&claims("", "prod", &[]), &web(&["web"])).unwrap_err(),
            "proxy mesh from requestor: default is different than in token: prod"
        );
    }

    #[test]
    fn every_value_of_a_token_tag_must_be_allowed() {
        let token = claims("", "", &[("kuma.io/service", &["web", "web-api"])]);
        assert_eq!(check_dataplane(&token, &web(&["web", "web-api"])), Ok(()));
        assert_eq!(check_dataplane(&token, &web(&["web"])), Ok(()));
        assert_eq!(
            check_dataplane(&token, &web(&["web", "backend"])).unwrap_err(),
            "dataplane contains tag \"kuma.io/service\" with value \"backend\" which is not allowed with this token. Allowed values in token are [\"web\", \"web-api\"]"
        );
        let zone = claims("", "", &[("kuma.io/zone", &["east"])]);
        assert_eq!(
            check_dataplane(&zone, &web(&["web"])).unwrap_err(),
            "dataplane has no tag \"kuma.io/zone\" required by the token"
        );
    }

    #[test]
    fn proxy_type_and_workload() {
        let mut ingress = claims("", "", &[]);
        ingress.proxy_type = "ingress".into();
        assert!(check_dataplane(&ingress, &web(&["web"])).unwrap_err().contains("\"ingress\""));
        let mut bound = claims("", "", &[]);
        bound.workload = "web".into();
        assert!(check_dataplane(&bound, &web(&["web"])).unwrap_err().contains("label is missing"));
        let labelled = DataplaneIdentity { workload: Some("web".into()), ..web(&["web"]) };
        assert_eq!(check_dataplane(&bound, &labelled), Ok(()));
    }
}
