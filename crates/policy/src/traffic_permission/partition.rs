//! Disjoint caller sets from an ordered list of `from` entries.
//!
//! Every entry names the callers that carry all of its tags. Entries come
//! least specific first, and a later entry overrides an earlier one for the
//! callers both name. Since an entry's `default` holds only `action`, which
//! is required, merging the defaults of the entries that cover a caller
//! (JSON merge patch, later wins) yields the action of the last of them: the
//! caller's decision is that entry's, and so is the policy named for it.
//!
//! A caller's identity may give a tag several values (one per value its
//! inbounds have): it carries key=value when any of its values is that one,
//! so carrying one value of a key says nothing about the others.
//!
//! The callers are split by a binary search over tag conditions, always on
//! a condition of the last entry still possible in the current set of
//! callers: "carries key=value" on one side, "does not" on the other. Once
//! that entry covers the whole set, the set is decided and not split
//! further, and sets no entry covers are dropped. So conditions appear only
//! where they change a decision, which keeps the rules few (one per
//! `kuma.io/service` entry when permissions name services) and the caller
//! sets disjoint by construction.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::{Action, Callers, PermissionRule, TagCondition};

/// How many caller sets one inbound's permissions may examine. Ordinary
/// permissions need a few per `from` entry; only many entries combining tags
/// of different keys come near. Callers in sets left unexamined are covered
/// by no rule and so denied.
pub const MAX_STEPS: usize = 50_000;

/// One `from` entry in force on an inbound: callers that carry every tag of
/// `tags` get `action`, as the policy `policy` says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub tags: &'a BTreeMap<String, String>,
    pub action: Action,
    pub policy: &'a str,
}

/// The rules for `entries` (least specific first), most positive
/// conditions first, and whether the search finished within [`MAX_STEPS`].
pub(crate) fn disjoint_rules(entries: &[Entry]) -> (Vec<PermissionRule>, bool) {
    let mut rules = Vec::new();
    let mut stack = vec![Node { callers: Region::default(), candidates: (0..entries.len()).collect() }];
    let mut steps = 0;
    let mut complete = true;
    while let Some(Node { callers, candidates }) = stack.pop() {
        // Nobody covers these callers: they get no rule.
        let Some(&last) = candidates.last() else { continue };
        steps += 1;
        if steps > MAX_STEPS {
            complete = false;
            break;
        }
        let deciding = entries[last];
        let Some((key, value)) = deciding.tags.iter().find(|(key, value)| !callers.carry(key, value)) else {
            rules.push(callers.rule(deciding));
            continue;
        };
        let (key, value) = (key.as_str(), value.as_str());
        // Callers carrying the tag may carry other values of its key too, so
        // every candidate stays; callers without it drop the entries needing it.
        let lacking = candidates.iter().copied().filter(|i| entries[*i].tags.get(key).is_none_or(|v| v != value));
        let lacking = lacking.collect();
        // Pushed in reverse: the callers that carry the tag are examined first.
        stack.push(Node { callers: callers.without(key, value), candidates: lacking });
        stack.push(Node { callers: callers.with(key, value), candidates });
    }
    rules.sort_by_key(|rule| std::cmp::Reverse(rule.callers.0.iter().filter(|c| !c.negated).count()));
    (rules, complete)
}

struct Node<'a> {
    callers: Region<'a>,
    /// Indexes of the entries that may cover some of `callers`, in order.
    candidates: Vec<usize>,
}

/// Values a key must not have, shared between the branches of the search
/// (a long chain of "not this service" is not copied at every step).
type Negations<'a> = Option<Rc<Negation<'a>>>;

struct Negation<'a> {
    value: &'a str,
    next: Negations<'a>,
}

/// A set of callers: the tags they carry and the values they do not.
#[derive(Clone, Default)]
struct Region<'a> {
    carried: BTreeSet<(&'a str, &'a str)>,
    not_carried: BTreeMap<&'a str, Negations<'a>>,
}

impl<'a> Region<'a> {
    fn carry(&self, key: &str, value: &str) -> bool {
        self.carried.contains(&(key, value))
    }

