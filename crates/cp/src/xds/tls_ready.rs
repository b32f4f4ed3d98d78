//! When each side of a connection may change how it speaks, so turning mesh
//! mTLS on, moving to STRICT, changing the CA or turning mTLS off loses no
//! request. Everything here is about what a proxy's Envoy has ACKed, not
//! what was sent to it:
//!
//! - a caller uses mTLS to a service only once every instance of that
//!   service has ACKed an inbound that accepts mTLS (`tls_ready`);
//! - a STRICT inbound refuses plaintext only once every caller of its
//!   service has ACKed mTLS to it (`strict_ready`); until then it is
//!   PERMISSIVE;
//! - when mTLS goes off, callers go back to plaintext at once and inbounds
//!   stay PERMISSIVE until every caller has ACKed plaintext (`plaintext_done`);
//! - a certificate from a new root is issued only once every proxy of the
//!   mesh has ACKed a trust bundle holding that root, and an old root stays in
//!   the bundle while some proxy may still present a certificate it signed.
//!
//! A service stays `tls_ready` / `strict_ready` once reached, while mTLS
//! stays on: instances and callers that join later are given mTLS from
//! their first configuration.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// What one proxy was sent and has ACKed, by snapshot generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The newest generation the proxy ACKed in full.
    pub acked: u64,
    /// Since which generation its inbounds accept mTLS (none: plaintext only).
    pub inbound_mtls_since: Option<u64>,
    /// Per called service: whether it calls with mTLS, since which generation.
    pub outbound_tls: BTreeMap<String, (bool, u64)>,
    /// The root its trust bundle first held at a generation, kept per root.
    pub trusts: BTreeMap<Arc<str>, u64>,
    /// Roots of the certificates it was given, with the generation each was
    /// first sent in, oldest first.
    pub held_roots: Vec<(Arc<str>, u64)>,
}

impl Progress {
    /// Its inbounds accept mTLS, as far as its Envoy knows.
    pub fn inbound_ready(&self) -> bool {
        self.inbound_mtls_since.is_some_and(|since| self.acked >= since)
    }

    /// Its Envoy calls `service` with mTLS (`tls`) or in plaintext. A
    /// service it was never told about counts as plaintext.
    pub fn calls_with(&self, service: &str, tls: bool) -> bool {
        match self.outbound_tls.get(service) {
            Some((with_tls, since)) => *with_tls == tls && self.acked >= *since,
            None => !tls,
        }
    }

    /// Its Envoy trusts `root`.
    pub fn trusts_acked(&self, root: &str) -> bool {
        self.trusts.get(root).is_some_and(|since| self.acked >= *since)
    }

    /// Records what generation `generation` sent: whether the inbounds
    /// accept mTLS, how each service is called, the bundle's roots and the
    /// certificate's root.
    pub fn sent(
        &mut self,
        generation: u64,
        inbound_mtls: bool,
        outbound: impl IntoIterator<Item = (String, bool)>,
        bundle: &[Arc<str>],
        cert_root: Option<&Arc<str>>,
    ) {
        match (inbound_mtls, self.inbound_mtls_since) {
            (true, None) => self.inbound_mtls_since = Some(generation),
            (false, Some(_)) => self.inbound_mtls_since = None,
            _ => {}
        }
        let mut outbound_tls = BTreeMap::new();
        for (service, tls) in outbound {
            let since = match self.outbound_tls.get(&service) {
                Some((before, since)) if *before == tls => *since,
                _ => generation,
            };
            outbound_tls.insert(service, (tls, since));
        }
        self.outbound_tls = outbound_tls;
        self.trusts.retain(|root, _| bundle.contains(root));
        for root in bundle {
            self.trusts.entry(root.clone()).or_insert(generation);
        }
        match cert_root {
            Some(root) if self.held_roots.last().map(|(last, _)| last) != Some(root) => {
                self.held_roots.push((root.clone(), generation));
            }
            Some(_) => {}
            None => self.held_roots.clear(),
        }
        self.prune();
    }

    /// The proxy ACKed `generation` (and everything before it).
    pub fn acked(&mut self, generation: u64) {
        self.acked = self.acked.max(generation);
        self.prune();
    }

    /// Drops the certificate roots older than the newest one it ACKed.
    fn prune(&mut self) {
        if let Some(newest_acked) = self.held_roots.iter().rposition(|(_, since)| *since <= self.acked) {
            self.held_roots.drain(..newest_acked);
        }
    }

    /// Whether something sent is not ACKed yet: the sync loop wants to hear
    /// about this proxy's ACKs.
    pub fn awaiting(&self) -> bool {
        let newest = self
            .inbound_mtls_since
            .into_iter()
            .chain(self.outbound_tls.values().map(|(_, since)| *since))
            .chain(self.trusts.values().copied())
            .chain(self.held_roots.iter().map(|(_, since)| *since))
            .max()
            .unwrap_or(0);
        newest > self.acked
    }
}

