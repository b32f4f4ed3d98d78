//! Revocation lists: the ids (`jti`) of tokens that no longer count, kept
//! in a Secret as comma-separated text.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations(BTreeSet<String>);

impl Revocations {
    /// Reads `id1,id2`; blanks around ids and empty entries are ignored.
    pub fn parse(text: &str) -> Self {
        Self(text.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect())
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.0.contains(jti)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_separated_with_a_trailing_newline() {
        let list = Revocations::parse("a1, b2,,c3\n");
        assert!(list.contains("a1") && list.contains("b2") && list.contains("c3"));
        assert!(!list.contains("") && !list.contains("a"));
        assert_eq!(Revocations::parse(""), Revocations::default());
    }
}
