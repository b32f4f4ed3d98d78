//! Helpers shared by the crate's tests.

use kodiak_api::{Resource, parse_documents};

/// The resources of a YAML stream, each validated.
pub(crate) fn resources(yaml: &str) -> Vec<Resource> {
    parse_documents(yaml).unwrap().iter().map(|doc| Resource::from_document(doc).unwrap()).collect()
}

/// `list` reordered by a Fisher-Yates shuffle driven by `seed`.
pub(crate) fn shuffled<T: Clone>(list: &[T], seed: u64) -> Vec<T> {
    let mut shuffled = list.to_vec();
    let mut state = seed | 1;
    for i in (1..shuffled.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        shuffled.swap(i, (state % (i as u64 + 1)) as usize);
    }
    shuffled
}
