//! The end-to-end harness: a real control plane (in-process), real
//! `kodiak-dp` processes running real Envoy 1.40, and real test services,
//! all on loopback. Used by the end-to-end tests and the sidecar benchmarks.

mod binaries;
mod control_plane;
pub mod dataplanes;
pub mod policies;
mod probe;
mod service;
mod sidecar;

pub use binaries::{binary, envoy};
pub use control_plane::ControlPlane;
pub use probe::{Reply, eventually, get, tcp_greeting};
pub use service::TestService;
pub use sidecar::{Sidecar, Transport};

/// A port on 127.0.0.1 for a listener a test starts later (an Envoy inbound
/// or outbound): free a moment ago, not handed out before by this process,
/// and below the kernel's range for outgoing connections (32768 and up on
/// Linux), so no connection's source port can take it in the meantime.
/// Picked at random, so concurrent test processes rarely try the same one.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    const RANGE: std::ops::Range<u16> = 20_000..32_768;
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..10_000 {
        // Each RandomState has keys of its own: a random number without a crate.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = RANGE.start + (random % u64::from(RANGE.end - RANGE.start)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no free port between {} and {}", RANGE.start, RANGE.end - 1);
}
