//! Who is calling the REST API, and whether they may do what they ask.
//!
//! - A request with an `Authorization` header is authenticated by it alone,
//!   wherever it comes from: `Bearer <user token>` makes the caller that
//!   token's user; a token that does not verify is refused with 401 and the
//!   reason. So a token behaves the same from this host as from anywhere.
//! - A request without one made straight from this host (see
//!   [`is_direct_local`]) is an admin's when `apiServer.authn.localhostIsAdmin`
//!   is on (the default).
//! - Any other request without one is anonymous.
//!
//! Secrets, GlobalSecrets (every method, reads too), issuing tokens and
//! sidecars' Envoy config dumps are for admins only (the user `mesh-system:admin` or its group); everything
//! else is open to any caller, anonymous included, as in Kuma.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, StatusCode, Uri, header};
use kodiak_api::ResourceType;

use super::ApiError;
use super::route::Route;
use crate::tokens::admin::{ADMIN, AUTHENTICATED};
use crate::tokens::{Refusal, Tokens};

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A request from this host, trusted as an admin's.
    Local,
    /// The holder of a valid user token.
    User {
        name: String,
        groups: Vec<String>,
    },
    Anonymous,
}

impl Identity {
    fn is_admin(&self) -> bool {
        match self {
            Identity::Local => true,
            Identity::User { name, groups } => name == ADMIN || groups.iter().any(|group| group == ADMIN),
            Identity::Anonymous => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Identity::Local => format!("{ADMIN} (local)"),
            Identity::User { name, .. } => format!("user {name:?}"),
            Identity::Anonymous => "an anonymous caller (no Authorization header)".into(),
        }
    }
}

/// Who sent the request: a token's user, local admin, or anonymous. The
/// token decides whenever there is one, so a bad token is refused even from
/// this host.
pub async fn authenticate(
    tokens: &Tokens,
    localhost_is_admin: bool,
    peer: Option<SocketAddr>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Identity, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        let local = localhost_is_admin && is_direct_local(peer, uri, headers);
        return Ok(if local { Identity::Local } else { Identity::Anonymous });
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|text| text.strip_prefix("Bearer "))
        .ok_or_else(|| unauthenticated("the Authorization header must be \"Bearer <user token>\"".into()))?;
    match tokens.verify_user(token).await {
        Ok(claims) => {
            let mut groups = claims.groups;
            groups.push(AUTHENTICATED.to_owned());
            Ok(Identity::User { name: claims.name, groups })
        }
        Err(Refusal::Token(reason)) => {
            tracing::info!(?peer, %reason, "refused an API request: invalid user token");
            Err(unauthenticated(reason))
        }
        Err(Refusal::Store(error)) => Err(error.into()),
    }
}

fn unauthenticated(reason: String) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "Invalid authentication data", reason)
}

/// Refuses a request for admin-only things from anyone else (403).
pub fn authorize(identity: &Identity, route: &Route) -> Result<(), ApiError> {
    let what = match route {
        Route::List { kind, .. } if is_secret(*kind) => format!("{kind} resources"),
        Route::One(key) if is_secret(key.kind) => format!("{} resources", key.kind),
        Route::DataplaneToken => "dataplane token generation".to_owned(),
        Route::UserToken => "user token generation".to_owned(),
        Route::InspectDataplane { view: super::route::InspectView::ConfigDump, .. } => {
            "sidecars' Envoy config dumps".to_owned()
        }
        _ => return Ok(()),
    };
    if identity.is_admin() {
        return Ok(());
    }
    tracing::info!(caller = %identity.describe(), %what, "refused an API request: admin only");
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "Access Denied",
        format!(
            "{} cannot access {what}: only {ADMIN} (user or group) may; send an admin's user token as \"Authorization: Bearer <token>\"",
            identity.describe()
        ),
    ))
}

fn is_secret(kind: ResourceType) -> bool {
    matches!(kind, ResourceType::Secret | ResourceType::GlobalSecret)
}

/// A request straight from this host: from a loopback address, not
/// forwarded by a proxy, addressed to a loopback host name, and not sent by
/// a browser on behalf of another site (which could otherwise reach a
/// local control plane through the user's browser).
pub fn is_direct_local(peer: Option<SocketAddr>, uri: &Uri, headers: &HeaderMap) -> bool {
    let Some(peer) = peer else { return false };
    if !peer.ip().is_loopback() && !is_mapped_loopback(peer.ip()) {
        return false;
    }
    if ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|name| headers.contains_key(*name)) {
        return false;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str()));
    if !host.is_none_or(is_loopback_host) {
        return false;
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if !matches!(fetch_site, None | Some("same-origin" | "none")) {
        return false;
    }
    match headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or_default()) {
        None => true,
        Some(origin) => {
            let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
            !authority.is_empty() && is_loopback_host(authority)
        }
    }
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

