//! Per-stream bookkeeping shared by SotW and delta: nonces, ACK/NACK, what the
//! client holds of each type, make-before-break order, deferred removal of
//! stale clusters, and when a snapshot generation is synced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::google::rpc::Status;

use crate::snapshot::Resources;
use crate::subscription::Subscription;
use crate::type_url::{self, CLUSTER, ENDPOINT, LISTENER, ROUTE};
use crate::{Resource, Snapshot, version};

/// Resource name to version.
pub(crate) type Pairs = BTreeMap<String, String>;

/// The resources of one type a client should hold now, by name.
pub(crate) type Desired<'a> = BTreeMap<&'a str, &'a Arc<Resource>>;

/// What a connection tells the callbacks, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum Event {
    Acked { type_url: String, version: String },
    Nacked { type_url: String, version: String, error: String },
    Synced(u64),
}

/// What one input (a request or a snapshot) produced.
#[derive(Debug)]
pub(crate) struct Output<R> {
    pub(crate) events: Vec<Event>,
    pub(crate) responses: Vec<R>,
}

/// How a protocol variant turns the resources due for one type into a response.
pub(crate) trait Encode {
    type Response;
    /// `state.sent` and `state.forced` still describe the client before this response.
    fn encode(
        type_url: &str,
        desired: &Desired<'_>,
        state: &TypeState,
        version: String,
        nonce: String,
    ) -> Self::Response;
}

/// The request's relation to the responses sent for its type.
#[derive(Debug, PartialEq)]
pub(crate) enum Reply {
    /// No nonce, or one this stream never issued for the type: a first request
    /// (also of a client reconnecting from an earlier stream), or (delta) a
    /// spontaneous subscription change.
    None,
    /// The ACK or NACK of the latest response of its type.
    Latest,
    /// Refers to an older response (xDS protocol, "Resource updates": its nonce is stale).
    Stale,
}

/// One type's state on one stream.
#[derive(Debug, Default)]
pub(crate) struct TypeState {
    pub(crate) subscription: Subscription,
    /// What the client holds, or is being sent, after the latest response.
    pub(crate) sent: Pairs,
    /// What the client last accepted.
    pub(crate) acked: Pairs,
    /// The content of the latest response when the client NACKed it: not sent
    /// again as it is, only once the snapshot changes the type.
    rejected: Option<Pairs>,
    /// Names that must be answered even if unchanged (newly subscribed).
    pub(crate) forced: BTreeSet<String>,
    /// The version a (re)connecting client says it already holds.
    claimed: Option<String>,
    /// Whether the client got a response (or was found up to date) since its first request.
    answered: bool,
    /// Nonce of the latest response of this type.
    nonce: Option<String>,
    /// Version of the latest response while it awaits its ACK or NACK.
    in_flight: Option<String>,
}

impl TypeState {
    /// Begins the type anew (its first request on the stream): it is answered
    /// unless the client already holds `claimed`.
    pub(crate) fn restart(&mut self, claimed: Option<String>) {
        self.claimed = claimed;
        self.answered = false;
        self.in_flight = None;
        self.forced.clear();
    }

    /// Not waiting for an ACK, and the client accepted exactly `desired`.
    fn holds(&self, desired: &Desired<'_>) -> bool {
        self.answered && self.in_flight.is_none() && same(desired, &self.acked)
    }

    /// The client dropped its interest in `name` (delta unsubscribe).
    pub(crate) fn forget(&mut self, name: &str) {
        self.sent.remove(name);
        self.acked.remove(name);
        if let Some(rejected) = &mut self.rejected {
            rejected.remove(name);
        }
    }

    /// The latest response was NACKed. The client keeps what it last accepted
    /// (xDS protocol, "ACK/NACK and resource type instance version": on a NACK
    /// the client goes on with its previous configuration), though it may have
    /// applied part of a rejected response. So from here on `sent` holds only
    /// what the client surely has: a resource the response sent, or removed, as
    /// something other than what was ACKed gets the version [`UNCERTAIN`],
    /// which matches nothing. The next response of the type (delta included)
    /// then sends every such resource again, or removes it again; sending it
    /// once more is harmless, keeping it back would leave the client without it.
    fn reject(&mut self) {
        let rejected = std::mem::take(&mut self.sent);
        self.sent = (rejected.keys().chain(self.acked.keys()))
            .map(|name| {
                let version = match (rejected.get(name), self.acked.get(name)) {
                    (Some(sent), Some(acked)) if sent == acked => acked.clone(),
                    _ => UNCERTAIN.to_owned(),
                };
                (name.clone(), version)
            })
            .collect();
        self.rejected = Some(rejected);
    }

