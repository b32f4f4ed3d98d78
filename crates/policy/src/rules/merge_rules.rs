//! How the confs of one policy type add up, entry by entry, least specific
//! first, and which policies contributed.
//!
//! Most types merge as patches (see [`crate::merge`]: lists replaced, lists
//! under `append…` keys such as MeshProxyPatch's `appendModifications`
//! appended). Routes differ:
//!
//! - MeshHTTPRoute: each entry's `rules` are merged rule by rule, keyed by
//!   their `matches`. Rules with equal matches become one rule whose
//!   `default` is the merge of theirs (`filters` and `backendRefs` lists
//!   replaced); rules with new matches are added. In the result the more
//!   specific policy's rules come first, each policy's in its own order, and
//!   a merged rule sits where its most specific contributor put it: the
//!   first matching rule wins, as in Gateway API. That contributor is the
//!   rule's origin ([`Conf::rule_origins`]), the route whose timeouts,
//!   retries and such the rule's requests get. (`hostnames`, which only
//!   gateway routes carry, are not part of the conf: Kodiak runs no built-in
//!   gateways.)
//! - MeshTCPRoute: each entry's single rule (or, without one, a rule that
//!   sends everything to the entry's destination) merges as a patch; the
//!   result is `{"rules": [that rule]}`.

use serde_json::{Map, Value, json};

use super::Conf;
use super::read::Shape;
use crate::merge::merge;

/// A conf being added up, and the names of the policies in it.
#[derive(Debug, Clone)]
pub(crate) struct Acc<'p> {
    conf: Value,
    origins: Vec<&'p str>,
    /// MeshHTTPRoute only: the origin of each rule of `conf`, in the same
    /// (last-added-last) order.
    rule_origins: Vec<&'p str>,
}

impl<'p> Acc<'p> {
    pub fn new() -> Acc<'p> {
        Acc { conf: Value::Object(Map::new()), origins: Vec::new(), rule_origins: Vec::new() }
    }

    /// Lays the conf of an entry of policy `origin` over the ones before.
    pub fn add(&mut self, shape: Shape, conf: &Value, origin: &'p str) {
        match shape {
            Shape::Default | Shape::TcpRoute => merge(&mut self.conf, conf),
            Shape::HttpRoute => add_http_rules(&mut self.conf, &mut self.rule_origins, conf, origin),
        }
        if !self.origins.contains(&origin) {
            self.origins.push(origin);
        }
    }

    /// Lays `run`, the patches of several entries merged together, over
    /// this conf (for patch-shaped confs only).
    pub fn absorb(&mut self, run: &Acc<'p>) {
        merge(&mut self.conf, &run.conf);
        for origin in &run.origins {
            if !self.origins.contains(origin) {
                self.origins.push(origin);
            }
        }
    }

    /// The added-up conf in its final shape.
    pub fn finish(self, shape: Shape) -> Conf {
        let conf = match shape {
            Shape::Default => self.conf,
            Shape::TcpRoute => json!({ "rules": [self.conf] }),
            Shape::HttpRoute => {
                let mut conf = self.conf;
                if let Some(rules) = conf.get_mut("rules").and_then(Value::as_array_mut) {
                    rules.reverse();
                }
                conf
            }
        };
        Conf {
            conf,
            origins: self.origins.into_iter().map(str::to_owned).collect(),
            rule_origins: self.rule_origins.into_iter().rev().map(str::to_owned).collect(),
        }
    }
}

/// Adds the `rules` of one MeshHTTPRoute entry to `acc`, whose rules are
/// kept last-added-last (the reverse of their final order): each rule, taken
/// from the entry's last to its first, either joins the rule with equal
/// matches (which moves to the end) or is added at the end. Either way the
/// rule's origin becomes `origin`, kept in `origins` alongside `acc`'s rules.
fn add_http_rules<'p>(acc: &mut Value, origins: &mut Vec<&'p str>, conf: &Value, origin: &'p str) {
    let Some(Value::Array(incoming)) = conf.get("rules") else { return };
    let Value::Object(acc) = acc else { return };
    let Value::Array(rules) = acc.entry("rules").or_insert_with(|| json!([])) else { return };
    for rule in incoming.iter().rev() {
        let same_matches = rules.iter().position(|kept| kept.get("matches") == rule.get("matches"));
        match same_matches {
            Some(at) => {
                let mut kept = rules.remove(at);
                origins.remove(at);
                let default = kept.as_object_mut().map(|kept| kept.entry("default").or_insert_with(|| json!({})));
                if let (Some(default), Some(patch)) = (default, rule.get("default")) {
                    merge(default, patch);
                }
                rules.push(kept);
            }
            None => rules.push(rule.clone()),
        }
        origins.push(origin);
    }
}

#[cfg(test)]
mod tests;
