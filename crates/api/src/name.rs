//! Naming rules for resource names, mesh names and label keys.

/// Checks a resource or mesh name: 1-253 characters of lower-case letters,
/// digits, `-`, `.` and `_`, starting and ending with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let rule = "a name has 1-253 characters of lower-case letters, digits, '-', '.' or '_', and starts and ends with a letter or digit";
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!("is {} characters long; {rule}", name.len()));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_');
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first = name.chars().next().unwrap_or('-');
    let last = name.chars().last().unwrap_or('-');
    if !name.chars().all(allowed) || !alphanumeric(first) || !alphanumeric(last) {
        return Err(format!("{name:?} is not a valid name: {rule}"));
    }
    Ok(())
}

/// The longest mesh name: a mesh's name is carried inside the names of
/// the resources made for it (signing keys, default policies, CA secrets),
/// which must themselves stay within 253 characters.
pub const MAX_MESH_NAME: usize = 63;

/// Checks the extra rule a Mesh's own name follows besides [`check_name`].
pub fn check_mesh_name(name: &str) -> Result<(), String> {
    match name.len() {
        len if len > MAX_MESH_NAME => Err(format!("cannot be longer than {MAX_MESH_NAME} characters (it has {len})")),
        _ => Ok(()),
    }
}

/// Checks a label or tag key: an optional DNS prefix and `/`, then 1-63
/// characters of letters, digits, `-`, `_` and `.` (as in Kubernetes labels).
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let valid_prefix = prefix.is_none_or(|p| {
        !p.is_empty() && p.len() <= 253 && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
    });
    if valid_name && valid_prefix {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not a valid key: expected an optional DNS prefix and '/', then 1-63 letters, digits, '-', '_' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["default", "web-1", "a", "backend.kuma-demo", "x_y", "0"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Web", "-web", "web-", "we b", "wéb", &"a".repeat(254)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mesh_names() {
        assert!(check_mesh_name(&"m".repeat(MAX_MESH_NAME)).is_ok());
        let refused = check_mesh_name(&"m".repeat(MAX_MESH_NAME + 1)).unwrap_err();
        assert!(refused.contains("cannot be longer than 63 characters"), "{refused}");
    }

    #[test]
    fn label_keys() {
        for good in ["kuma.io/service", "version", "team_a", "k8s.kuma.io/namespace"] {
            assert!(check_label_key(good).is_ok(), "{good}");
        }
        for bad in ["", "/x", "a/", "sp ace", "a/b/c"] {
            assert!(check_label_key(bad).is_err(), "{bad}");
        }
    }
}
