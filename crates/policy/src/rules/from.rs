//! The `from` half of a policy type: for one inbound, the conf for every
//! caller, for callers picked by tags, and for callers picked by `rules`
//! matches.

use std::collections::BTreeMap;

use serde_json::Value;

use super::merge_rules::Acc;
use super::read::{Callers, Policy, Shape};
use super::{CallerConf, Conf, InboundRules, MAX_CALLER_GROUPS, MatchedConf};
use crate::target::Inbound;

/// The rules of `inbound` under the policies that select it, least specific
/// first.
pub(super) fn inbound_rules<'p>(inbound: &Inbound, selecting: impl Iterator<Item = &'p Policy>) -> InboundRules {
    let entries: Vec<(&str, &Callers, &Value)> = selecting
        .flat_map(|policy| policy.from.iter().map(move |entry| (policy.name.as_str(), &entry.callers, &entry.conf)))
        .collect();
    let merged = |covers: &dyn Fn(&Callers) -> bool| {
        let mut acc: Option<Acc> = None;
        for (name, _, conf) in entries.iter().filter(|(_, callers, _)| covers(callers)) {
            acc.get_or_insert_with(Acc::new).add(Shape::Default, conf, name);
        }
        acc.map(|acc| acc.finish(Shape::Default))
    };
    let conf = merged(&|callers| *callers == Callers::All);
    let selectors: Vec<&BTreeMap<String, String>> = entries
        .iter()
        .filter_map(|(_, callers, _)| match callers {
            Callers::Tags(tags) => Some(tags),
            _ => None,
        })
        .collect();
    let callers = caller_groups(&selectors)
        .into_iter()
        .filter_map(|group| {
            let covers = |callers: &Callers| match callers {
                Callers::All => true,
                Callers::Tags(tags) => tags.iter().all(|(key, value)| group.get(key) == Some(value)),
                Callers::Matched(_) | Callers::Nobody => false,
            };
            Some(CallerConf { conf: merged(&covers)?, tags: group })
        })
        .collect();
    let mut matched: Vec<(u8, MatchedConf)> = entries
        .iter()
        .filter_map(|(name, callers, conf)| match callers {
            Callers::Matched(matches) => {
                let conf = Conf { conf: (*conf).clone(), origins: vec![(*name).to_owned()], rule_origins: Vec::new() };
                let rank = matches.iter().map(match_rank).min().unwrap_or(u8::MAX);
                Some((rank, MatchedConf { matches: matches.clone(), conf }))
            }
            _ => None,
        })
        .collect();
    matched.sort_by_key(|(rank, _)| *rank);
    InboundRules {
        port: inbound.port,
        section_name: inbound.section_name.clone(),
        conf,
        callers,
        matched: matched.into_iter().map(|(_, matched)| matched).collect(),
    }
}

/// The given selectors and every union of compatible ones (no tag with two
/// values), at most [`MAX_CALLER_GROUPS`], most tags first. A caller that
/// matches several of them matches their union, which comes earlier.
fn caller_groups(selectors: &[&BTreeMap<String, String>]) -> Vec<BTreeMap<String, String>> {
    let mut groups: Vec<BTreeMap<String, String>> = Vec::new();
    for selector in selectors {
        if !groups.contains(selector) && groups.len() < MAX_CALLER_GROUPS {
            groups.push((*selector).clone());
        }
    }
    let mut next = 0;
    while next < groups.len() {
        for earlier in 0..next {
            let Some(union) = union(&groups[earlier], &groups[next]) else { continue };
            if groups.len() < MAX_CALLER_GROUPS && !groups.contains(&union) {
                groups.push(union);
            }
        }
        next += 1;
    }
    groups.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    groups
}

/// Both selectors' tags, unless they give a tag different values.
fn union(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    let mut union = a.clone();
    for (key, value) in b {
        if union.insert(key.clone(), value.clone()).is_some_and(|before| before != *value) {
            return None;
        }
    }
    Some(union)
}

/// How narrow a caller match is, lower first: an exact SPIFFE ID, a SPIFFE
/// ID prefix, then an SNI alone.
fn match_rank(matches: &Value) -> u8 {
    let spiffe = match matches.pointer("/spiffeID/type").and_then(Value::as_str) {
        Some("Exact") => 0,
        Some(_) => 1,
        None => 2,
    };
    let sni = if matches.get("sni").is_some_and(|sni| !sni.is_null()) { 0 } else { 1 };
    spiffe * 2 + sni
}
