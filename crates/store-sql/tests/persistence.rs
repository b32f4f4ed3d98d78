//! What the SQLite backend keeps across restarts, and how it reads rows that
//! no longer validate or are damaged.

use std::path::Path;

use kodiak_api::{Resource, ResourceKey};
use kodiak_store::{ListQuery, ResourceStore, StoreError};
use kodiak_store_sql::SqliteStore;
use serde_json::json;

fn resource(document: serde_json::Value) -> Resource {
    Resource::from_document(&document).unwrap()
}

/// A store in `dir` that holds the Mesh "default".
async fn open_with_default_mesh(dir: &Path) -> SqliteStore {
    let store = SqliteStore::open(dir).await.unwrap();
    store.create(resource(json!({"type": "Mesh", "name": "default"}))).await.unwrap();
    store
}

fn secret(name: &str) -> Resource {
    resource(json!({"type": "Secret", "mesh": "default", "name": name, "data": "c2VjcmV0"}))
}

async fn reopen(store: SqliteStore, dir: &Path) -> SqliteStore {
    store.close().await;
    drop(store);
    SqliteStore::open(dir).await.unwrap()
}

#[tokio::test]
async fn data_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_default_mesh(dir.path()).await;
    let token = secret("token");
    store.create(token.clone()).await.unwrap();
    let updated = store.update(token, Some(1)).await.unwrap();

    let store = reopen(store, dir.path()).await;

    assert_eq!(store.get(&updated.key).await.unwrap(), Some(updated.clone()));
    let page = store.list(&ListQuery::in_mesh(updated.key.kind, "default", 10)).await.unwrap();
    assert_eq!(page.items, std::slice::from_ref(&updated));
    let next = store.update(updated, Some(2)).await.unwrap();
    assert_eq!(next.version, 3, "versions continue after a restart");
}

async fn connect_directly(dir: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("kodiak.db").display())).await.unwrap()
}

#[tokio::test]
async fn open_creates_missing_data_directories_and_a_wal_database() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("var/lib/kodiak");
    SqliteStore::open(&nested).await.unwrap().close().await;

    let db = connect_directly(&nested).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&db).await.unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn open_names_a_data_directory_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("occupied");
    std::fs::write(&file, "not a directory").unwrap();
    let err = SqliteStore::open(&file.join("data")).await.err().expect("a file is in the way");
    assert!(err.to_string().starts_with("could not create data directory"), "{err}");
    assert!(err.to_string().contains("occupied"), "{err}");
}

#[tokio::test]
async fn a_stored_body_that_no_longer_validates_is_still_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_default_mesh(dir.path()).await;
    // As if an older Kodiak accepted a body that today's schema refuses.
    let mut legacy = secret("legacy");
    legacy.body.insert("data".into(), json!("not base64!"));
    legacy.body.insert("retiredField".into(), json!(true));
    let stored = store.create(legacy.clone()).await.unwrap();

    let store = reopen(store, dir.path()).await;

    assert_eq!(store.get(&legacy.key).await.unwrap(), Some(stored.clone()));
    let page = store.list(&ListQuery::in_mesh(legacy.key.kind, "default", 10)).await.unwrap();
    assert_eq!(page.items, [stored]);
}

#[tokio::test]
async fn a_damaged_row_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    store.create(resource(json!({"type": "Zone", "name": "east"}))).await.unwrap();
    store.close().await;
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("kodiak.db").display())).await.unwrap();
    sqlx::query("UPDATE resources SET body = 'not json' WHERE name = 'east'").execute(&db).await.unwrap();
    db.close().await;

    let store = SqliteStore::open(dir.path()).await.unwrap();
    let err = store.get(&ResourceKey::new(kodiak_api::ResourceType::Zone, None, "east")).await.unwrap_err();
    assert!(matches!(&err, StoreError::Backend(_)), "{err:?}");
    assert!(err.to_string().contains("Zone \"east\" is damaged: body is not JSON"), "{err}");
}
