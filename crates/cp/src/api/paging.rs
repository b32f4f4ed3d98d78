//! Paging of lists: the query parameters `size`, `offset`, `name` and
//! `labels.<key>`, and the `{total, items, next}` answer.

use std::collections::{BTreeMap, BTreeSet};

use kodiak_api::name::check_label_key;
use kodiak_api::{MAX_PAGE_SIZE, Violation};

use super::error::ApiError;

pub const DEFAULT_PAGE_SIZE: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    pub size: usize,
    pub offset: usize,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// The largest offset accepted: beyond every store's row count, and safe
/// to add a page size to.
const MAX_OFFSET: usize = i64::MAX as usize;

/// Reads a query string; every bad parameter is reported.
pub fn parse(query: Option<&str>) -> Result<ListParams, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("cannot read the query string: {e}")))?;
    let mut params = ListParams { size: DEFAULT_PAGE_SIZE, offset: 0, name: None, labels: BTreeMap::new() };
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    let mut bad = |field: &str, reason: String| violations.push(Violation { field: field.into(), reason });
    for (key, value) in pairs {
        if !seen.insert(key.clone()) {
            bad(&key, "is given more than once".into());
            continue;
        }
        match key.as_str() {
            "size" => match value.parse::<usize>() {
                Ok(size) if (1..=MAX_PAGE_SIZE as usize).contains(&size) => params.size = size,
                _ => bad("size", format!("must be a whole number from 1 to {MAX_PAGE_SIZE}, got {value:?}")),
            },
            "offset" => match value.parse::<usize>() {
                Ok(offset) if offset <= MAX_OFFSET => params.offset = offset,
                _ => bad("offset", format!("must be a whole number from 0 to {MAX_OFFSET}, got {value:?}")),
            },
            "name" => params.name = Some(value),
            other => match other.strip_prefix("labels.") {
                Some(label) => match check_label_key(label) {
                    Ok(()) => {
                        params.labels.insert(label.into(), value);
                    }
                    Err(reason) => bad(other, reason),
                },
                None => bad(other, "unknown query parameter; known: size, offset, name, labels.<key>".into()),
            },
        }
    }
    if violations.is_empty() {
        Ok(params)
    } else {
        Err(ApiError::bad_parameters("invalid query parameters", violations))
    }
}

/// The list answer `{total, items, next}`; `next` is the absolute URL of
/// the following page, or null on the last one.
pub fn page_body(
    total: usize,
    items: Vec<serde_json::Value>,
    params: &ListParams,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
) -> serde_json::Value {
    let next_offset = params.offset.saturating_add(params.size);
    let next = (next_offset < total).then(|| {
        let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let mut query: Vec<(String, String)> =
            vec![("offset".into(), next_offset.to_string()), ("size".into(), params.size.to_string())];
        if let Some(name) = &params.name {
            query.push(("name".into(), name.clone()));
        }
        query.extend(params.labels.iter().map(|(k, v)| (format!("labels.{k}"), v.clone())));
        let query = serde_urlencoded::to_string(query).unwrap_or_default();
        format!("http://{host}{}?{query}", uri.path())
    });
    serde_json::json!({ "total": total, "items": items, "next": next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse(None).unwrap().size, 100);
        let params = parse(Some("size=5&offset=10&name=web&labels.team=a")).unwrap();
        assert_eq!((params.size, params.offset, params.name.as_deref()), (5, 10, Some("web")));
        assert_eq!(params.labels.get("team").map(String::as_str), Some("a"));
    }

    #[test]
    fn bad_values_are_refused() {
        let huge = format!("offset={}", u64::MAX);
        for query in [
            "size=0",
            "size=1001",
            "size=ten",
            "offset=-1",
            "colour=red",
            "size=1&size=2",
            "labels.a%20b=x",
            "labels.=x",
            &huge,
        ] {
            assert!(parse(Some(query)).is_err(), "{query}");
        }
    }
}
