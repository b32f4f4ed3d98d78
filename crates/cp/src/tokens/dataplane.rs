//! Whether a sidecar's dataplane token lets it serve a Dataplane: checked
//! at bootstrap and when each of its ADS streams opens.

use std::collections::{BTreeMap, BTreeSet};

use kodiak_api::Resource;
use kodiak_api::dataplane_view::DataplaneView;
use kodiak_store::StoreError;
use kodiak_tokens::{DataplaneIdentity, check_dataplane};

use super::{Refusal, Tokens};

/// The Dataplane label a workload-bound token is checked against.
const WORKLOAD_LABEL: &str = "kuma.io/workload";

/// Why a sidecar may not serve a Dataplane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneRefusal {
    /// No token at all.
    #[error(
        "no dataplane token: issue one (kodiakctl generate dataplane-token --mesh {mesh} --name {name} --valid-for 720h > token) and start kodiak-dp with --dataplane-token-file token"
    )]
    Missing { mesh: String, name: String },
    /// A token that does not verify: expired, revoked, badly signed.
    #[error("invalid dataplane token: {0}")]
    Invalid(String),
    /// A valid token for another Dataplane.
    #[error("the dataplane token does not allow this Dataplane: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Store(StoreError),
}

impl Tokens {
    /// Checks `token` against `dataplane` (its mesh's signing keys and
    /// revocations, then its name, mesh and tags).
    pub async fn authenticate_dataplane(
        &self,
        token: Option<&str>,
        dataplane: &Resource,
    ) -> Result<(), DataplaneRefusal> {
        let mesh = dataplane.key.mesh.clone().unwrap_or_default();
        let token = token.map(str::trim).filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(DataplaneRefusal::Missing { mesh, name: dataplane.key.name.clone() });
        };
        let claims = self.verify_dataplane(token, &mesh).await.map_err(|refusal| match refusal {
            Refusal::Token(reason) => DataplaneRefusal::Invalid(reason),
            Refusal::Store(error) => DataplaneRefusal::Store(error),
        })?;
        check_dataplane(&claims, &identity(dataplane)).map_err(DataplaneRefusal::Mismatch)
    }
}

/// What a token is checked against: name, mesh, every inbound's tags, the workload label.
fn identity(dataplane: &Resource) -> DataplaneIdentity {
    let view = DataplaneView::from_resource(dataplane);
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for inbound in &view.inbounds {
        for (name, value) in &inbound.tags {
            tags.entry(name.clone()).or_default().insert(value.clone());
        }
    }
    DataplaneIdentity {
        mesh: view.mesh,
        name: view.name,
        tags,
        workload: dataplane.labels.get(WORKLOAD_LABEL).cloned(),
    }
}
