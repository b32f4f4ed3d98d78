//! Errors as the REST API answers them, in Kuma's shape:
//! `{type, status, title, detail, invalid_parameters[{field, reason}]}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kodiak_api::{SyntaxError, Violation, Violations};
use kodiak_store::StoreError;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(serialize_with = "as_code")]
    status: StatusCode,
    title: String,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    invalid_parameters: Vec<Violation>,
}

fn as_code<S: serde::Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

impl ApiError {
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        Self { kind: "/std-errors", status, title: title.into(), detail: detail.into(), invalid_parameters: Vec::new() }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad Request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found", detail)
    }

    /// A request whose parameters or body fields break rules.
    pub fn invalid(detail: impl Into<String>, violations: Vec<Violation>) -> Self {
        Self {
            invalid_parameters: violations,
            ..Self::new(StatusCode::BAD_REQUEST, "Could not process a resource", detail)
        }
    }

    /// Query parameters or headers that break rules.
    pub fn bad_parameters(detail: impl Into<String>, violations: Vec<Violation>) -> Self {
        Self { invalid_parameters: violations, ..Self::bad_request(detail) }
    }

    /// One field in error.
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        Self::invalid(format!("{field} is invalid"), vec![Violation { field: field.into(), reason: reason.into() }])
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.detail)?;
        for violation in &self.invalid_parameters {
            write!(f, "; {}: {}", violation.field, violation.reason)?;
        }
        Ok(())
    }
}

impl From<Violations> for ApiError {
    fn from(violations: Violations) -> Self {
        let count = violations.len();
        let detail = format!("the resource has {count} invalid field{}", if count == 1 { "" } else { "s" });
        Self::invalid(detail, violations.into_vec())
    }
}

impl From<SyntaxError> for ApiError {
    fn from(error: SyntaxError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Could not parse the request body", format!("{error}"))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "Not Found", error.to_string()),
            StoreError::AlreadyExists(_) => Self::new(StatusCode::CONFLICT, "Conflict", error.to_string()),
            StoreError::Conflict { .. } => Self::new(StatusCode::CONFLICT, "Conflict", error.to_string()),
            StoreError::MeshNotFound(mesh) => Self::invalid(
                error.to_string(),
                vec![Violation { field: "mesh".into(), reason: format!("no Mesh named {mesh:?} exists") }],
            ),
            StoreError::Backend(_) => {
                tracing::error!(%error, "store failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", error.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(&self)).into_response()
    }
}
