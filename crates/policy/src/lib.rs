//! Which policies apply to a proxy and what they add up to, following Kuma
//! 2.x's targetRef semantics: matching, ordering from least to most
//! specific, and merging. Pure: resources in, effective configuration out.

mod fields;
pub mod merge;
mod order;
mod target;
pub mod traffic_permission;
