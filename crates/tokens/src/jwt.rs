//! Compact JWS (RFC 7515) with RS256 (RFC 7518 §3.3): `header.claims.signature`,
//! each part base64url without padding.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::Value;

use crate::claims::Claims;
use crate::error::TokenError;
use crate::revocations::Revocations;
use crate::signing_key::SigningKey;

const ALGORITHM: &str = "RS256";

/// What a token's header says, read before its signature is checked so
/// the verifier can find the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The serial of the signing key, e.g. `"1"`.
    pub kid: String,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// Signs `claims` with `key`, naming it `kid` in the header.
pub fn issue(claims: &impl Serialize, kid: &str, key: &SigningKey) -> Result<String, TokenError> {
    let header = serde_json::to_vec(&HeaderOut { alg: ALGORITHM, kid, typ: "JWT" })
        .map_err(|e| TokenError::Signing(e.to_string()))?;
    let claims = serde_json::to_vec(claims).map_err(|e| TokenError::Signing(e.to_string()))?;
    let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let signature = key.sign(signed.as_bytes()).map_err(TokenError::Signing)?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// The token's three parts.
struct Parts<'a> {
    signed: &'a str,
    header: &'a str,
    claims: &'a str,
    signature: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, TokenError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(claims), Some(signature), None) => {
            let signed = &token[..header.len() + 1 + claims.len()];
            Ok(Parts { signed, header, claims, signature })
        }
        _ => Err(TokenError::Malformed("expected three base64url parts separated by dots".into())),
    }
}

fn decode(part: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|e| TokenError::Malformed(format!("its {what} is not base64url: {e}")))
}

fn json(part: &str, what: &str) -> Result<Value, TokenError> {
    serde_json::from_slice(&decode(part, what)?)
        .map_err(|e| TokenError::Malformed(format!("its {what} is not JSON: {e}")))
}

/// Reads the header: the algorithm must be RS256 and `kid` a string.
pub fn header(token: &str) -> Result<Header, TokenError> {
    let header = json(split(token)?.header, "header")?;
    match header.get("alg").and_then(Value::as_str) {
        Some(ALGORITHM) => {}
        Some(other) => return Err(TokenError::Algorithm(other.to_owned())),
        None => return Err(TokenError::Malformed("its header has no alg".into())),
    }
    match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => Ok(Header { kid: kid.clone() }),
        _ => Err(TokenError::MissingKid),
    }
}

/// Checks the signature with `key` (the one [`header`]'s kid names), the
/// validity at `now` and the revocation list, then returns the claims.
pub fn verify<C: Claims>(
    token: &str,
    key: &SigningKey,
    revocations: &Revocations,
    now: SystemTime,
) -> Result<C, TokenError> {
    let Header { kid } = header(token)?;
    let parts = split(token)?;
    if !key.verifies(parts.signed.as_bytes(), &decode(parts.signature, "signature")?) {
        return Err(TokenError::Signature(kid));
    }
    let claims: C =
        serde_json::from_value(json(parts.claims, "claims")?).map_err(|e| TokenError::Claims(e.to_string()))?;
    let registered = claims.registered();
    if now >= registered.expires() {
        return Err(TokenError::Expired(registered.expires()));
    }
    if now < registered.not_before() {
        return Err(TokenError::NotYetValid(registered.not_before()));
    }
    if revocations.contains(&registered.jti) {
        return Err(TokenError::Revoked);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;
    use std::time::Duration;

    use super::*;
    use crate::{Registered, UserClaims};

    /// Generating RSA keys takes a while: the tests share two.
    static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::generate().unwrap());
    static OTHER_KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::generate().unwrap());

    fn user(now: SystemTime, valid_for: Duration) -> UserClaims {
        UserClaims { name: "alice".into(), groups: vec!["ops".into()], registered: Registered::new(now, valid_for) }
    }

    fn none() -> Revocations {
        Revocations::default()
    }

    #[test]
    fn a_signed_token_verifies_and_keeps_its_claims() {
        let now = SystemTime::now();
        let claims = user(now, Duration::from_secs(60));
        let token = issue(&claims, "1", &KEY).unwrap();
        assert_eq!(header(&token).unwrap(), Header { kid: "1".into() });
        let header_json = json(split(&token).unwrap().header, "header").unwrap();
        assert_eq!(header_json, serde_json::json!({"alg": "RS256", "kid": "1", "typ": "JWT"}));
        assert_eq!(verify::<UserClaims>(&token, &KEY, &none(), now).unwrap(), claims);
    }

    #[test]
    fn another_key_with_the_same_kid_is_refused() {
        let now = SystemTime::now();
        let token = issue(&user(now, Duration::from_secs(60)), "1", &OTHER_KEY).unwrap();
        let error = verify::<UserClaims>(&token, &KEY, &none(), now).unwrap_err();
        assert_eq!(error, TokenError::Signature("1".into()));
        assert!(error.to_string().contains("does not match the signing key with KID 1"), "{error}");
    }

    #[test]
    fn changed_claims_break_the_signature() {
        let now = SystemTime::now();
        let token = issue(&user(now, Duration::from_secs(60)), "1", &KEY).unwrap();
        let parts = split(&token).unwrap();
        let mut claims = json(parts.claims, "claims").unwrap();
        claims["Groups"] = serde_json::json!(["mesh-system:admin"]);
        let forged = format!(
            "{}.{}.{}",
            parts.header,
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
            parts.signature
        );
        assert_eq!(verify::<UserClaims>(&forged, &KEY, &none(), now), Err(TokenError::Signature("1".into())));
    }

    #[test]
    fn expired_not_yet_valid_and_revoked() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let claims = user(issued, Duration::from_secs(60));
        let token = issue(&claims, "1", &KEY).unwrap();
        let later = issued + Duration::from_secs(61);
        let error = verify::<UserClaims>(&token, &KEY, &none(), later).unwrap_err();
        assert_eq!(error.to_string(), "token expired at 1970-01-12T13:47:40Z");
        let earlier = issued - Duration::from_secs(6);
        assert!(matches!(verify::<UserClaims>(&token, &KEY, &none(), earlier), Err(TokenError::NotYetValid(_))));
        let revoked = Revocations::parse(&format!("other,{}\n", claims.registered.jti));
        assert_eq!(verify::<UserClaims>(&token, &KEY, &revoked, issued), Err(TokenError::Revoked));
    }

    #[test]
    fn headers_without_rs256_or_kid_are_refused() {
        let encode = |value: serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&value).unwrap());
        let token = |header: serde_json::Value| format!("{}.{}.c2ln", encode(header), encode(serde_json::json!({})));
        use serde_json::json;
        assert_eq!(header(&token(json!({"alg": "none", "kid": "1"}))), Err(TokenError::Algorithm("none".into())));
        assert_eq!(header(&token(json!({"alg": "HS256", "kid": "1"}))), Err(TokenError::Algorithm("HS256".into())));
        assert_eq!(header(&token(json!({"alg": "RS256"}))), Err(TokenError::MissingKid));
        assert_eq!(header(&token(json!({"alg": "RS256", "kid": 1}))), Err(TokenError::MissingKid));
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.c2ln"] {
            assert!(matches!(header(bad), Err(TokenError::Malformed(_))), "{bad}");
        }
    }
}
