//! How the `default` confs of several policies add up: each is a JSON merge
//! patch (RFC 7396) laid over the result of the ones before it. Objects
//! merge key by key, `null` deletes a key, and every other value (strings,
//! numbers, booleans and lists) replaces what was there: lists are never
//! concatenated.

use serde_json::{Map, Value};

/// Lays `patch` over `target`, as an RFC 7396 merge patch.
///
/// An object patch turns a non-object target into an empty object first;
/// any other patch replaces the target. Nulls inside an object patch delete
/// the key; they never appear in the result.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else { unreachable!("made an object above") };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Lays `patches` over an empty object, first to last: the later a patch,
/// the more say it has.
pub fn merge_all<'a>(patches: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut merged = Value::Object(Map::new());
    for patch in patches {
        merge(&mut merged, patch);
    }
    merged
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn merged(target: Value, patch: Value) -> Value {
        let mut target = target;
        merge(&mut target, &patch);
        target
    }

    #[test]
    fn objects_merge_key_by_key_and_null_deletes() {
        let target = json!({"connectionTimeout": "5s", "http": {"requestTimeout": "15s", "maxStreamDuration": "0s"}});
        let patch = json!({"http": {"requestTimeout": "2s", "maxStreamDuration": null}, "idleTimeout": "1h"});
        assert_eq!(
            merged(target, patch),
            json!({"connectionTimeout": "5s", "idleTimeout": "1h", "http": {"requestTimeout": "2s"}})
        );
    }

    #[test]
    fn lists_are_replaced_not_concatenated() {
        let target = json!({"retryOn": ["5xx", "reset"], "hosts": [{"a": 1}]});
        let patch = json!({"retryOn": ["gateway-error"]});
        assert_eq!(merged(target, patch), json!({"retryOn": ["gateway-error"], "hosts": [{"a": 1}]}));
    }

    #[test]
    fn a_scalar_replaces_an_object_and_an_object_replaces_a_scalar() {
        assert_eq!(merged(json!({"a": {"b": 1}}), json!({"a": 2})), json!({"a": 2}));
        assert_eq!(merged(json!({"a": 2}), json!({"a": {"b": 1, "c": null}})), json!({"a": {"b": 1}}));
        assert_eq!(merged(json!("text"), json!({"a": 1})), json!({"a": 1}));
        assert_eq!(merged(json!({"a": 1}), json!(["x"])), json!(["x"]));
    }

    #[test]
    fn merge_all_applies_in_order_starting_from_an_empty_object() {
        let patches = [json!({"a": 1, "b": 1}), json!({"b": 2, "c": 3}), json!({"c": null})];
        assert_eq!(merge_all(&patches), json!({"a": 1, "b": 2}));
        assert_eq!(merge_all(&[]), json!({}));
    }

    /// A leaf: what a policy field holds.
    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[0-9]{1,2}[smh]".prop_map(Value::from),
            any::<u16>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            prop::collection::vec("[a-z]{1,3}", 0..3).prop_map(|items| json!(items)),
        ]
    }

    /// A conf of any shape, nulls included at any depth.
    fn conf(nulls: bool) -> impl Strategy<Value = Value> {
        let leaf = if nulls { prop_oneof![4 => leaf(), 1 => Just(Value::Null)].boxed() } else { leaf().boxed() };
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop::collection::btree_map("[a-d]", inner, 0..4).prop_map(|map| Value::Object(map.into_iter().collect()))
        })
        .prop_map(|value| if value.is_object() { value } else { json!({ "x": value }) })
    }

    /// A conf of one fixed shape (each key always holds the same kind of
    /// value), as confs of one policy type are; `nulls` lets fields be null.
    fn shaped(nulls: bool) -> impl Strategy<Value = Value> {
        let field = |value: BoxedStrategy<Value>| {
            let absent_or_null =
                if nulls { prop_oneof![Just(None), Just(Some(Value::Null))].boxed() } else { Just(None).boxed() };
            prop_oneof![absent_or_null, value.prop_map(Some)]
        };
        let duration = || "[0-9]{1,2}[smh]".prop_map(Value::from).boxed();
        let http = (field(duration()), field(duration()))
            .prop_map(|(request, stream)| object([("requestTimeout", request), ("maxStreamDuration", stream)]))
            .boxed();
        let list = prop::collection::vec("[a-z]{1,3}", 0..3).prop_map(|items| json!(items)).boxed();
        (field(duration()), field(http), field(list), field(any::<u16>().prop_map(Value::from).boxed())).prop_map(
            |(connect, http, retry_on, count)| {
                object([("connectionTimeout", connect), ("http", http), ("retryOn", retry_on), ("count", count)])
            },
        )
    }

    fn object<const N: usize>(fields: [(&str, Option<Value>); N]) -> Value {
        Value::Object(fields.into_iter().filter_map(|(key, value)| Some((key.to_owned(), value?))).collect())
    }

    /// Every path to a non-object value in `value`, with that value.
    fn leaves(value: &Value, prefix: String, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    leaves(value, format!("{prefix}/{key}"), out);
                }
            }
            other => out.push((prefix, other.clone())),
        }
    }

    fn has_null(value: &Value) -> bool {
        match value {
            Value::Null => true,
            Value::Object(map) => map.values().any(has_null),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn merging_an_empty_object_changes_nothing(target in conf(false)) {
            prop_assert_eq!(merged(target.clone(), json!({})), target);
        }

        #[test]
        fn the_result_never_holds_null(target in conf(false), patch in conf(true)) {
            prop_assert!(!has_null(&merged(target, patch)));
        }

        #[test]
        fn a_later_patch_s_values_win(target in conf(false), patch in conf(true)) {
            let result = merged(target, patch.clone());
            let mut set = Vec::new();
            leaves(&patch, String::new(), &mut set);
            for (path, value) in set {
                if value.is_null() {
                    prop_assert!(result.pointer(&path).is_none(), "{} should be deleted", path);
                } else {
                    prop_assert_eq!(result.pointer(&path), Some(&value), "{}", path);
                }
            }
        }

        #[test]
        fn keys_a_patch_does_not_name_keep_their_value(target in conf(false), patch in conf(true)) {
            let result = merged(target.clone(), patch.clone());
            for (key, value) in target.as_object().unwrap() {
                if !patch.as_object().unwrap().contains_key(key) {
                    prop_assert_eq!(result.get(key), Some(value), "{}", key);
                }
            }
        }

        /// For confs of one shape, merging patches one after the other gives
        /// what merging their pre-merged combination gives: policies can be
        /// merged in groups as long as the order is kept. (Only the first
        /// patch may hold nulls: a null in a later patch deletes from the
        /// combination, not from what it is laid over.)
        #[test]
        fn successive_patches_of_one_shape_merge_associatively(
            base in shaped(false), first in shaped(true), second in shaped(false), third in shaped(false),
        ) {
            let step_by_step = merge_all([&base, &first, &second, &third]);
            let mut combined = second.clone();
            merge(&mut combined, &third);
            let grouped = merge_all([&base, &first, &combined]);
            prop_assert_eq!(step_by_step, grouped);
        }
    }
}
