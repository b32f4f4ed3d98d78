//! The admin user token: kept as the GlobalSecret `admin-user-token`,
//! made at the first start when it is missing.

use std::net::SocketAddr;
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
    /// Issues the admin token and stores it, unless it exists; the log line
    /// tells how to read it from the REST API listening on `api_address`.
    pub async fn ensure_admin_token(&self, api_address: SocketAddr) -> Result<(), Refusal> {
        let key = ResourceKey::new(ResourceType::GlobalSecret, None, ADMIN_TOKEN_SECRET);
        if self.store.get(&key).await?.is_some() {
            return Ok(());
        }
        let token = self.issue_user(ADMIN, vec![ADMIN.to_owned()], TEN_YEARS).await?;
        match self.store.create(secret(&KeyScope::User, ADMIN_TOKEN_SECRET, token.as_bytes())?).await {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
            Err(error) => return Err(error.into()),
        }
        tracing::info!("{}", created_message(api_address));
        Ok(())
    }
}

/// How to read the new admin token from this host, through the REST API
/// listening on `api_address` (`localhost` when it listens on every address).
fn created_message(api_address: SocketAddr) -> String {
    let url = match api_address.ip().is_unspecified() {
        true => format!("http://localhost:{}", api_address.port()),
        false => format!("http://{api_address}"),
    };
    format!(
        "created the admin user token as the GlobalSecret {ADMIN_TOKEN_SECRET:?}; read it from this host with: \
         kodiakctl get global-secret {ADMIN_TOKEN_SECRET} -o json | jq -r .data | base64 -d \
         (or curl {url}/global-secrets/{ADMIN_TOKEN_SECRET} | jq -r .data | base64 -d)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_hint_names_the_configured_api_address() {
        let specific = created_message("127.0.0.2:40123".parse().unwrap());
        assert!(specific.contains("curl http://127.0.0.2:40123/global-secrets/admin-user-token "), "{specific}");
        let every = created_message("0.0.0.0:5682".parse().unwrap());
        assert!(every.contains("curl http://localhost:5682/global-secrets/admin-user-token "), "{every}");
        let v6 = created_message("[::1]:7000".parse().unwrap());
        assert!(v6.contains("curl http://[::1]:7000/global-secrets/"), "{v6}");
    }
}
