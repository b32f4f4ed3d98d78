//! Which policies apply to a proxy and what they add up to, following Kuma
//! 2.x's targetRef semantics: matching, ordering from least to most
//! specific, and merging. Pure: resources in, effective configuration out.

mod fields;
pub mod merge;
mod order;
pub mod rules;
mod target;
#[cfg(test)]
mod test_support;
pub mod traffic_permission;
