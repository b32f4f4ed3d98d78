//! Signing keys and revocation lists in the store. Dataplane tokens of a
//! mesh are signed by its Secrets `dataplane-token-signing-key-<mesh>-<serial>`,
//! user tokens by the GlobalSecrets `user-token-signing-key-<serial>`. New
//! tokens use the highest serial; a token names its key's serial (`kid`),
//! so every key still stored verifies the tokens it signed: rotating is
//! adding serial N+1, then deleting the old key once its tokens are replaced.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::Refusal;
use crate::secrets::{self, data};
use kodiak_api::{Resource, ResourceKey, ResourceType};
use kodiak_store::{ListQuery, ResourceStore, StoreError};
use kodiak_tokens::{Revocations, SigningKey};

/// Whose keys: one mesh's dataplane tokens, or the user tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScope {
    Dataplane(String),
    User,
}

impl KeyScope {
    fn prefix(&self) -> String {
        match self {
            KeyScope::Dataplane(mesh) => format!("dataplane-token-signing-key-{mesh}"),
            KeyScope::User => "user-token-signing-key".to_owned(),
        }
    }

    /// The name of the key with this serial (`0`: the name without a serial).
    pub fn key_name(&self, serial: u64) -> String {
        match serial {
            0 => self.prefix(),
            serial => format!("{}-{serial}", self.prefix()),
        }
    }

    pub fn revocations_name(&self) -> String {
        match self {
            KeyScope::Dataplane(mesh) => format!("dataplane-token-revocations-{mesh}"),
            KeyScope::User => "user-token-revocations".to_owned(),
        }
    }

    fn mesh(&self) -> Option<&str> {
        match self {
            KeyScope::Dataplane(mesh) => Some(mesh),
            KeyScope::User => None,
        }
    }

    fn kind(&self) -> ResourceType {
        match self {
            KeyScope::Dataplane(_) => ResourceType::Secret,
            KeyScope::User => ResourceType::GlobalSecret,
        }
    }

    fn resource_key(&self, name: &str) -> ResourceKey {
        ResourceKey::new(self.kind(), self.mesh(), name)
    }

    /// The serial a key's name carries, if it is one of this scope's keys.
    fn serial_of(&self, name: &str) -> Option<u64> {
        let rest = name.strip_prefix(&self.prefix())?;
        match rest.strip_prefix('-') {
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok(),
            _ if rest.is_empty() => Some(0),
            _ => None,
        }
    }
}

/// The key with the highest serial, generated (serial 1) when there is none.
pub async fn newest(store: &dyn ResourceStore, scope: &KeyScope) -> Result<(u64, Arc<SigningKey>), Refusal> {
    let mut query = ListQuery::all(scope.kind(), usize::MAX);
    query.mesh = scope.mesh().map(str::to_owned);
    query.name_contains = Some(scope.prefix());
    let page = store.list(&query).await?;
    let newest = page
        .items
        .iter()
        .filter_map(|secret| Some((scope.serial_of(&secret.key.name)?, secret)))
        .max_by_key(|(serial, _)| *serial);
    if let Some((serial, secret)) = newest {
        return Ok((serial, read_key(scope, secret)?));
    }
    let key = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .map_err(|e| StoreError::Backend(format!("generating a signing key failed: {e}")))?
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let name = scope.key_name(1);
    let secret = secret(scope, &name, key.to_pem().as_bytes())?;
    match store.create(secret).await {
        Ok(_) => {
            tracing::info!(secret = %scope.resource_key(&name), "created a token signing key");
            Ok((1, Arc::new(key)))
        }
        // Made meanwhile by another request or control plane: use theirs.
        Err(StoreError::AlreadyExists(key)) => {
            let stored = store.get(&key).await?.ok_or(StoreError::NotFound(key))?;
            Ok((1, read_key(scope, &stored)?))
        }
        Err(error) => Err(error.into()),
    }
}

/// The key a token's `kid` names.
pub async fn by_kid(store: &dyn ResourceStore, scope: &KeyScope, kid: &str) -> Result<Arc<SigningKey>, Refusal> {
    let serial: u64 =
        kid.parse().map_err(|_| Refusal::Token(format!("the token's kid {kid:?} is not a key serial")))?;
    let name = scope.key_name(serial);
    let key = scope.resource_key(&name);
    let Some(secret) = store.get(&key).await? else {
        let place = match scope.mesh() {
            Some(mesh) => format!("Secret of name {name:?} in mesh {mesh:?}"),
            None => format!("GlobalSecret of name {name:?}"),
        };
        return Err(Refusal::Token(format!(
            "there is no signing key with KID {kid}. {place} is not found. If signing key was rotated, regenerate the token"
        )));
    };
    read_key(scope, &secret)
}