    fn with(&self, key: &'a str, value: &'a str) -> Region<'a> {
        let mut region = self.clone();
        region.carried.insert((key, value));
        region
    }

    fn without(&self, key: &'a str, value: &'a str) -> Region<'a> {
        let mut region = self.clone();
        let next = region.not_carried.remove(key).flatten();
        region.not_carried.insert(key, Some(Rc::new(Negation { value, next })));
        region
    }

    fn rule(&self, entry: Entry) -> PermissionRule {
        let condition =
            |key: &str, value: &str, negated| TagCondition { key: key.into(), value: value.into(), negated };
        let mut conditions: Vec<TagCondition> =
            self.carried.iter().map(|(key, value)| condition(key, value, false)).collect();
        for (key, mut negation) in &self.not_carried {
            while let Some(node) = negation {
                conditions.push(condition(key, node.value, true));
                negation = &node.next;
            }
        }
        conditions.sort();
        PermissionRule { callers: Callers(conditions), action: entry.action, policy: entry.policy.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn show(rules: &[PermissionRule]) -> Vec<String> {
        rules.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_last_entry_covering_a_caller_decides() {
        let mesh = tags(&[]);
        let zone = tags(&[("zone", "east")]);
        let backend = tags(&[("kuma.io/service", "backend"), ("version", "v2"), ("zone", "east")]);
        let entries = [
            Entry { tags: &zone, action: Action::Deny, policy: "zones" },
            Entry { tags: &backend, action: Action::Allow, policy: "backend" },
        ];
        let (rules, complete) = disjoint_rules(&entries);
        assert!(complete);
        assert_eq!(
            show(&rules),
            [
                "[kuma.io/service=backend version=v2 zone=east] Allow backend",
                "[kuma.io/service=backend !version=v2 zone=east] Deny zones",
                "[!kuma.io/service=backend zone=east] Deny zones",
            ]
        );
        let entries = [
            Entry { tags: &mesh, action: Action::Allow, policy: "all" },
            Entry { tags: &zone, action: Action::Deny, policy: "zones" },
        ];
        assert_eq!(show(&disjoint_rules(&entries).0), ["[zone=east] Deny zones", "[!zone=east] Allow all"]);
    }

    #[test]
    fn a_carried_value_keeps_the_negations_of_its_key() {
        // A caller may carry env=dev and env=prod at once: the later entry takes it.
        let entries_tags = [tags(&[("env", "dev")]), tags(&[("env", "prod")]), tags(&[("zone", "east")])];
        let entries: Vec<Entry> = entries_tags
            .iter()
            .zip([Action::Deny, Action::Allow, Action::AllowWithShadowDeny])
            .map(|(tags, action)| Entry { tags, action, policy: "p" })
            .collect();
        assert_eq!(
            show(&disjoint_rules(&entries).0),
            [
                "[zone=east] AllowWithShadowDeny p",
                "[env=prod !zone=east] Allow p",
                "[env=dev !env=prod !zone=east] Deny p",
            ]
        );
    }

    #[test]
    fn no_entries_no_rules() {
        assert_eq!(disjoint_rules(&[]), (vec![], true));
    }

    #[test]
    fn many_services_stay_linear() {
        let all = tags(&[]);
        let services: Vec<_> = (0..2000).map(|i| tags(&[("kuma.io/service", &format!("svc-{i:04}"))])).collect();
        let mut entries = vec![Entry { tags: &all, action: Action::Allow, policy: "allow-all" }];
        entries.extend(services.iter().map(|tags| Entry { tags, action: Action::Deny, policy: "deny" }));
        let (rules, complete) = disjoint_rules(&entries);
        assert!(complete);
        assert_eq!(rules.len(), 2001);
        let last = rules.last().unwrap();
        assert_eq!((last.action, last.callers.0.len()), (Action::Allow, 2000));
        assert!(last.callers.0.iter().all(|c| c.negated));
    }

    #[test]
    fn the_search_stops_at_the_step_limit() {
        // Entries with two tags of distinct keys each, all compatible: the
        // caller sets multiply.
        let pairs: Vec<_> = (0..20).map(|i| tags(&[(&format!("a{i:02}"), "x"), (&format!("b{i:02}"), "y")])).collect();
        let entries: Vec<Entry> = pairs.iter().map(|tags| Entry { tags, action: Action::Allow, policy: "p" }).collect();
        let (rules, complete) = disjoint_rules(&entries);
        assert!(!complete);
        assert!(!rules.is_empty() && rules.len() <= MAX_STEPS, "{} rules", rules.len());
        // The last entry's callers were decided first.
        assert!(rules.iter().any(|rule| rule.to_string() == "[a19=x b19=y] Allow p"));
    }
}
