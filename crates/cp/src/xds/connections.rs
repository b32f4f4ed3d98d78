//! Which sidecars have an open xDS stream to this control plane, and which
//! said they are shutting down. A Dataplane whose sidecar left (its last
//! stream closed, or it is draining) is no longer offered to callers; one
//! that never connected since this instance started keeps its endpoints,
//! so a control-plane restart does not empty every service.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::proxy_id::ProxyId;

#[derive(Debug, Default)]
pub struct Connections {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    open_streams: HashMap<ProxyId, usize>,
    gone: HashSet<ProxyId>,
    draining: HashSet<ProxyId>,
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
    pub fn opened(&self, proxy: &ProxyId) -> Presence {
        let mut state = self.state.lock().unwrap();
        let streams = state.open_streams.entry(proxy.clone()).or_default();
        *streams += 1;
        if *streams > 1 {
            return Presence::Unchanged;
        }
        state.gone.remove(proxy);
        state.draining.remove(proxy);
        Presence::Arrived
    }

    pub fn closed(&self, proxy: &ProxyId) -> Presence {
        let mut state = self.state.lock().unwrap();
        let Some(streams) = state.open_streams.get_mut(proxy) else { return Presence::Unchanged };
        *streams -= 1;
        if *streams > 0 {
            return Presence::Unchanged;
        }
        state.open_streams.remove(proxy);
        state.gone.insert(proxy.clone());
        Presence::Left
    }

    /// The sidecar announced its shutdown; true when it was connected.
    pub fn draining(&self, proxy: &ProxyId) -> bool {
        let mut state = self.state.lock().unwrap();
        let connected = state.open_streams.contains_key(proxy);
        if connected {
            state.draining.insert(proxy.clone());
        }
        connected
    }

    pub fn is_connected(&self, proxy: &ProxyId) -> bool {
        self.state.lock().unwrap().open_streams.contains_key(proxy)
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
        assert_eq!(connections.opened(&web), Presence::Arrived);
        assert_eq!(connections.opened(&web), Presence::Unchanged);
        assert_eq!(connections.closed(&web), Presence::Unchanged);
        assert!(connections.is_serving(&web));
        assert_eq!(connections.closed(&web), Presence::Left);
        assert!(!connections.is_serving(&web) && !connections.is_connected(&web));
        assert_eq!(connections.closed(&web), Presence::Unchanged);
        assert_eq!(connections.opened(&web), Presence::Arrived);
        assert!(connections.is_serving(&web));
    }

    #[test]
    fn draining_needs_a_connection_and_ends_with_a_new_one() {
        let connections = Connections::default();
        let web = ProxyId::new("default", "web");
        assert!(!connections.draining(&web));
        connections.opened(&web);
        assert!(connections.draining(&web));
        assert!(!connections.is_serving(&web));
        connections.closed(&web);
        connections.opened(&web);
        assert!(connections.is_serving(&web));
    }
}
