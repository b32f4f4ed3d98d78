//! `POST /tokens/dataplane` and `POST /tokens/user`: issue tokens (admins
//! only; the dispatcher checks that). The answer is the token as plain text.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kodiak_api::name::check_name;
use kodiak_api::{ResourceKey, Violation};
use serde::Deserialize;

use super::{ApiError, ApiState};
use crate::tokens::{DataplaneTokenRequest, Refusal, Tokens};

/// A dataplane token without `validFor` lasts this long.
const DEFAULT_DATAPLANE_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct DataplaneBody {
    name: String,
    mesh: String,
    tags: BTreeMap<String, Vec<String>>,
    #[serde(rename = "type")]
    proxy_type: String,
    workload: String,
    valid_for: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct UserBody {
    name: String,
    groups: Vec<String>,
    valid_for: String,
}

pub async fn dataplane(state: &ApiState, body: Bytes) -> Result<Response, ApiError> {
    let body: DataplaneBody = parse(&body)?;
    let mut violations = Vec::new();
    let mut bad = |field: &str, reason: String| violations.push(Violation { field: field.into(), reason });
    if body.mesh.is_empty() {
        bad("mesh", "must be set: a dataplane token belongs to one mesh".into());
    } else if state.store.get(&ResourceKey::mesh(&body.mesh)).await?.is_none() {
        bad("mesh", format!("no Mesh named {:?} exists", body.mesh));
    }
    if !body.name.is_empty()
        && let Err(reason) = check_name(&body.name)
    {
        bad("name", reason);
    }
    for (tag, values) in &body.tags {
        if tag.is_empty() {
            bad("tags", "tag names must not be empty".into());
        } else if values.is_empty() || values.iter().any(String::is_empty) {
            bad(&format!("tags[{tag:?}]"), "must list one or more non-empty values".into());
        }
    }
    if !matches!(body.proxy_type.as_str(), "" | "dataplane") {
        bad("type", format!("must be \"dataplane\" or empty, not {:?}: Kodiak has no zone proxies", body.proxy_type));
    }
    let valid_for = match body.valid_for.as_str() {
        "" => Some(DEFAULT_DATAPLANE_VALIDITY),
        text => valid_for(text, &mut bad),
    };
    let (Some(valid_for), true) = (valid_for, violations.is_empty()) else {
        return Err(ApiError::invalid("the dataplane token request is not valid", violations));
    };
    let request = DataplaneTokenRequest {
        mesh: body.mesh,
        name: body.name,
        tags: body.tags,
        proxy_type: body.proxy_type,
        workload: body.workload,
        valid_for,
    };
    let token = Tokens::new(state.store.clone()).issue_dataplane(request).await.map_err(issue_failed)?;
    Ok(text(token))
}

pub async fn user(state: &ApiState, body: Bytes) -> Result<Response, ApiError> {
    let body: UserBody = parse(&body)?;
    let mut violations = Vec::new();
    let mut bad = |field: &str, reason: String| violations.push(Violation { field: field.into(), reason });
    if body.name.trim().is_empty() {
        bad("name", "must be set: the user the token names".into());
    }
    if body.groups.iter().any(|group| group.trim().is_empty()) {
        bad("groups", "group names must not be empty".into());
    }
    let valid_for = match body.valid_for.as_str() {
        "" => {
            bad("validFor", "must be set, e.g. 24h or 720h".into());
            None
        }
        text => valid_for(text, &mut bad),
    };
    let (Some(valid_for), true) = (valid_for, violations.is_empty()) else {
        return Err(ApiError::invalid("the user token request is not valid", violations));
    };
    let tokens = Tokens::new(state.store.clone());
    let token = tokens.issue_user(&body.name, body.groups, valid_for).await.map_err(issue_failed)?;
    Ok(text(token))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "Could not parse the request body", format!("{error}")))
}

/// A Go-style duration above zero.
fn valid_for(text: &str, bad: &mut impl FnMut(&str, String)) -> Option<Duration> {
    match kodiak_api::duration::parse_duration(text) {
        Ok(duration) if duration >= Duration::from_secs(1) => Some(duration),
        Ok(_) => {
            bad("validFor", "must be at least 1s".into());
            None
        }
        Err(reason) => {
            bad("validFor", format!("{reason}; use hours, minutes or seconds (720h, not 30d)"));
            None
        }
    }
}

fn issue_failed(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Store(error) => error.into(),
        Refusal::Token(reason) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Cannot issue the token", reason),
    }
}

fn text(token: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], token).into_response()
}
