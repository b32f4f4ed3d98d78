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

pub use kodiak_test_ports::free_port;
