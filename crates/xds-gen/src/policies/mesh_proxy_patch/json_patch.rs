//! RFC 6902 JSON patches over `serde_json` values, with RFC 6901 pointers.
//!
//! Three leniencies keep manifests written for Kuma working unchanged:
//! `add` creates missing parent objects (or an array when the next step
//! is `-` or an index), `remove` of a path that does not exist does
//! nothing, and a negative index counts from the end (`-1` is the last
//! element; for `add`, the place after it).

use serde_json::{Map, Value};

use super::conf::JsonPatch;

/// Why operation `index` of a patch list failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    pub index: usize,
    pub reason: String,
}

/// Applies `patches` to `doc` in order. On failure `doc` may hold the
/// operations before the failing one: callers work on a copy.
pub(super) fn apply(doc: &mut Value, patches: &[JsonPatch]) -> Result<(), Failure> {
    for (index, patch) in patches.iter().enumerate() {
        apply_one(doc, patch).map_err(|reason| Failure { index, reason })?;
    }
    Ok(())
}

/// What can be checked of `patch` without a document: its op, its
/// pointers, and that it has what its op needs.
pub(super) fn check(patch: &JsonPatch) -> Result<(), String> {
    let path = tokens(&patch.path)?;
    let (needs_value, needs_from) = match patch.op.as_str() {
        "add" | "replace" | "test" => (true, false),
        "move" | "copy" => (false, true),
        "remove" if path.is_empty() => return Err("the root cannot be removed".to_owned()),
        "remove" => (false, false),
        other => return Err(unknown_op(other)),
    };
    if needs_value && patch.value.is_none() {
        return Err(format!("op {} needs a value", patch.op));
    }
    match (&patch.from, needs_from) {
        (Some(from), true) => tokens(from).map(drop),
        (None, true) => Err(format!("op {} needs from", patch.op)),
        _ => Ok(()),
    }
}

fn unknown_op(op: &str) -> String {
    format!("unknown op {op:?} (expected add, remove, replace, move, copy or test)")
}

fn apply_one(doc: &mut Value, patch: &JsonPatch) -> Result<(), String> {
    let path = tokens(&patch.path)?;
    let from = || {
        let from = patch.from.as_deref().ok_or_else(|| format!("op {} needs from", patch.op))?;
        tokens(from).map(|tokens| (from, tokens))
    };
    let value = || -> Result<Value, String> {
        let text = patch.value.as_deref().ok_or_else(|| format!("op {} needs a value", patch.op))?;
        serde_json::from_str(text).map_err(|e| format!("the value is not JSON: {e}"))
    };
    match patch.op.as_str() {
        "add" => add(doc, &path, value()?),
        "remove" => remove(doc, &path).map(drop),
        "replace" => {
            let target = get_mut(doc, &path).ok_or_else(|| missing(&patch.path))?;
            *target = value()?;
            Ok(())
        }
        "move" => {
            let (from_text, from) = from()?;
            if from == path {
                return Ok(());
            }
            if path.starts_with(&from) {
                return Err(format!("{from_text} cannot be moved into itself ({})", patch.path));
            }
            let moved = remove(doc, &from)?.ok_or_else(|| missing(from_text))?;
            add(doc, &path, moved)
        }
        "copy" => {
            let (from_text, from) = from()?;
            let copied = get(doc, &from).ok_or_else(|| missing(from_text))?.clone();
            add(doc, &path, copied)
        }
        "test" => {
            let (expected, actual) = (value()?, get(doc, &path).ok_or_else(|| missing(&patch.path))?);
            if equal(actual, &expected) {
                Ok(())
            } else {
                Err(format!("test failed: {} is {actual}, not {expected}", pointer_text(&patch.path)))
            }
        }
        other => Err(unknown_op(other)),
    }
}

fn missing(path: &str) -> String {
    format!("{} does not exist", pointer_text(path))
}

fn pointer_text(path: &str) -> &str {
    if path.is_empty() { "the root" } else { path }
}

/// The reference tokens of a JSON pointer (`""` is the whole document).
fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or_else(|| format!("path {pointer:?} must start with /"))?;
    rest.split('/')
        .map(|token| unescape(token).ok_or_else(|| format!("path {pointer:?}: ~ must be followed by 0 or 1")))
        .collect()
}

fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next()? {
                '0' => out.push('~'),
                '1' => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// Where `token` points in an array of `len` elements. `for_add` allows
/// the place after the last element (`-`, `len`).
fn index(token: &str, len: usize, for_add: bool) -> Result<usize, String> {
    let limit = if for_add { len + 1 } else { len };
    if token == "-" {
        return if for_add { Ok(len) } else { Err("- names no existing element".to_owned()) };
    }
    let valid = !token.is_empty() && (token == "0" || !token.trim_start_matches('-').starts_with('0'));
    let number: i64 = token.parse().ok().filter(|_| valid).ok_or_else(|| format!("{token:?} is not an array index"))?;
    let resolved = if number < 0 { i64::try_from(limit).unwrap_or(i64::MAX) + number } else { number };
    usize::try_from(resolved)
        .ok()
        .filter(|&i| i < limit)
        .ok_or_else(|| format!("index {token} is out of range (the array has {len} elements)"))
}

fn step<'a>(value: &'a Value, token: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map.get(token),
        Value::Array(items) => items.get(index(token, items.len(), false).ok()?),
        _ => None,
    }
}

fn step_mut<'a>(value: &'a mut Value, token: &str) -> Option<&'a mut Value> {
    match value {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => {
            let i = index(token, items.len(), false).ok()?;
            items.get_mut(i)
        }
        _ => None,
    }
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |value, token| step(value, token))
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |value, token| step_mut(value, token))
}

fn display(path: &[String]) -> String {
    path.iter().map(|token| format!("/{}", token.replace('~', "~0").replace('/', "~1"))).collect()
}

/// Adds `value` at `path`, creating missing parents.
fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    let mut container = doc;
    for (depth, token) in parents.iter().enumerate() {
        let next = &path[depth + 1];
        if let Value::Object(map) = &mut *container
            && !map.contains_key(token)
        {
            let creates_array = next == "-" || next.parse::<usize>().is_ok();
            let created = if creates_array { Value::Array(Vec::new()) } else { Value::Object(Map::new()) };
            map.insert(token.clone(), created);
        }
        container = step_mut(container, token).ok_or_else(|| format!("{} does not exist", display(&path[..=depth])))?;
    }
    match container {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let at = index(last, items.len(), true).map_err(|reason| format!("{}: {reason}", display(path)))?;
            items.insert(at, value);
            Ok(())
        }
        _ => Err(format!("{} is neither an object nor an array", display(parents))),
    }
}

