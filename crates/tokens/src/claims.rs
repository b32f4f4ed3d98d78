//! What tokens say, with the JSON keys Kuma's tokens use (claim names in
//! Go's field spelling, registered claims in lower case).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Issued-at and not-before are set this far in the past, so a verifier
/// whose clock is slightly behind the issuer's accepts a fresh token.
const CLOCK_SKEW: Duration = Duration::from_secs(5);

/// The registered claims every token carries: its id and validity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// A UUID, the id a revocation list names.
    pub jti: String,
    /// Seconds since the epoch.
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

impl Registered {
    /// A new token id, valid from `now` (less a little clock skew) for `valid_for`.
    pub fn new(now: SystemTime, valid_for: Duration) -> Self {
        let now = seconds(now);
        let start = now.saturating_sub(CLOCK_SKEW.as_secs());
        Self {
            jti: uuid::Uuid::new_v4().to_string(),
            iat: start,
            nbf: start,
            exp: now.saturating_add(valid_for.as_secs()),
        }
    }

    /// When the token stops being valid.
    pub fn expires(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.exp)
    }

    pub fn not_before(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.nbf)
    }
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A dataplane token: every claim that is not empty restricts which
/// Dataplane may use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneClaims {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Mesh", default)]
    pub mesh: String,
    /// Tag name → the values a Dataplane may have for it.
    #[serde(rename = "Tags", default, deserialize_with = "null_as_empty")]
    pub tags: BTreeMap<String, Vec<String>>,
    /// `""` or `dataplane` (`ingress` and `egress` are other kinds of proxies).
    #[serde(rename = "Type", default)]
    pub proxy_type: String,
    /// The `kuma.io/workload` label the Dataplane must carry, if any.
    #[serde(rename = "Workload", default)]
    pub workload: String,
    #[serde(flatten)]
    pub registered: Registered,
}

/// A user token: who calls the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserClaims {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Groups", default, deserialize_with = "null_as_empty")]
    pub groups: Vec<String>,
    #[serde(flatten)]
    pub registered: Registered,
}

/// Go writes an empty map or list as `null`.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// What the verifier needs from any kind of claims.
pub trait Claims: serde::de::DeserializeOwned {
    fn registered(&self) -> &Registered;
}

impl Claims for DataplaneClaims {
    fn registered(&self) -> &Registered {
        &self.registered
    }
}

impl Claims for UserClaims {
    fn registered(&self) -> &Registered {
        &self.registered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_keys_are_kumas() {
        let claims = DataplaneClaims {
            name: "web-1".into(),
            mesh: "default".into(),
            tags: [("kuma.io/service".to_owned(), vec!["web".to_owned()])].into(),
            proxy_type: "dataplane".into(),
            workload: String::new(),
            registered: Registered { jti: "id".into(), iat: 1, nbf: 1, exp: 2 },
        };
        assert_eq!(
            serde_json::to_value(&claims).unwrap(),
            json!({"Name": "web-1", "Mesh": "default", "Tags": {"kuma.io/service": ["web"]}, "Type": "dataplane",
                   "Workload": "", "jti": "id", "iat": 1, "nbf": 1, "exp": 2})
        );
        let from_go: DataplaneClaims = serde_json::from_value(
            json!({"Name": "", "Mesh": "default", "Tags": null, "Type": "", "jti": "id", "iat": 1, "nbf": 1, "exp": 2}),
        )
        .unwrap();
        assert!(from_go.tags.is_empty());
        let user: UserClaims =
            serde_json::from_value(json!({"Name": "admin", "Groups": null, "jti": "u", "iat": 1, "nbf": 1, "exp": 2}))
                .unwrap();
        assert!(user.groups.is_empty());
    }

    #[test]
    fn validity_starts_a_little_early() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let registered = Registered::new(now, Duration::from_secs(3600));
        assert_eq!((registered.iat, registered.nbf, registered.exp), (995, 995, 4_600));
        assert_ne!(registered.jti, Registered::new(now, Duration::ZERO).jti);
    }
}