/// How long a change waits for proxies to ACK before it completes anyway.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What a mesh has reached, per service (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latches {
    pub tls_ready: BTreeSet<String>,
    pub strict_ready: BTreeSet<String>,
    pub plaintext_done: BTreeSet<String>,
}

/// The proxies of a mesh as readiness needs them.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub progress: &'a Progress,
    /// The services whose ready inbounds it offers to callers now.
    pub serves: &'a [&'a str],
    /// The services it calls.
    pub calls: &'a [&'a str],
}

/// The mesh's mTLS intent, as the latches need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Off,
    Permissive,
    Strict,
}

impl Latches {
    /// Moves every service as far as what the members ACKed allows; returns
    /// whether anything moved. `services` are every service of the mesh.
    ///
    /// `force` moves every service to the end of the change at once: a proxy
    /// that never ACKs (stuck, or refusing its configuration) must not keep a
    /// mesh PERMISSIVE when STRICT was asked for, so the wait is bounded
    /// ([`MAX_WAIT`]).
    pub fn advance<'a>(
        &mut self,
        intent: Intent,
        services: impl IntoIterator<Item = &'a String>,
        members: &[Member<'_>],
        force: bool,
    ) -> bool {
        let before = self.clone();
        if intent == Intent::Off {
            self.tls_ready.clear();
            self.strict_ready.clear();
        } else {
            self.plaintext_done.clear();
        }
        // Each service's instances and callers, found once rather than by
        // scanning every member for every service.
        let mut serving: HashMap<&str, Vec<&Member<'_>>> = HashMap::new();
        let mut calling: HashMap<&str, Vec<&Member<'_>>> = HashMap::new();
        for member in members.iter().filter(|_| !force) {
            for service in member.serves {
                serving.entry(*service).or_default().push(member);
            }
            for service in member.calls {
                calling.entry(*service).or_default().push(member);
            }
        }
        for service in services {
            let instances = || serving.get(service.as_str()).into_iter().flatten();
            let callers = || calling.get(service.as_str()).into_iter().flatten();
            match intent {
                Intent::Off => {
                    if callers().all(|m| m.progress.calls_with(service, false)) {
                        self.plaintext_done.insert(service.clone());
                    }
                }
                Intent::Permissive | Intent::Strict => {
                    if !self.tls_ready.contains(service) && instances().all(|m| m.progress.inbound_ready()) {
                        self.tls_ready.insert(service.clone());
                    }
                    if intent == Intent::Strict
                        && self.tls_ready.contains(service)
                        && callers().all(|m| m.progress.calls_with(service, true))
                    {
                        self.strict_ready.insert(service.clone());
                    }
                }
            }
        }
        if intent == Intent::Permissive {
            self.strict_ready.clear();
        }
        *self != before
    }

    /// Whether callers may use mTLS to `service`.
    pub fn calls_with_tls(&self, intent: Intent, service: &str) -> bool {
        intent != Intent::Off && self.tls_ready.contains(service)
    }

    /// How a proxy serving `services` treats callers: `None` for plaintext
    /// only, else whether it refuses plaintext (STRICT).
    pub fn inbound_mode<'a>(
        &self,
        intent: Intent,
        had_mtls: bool,
        mut services: impl Iterator<Item = &'a String>,
    ) -> Option<bool> {
        match intent {
            Intent::Strict => Some(services.all(|s| self.strict_ready.contains(s))),
            Intent::Permissive => Some(false),
            Intent::Off if had_mtls && services.any(|s| !self.plaintext_done.contains(s)) => Some(false),
            Intent::Off => None,
        }
    }
}

