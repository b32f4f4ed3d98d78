//! The statements every SQL backend runs, in SQL that SQLite and PostgreSQL
//! both accept (`$n` parameters, `RETURNING`). Key parameters come first:
//! `$1` type, `$2` mesh ('' for global types), `$3` name.

pub(crate) const MESH_EXISTS: &str = "SELECT 1 FROM resources WHERE type = 'Mesh' AND mesh = '' AND name = $1";

pub(crate) const INSERT: &str = "INSERT INTO resources \
     (type, mesh, name, version, labels, body, creation_time, modification_time) \
     VALUES ($1, $2, $3, 1, $4, $5, $6, $6)";

/// Updates only when `$7` is NULL or the stored version; returns nothing
/// otherwise, so the caller looks at the version to say why.
pub(crate) const UPDATE: &str = "UPDATE resources \
     SET labels = $4, body = $5, modification_time = $6, version = version + 1 \
     WHERE type = $1 AND mesh = $2 AND name = $3 AND ($7 IS NULL OR version = $7) \
     RETURNING version, creation_time";

pub(crate) const VERSION: &str = "SELECT version FROM resources WHERE type = $1 AND mesh = $2 AND name = $3";

pub(crate) const DELETE: &str = "DELETE FROM resources WHERE type = $1 AND mesh = $2 AND name = $3 RETURNING version";

/// Everything inside a mesh (`$1`), for the cascade when the Mesh goes.
pub(crate) const DELETE_IN_MESH: &str = "DELETE FROM resources WHERE mesh = $1 RETURNING type, name, version";

pub(crate) const GET: &str = "SELECT type, mesh, name, version, labels, body, creation_time, modification_time \
     FROM resources WHERE type = $1 AND mesh = $2 AND name = $3";

/// The start of a list query. `sqlite.rs` appends the filters (with
/// SQLite's `instr` and `json_extract`, which other databases spell
/// differently), the order (byte order, as in Rust; PostgreSQL needs
/// `COLLATE "C"` on mesh and name) and the page.
pub(crate) const SELECT_RESOURCES: &str =
    "SELECT type, mesh, name, version, labels, body, creation_time, modification_time FROM resources";

pub(crate) const COUNT_RESOURCES: &str = "SELECT COUNT(*) FROM resources";
