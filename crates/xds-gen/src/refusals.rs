//! Log lines for callers an mTLS inbound refuses, written by Envoy on its
//! standard error (which kodiak-dp passes on), each naming the inbound's
//! listener and the reason:
//!
//! ```text
//! [kodiak] inbound:10.0.0.3:10001: request GET /api from spiffe://default/db (10.0.0.7:41312) denied by MeshTrafficPermission: rbac_access_denied_matched_policy[deny-db]
//! [kodiak] inbound:10.0.0.3:10002: connection from spiffe://default/db (10.0.0.7:41314) denied by MeshTrafficPermission: rbac_access_denied_matched_policy[deny-db]
//! [kodiak] inbound:10.0.0.3:10002: connection from spiffe://other/web (10.0.0.8:40022) refused: TLS handshake failed: TLS_error:|...:CERTIFICATE_VERIFY_FAILED:...
//! [kodiak] inbound:10.0.0.3:10001: connection from 10.0.0.9:50122 refused: not mesh mTLS (NR)
//! ```

use envoy_types::pb::envoy::config::accesslog::v3::{
    AccessLog, AccessLogFilter, ExtensionFilter, ResponseFlagFilter, access_log, access_log_filter, extension_filter,
};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, data_source, substitution_format_string,
};
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{StderrAccessLog, stderr_access_log};

use crate::envoy;

const STDERR_LOGGER: &str = "envoy.access_loggers.stderr";

/// HTTP requests the RBAC filter denied (for the HTTP connection manager).
pub(crate) fn denied_requests(listener: &str) -> AccessLog {
    let format = format!(
        "[kodiak] {listener}: request %REQ(:METHOD)% %REQ(:PATH)% from %DOWNSTREAM_PEER_URI_SAN% \
         (%DOWNSTREAM_REMOTE_ADDRESS%) denied by MeshTrafficPermission: %RESPONSE_CODE_DETAILS%\n"
    );
    stderr(&format, cel("response.code_details.startsWith('rbac_access_denied')"))
}

/// TCP connections the network RBAC filter closed (for the TCP proxy).
pub(crate) fn denied_connections(listener: &str) -> AccessLog {
    let format = format!(
        "[kodiak] {listener}: connection from %DOWNSTREAM_PEER_URI_SAN% (%DOWNSTREAM_REMOTE_ADDRESS%) \
         denied by MeshTrafficPermission: %CONNECTION_TERMINATION_DETAILS%\n"
    );
    stderr(&format, cel("connection.termination_details.startsWith('rbac_access_denied')"))
}

/// TCP connections whose TLS handshake failed: no client certificate, or
/// one the mesh CA did not sign (for the TCP proxy; an HTTP connection
/// manager logs requests only, so on HTTP inbounds these show in Envoy's
/// `ssl.*` statistics alone).
pub(crate) fn failed_handshakes(listener: &str) -> AccessLog {
    let format = format!(
        "[kodiak] {listener}: connection from %DOWNSTREAM_PEER_URI_SAN% (%DOWNSTREAM_REMOTE_ADDRESS%) \
         refused: TLS handshake failed: %DOWNSTREAM_TRANSPORT_FAILURE_REASON%\n"
    );
    stderr(&format, cel("connection.transport_failure_reason != ''"))
}

/// Connections no filter chain takes: plaintext, or TLS without the mesh
/// ALPN, on a STRICT inbound (for the listener).
pub(crate) fn unmatched_connections(listener: &str) -> AccessLog {
    let format = format!(
        "[kodiak] {listener}: connection from %DOWNSTREAM_REMOTE_ADDRESS% refused: not mesh mTLS (%RESPONSE_FLAGS%)\n"
    );
    let no_filter_chain = AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::ResponseFlagFilter(ResponseFlagFilter {
            flags: vec!["NR".to_owned()],
        })),
    };
    stderr(&format, no_filter_chain)
}

fn cel(expression: &str) -> AccessLogFilter {
    let filter = ExpressionFilter { expression: expression.to_owned(), ..Default::default() };
    AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::ExtensionFilter(ExtensionFilter {
            name: crate::rbac::CEL_FILTER.to_owned(),
            config_type: Some(extension_filter::ConfigType::TypedConfig(envoy::any(&filter))),
        })),
    }
}

fn stderr(format: &str, filter: AccessLogFilter) -> AccessLog {
    let logger = StderrAccessLog {
        access_log_format: Some(stderr_access_log::AccessLogFormat::LogFormat(SubstitutionFormatString {
            format: Some(substitution_format_string::Format::TextFormatSource(DataSource {
                specifier: Some(data_source::Specifier::InlineString(format.to_owned())),
                ..Default::default()
            })),
            ..Default::default()
        })),
    };
    AccessLog {
        name: STDERR_LOGGER.to_owned(),
        filter: Some(filter),
        config_type: Some(access_log::ConfigType::TypedConfig(envoy::any(&logger))),
    }
}
