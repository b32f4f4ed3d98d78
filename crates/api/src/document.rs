//! Reading resource documents from YAML or JSON text (one or many), and
//! writing them back.

use serde::Deserialize;
use serde_json::Value;

/// A document that could not be read as YAML or JSON, with where it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location.map(|(line, column)| format!("line {line}, column {column}: ")).unwrap_or_default())]
pub struct SyntaxError {
    /// One-based line and column, when the parser knows them.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

/// Splits YAML text (or a JSON document, which YAML includes) into its
/// documents. Empty documents (a trailing `---`) are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, SyntaxError> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(yaml_error)?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// Parses exactly one document. A JSON object (`{` then a quoted key) is
/// read as JSON, for its precise error messages; anything else as YAML,
/// which also covers flow-style YAML such as `{type: Mesh, name: m}`.
pub fn parse_document(text: &str) -> Result<Value, SyntaxError> {
    if looks_like_json(text) {
        return serde_json::from_str(text).map_err(|e| SyntaxError {
            location: Some((e.line(), e.column())),
            message: strip_location(&e.to_string()),
        });
    }
    parse_single_yaml(text)
}

fn looks_like_json(text: &str) -> bool {
    text.trim_start().strip_prefix('{').is_some_and(|rest| rest.trim_start().starts_with(['"', '}']))
}

fn parse_single_yaml(text: &str) -> Result<Value, SyntaxError> {
    let mut documents = parse_documents(text)?;
    match documents.len() {
        1 => Ok(documents.remove(0)),
        0 => Err(SyntaxError { location: None, message: "the document is empty".into() }),
        n => Err(SyntaxError { location: None, message: format!("expected one document, found {n}") }),
    }
}

fn yaml_error(e: serde_yaml::Error) -> SyntaxError {
    SyntaxError { location: e.location().map(|l| (l.line(), l.column())), message: strip_location(&e.to_string()) }
}

/// Drops the " at line X column Y" suffix parsers add, since the location
/// is reported separately.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Renders a value as YAML text.
pub fn to_yaml(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

/// Renders a value as indented JSON text.
pub fn to_json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml() {
        let docs = parse_documents("type: Mesh\nname: a\n---\ntype: Mesh\nname: b\n---\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["name"], "b");
    }

    #[test]
    fn yaml_errors_have_line_and_column() {
        let err = parse_documents("type: Mesh\nname: [unclosed\n").unwrap_err();
        assert!(err.location.is_some(), "{err}");
        assert!(err.to_string().starts_with("line "), "{err}");
    }

    #[test]
    fn flow_style_yaml_is_yaml() {
        assert_eq!(parse_document("{type: Mesh, name: m}").unwrap()["name"], "m");
    }

    #[test]
    fn json_errors_have_line_and_column() {
        let err = parse_document("{\n  \"type\": \"Mesh\",\n  \"name\": }").unwrap_err();
        assert_eq!(err.location, Some((3, 11)));
    }
}
