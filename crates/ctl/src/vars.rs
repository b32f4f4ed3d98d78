//! `-v key=value` substitution: replaces `{{ key }}` placeholders in a
//! manifest before it is parsed, as kumactl does, so one file serves many
//! environments.

use std::collections::BTreeMap;

/// Reads one `-v key=value` argument.
pub fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if is_key(key.trim()) => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE (KEY of letters, digits, '_', '-' or '.'), got {text:?}")),
    }
}

/// Replaces every `{{ key }}` (spaces optional) with its value. Every
/// placeholder without a value is named in the error, so one run shows all
/// that is missing. Braces around anything that is not a key (a Lua snippet,
/// a Go template in a proxy patch) are left alone.
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut missing: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after_open = &rest[start + 2..];
        let placeholder = after_open
            .find("}}")
            .map(|end| (after_open[..end].trim(), &after_open[end + 2..]))
            .filter(|(key, _)| is_key(key));
        match placeholder {
            Some((key, after_close)) => {
                match values.get(key) {
                    Some(value) => out.push_str(value),
                    None if !missing.contains(&key) => missing.push(key),
                    None => {}
                }
                rest = after_close;
            }
            None => {
                out.push_str("{{");
                rest = after_open;
            }
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        return Ok(out);
    }
    let names = missing.iter().map(|key| format!("{{{{ {key} }}}}")).collect::<Vec<_>>().join(", ");
    let flags = missing.iter().map(|key| format!("-v {key}=VALUE")).collect::<Vec<_>>().join(" ");
    anyhow::bail!("no value for {names}; pass {flags}")
}

fn is_key(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn replaces_placeholders_with_or_without_spaces() {
        let text = "name: {{name}}\nmesh: {{ mesh }}\nalso: {{  name  }}-2\n";
        let out = substitute(text, &values(&[("name", "web"), ("mesh", "default")])).unwrap();
        assert_eq!(out, "name: web\nmesh: default\nalso: web-2\n");
    }

    #[test]
    fn names_every_missing_placeholder_once() {
        let error = substitute("{{ a }} {{b}} {{ a }}", &values(&[])).unwrap_err().to_string();
        assert_eq!(error, "no value for {{ a }}, {{ b }}; pass -v a=VALUE -v b=VALUE");
    }

    #[test]
    fn leaves_braces_that_are_not_placeholders() {
        let text = "code: \"{{ 1 + 2 }}\" and {{ unclosed";
        assert_eq!(substitute(text, &values(&[])).unwrap(), text);
    }

    #[test]
    fn values_are_inserted_verbatim_and_unused_values_are_fine() {
        let out = substitute("a: {{x}}", &values(&[("x", "{{y}}"), ("unused", "1")])).unwrap();
        assert_eq!(out, "a: {{y}}");
    }

    #[test]
    fn assignments_split_at_the_first_equals_sign() {
        assert_eq!(parse_assignment("query=a=b"), Ok(("query".into(), "a=b".into())));
        assert_eq!(parse_assignment("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_assignment("novalue").is_err());
        assert!(parse_assignment("=x").is_err());
    }
}
