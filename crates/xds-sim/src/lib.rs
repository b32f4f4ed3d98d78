//! `kodiak-xds-sim`: thousands of simulated Envoys on ADS streams against a
//! Kodiak control plane, timing how fast each one converges after the
//! connect storm, a policy change, a scale-out and a certificate rotation,
//! and what the control plane spends meanwhile.

pub mod config_view;
pub mod connect;
pub mod control_plane;
pub mod fleet;
pub mod proxy;
pub mod scenario;
pub mod stats;
pub mod topology;