/// Removes what `path` points at and returns it (`None`: nothing there).
fn remove(doc: &mut Value, path: &[String]) -> Result<Option<Value>, String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("the root cannot be removed".to_owned());
    };
    Ok(match get_mut(doc, parents) {
        Some(Value::Object(map)) => map.shift_remove(last),
        Some(Value::Array(items)) => match index(last, items.len(), false) {
            Ok(i) => Some(items.remove(i)),
            Err(_) => None,
        },
        _ => None,
    })
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, x)| y.get(key).is_some_and(|y| equal(x, y)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(op: &str, path: &str, value: Option<Value>, from: Option<&str>) -> JsonPatch {
        JsonPatch {
            op: op.into(),
            path: path.into(),
            from: from.map(str::to_owned),
            value: value.map(|v| v.to_string()),
        }
    }

    fn patched(mut doc: Value, patches: &[JsonPatch]) -> Result<Value, Failure> {
        apply(&mut doc, patches).map(|()| doc)
    }

    fn fails(doc: Value, patches: &[JsonPatch]) -> Failure {
        patched(doc, patches).expect_err("the patch must fail")
    }

    #[test]
    fn add_sets_members_inserts_elements_and_creates_parents() {
        let doc = json!({"a": {"b": 1}, "list": [1, 3]});
        let out = patched(
            doc,
            &[
                op("add", "/a/c", Some(json!(2)), None),
                op("add", "/a/b", Some(json!("replaced")), None),
                op("add", "/list/1", Some(json!(2)), None),
                op("add", "/list/-", Some(json!(4)), None),
                op("add", "/list/-1", Some(json!(5)), None),
                op("add", "/new/deep/key", Some(json!(true)), None),
                op("add", "/items/-", Some(json!("first")), None),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"a": {"b": "replaced", "c": 2}, "list": [1, 2, 3, 4, 5],
                   "new": {"deep": {"key": true}}, "items": ["first"]})
        );
    }

    #[test]
    fn add_at_the_root_replaces_the_document() {
        assert_eq!(patched(json!({"a": 1}), &[op("add", "", Some(json!({"b": 2})), None)]).unwrap(), json!({"b": 2}));
    }

    #[test]
    fn remove_takes_members_and_elements_and_ignores_missing_paths() {
        let doc = json!({"a": {"b": 1, "c": 2}, "list": [1, 2, 3]});
        let out = patched(
            doc,
            &[
                op("remove", "/a/b", None, None),
                op("remove", "/list/0", None, None),
                op("remove", "/list/-1", None, None),
                op("remove", "/nothing/here", None, None),
                op("remove", "/list/7", None, None),
            ],
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"c": 2}, "list": [2]}));
        assert_eq!(fails(json!({}), &[op("remove", "", None, None)]).reason, "the root cannot be removed");
    }

    #[test]
    fn replace_needs_an_existing_target() {
        let out = patched(json!({"a": [1, 2]}), &[op("replace", "/a/1", Some(json!(9)), None)]).unwrap();
        assert_eq!(out, json!({"a": [1, 9]}));
        let failure =
            fails(json!({"a": 1}), &[op("add", "/b", Some(json!(1)), None), op("replace", "/c", Some(json!(2)), None)]);
        assert_eq!(failure, Failure { index: 1, reason: "/c does not exist".into() });
        assert_eq!(
            fails(json!({"a": [1]}), &[op("replace", "/a/1", Some(json!(2)), None)]).reason,
            "/a/1 does not exist"
        );
    }

    #[test]
    fn move_and_copy_take_from() {
        let doc = json!({"a": {"x": 1}, "b": [1, 2]});
        let out = patched(
            doc,
            &[
                op("copy", "/c", None, Some("/a")),
                op("move", "/b/0", None, Some("/a/x")),
                op("move", "/d", None, Some("/c")),
            ],
        )
        .unwrap();
        assert_eq!(out, json!({"a": {}, "b": [1, 1, 2], "d": {"x": 1}}));
        assert_eq!(fails(json!({}), &[op("copy", "/b", None, Some("/a"))]).reason, "/a does not exist");
        assert_eq!(fails(json!({"a": 1}), &[op("move", "/b", None, Some("/x"))]).reason, "/x does not exist");
        let into_itself = fails(json!({"a": {"b": 1}}), &[op("move", "/a/b/c", None, Some("/a"))]);
        assert!(into_itself.reason.contains("cannot be moved into itself"), "{into_itself:?}");
    }

    #[test]
    fn test_compares_values() {
        let doc = json!({"n": 1, "s": "x", "o": {"a": [1, {"b": null}]}});
        let passes =
            [op("test", "/n", Some(json!(1.0)), None), op("test", "/o", Some(json!({"a": [1, {"b": null}]})), None)];
        assert_eq!(patched(doc.clone(), &passes).unwrap(), doc);
        let failure = fails(doc.clone(), &[op("test", "/s", Some(json!("y")), None)]);
        assert_eq!(failure.reason, "test failed: /s is \"x\", not \"y\"");
        assert_eq!(fails(doc, &[op("test", "/missing", Some(json!(1)), None)]).reason, "/missing does not exist");
    }

    #[test]
    fn pointers_are_unescaped_and_checked() {
        let doc = json!({"a/b": {"m~n": 1}});
        assert_eq!(
            patched(doc.clone(), &[op("replace", "/a~1b/m~0n", Some(json!(2)), None)]).unwrap(),
            json!({"a/b": {"m~n": 2}})
        );
        assert!(fails(doc.clone(), &[op("remove", "a", None, None)]).reason.contains("must start with /"));
        assert!(fails(doc.clone(), &[op("remove", "/a~2", None, None)]).reason.contains("~ must be followed"));
        assert!(
            fails(json!({"l": [1]}), &[op("add", "/l/01", Some(json!(1)), None)]).reason.contains("not an array index")
        );
        assert!(fails(json!({"l": [1]}), &[op("add", "/l/3", Some(json!(1)), None)]).reason.contains("out of range"));
        assert!(
            fails(json!({"s": "x"}), &[op("add", "/s/k", Some(json!(1)), None)]).reason.contains("neither an object")
        );
    }

    #[test]
    fn check_looks_at_what_needs_no_document() {
        assert_eq!(check(&op("test", "/a/0", Some(json!(1)), None)), Ok(()));
        assert_eq!(check(&op("copy", "/a", None, Some("/b"))), Ok(()));
        assert_eq!(check(&op("remove", "", None, None)), Err("the root cannot be removed".into()));
        assert_eq!(check(&op("replace", "/a", None, None)), Err("op replace needs a value".into()));
        assert_eq!(check(&op("move", "/a", None, None)), Err("op move needs from".into()));
        assert!(check(&op("move", "/a", None, Some("b"))).unwrap_err().contains("must start with /"));
        assert!(check(&op("add", "/a~x", Some(json!(1)), None)).unwrap_err().contains("~ must be followed"));
        assert!(check(&op("merge", "/a", None, None)).unwrap_err().contains("unknown op \"merge\""));
    }

    #[test]
    fn bad_operations_are_named() {
        assert!(fails(json!({}), &[op("frobnicate", "/a", None, None)]).reason.contains("unknown op \"frobnicate\""));
        assert_eq!(fails(json!({}), &[op("add", "/a", None, None)]).reason, "op add needs a value");
        assert_eq!(fails(json!({}), &[op("move", "/a", None, None)]).reason, "op move needs from");
    }
}
