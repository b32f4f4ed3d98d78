//! `GET /`, `GET /config` and `GET /_resources`.

use axum::Json;
use kodiak_api::{ResourceType, Scope};
use serde_json::{Value, json};

use super::ApiState;

/// The Kuma release whose API and resource formats Kodiak follows.
const KUMA_COMPATIBILITY: &str = "2.14";

pub fn index(state: &ApiState) -> Json<Value> {
    Json(json!({
        "hostname": state.hostname,
        "tagline": "Kodiak",
        "product": "Kodiak",
        "version": env!("CARGO_PKG_VERSION"),
        "instanceId": state.instance_id,
        "basedOnKuma": KUMA_COMPATIBILITY,
    }))
}

pub fn config(state: &ApiState) -> Json<Value> {
    Json(serde_json::to_value(&state.config).unwrap_or_default())
}

/// Describes every resource type, as Kuma's `/_resources` does.
pub fn resource_types() -> Json<Value> {
    let resources: Vec<Value> = ResourceType::ALL
        .iter()
        .map(|kind| {
            let display = kind.display_name();
            json!({
                "name": kind.name(),
                "path": kind.plural(),
                "scope": match kind.scope() { Scope::Global => "Global", Scope::Mesh => "Mesh" },
                "readOnly": false,
                "singularDisplayName": display,
                "pluralDisplayName": format!("{display}s"),
                "shortName": kind.short_name(),
                "policy": kind.is_policy().then(|| json!({"isTargetRef": true})),
            })
        })
        .collect();
    Json(json!({ "resources": resources }))
}
