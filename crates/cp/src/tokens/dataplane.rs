//! Whether a sidecar's dataplane token lets it serve a Dataplane: checked
//! at bootstrap and when each of its ADS streams opens.

use std::collections::{BTreeMap, BTreeSet};

use kodiak_api::Resource;
use kodiak_api::dataplane_view::DataplaneView;
use kodiak_store::StoreError;
use kodiak_tokens::{DataplaneClaims, DataplaneIdentity, check_dataplane};

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

impl DataplaneRefusal {
    /// Whether the sidecar failed to prove who it is (no token, or one that
    /// does not verify) rather than proving to be someone else.
    pub fn is_authn(&self) -> bool {
        matches!(self, Self::Missing { .. } | Self::Invalid(_))
    }

    /// A short title for the refusal (the HTTP error's `title`).
    pub fn title(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "Dataplane token required",
            Self::Invalid(_) => "Invalid dataplane token",
            Self::Mismatch(_) => "Dataplane token does not match",
            Self::Store(_) => "Store error",
        }
    }

    /// What follows the title (the HTTP error's `detail`): the reason
    /// without the words the title already says.
    pub fn detail(&self) -> String {
        match self {
            Self::Invalid(reason) | Self::Mismatch(reason) => reason.clone(),
            Self::Missing { .. } | Self::Store(_) => self.to_string(),
        }
    }
}

impl Tokens {
    /// Checks `token` against `dataplane` (its mesh's signing keys and
    /// revocations, then its name, mesh and tags).
    pub async fn authenticate_dataplane(
        &self,
        token: Option<&str>,
        dataplane: &Resource,
    ) -> Result<(), DataplaneRefusal> {
        let mesh = dataplane.key.mesh.as_deref().unwrap_or_default();
        let claims = self.verify_dataplane_token(token, mesh, &dataplane.key.name).await?;
        allows_dataplane(&claims, dataplane)
    }

    /// Checks that `token` is there and verifies with `mesh`'s signing keys
    /// and revocations, before anything about Dataplane `name` is looked at.
    pub async fn verify_dataplane_token(
        &self,
        token: Option<&str>,
        mesh: &str,
        name: &str,
    ) -> Result<DataplaneClaims, DataplaneRefusal> {
        let token = token.map(str::trim).filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(DataplaneRefusal::Missing { mesh: mesh.to_owned(), name: name.to_owned() });
        };
        self.verify_dataplane(token, mesh).await.map_err(|refusal| match refusal {
            Refusal::Token(reason) => DataplaneRefusal::Invalid(reason),
            Refusal::Store(error) => DataplaneRefusal::Store(error),
        })
    }
}

/// Whether verified `claims` allow `dataplane` (name, mesh, tags, workload).
pub fn allows_dataplane(claims: &DataplaneClaims, dataplane: &Resource) -> Result<(), DataplaneRefusal> {
    check_dataplane(claims, &identity(dataplane)).map_err(DataplaneRefusal::Mismatch)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_whose_fault_they_are() {
        let missing = DataplaneRefusal::Missing { mesh: "default".into(), name: "web-1".into() };
        let invalid = DataplaneRefusal::Invalid("token expired".into());
        let mismatch = DataplaneRefusal::Mismatch("another name".into());
        assert_eq!(
            [&missing, &invalid, &mismatch].map(|refusal| (refusal.is_authn(), refusal.title())),
            [
                (true, "Dataplane token required"),
                (true, "Invalid dataplane token"),
                (false, "Dataplane token does not match"),
            ]
        );
        assert!(!DataplaneRefusal::Store(StoreError::Backend("down".into())).is_authn());
    }

    #[test]
    fn the_detail_does_not_repeat_the_title() {
        let missing = DataplaneRefusal::Missing { mesh: "default".into(), name: "web-1".into() };
        assert!(missing.detail().starts_with("no dataplane token: issue one (kodiakctl generate dataplane-token"));
        let invalid = DataplaneRefusal::Invalid("token expired at 2026-01-01T00:00:00Z".into());
        assert_eq!(invalid.detail(), "token expired at 2026-01-01T00:00:00Z");
        assert_eq!(invalid.to_string(), "invalid dataplane token: token expired at 2026-01-01T00:00:00Z");
        let mismatch = DataplaneRefusal::Mismatch("proxy name from requestor: web-1 is different".into());
        assert_eq!(mismatch.detail(), "proxy name from requestor: web-1 is different");
    }
}
