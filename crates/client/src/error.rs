//! What can go wrong when talking to a control plane, worded for the person
//! at the terminal: the server's own explanation when it gave one, and what
//! to do when there is no server at all.

use std::fmt;

use serde::Deserialize;

use crate::Trust;

/// An error from [`crate::Client`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control plane address is not an http(s) URL.
    #[error("invalid control plane address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: String },

    /// Nothing answers at the address (connection refused, unknown host,
    /// timeout while connecting).
    #[error(
        "cannot connect to the control plane at {address}: {cause}\n\
         Start one with `kodiak-cp run`, or point kodiakctl at another one with \
         `kodiakctl config control-planes add --name NAME --address URL` (or --cp-address URL)"
    )]
    Unreachable { address: String, cause: String },

    /// TLS with the control plane failed: its certificate was not accepted,
    /// or the address does not speak TLS. Retrying gets the same answer.
    #[error("{problem}\n{advice}")]
    Tls { address: String, problem: String, advice: String },

    /// The request was sent but failed on the way (reset connection, bad
    /// response framing).
    #[error("request to {url} failed: {cause}")]
    Transport { url: String, cause: String },

    /// The server answered with an error status.
    #[error("{0}")]
    Api(ApiError),

    /// The server answered with a success status but a body Kodiak cannot
    /// read; usually the address points at something that is not Kodiak.
    #[error("unexpected answer from {url}: {reason}")]
    UnexpectedAnswer { url: String, reason: String },

    /// A mesh-scoped resource was addressed without a mesh.
    #[error("{kind} belongs to a mesh; name the mesh")]
    MeshRequired { kind: kodiak_api::ResourceType },
}

impl Error {
    /// Explains a TLS failure with the control plane at `address` in the
    /// terms of what the client trusted.
    pub(crate) fn tls(address: &str, trust: &Trust, failure: &rustls::Error) -> Error {
        use rustls::CertificateError::{
            BadSignature, Expired, ExpiredContext, NotValidForName, NotValidForNameContext, NotValidYet,
            NotValidYetContext, UnknownIssuer,
        };
        let address = address.to_owned();
        let rustls::Error::InvalidCertificate(refusal) = failure else {
            return Error::Tls {
                problem: format!("TLS with the control plane at {address} failed ({failure})"),
                advice: "Does the address speak TLS? The control plane's HTTPS API listens on port 5682; \
                         its plaintext API (port 5681) takes http://"
                    .to_owned(),
                address,
            };
        };
        let why = match refusal {
            UnknownIssuer | BadSignature => "it is not signed by a CA kodiakctl trusts",
            NotValidForName | NotValidForNameContext { .. } => "it does not name the host of the address",
            Expired | ExpiredContext { .. } => "it has expired (or this host's clock is wrong)",
            NotValidYet | NotValidYetContext { .. } => "it is not valid yet (or this host's clock is wrong)",
            _ => "it was refused",
        };
        let add = format!("kodiakctl config control-planes add --name NAME --address {address} --ca-cert-file FILE");
        let advice = match (refusal, trust) {
            (NotValidForName | NotValidForNameContext { .. }, _) => "Use an address whose host the certificate \
                 names (the generated kodiak-cp.crt names the control plane's hostname, localhost and the \
                 addresses it listens on), or give the control plane a certificate for this host"
                .to_owned(),
            (_, Trust::CaCerts(_)) => format!(
                "kodiakctl trusts only the CA certificates stored for this control plane (--ca-cert-file); store \
                 the CA that signed its certificate (the control plane's kodiak-cp.crt in its data directory): \
                 `{add} --overwrite`"
            ),
            _ => format!(
                "kodiakctl checked it against the system's trusted roots; for a certificate signed by another CA \
                 (such as the one the control plane generates, kodiak-cp.crt in its data directory), add the \
                 control plane with that CA: `{add}`"
            ),
        };
        Error::Tls {
            problem: format!("the control plane's certificate at {address} is not trusted: {why} ({failure})"),
            advice,
            address,
        }
    }
}

/// The server's error body: Kuma's `/std-errors` shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub invalid_parameters: Vec<InvalidParameter>,
}

/// One field of the request the server refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InvalidParameter {
    pub field: String,
    pub reason: String,
}

