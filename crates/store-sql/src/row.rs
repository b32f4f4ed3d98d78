//! A resource as the column values of one `resources` row, and back.
//!
//! Reading does not validate: a body stored by an older Kodiak whose schema
//! has since changed is still returned as stored, so users can read and
//! fix it.

use std::collections::BTreeMap;

use kodiak_api::{Resource, ResourceKey, ResourceType};
use kodiak_store::StoreError;
use serde_json::{Map, Value};

/// The column values of one row, as every SQL backend reads them.
pub(crate) struct ResourceRow {
    pub kind: String,
    pub mesh: String,
    pub name: String,
    pub version: i64,
    pub labels: String,
    pub body: String,
    pub creation_time: String,
    pub modification_time: String,
}

impl ResourceRow {
    pub fn into_resource(self) -> Result<Resource, StoreError> {
        let key = key_from_columns(&self.kind, &self.mesh, self.name)?;
        let labels: BTreeMap<String, String> = serde_json::from_str(&self.labels)
            .map_err(|e| corrupt(&key, format!("labels are not a JSON object of strings: {e}")))?;
        let body = match serde_json::from_str(&self.body) {
            Ok(Value::Object(body)) => body,
            Ok(other) => {
                return Err(corrupt(&key, format!("body is not a JSON object but {other}")));
            }
            Err(e) => return Err(corrupt(&key, format!("body is not JSON: {e}"))),
        };
        Ok(Resource {
            version: version_from_column(&key, self.version)?,
            key,
            labels,
            body,
            creation_time: Some(self.creation_time),
            modification_time: Some(self.modification_time),
        })
    }
}

/// The `mesh` column: '' for global types, so the primary key has no NULL.
pub(crate) fn mesh_column(key: &ResourceKey) -> &str {
    key.mesh.as_deref().unwrap_or("")
}

pub(crate) fn key_from_columns(kind: &str, mesh: &str, name: String) -> Result<ResourceKey, StoreError> {
    let kind: ResourceType = kind.parse().map_err(|reason| {
        StoreError::Backend(format!(
            "stored resource {name:?} has {reason}; was the database written by a newer Kodiak?"
        ))
    })?;
    let mesh = (!mesh.is_empty()).then(|| mesh.to_owned());
    Ok(ResourceKey { kind, mesh, name })
}

pub(crate) fn version_from_column(key: &ResourceKey, version: i64) -> Result<u64, StoreError> {
    u64::try_from(version).map_err(|_| corrupt(key, format!("version {version} is negative")))
}

pub(crate) fn labels_column(resource: &Resource) -> String {
    Value::Object(resource.labels.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect::<Map<_, _>>())
        .to_string()
}

pub(crate) fn body_column(resource: &Resource) -> String {
    resource.body_value().to_string()
}

fn corrupt(key: &ResourceKey, problem: String) -> StoreError {
    StoreError::Backend(format!("stored {key} is damaged: {problem}; delete it and create it again"))
}
