//! Envoy configuration from Kodiak resources.
