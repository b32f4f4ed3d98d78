//! `{{ name }}` placeholders in a dataplane file, filled from
//! `--dataplane-var name=value`, so one file serves many instances (as
//! `kuma-dp run --dataplane-file F --dataplane-var K=V` does).
//!
//! Same rules as `kodiakctl apply -v`, so one file behaves the same with
//! both: a placeholder is `{{ key }}` (spaces optional; a key of letters,
//! digits, `_`, `-`, `.`), values go in verbatim, braces around anything
//! else are left alone, and every placeholder without a value is an error
//! (Kuma's renderer would insert an empty string, which only fails later
//! and less clearly).

use std::collections::{BTreeMap, BTreeSet};

/// Reads `--dataplane-var` values (`name=value`, split at the first `=`);
/// a later value for the same name wins.
pub fn parse_vars(vars: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for var in vars {
        match var.split_once('=') {
            Some((key, value)) if is_key(key.trim()) => {
                out.insert(key.trim().to_owned(), value.to_owned());
            }
            _ => {
                return Err(format!(
                    "--dataplane-var {var:?}: expected NAME=VALUE (NAME of letters, digits, '_', '-' or '.')"
                ));
            }
        }
    }
    Ok(out)
}

/// What [`render`] produced, and which variables it never used (most
/// likely a typo the caller should hear about).
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub unused: Vec<String>,
}

/// Placeholders without a value, each once, with the (one-based) line it
/// first appears on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_missing(.0))]
pub struct Missing(pub Vec<(String, usize)>);

fn describe_missing(missing: &[(String, usize)]) -> String {
    let names: Vec<String> = missing.iter().map(|(key, line)| format!("{{{{ {key} }}}} (line {line})")).collect();
    let flags: Vec<String> = missing.iter().map(|(key, _)| format!("--dataplane-var {key}=VALUE")).collect();
    format!("no value for {}; pass {}", names.join(", "), flags.join(" "))
}

/// Replaces every placeholder in `text` with its value from `vars`.
pub fn render(text: &str, vars: &BTreeMap<String, String>) -> Result<Rendered, Missing> {
    let mut out = String::with_capacity(text.len());
    let mut used = BTreeSet::new();
    let mut missing: Vec<(String, usize)> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after_open = &rest[start + 2..];
        let placeholder = after_open
            .find("}}")
            .map(|end| (after_open[..end].trim(), &after_open[end + 2..]))
            .filter(|(key, _)| is_key(key));
        let Some((key, after_close)) = placeholder else {
            out.push_str("{{");
            rest = after_open;
            continue;
        };
        match vars.get(key) {
            Some(value) => {
                out.push_str(value);
                used.insert(key);
            }
            None if !missing.iter().any(|(k, _)| k == key) => {
                let line = text[..text.len() - rest.len() + start].matches('\n').count() + 1;
                missing.push((key.to_owned(), line));
            }
            None => {}
        }
        rest = after_close;
    }
    out.push_str(rest);
    if !missing.is_empty() {
        return Err(Missing(missing));
    }
    let unused = vars.keys().filter(|key| !used.contains(key.as_str())).cloned().collect();
    Ok(Rendered { text: out, unused })
}

fn is_key(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn fills_every_placeholder_with_or_without_spaces() {
        let rendered = render(
            "name: {{ name }}\naddress: {{address}}\nport: {{  port  }}\nagain: {{name}}-2",
            &vars(&[("name", "web-1"), ("address", "127.0.0.2"), ("port", "10001")]),
        )
        .unwrap();
        assert_eq!(rendered.text, "name: web-1\naddress: 127.0.0.2\nport: 10001\nagain: web-1-2");
        assert!(rendered.unused.is_empty());
    }

    #[test]
    fn values_go_in_verbatim_and_dotted_keys_are_keys() {
        let rendered = render("{{ a }}|{{ svc.port }}", &vars(&[("a", "x&<{{y}}>"), ("svc.port", "8080")])).unwrap();
        assert_eq!(rendered.text, "x&<{{y}}>|8080");
    }

    #[test]
    fn braces_around_anything_else_are_left_alone() {
        let text = "a: \"{{ 1 + 2 }}\"\nb: {{#items}}\nc: {{ unclosed";
        assert_eq!(render(text, &vars(&[])).unwrap().text, text);
    }

    #[test]
    fn every_missing_variable_is_named_once_with_its_line() {
        let err = render("type: Dataplane\nname: {{ name }}\naddress: {{address}}\nagain: {{ name }}\n", &vars(&[]))
            .unwrap_err();
        assert_eq!(err, Missing(vec![("name".into(), 2), ("address".into(), 3)]));
        assert_eq!(
            err.to_string(),
            "no value for {{ name }} (line 2), {{ address }} (line 3); \
             pass --dataplane-var name=VALUE --dataplane-var address=VALUE"
        );
    }

    #[test]
    fn unused_variables_are_reported() {
        let rendered = render("{{ a }}", &vars(&[("a", "1"), ("nmae", "web-1")])).unwrap();
        assert_eq!(rendered.unused, ["nmae"]);
    }

    #[test]
    fn vars_split_at_the_first_equals_sign_and_the_last_value_wins() {
        let parsed = parse_vars(&["a=1".into(), "expr=x=y".into(), "a=2".into(), "empty=".into()]).unwrap();
        assert_eq!(parsed, vars(&[("a", "2"), ("expr", "x=y"), ("empty", "")]));
        assert!(parse_vars(&["novalue".into()]).unwrap_err().contains("NAME=VALUE"));
        assert!(parse_vars(&["=x".into()]).is_err());
        assert!(parse_vars(&["a b=x".into()]).is_err());
    }
}
