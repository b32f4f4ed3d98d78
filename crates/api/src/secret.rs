//! Secret and GlobalSecret: a base64-encoded value under `data`.

use base64_check::is_base64;

use crate::schema::{Schema, required};
use crate::violations::{FieldPath, Violations};

pub const SCHEMA: Schema = Schema::Object(&[required("data", BASE64)]);

/// Non-empty base64 bytes, as protobuf `bytes` fields appear in a document
/// (secret data, inline certificates).
pub const BASE64: Schema = Schema::Check(&Schema::String, check_data);

fn check_data(value: &serde_json::Value, path: &FieldPath, out: &mut Violations) {
    let text = value.as_str().unwrap_or_default();
    if text.is_empty() {
        out.add(path, "must not be empty");
    } else if !is_base64(text) {
        out.add(path, "must be base64-encoded (standard alphabet, with padding)");
    }
}

mod base64_check {
    /// Standard base64 with padding, as Kuma stores secret data.
    pub fn is_base64(text: &str) -> bool {
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return false;
        }
        let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
        padding <= 2
            && bytes[..bytes.len() - padding].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
    }
}

#[cfg(test)]
mod tests {
    use super::base64_check::is_base64;

    #[test]
    fn base64() {
        assert!(is_base64("c2VjcmV0"));
        assert!(is_base64("YQ=="));
        assert!(!is_base64("not base64!"));
        assert!(!is_base64("YQ="));
    }
}