/// The roots a mesh's proxies must trust: the current one first, then every
/// other root that signed a certificate some proxy may still present.
pub fn trust_bundle<'a>(current: &Arc<str>, members: impl IntoIterator<Item = &'a Progress>) -> Vec<Arc<str>> {
    let mut roots = vec![current.clone()];
    let mut others: BTreeSet<&Arc<str>> = BTreeSet::new();
    for progress in members {
        others.extend(progress.held_roots.iter().map(|(root, _)| root));
    }
    roots.extend(others.into_iter().filter(|root| *root != current).cloned());
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_service_is_tls_ready_once_every_instance_acked_an_mtls_inbound() {
        let (web, none): (&[&str], &[&str]) = (&["web"], &[]);
        let mut one = Progress::default();
        let mut two = Progress::default();
        one.sent(1, true, [], &[], None);
        two.sent(2, true, [], &[], None);
        let mut latches = Latches::default();
        let services = set(&["web"]);
        let members = |a: &Progress, b: &Progress| -> Vec<Progress> { vec![a.clone(), b.clone()] };
        let advance = |latches: &mut Latches, list: &[Progress]| {
            let members: Vec<Member<'_>> =
                list.iter().map(|p| Member { progress: p, serves: web, calls: none }).collect();
            latches.advance(Intent::Permissive, &services, &members, false)
        };
        assert!(!advance(&mut latches, &members(&one, &two)), "nothing ACKed yet");
        one.acked(1);
        assert!(!advance(&mut latches, &members(&one, &two)), "one of two instances ACKed");
        two.acked(2);
        assert!(advance(&mut latches, &members(&one, &two)));
        assert!(latches.calls_with_tls(Intent::Permissive, "web"));
        // A new instance that has not ACKed yet does not take readiness back.
        assert!(!advance(&mut latches, &members(&one, &Progress::default())));
        assert!(latches.calls_with_tls(Intent::Permissive, "web"));
        assert!(!latches.calls_with_tls(Intent::Off, "web"));
    }

    #[test]
    fn strict_waits_for_every_caller_to_ack_mtls_and_off_waits_for_plaintext() {
        let (web, none): (&[&str], &[&str]) = (&["web"], &[]);
        let services = set(&["web"]);
        let mut server = Progress::default();
        server.sent(1, true, [], &[], None);
        server.acked(1);
        let mut caller = Progress::default();
        caller.sent(1, false, [("web".to_owned(), false)], &[], None);
        caller.acked(1);
        let mut latches = Latches::default();
        let run = |latches: &mut Latches, intent: Intent, caller: &Progress| {
            let members = [
                Member { progress: &server, serves: web, calls: none },
                Member { progress: caller, serves: none, calls: web },
            ];
            latches.advance(intent, &services, &members, false);
            latches.inbound_mode(intent, true, services.iter())
        };
        assert_eq!(run(&mut latches, Intent::Strict, &caller), Some(false), "callers still plaintext: PERMISSIVE");
        caller.sent(2, false, [("web".to_owned(), true)], &[], None);
        assert_eq!(run(&mut latches, Intent::Strict, &caller), Some(false), "sent but not ACKed");
        caller.acked(2);
        assert_eq!(run(&mut latches, Intent::Strict, &caller), Some(true), "STRICT once the caller ACKed mTLS");

        assert_eq!(run(&mut latches, Intent::Off, &caller), Some(false), "off: PERMISSIVE while callers use mTLS");
        assert!(!latches.calls_with_tls(Intent::Off, "web"));
        caller.sent(3, false, [("web".to_owned(), false)], &[], None);
        caller.acked(3);
        assert_eq!(run(&mut latches, Intent::Off, &caller), None, "plaintext only once callers ACKed plaintext");
        assert_eq!(
            latches.inbound_mode(Intent::Off, false, services.iter()),
            None,
            "never had mTLS: nothing to wind down"
        );
    }

    #[test]
    fn a_proxy_that_never_acks_holds_a_change_back_only_until_it_is_forced() {
        let (web, none): (&[&str], &[&str]) = (&["web"], &[]);
        let services = set(&["web"]);
        let stuck = Progress::default();
        let members = [Member { progress: &stuck, serves: web, calls: web }];
        let mut latches = Latches::default();
        assert!(!latches.advance(Intent::Strict, &services, &members, false));
        assert_eq!(latches.inbound_mode(Intent::Strict, true, services.iter()), Some(false));
        assert!(latches.advance(Intent::Strict, &services, &members, true));
        assert!(latches.calls_with_tls(Intent::Strict, "web"));
        assert_eq!(latches.inbound_mode(Intent::Strict, true, services.iter()), Some(true));
        latches.advance(Intent::Off, &services, &[Member { progress: &stuck, serves: none, calls: web }], true);
        assert_eq!(latches.inbound_mode(Intent::Off, true, services.iter()), None);
    }

    #[test]
    fn an_old_root_stays_trusted_until_its_certificate_is_replaced_on_every_proxy() {
        let (old, new) = (root("old"), root("new"));
        let mut proxy = Progress::default();
        proxy.sent(1, true, [], std::slice::from_ref(&old), Some(&old));
        proxy.acked(1);
        assert_eq!(trust_bundle(&new, [&proxy]), [new.clone(), old.clone()]);
        assert!(!proxy.trusts_acked(&new));
        proxy.sent(2, true, [], &[new.clone(), old.clone()], Some(&old));
        assert!(proxy.awaiting());
        proxy.acked(2);
        assert!(proxy.trusts_acked(&new) && !proxy.awaiting());
        proxy.sent(3, true, [], &[new.clone(), old.clone()], Some(&new));
        assert_eq!(trust_bundle(&new, [&proxy]), [new.clone(), old.clone()], "the new certificate is not ACKed yet");
        proxy.acked(3);
        assert_eq!(trust_bundle(&new, [&proxy]), vec![new], "only the new root once it is");
    }

    #[test]
    fn awaiting_follows_what_is_sent_and_acked() {
        let mut proxy = Progress::default();
        assert!(!proxy.awaiting());
        proxy.sent(4, false, [("web".to_owned(), false)], &[], None);
        assert!(proxy.awaiting());
        proxy.acked(4);
        assert!(!proxy.awaiting());
        proxy.sent(5, false, [("web".to_owned(), false)], &[], None);
        assert!(!proxy.awaiting(), "nothing about TLS changed in 5");
        assert!(proxy.calls_with("web", false) && !proxy.calls_with("web", true) && proxy.calls_with("db", false));
    }
}
