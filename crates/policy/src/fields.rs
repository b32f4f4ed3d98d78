//! Small readers for the JSON of stored resources.

use std::collections::BTreeMap;

use kodiak_api::{FieldPath, Violations};
use serde_json::{Map, Value};

/// The string in `field`, if it is one.
pub(crate) fn string<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

/// The items of a list; nothing when `list` is not one.
pub(crate) fn items(list: &Value) -> &[Value] {
    list.as_array().map_or(&[], Vec::as_slice)
}

/// The items of the list in `field` of `spec`; nothing when absent.
pub(crate) fn list<'a>(spec: &'a Map<String, Value>, field: &str) -> &'a [Value] {
    spec.get(field).map_or(&[], items)
}

/// A map of strings, `None` when the field is absent or null.
pub(crate) fn string_map(
    value: &Value,
    field: &str,
    path: &FieldPath,
    out: &mut Violations,
) -> Option<BTreeMap<String, String>> {
    let map = value.get(field).filter(|v| !v.is_null())?;
    let Some(map) = map.as_object() else {
        out.add(path, "must be a map of strings");
        return Some(BTreeMap::new());
    };
    let mut read = BTreeMap::new();
    for (key, value) in map {
        match value.as_str() {
            Some(text) => {
                read.insert(key.clone(), text.to_owned());
            }
            None => out.add(&path.key(key), "must be a string"),
        }
    }
    Some(read)
}
