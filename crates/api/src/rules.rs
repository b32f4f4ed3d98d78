//! Rules that several resource types share: lists of named backends, a
//! `conf` whose shape depends on the backend's `type`, and durations and
//! counts that must be positive.

use std::collections::HashSet;

use serde_json::Value;

use crate::duration::parse_duration;
use crate::schema::Schema;
use crate::violations::{FieldPath, Violations};

/// A duration that must be longer than zero (probe intervals, timeouts).
pub const POSITIVE_DURATION: Schema = Schema::Check(&Schema::Duration, check_positive_duration);

/// A count that must be at least one (health-check thresholds, a uint32 on
/// the wire).
pub const POSITIVE_COUNT: Schema = Schema::Int { min: 1, max: u32::MAX as i64 };

fn check_positive_duration(value: &Value, path: &FieldPath, out: &mut Violations) {
    if parse_duration(value.as_str().unwrap_or_default()).is_ok_and(|d| d.is_zero()) {
        out.add(path, "must be longer than zero");
    }
}

/// Flags every item of `list` whose `key` field repeats the value of an
/// earlier item, at `path[i].<key>`. Items without the field are skipped.
pub fn check_unique(list: Option<&Value>, key: &str, path: &FieldPath, out: &mut Violations) {
    let mut seen = HashSet::new();
    for (i, item) in list.and_then(Value::as_array).into_iter().flatten().enumerate() {
        if let Some(name) = item.get(key).and_then(Value::as_str)
            && !seen.insert(name)
        {
            out.add(
                &path.index(i).field(key),
                format!("{name:?} is already used by an earlier entry; {key} must be unique"),
            );
        }
    }
}

/// The rules of a Mesh section that lists named `backends` and picks one of
/// them with `selector` (`enabledBackend`, `defaultBackend`): names are
/// unique and a non-empty selector names one of the backends.
pub fn check_backend_section(section: &Value, selector: &str, path: &FieldPath, out: &mut Violations) {
    let backends = section.get("backends");
    check_unique(backends, "name", &path.field("backends"), out);
    let Some(chosen) = section.get(selector).and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return;
    };
    let names: Vec<&str> = backends
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|backend| backend.get("name").and_then(Value::as_str))
        .collect();
    if !names.contains(&chosen) {
        let known =
            if names.is_empty() { "none are defined".to_owned() } else { format!("defined: {}", names.join(", ")) };
        out.add(&path.field(selector), format!("{chosen:?} must name one of the backends ({known})"));
    }
}

/// Checks a backend's `conf` against the schema its `type` selects. A
/// missing `conf` counts as an empty object, so required settings are
/// reported by name.
pub fn check_conf_by_type(backend: &Value, confs: &[(&str, &Schema)], path: &FieldPath, out: &mut Violations) {
    let kind = backend.get("type").and_then(Value::as_str).unwrap_or_default();
    let Some((_, schema)) = confs.iter().find(|(name, _)| *name == kind) else {
        return;
    };
    let empty = Value::Object(Default::default());
    let conf = backend.get("conf").filter(|conf| !conf.is_null()).unwrap_or(&empty);
    schema.check(conf, &path.field("conf"), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(check: impl Fn(&FieldPath, &mut Violations)) -> Vec<String> {
        let mut out = Violations::new();
        check(&FieldPath::root().field("x"), &mut out);
        out.iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn backend_names_are_unique_and_selected_by_name() {
        let section = json!({"enabledBackend": "c", "backends": [{"name": "a"}, {"name": "b"}, {"name": "a"}]});
        let found = fields(|path, out| check_backend_section(&section, "enabledBackend", path, out));
        assert_eq!(found, ["x.backends[2].name", "x.enabledBackend"]);
        let empty = json!({"enabledBackend": ""});
        assert!(fields(|path, out| check_backend_section(&empty, "enabledBackend", path, out)).is_empty());
    }

    #[test]
    fn conf_follows_the_type() {
        const FILE: Schema = Schema::Object(&[crate::schema::required("path", Schema::NonEmptyString)]);
        let confs: &[(&str, &Schema)] = &[("file", &FILE)];
        let missing = json!({"type": "file"});
        assert_eq!(fields(|path, out| check_conf_by_type(&missing, confs, path, out)), ["x.conf.path"]);
        let other = json!({"type": "tcp", "conf": {"anything": 1}});
        assert!(fields(|path, out| check_conf_by_type(&other, confs, path, out)).is_empty());
    }

    #[test]
    fn positive_durations() {
        let check = |text: &str| fields(|path, out| POSITIVE_DURATION.check(&json!(text), path, out));
        assert!(check("5s").is_empty());
        assert_eq!(check("0s"), ["x"]);
        assert_eq!(check("soon"), ["x"]);
    }
}
