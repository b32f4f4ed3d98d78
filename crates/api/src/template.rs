//! `{{ name }}` placeholders in a resource file, filled from `name=value`
//! variables before the file is parsed, so one file serves many
//! environments or instances. `kodiakctl apply -v` (as `kumactl apply -v`)
//! and `kodiak-dp run --dataplane-var` (as `kuma-dp run --dataplane-var`)
//! both use this, so one file behaves the same with both.
//!
//! A placeholder is `{{ name }}` (spaces optional; a name of letters,
//! digits, `_`, `-`, `.`), values go in verbatim, and braces around
//! anything else (a Lua snippet, a Go template in a proxy patch) are left
//! alone. Every placeholder without a value is an error, named with its
//! line (Kuma's renderer would insert an empty string, which only fails
//! later and less clearly).

use std::collections::{BTreeMap, BTreeSet};

/// Reads one `name=value` variable, split at the first `=`; the name is
/// trimmed, the value kept verbatim. Fits clap's `value_parser`.
pub fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if is_name(name.trim()) => Ok((name.trim().to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE (NAME of letters, digits, '_', '-' or '.'), got {text:?}")),
    }
}

/// What [`render`] produced, and which variables it never used (most
/// likely a typo the caller should hear about).
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub unused: Vec<String>,
}

/// Placeholders without a value, each once, with the (one-based) line it
/// first appears on. [`Missing::hint`] adds how to pass them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no value for {}", describe(.0))]
pub struct Missing(pub Vec<(String, usize)>);

impl Missing {
    /// The error followed by the command-line `flag` (`-v`,
    /// `--dataplane-var`) that supplies each missing value:
    /// `no value for {{ a }} (line 2); pass -v a=VALUE`.
    pub fn hint(&self, flag: &str) -> String {
        let flags: Vec<String> = self.0.iter().map(|(name, _)| format!("{flag} {name}=VALUE")).collect();
        format!("{self}; pass {}", flags.join(" "))
    }
}

fn describe(missing: &[(String, usize)]) -> String {
    let names: Vec<String> = missing.iter().map(|(name, line)| format!("{{{{ {name} }}}} (line {line})")).collect();
    names.join(", ")
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
            .filter(|(name, _)| is_name(name));
        let Some((name, after_close)) = placeholder else {
            out.push_str("{{");
            rest = after_open;
            continue;
        };
        match vars.get(name) {
            Some(value) => {
                out.push_str(value);
                used.insert(name);
            }
            None if !missing.iter().any(|(n, _)| n == name) => {
                let line = text[..text.len() - rest.len() + start].matches('\n').count() + 1;
                missing.push((name.to_owned(), line));
            }
            None => {}
        }
        rest = after_close;
    }
    out.push_str(rest);
    if !missing.is_empty() {
        return Err(Missing(missing));
    }
    let unused = vars.keys().filter(|name| !used.contains(name.as_str())).cloned().collect();
    Ok(Rendered { text: out, unused })
}

fn is_name(text: &str) -> bool {
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
    fn values_go_in_verbatim_and_dotted_names_are_names() {
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
        assert_eq!(err.to_string(), "no value for {{ name }} (line 2), {{ address }} (line 3)");
        assert_eq!(
            err.hint("--dataplane-var"),
            "no value for {{ name }} (line 2), {{ address }} (line 3); \
             pass --dataplane-var name=VALUE --dataplane-var address=VALUE"
        );
        assert_eq!(
            render("{{ a }} {{b}} {{ a }}", &vars(&[])).unwrap_err().hint("-v"),
            "no value for {{ a }} (line 1), {{ b }} (line 1); pass -v a=VALUE -v b=VALUE"
        );
    }

    #[test]
    fn unused_variables_are_reported() {
        let rendered = render("{{ a }}", &vars(&[("a", "1"), ("nmae", "web-1")])).unwrap();
        assert_eq!(rendered.text, "1");
        assert_eq!(rendered.unused, ["nmae"]);
    }

    #[test]
    fn assignments_split_at_the_first_equals_sign() {
        assert_eq!(parse_assignment("query=a=b"), Ok(("query".into(), "a=b".into())));
        assert_eq!(parse_assignment(" spaced =x"), Ok(("spaced".into(), "x".into())));
        assert_eq!(parse_assignment("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_assignment("novalue").unwrap_err().contains("NAME=VALUE"));
        assert!(parse_assignment("=x").is_err());
        assert!(parse_assignment("a b=x").is_err());
    }
}
