//! Deterministic version strings: FNV-1a 64 printed as 16 hex digits.
//!
//! Versions must not depend on process, host or time, so that two control
//! plane instances (or one restarted) agree and a reconnecting proxy is not
//! sent what it already holds (ARCHITECTURE.md principle 6).

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// An FNV-1a 64-bit hasher; stable across runs and platforms, unlike `DefaultHasher`.
pub(crate) struct Fnv1a(u64);

impl Fnv1a {
    pub(crate) fn new() -> Self {
        Self(OFFSET_BASIS)
    }

    /// Feeds `bytes` followed by a 0xff separator, so ("ab", "c") and ("a", "bc") differ
    /// (0xff never occurs in UTF-8 text).
    pub(crate) fn field(mut self, bytes: &[u8]) -> Self {
        for &byte in bytes.iter().chain(&[0xff]) {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(PRIME);
        }
        self
    }

    pub(crate) fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The version of a set of resources: a hash of its (name, version) pairs in name order.
pub(crate) fn of_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .fold(Fnv1a::new(), |hash, (name, version)| hash.field(name.as_bytes()).field(version.as_bytes()))
        .hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_versions_are_stable_and_separate_fields() {
        assert_eq!(of_pairs([("a", "1")]), of_pairs([("a", "1")]));
        assert_ne!(of_pairs([("ab", "1")]), of_pairs([("a", "b1")]));
        assert_ne!(of_pairs([]), of_pairs([("a", "1")]));
        assert_eq!(of_pairs([]).len(), 16);
    }
}
