//! What policies change in the generated Envoy configuration. Each policy
//! type has a module: its conf as Kodiak reads the merged `default` JSON
//! that `kodiak-policy` computed for a proxy (typed, comparable and
//! hashable, so services' resources stay shared between callers whose
//! confs are equal), and the functions that lay it on Envoy resources.

pub mod mesh_access_log;
pub mod mesh_circuit_breaker;
pub mod mesh_fault_injection;
pub mod mesh_health_check;
pub mod mesh_http_route;
pub mod mesh_load_balancing_strategy;
pub mod mesh_proxy_patch;
pub mod mesh_rate_limit;
pub mod mesh_retry;
pub mod mesh_tcp_route;
pub mod mesh_timeout;
