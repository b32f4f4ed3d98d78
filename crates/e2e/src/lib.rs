//! The end-to-end harness: a real control plane (in-process), real
//! `kodiak-dp` processes running real Envoy 1.40, and real test services,
//! all on loopback. Used by the end-to-end tests and the sidecar benchmarks.

mod binaries;
mod control_plane;
pub mod dataplanes;
mod probe;
mod service;
mod sidecar;

pub use binaries::{binary, envoy};
pub use control_plane::ControlPlane;
pub use probe::{Reply, eventually, get, tcp_greeting};
pub use service::TestService;
pub use sidecar::{Sidecar, Transport};

/// A port on 127.0.0.1 that was free a moment ago and that this process
/// has not handed out before: the kernel may offer a just-closed port
/// again, and two Dataplanes given one port would collide.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}
