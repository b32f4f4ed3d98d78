//! Kodiak's resource store on SQL. SQLite is the embedded default: one file
//! in the control plane's data directory, nothing else to run.
//!
//! The statements (`sql.rs`) and the row conversion (`row.rs`) assume nothing
//! SQLite-specific, so a PostgreSQL backend can share them.

mod error;
mod migrations;
mod row;
mod sql;
mod sqlite;

pub use error::OpenError;
pub use sqlite::SqliteStore;