    /// Whether `desired` needs no response: the client has it, or just rejected exactly it.
    fn up_to_date(&self, desired: &Desired<'_>) -> bool {
        self.answered
            && self.forced.is_empty()
            && (same(desired, &self.sent) || self.rejected.as_ref().is_some_and(|rejected| same(desired, rejected)))
    }
}

/// The version of a resource the client may or may not hold after a NACK; no resource has it.
const UNCERTAIN: &str = "";

/// The protocol-independent half of a connection.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    snapshot: Option<Arc<Snapshot>>,
    /// Clusters and their endpoints gone from the snapshot, still served until
    /// the listeners and routes that stopped using them are ACKed.
    retained: BTreeMap<&'static str, Resources>,
    types: BTreeMap<String, TypeState>,
    last_nonce: u64,
    synced: Option<u64>,
    events: Vec<Event>,
}

impl Tracker {
    /// The state of `type_url`, and whether this call created it (the type's first request).
    pub(crate) fn type_state(&mut self, type_url: &str) -> (&mut TypeState, bool) {
        let created = !self.types.contains_key(type_url);
        (self.types.entry(type_url.to_owned()).or_default(), created)
    }

    /// Records the ACK or NACK a request carries (xDS protocol, "ACK/NACK and
    /// resource type instance version"). After a NACK the rejected content is
    /// not sent again as it is; once the snapshot changes the type, the next
    /// response is made against what the client accepted, so it carries the
    /// rejected resources again (see [`TypeState::reject`]).
    ///
    /// A nonce on a type this stream never answered cannot be one of its
    /// responses: it comes from an earlier stream (a reconnecting client), so
    /// the request is the type's first, not a stale one (xDS protocol,
    /// "Resource updates": a nonce is stale once the server presented a newer
    /// one on the stream).
    pub(crate) fn reply(&mut self, type_url: &str, nonce: &str, error: Option<&Status>) -> Reply {
        if nonce.is_empty() {
            return Reply::None;
        }
        let Some(state) = self.types.get_mut(type_url).filter(|state| state.nonce.is_some()) else {
            return Reply::None;
        };
        if state.nonce.as_deref() != Some(nonce) {
            return Reply::Stale;
        }
        if let Some(version) = state.in_flight.take() {
            let type_url = type_url.to_owned();
            self.events.push(match error {
                None => {
                    state.acked = state.sent.clone();
                    Event::Acked { type_url, version }
                }
                Some(status) => {
                    state.reject();
                    Event::Nacked { type_url, version, error: status.message.clone() }
                }
            });
        }
        Reply::Latest
    }

