//! Which resources of one type a client asked for.

use std::collections::BTreeSet;

use crate::type_url::has_implicit_wildcard;

/// The name that subscribes to every resource of a type.
const WILDCARD: &str = "*";

/// The names (or the wildcard) a client subscribed to for one type
/// (xDS protocol, "How the client specifies what resources to return").
#[derive(Debug, Default)]
pub(crate) struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Once a name (or "*") was asked for, an empty SotW list means nothing, not everything.
    explicit: bool,
}

impl Subscription {
    /// Whether a resource named `name` belongs in responses.
    pub(crate) fn covers(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    pub(crate) fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// SotW: the request's full list replaces the subscription; returns the names newly asked for.
    /// An empty list means the wildcard only while no name was ever asked for (legacy wildcard).
    pub(crate) fn replace(&mut self, type_url: &str, names: Vec<String>) -> Vec<String> {
        if names.is_empty() && !self.explicit && has_implicit_wildcard(type_url) {
            self.wildcard = true;
            return Vec::new();
        }
        self.explicit |= !names.is_empty();
        self.wildcard = names.iter().any(|name| name == WILDCARD);
        let names: BTreeSet<String> = names.into_iter().filter(|name| name != WILDCARD).collect();
        let added = names.difference(&self.names).cloned().collect();
        self.names = names;
        added
    }

    /// Delta: the first request for a type that names nothing subscribes to the wildcard (legacy wildcard).
    pub(crate) fn start(&mut self, type_url: &str, subscribes_nothing: bool) {
        self.wildcard = subscribes_nothing && has_implicit_wildcard(type_url);
    }

    /// Delta: adds `name` ("*" for the wildcard); returns whether it is a resource name.
    pub(crate) fn subscribe(&mut self, name: String) -> Option<String> {
        if name == WILDCARD {
            self.wildcard = true;
            return None;
        }
        self.names.insert(name.clone());
        Some(name)
    }

    /// Delta: drops `name` ("*" for the wildcard); returns whether it is a resource name.
    pub(crate) fn unsubscribe(&mut self, name: &str) -> bool {
        if name == WILDCARD {
            self.wildcard = false;
            return false;
        }
        self.names.remove(name);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::type_url::{CLUSTER, ENDPOINT};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    /// The SotW example sequence of "How the client specifies what resources to return".
    #[test]
    fn sotw_legacy_wildcard_ends_once_a_name_was_asked_for() {
        let mut subscription = Subscription::default();
        assert!(subscription.replace(CLUSTER, vec![]).is_empty());
        assert!(subscription.covers("anything"));
        assert_eq!(subscription.replace(CLUSTER, names(&["*", "a"])), names(&["a"]));
        assert!(subscription.covers("anything"));
        subscription.replace(CLUSTER, names(&["a"]));
        assert!(!subscription.covers("anything") && subscription.covers("a"));
        subscription.replace(CLUSTER, vec![]);
        assert!(!subscription.covers("a") && !subscription.is_wildcard());
    }

    #[test]
    fn named_types_have_no_implicit_wildcard() {
        let mut subscription = Subscription::default();
        subscription.replace(ENDPOINT, vec![]);
        assert!(!subscription.covers("a"));
        subscription.start(ENDPOINT, true);
        assert!(!subscription.is_wildcard());
    }
}
