//! Kodiak's certificate authority for mesh mTLS: a self-signed root CA per mesh
//! backend (`builtin`) or a user's own CA (`provided`), and the short-lived SPIFFE
//! workload certificates it issues to sidecars.
//!
//! Pure: no I/O, no async, the clock is an argument. Keys and signatures come from
//! aws-lc-rs (through rcgen), the one crypto backend of the workspace.

mod ca;
mod clock;
mod error;
mod keys;
mod provided;
mod renewal;
mod root;
mod workload;

pub use ca::Ca;
pub use error::CaError;
pub use keys::KeyKind;
pub use renewal::renewal_due;
pub use root::RootCa;
pub use workload::{CLOCK_SKEW, Tags, WorkloadCert, WorkloadRequest, tags_of};