    /// Takes the newest snapshot. Clusters (and endpoints) the client holds that
    /// it drops are retained until the new listeners and routes are ACKed
    /// (xDS protocol, "Eventual consistency considerations": stale clusters go last).
    pub(crate) fn set_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        for type_url in [CLUSTER, ENDPOINT] {
            let Some(state) = self.types.get(type_url) else { continue };
            let previous = self.snapshot.as_deref().map(|old| old.resources(type_url));
            let retained = self.retained.get(type_url);
            let kept = (state.sent.keys())
                .filter(|name| !snapshot.resources(type_url).contains_key(*name))
                .filter_map(|name| previous.and_then(|old| old.get(name)).or_else(|| retained?.get(name)))
                .map(|resource| (resource.name.clone(), resource.clone()))
                .collect();
            self.retained.insert(type_url, kept);
        }
        self.snapshot = Some(snapshot);
    }

    /// Sends every type whose content is due, then reports what became synced.
    pub(crate) fn push<E: Encode>(&mut self) -> Output<E::Response> {
        self.release_stale_clusters();
        let responses = self.send::<E>();
        self.check_synced();
        self.output(responses)
    }

    /// The events so far with `responses`.
    pub(crate) fn output<R>(&mut self, responses: Vec<R>) -> Output<R> {
        Output { events: std::mem::take(&mut self.events), responses }
    }

    fn release_stale_clusters(&mut self) {
        let Some(snapshot) = &self.snapshot else { return };
        if self.retained.values().all(Resources::is_empty) {
            return;
        }
        let settled = [LISTENER, ROUTE].into_iter().all(|type_url| {
            self.types
                .get(type_url)
                .is_none_or(|state| state.holds(&desired(snapshot, &self.retained, type_url, &state.subscription)))
        });
        if settled {
            self.retained.clear();
        }
    }

    /// Answers types in make-before-break order. A type whose previous response
    /// awaits its ACK holds back itself and every later type, so EDS never
    /// overtakes the CDS it belongs to, nor RDS its LDS; a type never requested
    /// gets nothing.
    ///
    /// A cluster the client held and gets anew warms until it receives its
    /// endpoints again, changed or not (Envoy does not ask for them, and holds
    /// the CDS ACK until then): the assignments of such clusters, named like
    /// them, go with the next EDS response.
    fn send<E: Encode>(&mut self) -> Vec<E::Response> {
        let Some(snapshot) = self.snapshot.clone() else { return Vec::new() };
        let mut order: Vec<&String> = self.types.keys().collect();
        order.sort_by_key(|type_url| type_url::push_order(type_url));
        let order: Vec<String> = order.into_iter().cloned().collect();
        let mut responses = Vec::new();
        let mut warming: Vec<String> = Vec::new();
        for type_url in order {
            let state = self.types.get_mut(&type_url).expect("listed above");
            if type_url == ENDPOINT {
                let held =
                    warming.drain(..).filter(|name| state.subscription.covers(name) && state.sent.contains_key(name));
                state.forced.extend(held.collect::<Vec<_>>());
            }
            let desired = desired(&snapshot, &self.retained, &type_url, &state.subscription);
            if state.up_to_date(&desired) {
                continue;
            }
            // Hashed only now: most pushes (an ACK's) find most types up to date.
            let version = version::of_pairs(desired.iter().map(|(name, resource)| (*name, resource.version.as_str())));
            if !state.answered && state.forced.is_empty() && state.claimed.as_ref() == Some(&version) {
                // A reconnecting client already holds this: do not resend, count it as
                // ACKed (xDS protocol, "ACK/NACK and resource type instance version").
                state.answered = true;
                state.sent = pairs(&desired);
                state.acked = state.sent.clone();
                self.events.push(Event::Acked { type_url, version });
                continue;
            }
            if state.in_flight.is_some() {
                break;
            }
            if type_url == CLUSTER {
                warming = desired
                    .iter()
                    .filter(|(name, resource)| state.sent.get(**name).is_some_and(|held| *held != resource.version))
                    .map(|(name, _)| (*name).to_owned())
                    .collect();
            }
            self.last_nonce += 1;
            let nonce = self.last_nonce.to_string();
            responses.push(E::encode(&type_url, &desired, state, version.clone(), nonce.clone()));
            state.sent = pairs(&desired);
            state.rejected = None;
            state.forced.clear();
            state.answered = true;
            state.claimed = None;
            state.nonce = Some(nonce);
            state.in_flight = Some(version);
        }
        responses
    }

    /// Synced: every type of the snapshot is ACKed as it is in the snapshot and
    /// no stale cluster is left. A type with no resources that was never
    /// requested does not hold it back.
    fn check_synced(&mut self) {
        let Some(snapshot) = &self.snapshot else { return };
        let generation = snapshot.generation();
        if self.synced == Some(generation) || self.retained.values().any(|kept| !kept.is_empty()) {
            return;
        }
        let all_acked = snapshot.type_urls().all(|type_url| {
            let resources = snapshot.resources(type_url);
            match self.types.get(type_url) {
                None => resources.is_empty(),
                Some(state) => {
                    state.answered
                        && state.in_flight.is_none()
                        && resources.values().all(|resource| state.acked.get(&resource.name) == Some(&resource.version))
                        && (!state.subscription.is_wildcard() || state.acked.len() == resources.len())
                }
            }
        });
        if all_acked {
            self.synced = Some(generation);
            self.events.push(Event::Synced(generation));
        }
    }
}

/// What `subscription` selects of the snapshot plus the retained stale resources.
fn desired<'a>(
    snapshot: &'a Snapshot,
    retained: &'a BTreeMap<&'static str, Resources>,
    type_url: &str,
    subscription: &Subscription,
) -> Desired<'a> {
    let stale = retained.get(type_url).into_iter().flatten();
    (stale.chain(snapshot.resources(type_url)))
        .filter(|(name, _)| subscription.covers(name))
        .map(|(name, resource)| (name.as_str(), resource))
        .collect()
}

fn pairs(desired: &Desired<'_>) -> Pairs {
    desired.iter().map(|(name, resource)| (name.to_string(), resource.version.clone())).collect()
}

fn same(desired: &Desired<'_>, pairs: &Pairs) -> bool {
    desired.len() == pairs.len()
        && desired
            .iter()
            .zip(pairs)
            .all(|((name, resource), (held, version))| name == held && resource.version == *version)
}
