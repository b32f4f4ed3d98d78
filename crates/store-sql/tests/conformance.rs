//! The SQLite backend passes the store contract, each test on a fresh
//! database in a temporary directory.

use kodiak_store_sql::SqliteStore;

kodiak_store::conformance_tests!(async {
    let dir = tempfile::tempdir().unwrap();
    (SqliteStore::open(dir.path()).await.unwrap(), dir)
});