impl ApiError {
    /// Reads an error answer. A body that is not Kuma's error shape (a proxy's
    /// HTML page, plain text) still becomes an error that shows the body.
    pub(crate) fn from_body(status: u16, reason: Option<&str>, body: &str) -> ApiError {
        match serde_json::from_str::<ApiError>(body) {
            Ok(mut error) => {
                error.status = status;
                error
            }
            Err(_) => ApiError {
                status,
                title: reason.unwrap_or("Error").to_owned(),
                detail: body.trim().to_owned(),
                invalid_parameters: Vec::new(),
            },
        }
    }
}

impl fmt::Display for ApiError {
    /// `title: detail`, then one line per refused field.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.title.is_empty(), self.detail.is_empty()) {
            (false, false) => write!(f, "{}: {}", self.title, self.detail)?,
            (false, true) => write!(f, "{}", self.title)?,
            (true, false) => write!(f, "{}", self.detail)?,
            (true, true) => write!(f, "the control plane answered with status {}", self.status)?,
        }
        for parameter in &self.invalid_parameters {
            write!(f, "\n  * {}: {}", parameter.field, parameter.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_title_detail_and_each_field() {
        let body = r#"{"type":"/std-errors","status":400,"title":"Could not process a resource",
            "detail":"Resource is not valid","invalid_parameters":[
            {"field":"spec.to[0].default","reason":"must be defined"},
            {"field":"name","reason":"must be lower-case"}]}"#;
        let error = ApiError::from_body(400, Some("Bad Request"), body);
        assert_eq!(
            error.to_string(),
            "Could not process a resource: Resource is not valid\n  * spec.to[0].default: must be defined\n  * name: must be lower-case"
        );
    }

    #[test]
    fn invalid_parameters_may_be_absent() {
        let body = r#"{"type":"/std-errors","status":404,"title":"Not found","detail":"mesh \"nope\" does not exist"}"#;
        let error = ApiError::from_body(404, Some("Not Found"), body);
        assert_eq!(error.to_string(), "Not found: mesh \"nope\" does not exist");
        assert_eq!(error.status, 404);
    }

    #[test]
    fn a_body_that_is_not_kumas_shape_is_shown_as_is() {
        let error = ApiError::from_body(502, Some("Bad Gateway"), "upstream down\n");
        assert_eq!(error.to_string(), "Bad Gateway: upstream down");
        assert_eq!(ApiError::from_body(500, None, "").to_string(), "Error");
    }

    #[test]
    fn an_untrusted_certificate_hints_at_the_ca_cert_file() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let text = Error::tls("https://cp:5682/", &Trust::SystemRoots, &unknown).to_string();
        assert!(text.starts_with("the control plane's certificate at https://cp:5682/ is not trusted"), "{text}");
        assert!(text.contains("not signed by a CA kodiakctl trusts") && text.contains("UnknownIssuer"), "{text}");
        assert!(text.contains("system's trusted roots"), "{text}");
        assert!(text.contains("--address https://cp:5682/ --ca-cert-file FILE`"), "{text}");
        let certs = crate::tls::CaCerts::from_pem(&test_ca()).unwrap();
        let text = Error::tls("https://cp:5682/", &Trust::CaCerts(certs), &unknown).to_string();
        assert!(text.contains("trusts only the CA certificates stored") && text.contains("--overwrite"), "{text}");
        let wrong_name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        let text = Error::tls("https://cp:5682/", &Trust::SystemRoots, &wrong_name).to_string();
        assert!(text.contains("is not trusted: it does not name the host"), "{text}");
        let plaintext = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        let text = Error::tls("https://cp:5681/", &Trust::SystemRoots, &plaintext).to_string();
        assert!(text.contains("TLS with the control plane at https://cp:5681/ failed"), "{text}");
        assert!(text.contains("Does the address speak TLS?"), "{text}");
    }

    fn test_ca() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().self_signed(&key).unwrap().pem()
    }

    #[test]
    fn unreachable_names_the_address_and_the_ways_out() {
        let error = Error::Unreachable { address: "http://127.0.0.1:5681/".into(), cause: "connection refused".into() };
        let text = error.to_string();
        assert!(text.contains("http://127.0.0.1:5681/"), "{text}");
        assert!(text.contains("kodiak-cp run"), "{text}");
        assert!(text.contains("kodiakctl config control-planes add"), "{text}");
    }
}
