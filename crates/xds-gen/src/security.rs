//! Mesh mTLS on the proxy side: the two SDS secrets a proxy gets (its own
//! certificate and the CA certificates it trusts) and the TLS contexts of
//! mTLS clusters (client side) and inbound listeners (server side), which
//! name those secrets and check the peer's SPIFFE identity.

use std::fmt;

use envoy_types::pb::envoy::config::core::v3::{DataSource, TransportSocket, data_source, transport_socket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext, common_tls_context, secret, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::BoolValue;
use kodiak_policy::traffic_permission::InboundPermissions;

use crate::envoy;
use crate::names;

/// The ALPN protocol mesh mTLS connections announce, which tells them apart
/// from plaintext and from the application's own TLS on a PERMISSIVE inbound.
pub const MESH_ALPN: &str = "kuma";

/// How a proxy's inbounds treat callers when its mesh has mTLS on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MtlsMode {
    /// Only mesh mTLS is accepted; a plaintext connection is closed.
    #[default]
    Strict,
    /// Mesh mTLS (told apart by ALPN [`MESH_ALPN`]) and plaintext are both
    /// accepted; MeshTrafficPermission applies to the mTLS callers only.
    Permissive,
}

/// A proxy's workload certificate: the PEM certificate chain (leaf first)
/// and the PEM private key. `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What mesh mTLS adds to one proxy: given to [`proxy_resources`] when the
/// proxy's mesh has mTLS on.
///
/// [`proxy_resources`]: crate::proxy_resources
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySecurity {
    pub mode: MtlsMode,
    /// The proxy's certificate, sent to Envoy as the SDS secret
    /// `identity_cert:secret:<mesh>`.
    pub identity: Identity,
    /// The PEM CA certificates the proxy trusts for peers, one or more
    /// concatenated (old and new root while the mesh's CA changes); the SDS
    /// secret `mesh_ca:secret:<mesh>`.
    pub ca_bundle_pem: String,
    /// The permissions of each inbound, in the order of the Dataplane's
    /// inbounds. An inbound without an entry denies every mTLS caller.
    pub permissions: Vec<InboundPermissions>,
}

/// The proxy's two SDS secrets, sorted by name: its certificate and key,
/// and the CA certificates it trusts.
pub(crate) fn secrets(mesh: &str, security: &ProxySecurity) -> [Secret; 2] {
    let inline = |pem: &str| {
        Some(DataSource { specifier: Some(data_source::Specifier::InlineBytes(pem.into())), ..Default::default() })
    };
    [
        Secret {
            name: names::identity_secret(mesh),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: inline(&security.identity.cert_chain_pem),
                private_key: inline(&security.identity.key_pem),
                ..Default::default()
            })),
        },
        Secret {
            name: names::mesh_ca_secret(mesh),
            r#type: Some(secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: inline(&security.ca_bundle_pem),
                ..Default::default()
            })),
        },
    ]
}

/// The client side of mesh mTLS to `service`: present the proxy's
/// certificate, ask for the service by SNI and ALPN [`MESH_ALPN`], and accept
/// only a peer certified by the mesh CA as exactly that service.
pub(crate) fn upstream_tls(mesh: &str, service: &str) -> TransportSocket {
    let context = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: vec![MESH_ALPN.to_owned()],
            ..common_tls_context(mesh, uri_san(string_matcher::MatchPattern::Exact(names::spiffe_id(mesh, service))))
        }),
        sni: names::sni(mesh, service),
        ..Default::default()
    };
    tls_transport_socket(&context)
}

/// The server side of mesh mTLS on an inbound: present the proxy's
/// certificate and require a client certificate of the mesh (any service;
/// MeshTrafficPermission decides which may call).
pub(crate) fn downstream_tls(mesh: &str) -> TransportSocket {
    let context = DownstreamTlsContext {
        common_tls_context: Some(common_tls_context(
            mesh,
            uri_san(string_matcher::MatchPattern::Prefix(format!("spiffe://{mesh}/"))),
        )),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    tls_transport_socket(&context)
}

/// Both SDS secrets of the mesh, with the peer's URI SAN checked by `san`.
fn common_tls_context(mesh: &str, san: SubjectAltNameMatcher) -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds(names::identity_secret(mesh))],
        validation_context_type: Some(common_tls_context::ValidationContextType::CombinedValidationContext(
            common_tls_context::CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: vec![san],
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds(names::mesh_ca_secret(mesh))),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn uri_san(pattern: string_matcher::MatchPattern) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: subject_alt_name_matcher::SanType::Uri.into(),
        matcher: Some(StringMatcher { match_pattern: Some(pattern), ..Default::default() }),
        ..Default::default()
    }
}

/// A secret fetched over the ADS stream.
fn sds(name: String) -> SdsSecretConfig {
    SdsSecretConfig { name, sds_config: Some(envoy::ads()) }
}

fn tls_transport_socket<M: prost::Message + prost::Name>(context: &M) -> TransportSocket {
    TransportSocket {
        name: envoy::names::TLS_TRANSPORT_SOCKET.to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(envoy::any(context))),
    }
}
