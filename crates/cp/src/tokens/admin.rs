//! The admin user token: kept as the GlobalSecret `admin-user-token`,
//! made at the first start when it is missing.

use std::time::Duration;

use kodiak_api::{ResourceKey, ResourceType};
use kodiak_store::StoreError;

use super::keys::{KeyScope, secret};
use super::{Refusal, Tokens};

pub const ADMIN_TOKEN_SECRET: &str = "admin-user-token";
/// The user every admin check accepts, and its group.
pub const ADMIN: &str = "mesh-system:admin";
/// The group of every user with a valid token.
pub const AUTHENTICATED: &str = "mesh-system:authenticated";

const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl Tokens {
    /// Issues the admin token and stores it, unless it exists.
    pub async fn ensure_admin_token(&self) -> Result<(), Refusal> {
        let key = ResourceKey::new(ResourceType::GlobalSecret, None, ADMIN_TOKEN_SECRET);
        if self.store.get(&key).await?.is_some() {
            return Ok(());
        }
        let token = self.issue_user(ADMIN, vec![ADMIN.to_owned()], TEN_YEARS).await?;
        match self.store.create(secret(&KeyScope::User, ADMIN_TOKEN_SECRET, token.as_bytes())?).await {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
            Err(error) => return Err(error.into()),
        }
        tracing::info!(
            "created the admin user token as the GlobalSecret {ADMIN_TOKEN_SECRET:?}; read it from this host with: \
             kodiakctl get global-secret {ADMIN_TOKEN_SECRET} -o json | jq -r .data | base64 -d \
             (or curl http://localhost:5681/global-secrets/{ADMIN_TOKEN_SECRET} | jq -r .data | base64 -d)"
        );
        Ok(())
    }
}