/// `localhost`, `127.0.0.1:5681`, `[::1]:5681` and the like.
fn is_loopback_host(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(host, _)| host),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect()
    }

    fn local(peer: &str, pairs: &[(&str, &str)]) -> bool {
        is_direct_local(peer.parse().ok(), &Uri::from_static("/meshes"), &headers(pairs))
    }

    #[test]
    fn direct_loopback_requests_are_local() {
        assert!(local("127.0.0.1:40000", &[("host", "127.0.0.1:5681")]));
        assert!(local("[::1]:40000", &[("host", "[::1]:5681")]));
        assert!(local("127.0.0.1:40000", &[("host", "localhost:5681"), ("sec-fetch-site", "same-origin")]));
        assert!(local("127.0.0.1:40000", &[("host", "localhost"), ("origin", "http://localhost:5681")]));
        assert!(local("[::ffff:127.0.0.1]:40000", &[]));
    }

    #[test]
    fn proxied_remote_or_cross_site_requests_are_not() {
        assert!(!local("10.0.0.5:40000", &[("host", "127.0.0.1:5681")]));
        assert!(!local("not an address", &[]));
        for forwarded in ["forwarded", "x-forwarded-for", "x-real-ip"] {
            assert!(!local("127.0.0.1:40000", &[("host", "127.0.0.1:5681"), (forwarded, "10.0.0.5")]), "{forwarded}");
        }
        assert!(!local("127.0.0.1:40000", &[("host", "cp.example:5681")]), "DNS rebinding");
        assert!(!local("127.0.0.1:40000", &[("host", "localhost"), ("sec-fetch-site", "cross-site")]));
        assert!(!local("127.0.0.1:40000", &[("host", "localhost"), ("origin", "https://evil.example")]));
        assert!(!local("127.0.0.1:40000", &[("host", "localhost"), ("origin", "null")]));
    }

    #[test]
    fn secrets_and_token_issuing_are_for_admins() {
        let secret = Route::One(kodiak_api::ResourceKey::new(ResourceType::Secret, Some("default"), "s"));
        let secrets = Route::List { kind: ResourceType::GlobalSecret, mesh: None };
        let mesh = Route::One(kodiak_api::ResourceKey::mesh("default"));
        let user = Identity::User { name: "alice".into(), groups: vec![AUTHENTICATED.into()] };
        let admin_group = Identity::User { name: "bob".into(), groups: vec![ADMIN.into()] };
        for route in [&secret, &secrets, &Route::DataplaneToken, &Route::UserToken] {
            for refused in [&user, &Identity::Anonymous] {
                let error = authorize(refused, route).unwrap_err().to_string();
                assert!(error.contains("only mesh-system:admin"), "{error}");
            }
            for allowed in [&Identity::Local, &admin_group] {
                assert!(authorize(allowed, route).is_ok(), "{route:?}");
            }
        }
        assert!(authorize(&Identity::Anonymous, &mesh).is_ok());
    }

    #[test]
    fn config_dumps_are_for_admins_and_generated_config_is_not() {
        use super::super::route::InspectView;
        let inspect = |view| Route::InspectDataplane { mesh: "default".into(), name: "web-1".into(), view };
        let user = Identity::User { name: "alice".into(), groups: vec![AUTHENTICATED.into()] };
        let error = authorize(&user, &inspect(InspectView::ConfigDump)).unwrap_err().to_string();
        assert!(error.contains("cannot access sidecars' Envoy config dumps"), "{error}");
        assert!(authorize(&Identity::Local, &inspect(InspectView::ConfigDump)).is_ok());
        for view in [InspectView::Rules, InspectView::Config] {
            assert!(authorize(&Identity::Anonymous, &inspect(view)).is_ok(), "{view:?}");
        }
    }

    /// Who `authenticate` says sent a request straight from this host, or
    /// its refusal as "<status> <detail>".
    async fn caller(
        tokens: &Tokens,
        localhost_is_admin: bool,
        authorization: Option<&str>,
    ) -> Result<Identity, String> {
        let mut pairs = vec![("host", "127.0.0.1:5681")];
        pairs.extend(authorization.map(|value| ("authorization", value)));
        let peer = "127.0.0.1:40000".parse().ok();
        let found =
            authenticate(tokens, localhost_is_admin, peer, &Uri::from_static("/meshes"), &headers(&pairs)).await;
        found.map_err(|error| {
            let detail = error.to_string();
            format!("{} {detail}", axum::response::IntoResponse::into_response(error).status().as_u16())
        })
    }

    #[tokio::test]
    async fn a_token_from_this_host_decides_who_the_caller_is() {
        let tokens = Tokens::new(std::sync::Arc::new(kodiak_store::MemoryStore::new()));
        let alice =
            tokens.issue_user("alice", vec!["team".into()], std::time::Duration::from_secs(3600)).await.unwrap();
        let bearer = format!("Bearer {alice}");
        let user = Identity::User { name: "alice".into(), groups: vec!["team".into(), AUTHENTICATED.into()] };
        for localhost_is_admin in [true, false] {
            assert_eq!(caller(&tokens, localhost_is_admin, Some(&bearer)).await, Ok(user.clone()));
            let garbage = caller(&tokens, localhost_is_admin, Some("Bearer garbage")).await.unwrap_err();
            assert!(garbage.starts_with("401 ") && garbage.contains("not a JWT"), "{garbage}");
            let basic = caller(&tokens, localhost_is_admin, Some("Basic YTpi")).await.unwrap_err();
            assert!(basic.starts_with("401 ") && basic.contains("Bearer <user token>"), "{basic}");
        }
        let secrets = Route::List { kind: ResourceType::Secret, mesh: Some("default".into()) };
        assert!(authorize(&user, &secrets).unwrap_err().to_string().contains("user \"alice\" cannot access"));
        assert_eq!(caller(&tokens, true, None).await, Ok(Identity::Local), "no header: local admin");
        assert_eq!(caller(&tokens, false, None).await, Ok(Identity::Anonymous));
    }
}
