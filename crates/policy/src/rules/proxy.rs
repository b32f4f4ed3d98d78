//! Single-item policies (a targetRef and a `default`): the conf for the
//! proxy as a whole.

use super::Conf;
use super::merge_rules::Acc;
use super::read::{Policy, Shape};

/// The merged `default` of the applying policies that have one, least
/// specific first; `None` when none has.
pub(super) fn proxy_conf<'p>(applying: impl Iterator<Item = &'p Policy>) -> Option<Conf> {
    let mut acc: Option<Acc> = None;
    for policy in applying {
        if let Some(conf) = &policy.default {
            acc.get_or_insert_with(Acc::new).add(Shape::Default, conf, &policy.name);
        }
    }
    acc.map(|acc| acc.finish(Shape::Default))
}