/// The scope's revocation list (empty when its Secret does not exist).
pub async fn revocations(store: &dyn ResourceStore, scope: &KeyScope) -> Result<Revocations, Refusal> {
    let key = scope.resource_key(&scope.revocations_name());
    let Some(secret) = store.get(&key).await? else { return Ok(Revocations::default()) };
    let data = data(&secret).map_err(|reason| Refusal::Token(format!("{key} is not a revocation list: {reason}")))?;
    Ok(Revocations::parse(&String::from_utf8_lossy(&data)))
}

/// Signing keys already parsed, by their PEM: reading and checking an RSA
/// key costs far more than verifying a token with it, and every sidecar
/// stream verifies one. Keys are few (one per mesh, more while rotating);
/// the memo is emptied should it ever hold more than [`PARSED_LIMIT`].
static PARSED: Mutex<BTreeMap<Vec<u8>, Arc<SigningKey>>> = Mutex::new(BTreeMap::new());
const PARSED_LIMIT: usize = 256;

fn read_key(scope: &KeyScope, secret: &Resource) -> Result<Arc<SigningKey>, Refusal> {
    let bad = |reason: String| {
        tracing::error!(secret = %secret.key, %reason, "a token signing key is unusable");
        Refusal::Token(format!("{} ({:?}) is not a usable signing key: {reason}", secret.key, scope.prefix()))
    };
    let pem = data(secret).map_err(bad)?;
    if let Some(key) = PARSED.lock().unwrap().get(&pem) {
        return Ok(key.clone());
    }
    let key = Arc::new(SigningKey::from_pem(&pem).map_err(|e| bad(e.to_string()))?);
    let mut parsed = PARSED.lock().unwrap();
    if parsed.len() >= PARSED_LIMIT {
        parsed.clear();
    }
    parsed.insert(pem, key.clone());
    Ok(key)
}

/// A Secret (or GlobalSecret) of the scope holding `bytes`.
pub fn secret(scope: &KeyScope, name: &str, bytes: &[u8]) -> Result<Resource, StoreError> {
    secrets::new(scope.kind(), scope.mesh(), name, bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kodiak_store::MemoryStore;
    use serde_json::json;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_needs_make_one_key() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        store.create(Resource::from_document(&json!({"type": "Mesh", "name": "m"})).unwrap()).await.unwrap();
        let scope = KeyScope::Dataplane("m".into());
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (store, scope) = (store.clone(), scope.clone());
                tokio::spawn(
                    async move { newest(store.as_ref(), &scope).await.map(|(serial, key)| (serial, key.to_pem())) },
                )
            })
            .collect();
        let mut keys = Vec::new();
        for task in tasks {
            keys.push(task.await.unwrap().unwrap());
        }
        let stored = store.list(&ListQuery::in_mesh(ResourceType::Secret, "m", 100)).await.unwrap();
        assert_eq!(stored.items.len(), 1, "one key Secret");
        let pem = String::from_utf8(data(&stored.items[0]).unwrap()).unwrap();
        assert!(keys.iter().all(|(serial, key)| *serial == 1 && *key == pem), "every caller got the stored key");
    }

    #[test]
    fn a_stored_key_is_parsed_once_and_a_broken_one_is_refused() {
        let scope = KeyScope::Dataplane("m".into());
        let pem = SigningKey::generate().unwrap().to_pem();
        let stored = secret(&scope, &scope.key_name(1), pem.as_bytes()).unwrap();
        let (first, again) = (read_key(&scope, &stored).unwrap(), read_key(&scope, &stored).unwrap());
        assert!(Arc::ptr_eq(&first, &again), "the second read reuses the parsed key");
        assert_eq!(first.to_pem(), pem);
        let broken = secret(&scope, &scope.key_name(2), b"not a key").unwrap();
        let refusal = read_key(&scope, &broken).unwrap_err();
        assert!(refusal.to_string().contains("is not a usable signing key"), "{refusal}");
    }

    #[test]
    fn names_and_serials() {
        let mesh = KeyScope::Dataplane("default".into());
        assert_eq!(mesh.key_name(1), "dataplane-token-signing-key-default-1");
        assert_eq!(mesh.key_name(0), "dataplane-token-signing-key-default");
        assert_eq!(mesh.revocations_name(), "dataplane-token-revocations-default");
        assert_eq!(KeyScope::User.key_name(2), "user-token-signing-key-2");
        assert_eq!(KeyScope::User.revocations_name(), "user-token-revocations");
        assert_eq!(mesh.serial_of("dataplane-token-signing-key-default-12"), Some(12));
        assert_eq!(mesh.serial_of("dataplane-token-signing-key-default"), Some(0));
        // Another mesh whose name starts with this one's.
        assert_eq!(mesh.serial_of("dataplane-token-signing-key-default-eu-1"), None);
        assert_eq!(mesh.serial_of("dataplane-token-signing-key-default-"), None);
    }
}
