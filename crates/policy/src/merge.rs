//! How the `default` confs of several policies add up: each is a JSON merge
//! patch (RFC 7396) laid over the result of the ones before it, with the
//! changes that make Kuma-compatible policies keep their meaning. Objects
//! merge key by key; strings, numbers, booleans and lists replace what was
//! there, with one exception: a list under a key named `append…`
//! (`appendModifications`) is appended to the list already there. A `null`
//! counts as absent, as it does when a policy is validated: it leaves the
//! value below it in place rather than deleting it.
//!
//! Route policies add their rules up differently; see `rules::merge_rules`.

use serde_json::{Map, Value};

/// Lays `patch` over `target`.
///
/// An object patch turns a non-object target into an empty object first;
/// any other non-null patch replaces the target. Nulls never appear in the
/// result unless `target` held them.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        if !patch.is_null() {
            *target = patch.clone();
        }
        return;
    };
    match target {
        Value::Object(target) if !target.is_empty() => {
            for (key, value) in fields {
                match (value, target.get_mut(key)) {
                    (Value::Null, _) => {}
                    (Value::Array(items), Some(Value::Array(existing))) if appends(key) => {
                        existing.extend(items.iter().cloned())
                    }
                    (value, Some(existing)) => merge(existing, value),
                    (value, None) => {
                        target.insert(key.clone(), without_nulls(value));
                    }
                }
            }
        }
        // Nothing to merge with: the patch itself, cloned in one go.
        _ => *target = without_nulls(patch),
    }
}

/// `value` without the null fields of its objects, at any depth outside
/// lists.
fn without_nulls(value: &Value) -> Value {
    let mut value = value.clone();
    drop_nulls(&mut value);
    value
}

fn drop_nulls(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, field| !field.is_null());
        map.values_mut().for_each(drop_nulls);
    }
}

/// Whether lists under `key` are appended rather than replaced: keys named
/// `append` followed by a capitalised word.
pub fn appends(key: &str) -> bool {
    key.strip_prefix("append").is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
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
    fn objects_merge_key_by_key_and_null_leaves_the_value_below() {
        let target = json!({"connectionTimeout": "5s", "http": {"requestTimeout": "15s", "maxStreamDuration": "0s"}});
        let patch =
            json!({"http": {"requestTimeout": "2s", "maxStreamDuration": null}, "idleTimeout": "1h", "x": null});
        assert_eq!(
            merged(target, patch),
            json!({"connectionTimeout": "5s", "idleTimeout": "1h", "http": {"requestTimeout": "2s", "maxStreamDuration": "0s"}})
        );
        assert_eq!(merged(json!({"a": 1}), Value::Null), json!({"a": 1}));
        assert_eq!(merged(json!({}), json!({"a": {"b": null}})), json!({"a": {}}));
        assert_eq!(
            merged(json!({"a": 1}), json!({"n": {"m": null, "k": [null]}})),
            json!({"a": 1, "n": {"k": [null]}})
        );
    }

    #[test]
    fn lists_under_append_keys_are_appended_at_any_depth() {
        let target = json!({"appendModifications": [{"a": 1}], "nested": {"appendMatch": ["x"]}, "append": [1]});
        let patch = json!({"appendModifications": [{"b": 2}], "nested": {"appendMatch": ["y"]}, "append": [2]});
        assert_eq!(
            merged(target, patch),
            json!({"appendModifications": [{"a": 1}, {"b": 2}], "nested": {"appendMatch": ["x", "y"]}, "append": [2]})
        );
        assert_eq!(merged(json!({}), json!({"appendModifications": [1]})), json!({"appendModifications": [1]}));
        assert!(appends("appendProfiles") && !appends("append") && !appends("appendix") && !appends("backends"));
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
        assert_eq!(merge_all(&patches), json!({"a": 1, "b": 2, "c": 3}));
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

    fn without_nulls(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect(),
            ),
            other => other.clone(),
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
            for (path, value) in set.into_iter().filter(|(_, value)| !value.is_null()) {
                prop_assert_eq!(result.pointer(&path), Some(&value), "{}", path);
            }
        }

        /// A null in a patch changes nothing: the patch merges as if the key
        /// were absent.
        #[test]
        fn nulls_count_as_absent(target in conf(false), patch in conf(true)) {
            prop_assert_eq!(merged(target.clone(), patch.clone()), merged(target, without_nulls(&patch)));
        }

        /// Lists under `append…` keys hold every patch's items, first patch
        /// first; other lists hold the last patch's.
        #[test]
        fn append_lists_concatenate_and_other_lists_are_replaced(
            lists in prop::collection::vec((prop::option::of(prop::collection::vec(0..9u8, 0..3)),
                prop::option::of(prop::collection::vec(0..9u8, 0..3))), 1..5),
        ) {
            let patches: Vec<Value> = lists.iter().map(|(append, replace)| {
                json!({"default": {"appendModifications": append, "modifications": replace}})
            }).collect();
            let result = merge_all(&patches);
            let appended: Vec<u8> = lists.iter().filter_map(|(append, _)| append.clone()).flatten().collect();
            let expected = lists.iter().any(|(append, _)| append.is_some()).then(|| json!(appended));
            prop_assert_eq!(result.pointer("/default/appendModifications"), expected.as_ref());
            let last = lists.iter().rev().find_map(|(_, replace)| replace.clone()).map(|last| json!(last));
            prop_assert_eq!(result.pointer("/default/modifications"), last.as_ref());
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
        /// merged in groups as long as the order is kept.
        #[test]
        fn successive_patches_of_one_shape_merge_associatively(
            base in shaped(false), first in shaped(true), second in shaped(true), third in shaped(true),
        ) {
            let step_by_step = merge_all([&base, &first, &second, &third]);
            let mut combined = second.clone();
            merge(&mut combined, &third);
            let grouped = merge_all([&base, &first, &combined]);
            prop_assert_eq!(step_by_step, grouped);
        }
    }
}
