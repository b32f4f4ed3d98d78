//! Which sidecars have an open xDS stream to this control plane, which one
//! serves each Dataplane, and which are gone or shutting down.
//!
//! A Dataplane whose sidecar left (its last stream closed, or it is
//! draining) is no longer offered to callers, nor is one that kodiak-dp has
//! just registered and whose Envoy has not connected yet. One that never
//! connected since this instance started keeps its endpoints, so a
//! control-plane restart does not empty every service.
//!
//! One Dataplane is served by one sidecar: each bootstrap gets an instance
//! name (carried in Envoy's node metadata), and while one sidecar is
//! connected, or has just bootstrapped, another is refused.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::proxy_id::ProxyId;

/// How long a bootstrap keeps its Dataplane for its sidecar before that
/// sidecar's Envoy connects (it normally does within a fraction of a second).
const CLAIM_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Connections {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    streams: HashMap<ProxyId, Streams>,
    /// Bootstraps whose Envoy has not connected yet.
    claims: HashMap<ProxyId, (String, Instant)>,
    gone: HashSet<ProxyId>,
    draining: HashSet<ProxyId>,
}

#[derive(Debug)]
struct Streams {
    count: usize,
    /// The sidecar instance they come from (None: a bootstrap that named none).
    instance: Option<String>,
    /// Where the sidecar takes TCP access-log entries (its latest stream's word).
    access_log_pipe: Option<String>,
}

/// How a stream's opening or closing changed a proxy's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Its first stream opened.
    Arrived,
    /// Its last stream closed.
    Left,
    /// Another stream opened or closed; nothing changed for callers.
    Unchanged,
}

impl Connections {
    /// A bootstrap of `proxy` by a new sidecar `instance`: refused (with the
    /// reason) while another sidecar is connected for it or has just
    /// bootstrapped it.
    pub fn claim(&self, proxy: &ProxyId, instance: &str) -> Result<(), String> {
        let mut state = self.state.lock().unwrap();
        if state.streams.contains_key(proxy) {
            return Err(format!("Dataplane {proxy} already has a connected sidecar"));
        }
        if let Some((other, at)) = state.claims.get(proxy)
            && other != instance
            && at.elapsed() < CLAIM_TTL
        {
            return Err(format!(
                "another sidecar bootstrapped Dataplane {proxy} {} ms ago and is starting",
                at.elapsed().as_millis()
            ));
        }
        state.claims.insert(proxy.clone(), (instance.to_owned(), Instant::now()));
        Ok(())
    }

    /// Keeps a Dataplane out of its callers' endpoints until its sidecar connects.
    pub fn withhold(&self, proxy: &ProxyId) {
        let mut state = self.state.lock().unwrap();
        if !state.streams.contains_key(proxy) {
            state.gone.insert(proxy.clone());
        }
    }

    /// A stream from sidecar `instance` opened; refused (with the reason)
    /// when another sidecar serves the Dataplane.
    pub fn opened(&self, proxy: &ProxyId, instance: Option<&str>) -> Result<Presence, String> {
        let mut state = self.state.lock().unwrap();
        let conflict = |other: &str| {
            format!("Dataplane {proxy} is served by another sidecar (instance {other}); one Dataplane has one sidecar")
        };
        if let (Some(streams), Some(instance)) = (state.streams.get(proxy), instance)
            && let Some(other) = streams.instance.as_deref().filter(|other| *other != instance)
        {
            return Err(conflict(other));
        }
        if let (Some((other, at)), Some(instance)) = (state.claims.get(proxy), instance) {
            if other != instance && at.elapsed() < CLAIM_TTL {
                return Err(conflict(other));
            }
            state.claims.remove(proxy);
        }
        let streams =
            state.streams.entry(proxy.clone()).or_insert(Streams { count: 0, instance: None, access_log_pipe: None });
        streams.count += 1;
        if streams.instance.is_none() {
            streams.instance = instance.map(str::to_owned);
        }
        if streams.count > 1 {
            return Ok(Presence::Unchanged);
        }
        state.gone.remove(proxy);
        state.draining.remove(proxy);
        Ok(Presence::Arrived)
    }

