//! Dataplane and user tokens as the control plane keeps them: signing keys
//! and revocation lists are Secrets, tokens are issued and verified here.

pub mod admin;
pub mod dataplane;
mod keys;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kodiak_store::{ResourceStore, StoreError};
use kodiak_tokens::{DataplaneClaims, Registered, TokenError, UserClaims};

pub use keys::KeyScope;

/// Why a token was not accepted: a reason for its holder, or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Token(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TokenError> for Refusal {
    fn from(error: TokenError) -> Self {
        Self::Token(error.to_string())
    }
}

/// Issues and verifies tokens against the signing keys in the store.
#[derive(Clone)]
pub struct Tokens {
    store: Arc<dyn ResourceStore>,
}

/// What a dataplane token may say.
#[derive(Debug, Clone, Default)]
pub struct DataplaneTokenRequest {
    pub mesh: String,
    pub name: String,
    pub tags: BTreeMap<String, Vec<String>>,
    pub proxy_type: String,
    pub workload: String,
    pub valid_for: Duration,
}

impl Tokens {
    pub fn new(store: Arc<dyn ResourceStore>) -> Self {
        Self { store }
    }

    /// Signs a dataplane token with the mesh's newest key (made on first need).
    pub async fn issue_dataplane(&self, request: DataplaneTokenRequest) -> Result<String, Refusal> {
        let scope = KeyScope::Dataplane(request.mesh.clone());
        let claims = DataplaneClaims {
            name: request.name,
            mesh: request.mesh,
            tags: request.tags,
            proxy_type: request.proxy_type,
            workload: request.workload,
            registered: Registered::new(SystemTime::now(), request.valid_for),
        };
        self.issue(&scope, &claims).await
    }

    /// Signs a user token with the newest user-token key (made on first need).
    pub async fn issue_user(&self, name: &str, groups: Vec<String>, valid_for: Duration) -> Result<String, Refusal> {
        let claims =
            UserClaims { name: name.to_owned(), groups, registered: Registered::new(SystemTime::now(), valid_for) };
        self.issue(&KeyScope::User, &claims).await
    }

    async fn issue(&self, scope: &KeyScope, claims: &impl serde::Serialize) -> Result<String, Refusal> {
        let (serial, key) = keys::newest(self.store.as_ref(), scope).await?;
        Ok(kodiak_tokens::issue(claims, &serial.to_string(), &key)?)
    }

    /// The claims of a dataplane token for a Dataplane of `mesh`, once its
    /// signature (by one of the mesh's keys), validity and revocation are checked.
    pub async fn verify_dataplane(&self, token: &str, mesh: &str) -> Result<DataplaneClaims, Refusal> {
        self.verify(token, &KeyScope::Dataplane(mesh.to_owned())).await
    }

    pub async fn verify_user(&self, token: &str) -> Result<UserClaims, Refusal> {
        self.verify(token, &KeyScope::User).await
    }

    async fn verify<C: kodiak_tokens::Claims>(&self, token: &str, scope: &KeyScope) -> Result<C, Refusal> {
        let token = token.trim();
        let header = kodiak_tokens::header(token)?;
        let key = keys::by_kid(self.store.as_ref(), scope, &header.kid).await?;
        let revocations = keys::revocations(self.store.as_ref(), scope).await?;
        Ok(kodiak_tokens::verify(token, &key, &revocations, SystemTime::now())?)
    }

    /// Makes sure a mesh has a dataplane-token signing key (made with the Mesh).
    pub async fn ensure_dataplane_key(&self, mesh: &str) -> Result<(), StoreError> {
        match keys::newest(self.store.as_ref(), &KeyScope::Dataplane(mesh.to_owned())).await {
            Ok(_) => Ok(()),
            Err(Refusal::Store(error)) => Err(error),
            Err(Refusal::Token(reason)) => Err(StoreError::Backend(reason)),
        }
    }
}

/// At start: the admin token (unless turned off) and a signing key for
/// every mesh (meshes created later get theirs with the Mesh, see the REST API).
/// A mesh whose key cannot be made is logged and skipped, so one bad Mesh
/// does not keep the control plane from starting.
pub async fn start(
    store: Arc<dyn ResourceStore>,
    bootstrap_admin_token: bool,
    api_address: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let tokens = Tokens::new(store.clone());
    if bootstrap_admin_token {
        tokens
            .ensure_admin_token(api_address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the admin user token: {e}"))?;
    }
    let meshes = store.list(&kodiak_store::ListQuery::all(kodiak_api::ResourceType::Mesh, usize::MAX)).await?;
    for mesh in meshes.items {
        if let Err(error) = tokens.ensure_dataplane_key(&mesh.key.name).await {
            tracing::error!(mesh = %mesh.key.name, %error, "cannot make the mesh's dataplane token signing key");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kodiak_api::{Resource, ResourceKey, ResourceType};
    use kodiak_store::{ListQuery, MemoryStore};
    use serde_json::json;

    use super::*;

    fn mesh(name: &str) -> Resource {
        let mut mesh = Resource::from_document(&json!({"type": "Mesh", "name": "placeholder"})).unwrap();
        // Stored before names were limited: set past validation.
        mesh.key = ResourceKey::mesh(name);
        mesh
    }

    #[tokio::test]
    async fn start_survives_a_mesh_whose_key_cannot_be_made() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        store.create(mesh(&"m".repeat(240))).await.unwrap();
        store.create(mesh("good")).await.unwrap();
        start(store.clone(), false, "127.0.0.1:5681".parse().unwrap()).await.unwrap();
        let keys = store.list(&ListQuery::in_mesh(ResourceType::Secret, "good", 10)).await.unwrap();
        assert_eq!(keys.items.len(), 1, "the good mesh still gets its key");
        let long = store.list(&ListQuery::in_mesh(ResourceType::Secret, &"m".repeat(240), 10)).await.unwrap();
        assert!(long.items.is_empty());
    }
}
