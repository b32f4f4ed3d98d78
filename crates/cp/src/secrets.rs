//! Secrets and GlobalSecrets as the control plane makes and reads them:
//! bytes, base64-encoded in the resource's `data`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kodiak_api::{Resource, ResourceType};
use kodiak_store::StoreError;
use serde_json::json;

/// A Secret's (or GlobalSecret's) decoded `data`.
pub fn data(secret: &Resource) -> Result<Vec<u8>, String> {
    let name = &secret.key.name;
    let text = secret
        .body
        .get("data")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("{} {name:?} has no data", secret.key.kind))?;
    STANDARD.decode(text).map_err(|e| format!("the data of {} {name:?} is not base64: {e}", secret.key.kind))
}

/// A Secret of `mesh` (a GlobalSecret when `kind` is one, with no mesh)
/// holding `bytes`; refused when `name` is not a valid resource name.
pub fn new(kind: ResourceType, mesh: Option<&str>, name: &str, bytes: &[u8]) -> Result<Resource, StoreError> {
    let mut document = json!({"type": kind.name(), "name": name, "data": STANDARD.encode(bytes)});
    if let Some(mesh) = mesh {
        document["mesh"] = mesh.into();
    }
    Resource::from_document(&document)
        .map_err(|violations| StoreError::Backend(format!("cannot make {kind} {name:?}: {violations}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_go_in_and_come_out_base64() {
        let secret = new(ResourceType::Secret, Some("default"), "s1", b"\x00pem\xff").unwrap();
        assert_eq!(secret.body["data"], "AHBlbf8=");
        assert_eq!(data(&secret).unwrap(), b"\x00pem\xff");
        let global = new(ResourceType::GlobalSecret, None, "g1", b"x").unwrap();
        assert_eq!(global.key.mesh, None);
    }

    #[test]
    fn bad_names_and_bad_data_are_errors() {
        let long = format!("key-{}", "m".repeat(250));
        let error = new(ResourceType::Secret, Some("default"), &long, b"x").unwrap_err();
        assert!(error.to_string().contains("cannot make Secret"), "{error}");
        let mut secret = new(ResourceType::Secret, Some("default"), "s1", b"x").unwrap();
        secret.body.insert("data".into(), "not base64!".into());
        assert!(data(&secret).unwrap_err().contains("the data of Secret \"s1\" is not base64"));
        secret.body.remove("data");
        assert_eq!(data(&secret).unwrap_err(), "Secret \"s1\" has no data");
    }
}
