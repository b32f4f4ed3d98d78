//! The in-memory backend passes the store contract.

use kodiak_store::MemoryStore;

kodiak_store::conformance_tests!(async { (MemoryStore::new(), ()) });