    pub fn closed(&self, proxy: &ProxyId) -> Presence {
        let mut state = self.state.lock().unwrap();
        let Some(streams) = state.streams.get_mut(proxy) else { return Presence::Unchanged };
        streams.count -= 1;
        if streams.count > 0 {
            return Presence::Unchanged;
        }
        state.streams.remove(proxy);
        state.gone.insert(proxy.clone());
        Presence::Left
    }

    /// The sidecar announced its shutdown; true when it was connected.
    pub fn draining(&self, proxy: &ProxyId) -> bool {
        let mut state = self.state.lock().unwrap();
        let connected = state.streams.contains_key(proxy);
        if connected {
            state.draining.insert(proxy.clone());
        }
        connected
    }

    /// A connected sidecar's pipe for TCP access-log entries, as its
    /// Envoy's node metadata names it.
    pub fn set_access_log_pipe(&self, proxy: &ProxyId, pipe: Option<String>) {
        if let Some(streams) = self.state.lock().unwrap().streams.get_mut(proxy) {
            streams.access_log_pipe = pipe;
        }
    }

    pub fn access_log_pipe(&self, proxy: &ProxyId) -> Option<String> {
        self.state.lock().unwrap().streams.get(proxy)?.access_log_pipe.clone()
    }

    pub fn is_connected(&self, proxy: &ProxyId) -> bool {
        self.state.lock().unwrap().streams.contains_key(proxy)
    }

    /// Whether callers may be sent to this Dataplane's inbounds.
    pub fn is_serving(&self, proxy: &ProxyId) -> bool {
        let state = self.state.lock().unwrap();
        !state.gone.contains(proxy) && !state.draining.contains(proxy)
    }

    /// Forget a deleted Dataplane's history.
    pub fn forget(&self, proxy: &ProxyId) {
        let mut state = self.state.lock().unwrap();
        state.gone.remove(proxy);
        state.draining.remove(proxy);
        state.claims.remove(proxy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_follows_the_first_and_last_stream() {
        let connections = Connections::default();
        let web = ProxyId::new("default", "web");
        assert!(connections.is_serving(&web), "never connected: presumed serving");
        assert_eq!(connections.opened(&web, Some("i1")), Ok(Presence::Arrived));
        assert_eq!(connections.opened(&web, Some("i1")), Ok(Presence::Unchanged));
        assert_eq!(connections.closed(&web), Presence::Unchanged);
        assert!(connections.is_serving(&web));
        assert_eq!(connections.closed(&web), Presence::Left);
        assert!(!connections.is_serving(&web) && !connections.is_connected(&web));
        assert_eq!(connections.closed(&web), Presence::Unchanged);
        assert_eq!(connections.opened(&web, None), Ok(Presence::Arrived));
        assert!(connections.is_serving(&web));
    }

    #[test]
    fn draining_needs_a_connection_and_ends_with_a_new_one() {
        let connections = Connections::default();
        let web = ProxyId::new("default", "web");
        assert!(!connections.draining(&web));
        connections.opened(&web, None).unwrap();
        assert!(connections.draining(&web));
        assert!(!connections.is_serving(&web));
        connections.closed(&web);
        connections.opened(&web, None).unwrap();
        assert!(connections.is_serving(&web));
    }

    #[test]
    fn one_dataplane_has_one_sidecar() {
        let connections = Connections::default();
        let web = ProxyId::new("default", "web");
        connections.claim(&web, "first").unwrap();
        let refused = connections.claim(&web, "second").unwrap_err();
        assert!(refused.contains("another sidecar bootstrapped"), "{refused}");
        assert!(connections.opened(&web, Some("second")).is_err(), "the claim holds the name");
        assert_eq!(connections.opened(&web, Some("first")), Ok(Presence::Arrived));
        assert!(connections.claim(&web, "third").unwrap_err().contains("already has a connected sidecar"));
        assert!(connections.opened(&web, Some("third")).unwrap_err().contains("instance first"));
        connections.closed(&web);
        connections.claim(&web, "third").unwrap();
    }

    #[test]
    fn a_registered_dataplane_waits_for_its_sidecar() {
        let connections = Connections::default();
        let web = ProxyId::new("default", "web");
        connections.withhold(&web);
        assert!(!connections.is_serving(&web));
        connections.opened(&web, None).unwrap();
        assert!(connections.is_serving(&web));
        connections.withhold(&web);
        assert!(connections.is_serving(&web), "a connected sidecar is not withheld");
    }
}
