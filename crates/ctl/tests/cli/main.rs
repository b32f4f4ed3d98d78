//! Runs the real kodiakctl binary the way a user does: offline commands on
//! their own, the others against a real control plane on loopback.

mod config;
mod offline;
mod resources;
mod support;
mod tls;
mod tokens;
