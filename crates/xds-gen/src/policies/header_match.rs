//! The header matches policies share (`{type, name, value}`, type Exact by
//! default), as Envoy header matchers.

use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use serde_json::Value;

/// One header match as a policy states it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderMatch {
    pub kind: MatchKind,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchKind {
    Exact,
    Prefix,
    RegularExpression,
    Present,
    Absent,
}

impl HeaderMatch {
    /// Reads `{type, name, value}`; `None` without a name.
    pub fn read(value: &Value) -> Option<HeaderMatch> {
        let text = |field: &str| value.get(field).and_then(Value::as_str);
        let kind = match text("type").unwrap_or("Exact") {
            "Prefix" => MatchKind::Prefix,
            "RegularExpression" => MatchKind::RegularExpression,
            "Present" => MatchKind::Present,
            "Absent" => MatchKind::Absent,
            _ => MatchKind::Exact,
        };
        Some(HeaderMatch { kind, name: text("name")?.to_owned(), value: text("value").unwrap_or_default().to_owned() })
    }

    /// Reads a list of matches, skipping items without a name.
    pub fn read_list(value: Option<&Value>) -> Vec<HeaderMatch> {
        value.and_then(Value::as_array).into_iter().flatten().filter_map(HeaderMatch::read).collect()
    }

    pub fn matcher(&self) -> HeaderMatcher {
        let string = |pattern| {
            header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
                match_pattern: Some(pattern),
                ..Default::default()
            })
        };
        let specifier = match self.kind {
            MatchKind::Exact => string(string_matcher::MatchPattern::Exact(self.value.clone())),
            MatchKind::Prefix => string(string_matcher::MatchPattern::Prefix(self.value.clone())),
            MatchKind::RegularExpression => string(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                regex: self.value.clone(),
                ..Default::default()
            })),
            MatchKind::Present => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
            MatchKind::Absent => header_matcher::HeaderMatchSpecifier::PresentMatch(false),
        };
        HeaderMatcher { name: self.name.clone(), header_match_specifier: Some(specifier), ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rendered(value: Value) -> Value {
        let matcher = HeaderMatch::read(&value).unwrap().matcher();
        crate::render(&kodiak_xds_server::Resource::new("x", &matcher))
    }

    #[test]
    fn every_kind_becomes_its_envoy_matcher() {
        assert_eq!(rendered(json!({"name": "a", "value": "1"})), json!({"name": "a", "stringMatch": {"exact": "1"}}));
        assert_eq!(
            rendered(json!({"type": "Prefix", "name": "a", "value": "1"})),
            json!({"name": "a", "stringMatch": {"prefix": "1"}})
        );
        assert_eq!(
            rendered(json!({"type": "RegularExpression", "name": "a", "value": "^x"})),
            json!({"name": "a", "stringMatch": {"safeRegex": {"regex": "^x"}}})
        );
        assert_eq!(rendered(json!({"type": "Present", "name": "a"})), json!({"name": "a", "presentMatch": true}));
        assert_eq!(rendered(json!({"type": "Absent", "name": "a"})), json!({"name": "a", "presentMatch": false}));
        assert!(HeaderMatch::read(&json!({"value": "x"})).is_none());
    }
}
