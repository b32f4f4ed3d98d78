//! A generic ADS server.
