//! The conformance suite: the rules of [`ResourceStore`] as executable checks.
//!
//! Every backend runs all of them with one line in its tests:
//!
//! ```text
//! kodiak_store::conformance_tests!(async { (MemoryStore::new(), ()) });
//! ```
//!
//! The expression is a future of `(store, keep)`: `keep` lives until the test
//! ends (a backend's temporary directory, say). Each rule becomes its own
//! `#[tokio::test]` named after the rule, so a failure says which rule broke.
//! The calling crate needs `tokio` (with `macros` and `rt-multi-thread`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kodiak_api::{Resource, ResourceKey, ResourceType};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use crate::{ChangeEvent, ChangeKind, ListQuery, ResourceStore, StoreError, now_rfc3339};

/// Expands into one `#[tokio::test]` per conformance rule; see the
/// [`conformance`](crate::conformance) module for the argument.
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr) => {
        $crate::conformance_tests!(@rules $open;
            create_then_get,
            create_of_existing_is_refused,
            create_in_missing_mesh_is_refused,
            update_bumps_version_and_modification_time,
            update_with_stale_version_conflicts,
            update_of_missing_is_not_found,
            delete_removes_and_recreate_starts_over,
            delete_of_missing_is_not_found,
            delete_mesh_cascades,
            list_pages_in_name_order,
            list_across_meshes_orders_by_mesh_then_name,
            list_filters_by_mesh_name_and_labels,
            global_types_have_no_mesh,
            watch_reports_changes_in_order,
            watch_reports_cascaded_deletes,
            concurrent_updates_lose_nothing,
            refused_writes_leave_the_store_writable,
        );
    };
    (@rules $open:expr; $($rule:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $rule() {
                let (store, _keep) = $open.await;
                $crate::conformance::$rule(::std::sync::Arc::new(store)).await;
            }
        )*
    };
}

/// Every refused write (existing key, missing mesh, stale version, missing
/// resource) ends cleanly: writes from several tasks right after it succeed
/// and nothing refused shows up.
pub async fn refused_writes_leave_the_store_writable(store: Store) {
    create_meshes(&store, &["a"]).await;
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let name = format!("token-{writer}");
                let stored = store.create(secret("a", &name, &[])).await.unwrap();
                for round in 0..200 {
                    let refused = [
                        store.create(secret("a", &name, &[])).await.err(),
                        store.create(secret("missing", &name, &[])).await.err(),
                        store.update(secret("a", &name, &[]), Some(stored.version + 1000)).await.err(),
                        store.delete(&secret("a", &format!("ghost-{writer}"), &[]).key).await.err(),
                    ];
                    assert!(refused.iter().all(Option::is_some), "round {round}: {refused:?}");
                    let change = secret("a", &name, &[("round", &round.to_string())]);
                    store.update(change, None).await.unwrap_or_else(|e| panic!("round {round}: {e}"));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let page = store.list(&ListQuery::in_mesh(ResourceType::Secret, "a", 100)).await.unwrap();
    assert_eq!(page.total, 4);
    assert!(page.items.iter().all(|r| r.version == 201 && r.labels["round"] == "199"), "{:?}", page.items);
}

/// The store under test; rules that spawn tasks need to share it.
pub type Store = Arc<dyn ResourceStore>;

/// `create` stamps version 1 and both timestamps, and `get` returns exactly
/// what `create` returned, whatever version the caller passed in.
pub async fn create_then_get(store: Store) {
    store.create(mesh("default")).await.unwrap();
    let mut input = secret("default", "token", &[("team", "core")]);
    input.version = 7;
    let created = store.create(input.clone()).await.unwrap();

    assert_eq!(created.key, input.key);
    assert_eq!(created.labels, input.labels);
    assert_eq!(created.body, input.body);
    assert_eq!(created.version, 1, "versions start at 1");
    let created_at = created.creation_time.as_deref().expect("create sets creationTime");
    assert!(humantime::parse_rfc3339(created_at).is_ok(), "creationTime {created_at:?} is not RFC 3339");
    assert_eq!(created.modification_time.as_deref(), Some(created_at), "a new resource was modified when created");
    assert_eq!(store.get(&input.key).await.unwrap(), Some(created));
}

/// A second `create` of a key fails and leaves the first resource alone;
/// the same name in another mesh is a different resource.
pub async fn create_of_existing_is_refused(store: Store) {
    create_meshes(&store, &["a", "b"]).await;
    let first = store.create(secret("a", "token", &[("try", "first")])).await.unwrap();

    let again = store.create(secret("a", "token", &[("try", "second")])).await;
    assert!(matches!(&again, Err(StoreError::AlreadyExists(key)) if *key == first.key), "{again:?}");
    assert_eq!(store.get(&first.key).await.unwrap(), Some(first));
    store.create(secret("b", "token", &[])).await.expect("same name in another mesh");
}

/// A mesh-scoped resource needs its Mesh; a global resource that merely has
/// the mesh's name does not count.
pub async fn create_in_missing_mesh_is_refused(store: Store) {
    store.create(zone("nowhere")).await.unwrap();
    let orphan = secret("nowhere", "token", &[]);

    let result = store.create(orphan.clone()).await;
    assert!(matches!(&result, Err(StoreError::MeshNotFound(mesh)) if mesh == "nowhere"), "{result:?}");
    assert_eq!(store.get(&orphan.key).await.unwrap(), None);
}

/// `update` replaces labels and body, adds one to the version, keeps the
/// creation time and moves the modification time forward.
pub async fn update_bumps_version_and_modification_time(store: Store) {
    store.create(mesh("default")).await.unwrap();
    let created = store.create(secret("default", "token", &[("team", "core")])).await.unwrap();
    wait_for_clock_to_pass(created.modification_time.as_deref().unwrap()).await;

    let mut change = secret("default", "token", &[("team", "edge")]);
    change.body.insert("data".into(), json!("dXBkYXRlZA=="));
    let updated = store.update(change.clone(), Some(1)).await.unwrap();

    assert_eq!(updated.version, 2);
    assert_eq!((&updated.labels, &updated.body), (&change.labels, &change.body));
    assert_eq!(updated.creation_time, created.creation_time, "update keeps creationTime");
    assert!(
        updated.modification_time > created.modification_time,
        "modificationTime {:?} did not move past {:?}",
        updated.modification_time,
        created.modification_time
    );
    assert_eq!(store.get(&change.key).await.unwrap(), Some(updated));

    let unconditional = store.update(change, None).await.unwrap();
    assert_eq!(unconditional.version, 3, "an update without expected version still counts");
}

/// An update that expects an old version fails with both versions named and
/// changes nothing.
pub async fn update_with_stale_version_conflicts(store: Store) {
    store.create(mesh("default")).await.unwrap();
    store.create(secret("default", "token", &[])).await.unwrap();
    let current = store.update(secret("default", "token", &[("step", "two")]), Some(1)).await.unwrap();

    let stale = store.update(secret("default", "token", &[("step", "stale")]), Some(1)).await;
    assert!(
        matches!(&stale, Err(StoreError::Conflict { key, expected: 1, actual: 2 }) if *key == current.key),
        "{stale:?}"
    );
    assert_eq!(store.get(&current.key).await.unwrap(), Some(current));
}

/// Updating what does not exist fails and creates nothing, with or without
/// an expected version.
pub async fn update_of_missing_is_not_found(store: Store) {
    store.create(mesh("default")).await.unwrap();
    let missing = secret("default", "token", &[]);

    for expected in [None, Some(1)] {
        let result = store.update(missing.clone(), expected).await;
        assert!(matches!(&result, Err(StoreError::NotFound(key)) if *key == missing.key), "{result:?}");
    }
    assert_eq!(store.get(&missing.key).await.unwrap(), None);
}

/// A deleted resource is gone; creating it again starts at version 1.
pub async fn delete_removes_and_recreate_starts_over(store: Store) {
    store.create(mesh("default")).await.unwrap();
    let token = secret("default", "token", &[]);
    store.create(token.clone()).await.unwrap();
    store.update(token.clone(), None).await.unwrap();

    store.delete(&token.key).await.unwrap();
    assert_eq!(store.get(&token.key).await.unwrap(), None);
    assert_eq!(store.list(&ListQuery::in_mesh(ResourceType::Secret, "default", 10)).await.unwrap().total, 0);
    assert_eq!(store.create(token).await.unwrap().version, 1);
}

/// Deleting what does not exist (or no longer exists) fails.
pub async fn delete_of_missing_is_not_found(store: Store) {
    store.create(mesh("default")).await.unwrap();
    let token = secret("default", "token", &[]);
    for key in [token.key.clone(), ResourceKey::mesh("absent")] {
        let result = store.delete(&key).await;
        assert!(matches!(&result, Err(StoreError::NotFound(k)) if *k == key), "{result:?}");
    }
    store.create(token.clone()).await.unwrap();
    store.delete(&token.key).await.unwrap();
    assert!(matches!(store.delete(&token.key).await, Err(StoreError::NotFound(_))));
}

/// Deleting a Mesh deletes everything in it and nothing outside it.
pub async fn delete_mesh_cascades(store: Store) {
    create_meshes(&store, &["a", "b"]).await;
    for resource in [secret("a", "x", &[]), secret("a", "y", &[]), secret("b", "x", &[]), global_secret("a")] {
        store.create(resource).await.unwrap();
    }

    store.delete(&ResourceKey::mesh("a")).await.unwrap();

    assert_eq!(store.get(&ResourceKey::mesh("a")).await.unwrap(), None);
    for gone in ["x", "y"] {
        assert_eq!(store.get(&secret("a", gone, &[]).key).await.unwrap(), None, "secret {gone} in deleted mesh");
    }
    for kept in [ResourceKey::mesh("b"), secret("b", "x", &[]).key, global_secret("a").key] {
        assert!(store.get(&kept).await.unwrap().is_some(), "{kept} was deleted with mesh \"a\"");
    }
    store.create(mesh("a")).await.unwrap();
    let page = store.list(&ListQuery::in_mesh(ResourceType::Secret, "a", 10)).await.unwrap();
    assert_eq!(page.total, 0, "a recreated mesh starts empty: {page:?}");
}

/// `list` orders by name within a mesh, pages with offset and size, and
/// counts every match in `total`; other types and meshes stay out.
pub async fn list_pages_in_name_order(store: Store) {
    create_meshes(&store, &["m1", "m2"]).await;
    for name in ["c", "a", "e", "b", "d"] {
        store.create(secret("m1", name, &[])).await.unwrap();
    }
    store.create(secret("m2", "a", &[])).await.unwrap();
    store.create(global_secret("a")).await.unwrap();

    let page_at = |offset| ListQuery { offset, ..ListQuery::in_mesh(ResourceType::Secret, "m1", 2) };
    let expected: [&[&str]; 4] = [&["a", "b"], &["c", "d"], &["e"], &[]];
    for (offset, names) in [0, 2, 4, 10].into_iter().zip(expected) {
        let page = store.list(&page_at(offset)).await.unwrap();
        assert_eq!(page.total, 5, "total at offset {offset}");
        assert_eq!(keys(&page.items), names.iter().map(|n| in_mesh("m1", n)).collect::<Vec<_>>(), "offset {offset}");
    }
}

/// Without a mesh, `list` spans every mesh, ordered by mesh, then name.
pub async fn list_across_meshes_orders_by_mesh_then_name(store: Store) {
    create_meshes(&store, &["m2", "m1"]).await;
    for (mesh, name) in [("m2", "a"), ("m1", "z"), ("m1", "b")] {
        store.create(secret(mesh, name, &[])).await.unwrap();
    }

    let page = store.list(&ListQuery::all(ResourceType::Secret, 10)).await.unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(keys(&page.items), [in_mesh("m1", "b"), in_mesh("m1", "z"), in_mesh("m2", "a")]);
    let meshes = store.list(&ListQuery::all(ResourceType::Mesh, 10)).await.unwrap();
    assert_eq!(keys(&meshes.items), [(None, "m1".to_owned()), (None, "m2".to_owned())]);
}

/// Mesh, name and label filters combine, and `total` counts filtered matches.
pub async fn list_filters_by_mesh_name_and_labels(store: Store) {
    create_meshes(&store, &["m1", "m2"]).await;
    let labelled = [
        ("m1", "web-1", [("app", "web"), ("env", "prod")]),
        ("m1", "web-2", [("app", "web"), ("env", "dev")]),
        ("m1", "db-1", [("app", "db"), ("env", "prod")]),
        ("m2", "web-3", [("app", "web"), ("env", "prod")]),
    ];
    for (mesh, name, labels) in labelled {
        store.create(secret(mesh, name, &labels)).await.unwrap();
    }

    let base = ListQuery::in_mesh(ResourceType::Secret, "m1", 10);
    let by_name = |text: &str| ListQuery { name_contains: Some(text.to_owned()), ..base.clone() };
    let by_labels = |query: ListQuery, pairs: &[(&str, &str)]| ListQuery { labels: label_map(pairs), ..query };
    let cases = [
        (by_name("web"), vec!["web-1", "web-2"]),
        (by_labels(base.clone(), &[("env", "prod")]), vec!["db-1", "web-1"]),
        (by_labels(base.clone(), &[("app", "web"), ("env", "prod")]), vec!["web-1"]),
        (by_labels(by_name("web"), &[("env", "dev")]), vec!["web-2"]),
        (by_labels(base.clone(), &[("env", "staging")]), vec![]),
        (by_labels(base.clone(), &[("env\"", "prod")]), vec![]),
        (by_labels(base.clone(), &[("web", "app")]), vec![]),
    ];
    for (query, names) in cases {
        let page = store.list(&query).await.unwrap();
        assert_eq!(keys(&page.items), names.iter().map(|n| in_mesh("m1", n)).collect::<Vec<_>>(), "{query:?}");
        assert_eq!(page.total, names.len(), "{query:?}");
    }

    let first_of_two = store.list(&ListQuery { size: 1, ..by_name("web") }).await.unwrap();
    assert_eq!((first_of_two.total, keys(&first_of_two.items)), (2, vec![in_mesh("m1", "web-1")]));
    let everywhere = by_labels(ListQuery::all(ResourceType::Secret, 10), &[("app", "web"), ("env", "prod")]);
    let page = store.list(&everywhere).await.unwrap();
    assert_eq!(keys(&page.items), [in_mesh("m1", "web-1"), in_mesh("m2", "web-3")]);
}

/// Mesh, Zone and GlobalSecret live beside the meshes: stored and listed
/// with no mesh.
pub async fn global_types_have_no_mesh(store: Store) {
    for resource in [mesh("default"), zone("east"), global_secret("token")] {
        let created = store.create(resource.clone()).await.unwrap();
        assert_eq!(created.key.mesh, None);
        assert_eq!(store.get(&resource.key).await.unwrap(), Some(created));
        let page = store.list(&ListQuery::all(resource.key.kind, 10)).await.unwrap();
        assert_eq!(keys(&page.items), [(None, resource.key.name.clone())], "{}", resource.key.kind);
    }
}

/// Watchers get Created, Updated and Deleted with versions, in order, and
/// by the time an event arrives `get` already shows the change.
pub async fn watch_reports_changes_in_order(store: Store) {
    let mut events = store.watch();
    let token = secret("default", "token", &[]);

    store.create(mesh("default")).await.unwrap();
    store.create(token.clone()).await.unwrap();
    store.update(token.clone(), Some(1)).await.unwrap();
    store.delete(&token.key).await.unwrap();

    let expected = [
        (ChangeKind::Created, ResourceKey::mesh("default"), 1),
        (ChangeKind::Created, token.key.clone(), 1),
        (ChangeKind::Updated, token.key.clone(), 2),
        (ChangeKind::Deleted, token.key.clone(), 2),
    ];
    for (kind, key, version) in expected {
        assert_eq!(next_event(&mut events).await, ChangeEvent { kind, key, version });
    }

    let mut events = store.watch();
    store.create(token.clone()).await.unwrap();
    let created = next_event(&mut events).await;
    let seen = store.get(&created.key).await.unwrap().map(|r| r.version);
    assert_eq!(seen, Some(created.version), "get after the event shows the change");
    store.update(token.clone(), None).await.unwrap();
    let updated = next_event(&mut events).await;
    assert_eq!(store.get(&updated.key).await.unwrap().map(|r| r.version), Some(2));
    store.delete(&token.key).await.unwrap();
    next_event(&mut events).await;
    assert_eq!(store.get(&token.key).await.unwrap(), None, "get after the delete event");
}

/// Deleting a Mesh reports each resource deleted with it, then the Mesh
/// itself, and nothing about other meshes.
pub async fn watch_reports_cascaded_deletes(store: Store) {
    create_meshes(&store, &["a", "b"]).await;
    store.create(secret("a", "x", &[])).await.unwrap();
    store.create(secret("a", "y", &[])).await.unwrap();
    store.update(secret("a", "y", &[]), None).await.unwrap();
    store.create(secret("b", "z", &[])).await.unwrap();
    let mut events = store.watch();

    store.delete(&ResourceKey::mesh("a")).await.unwrap();
    let marker = secret("b", "marker", &[]);
    store.create(marker.clone()).await.unwrap();

    let mut contents = vec![next_event(&mut events).await, next_event(&mut events).await];
    contents.sort_by(|l, r| l.key.cmp(&r.key));
    let deleted = |key: ResourceKey, version| ChangeEvent { kind: ChangeKind::Deleted, key, version };
    assert_eq!(contents, [deleted(secret("a", "x", &[]).key, 1), deleted(secret("a", "y", &[]).key, 2)]);
    assert_eq!(next_event(&mut events).await, deleted(ResourceKey::mesh("a"), 1), "the Mesh goes last");
    let after = next_event(&mut events).await;
    assert_eq!(after.key, marker.key, "no other events from deleting mesh \"a\"");
}

/// Many writers updating one resource with expected versions: every version
/// is won by exactly one writer, no update is lost, events come in order.
pub async fn concurrent_updates_lose_nothing(store: Store) {
    const WRITERS: u64 = 8;
    const UPDATES_EACH: u64 = 5;
    store.create(mesh("default")).await.unwrap();
    let key = store.create(secret("default", "counter", &[])).await.unwrap().key;
    let mut events = store.watch();

    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        let (store, key) = (store.clone(), key.clone());
        writers.spawn(async move {
            let mut won = Vec::new();
            while (won.len() as u64) < UPDATES_EACH {
                let mut next = store.get(&key).await.unwrap().expect("counter exists");
                let expected = next.version;
                next.labels.insert(format!("writer-{writer}"), won.len().to_string());
                match store.update(next, Some(expected)).await {
                    Ok(updated) => won.push(updated.version),
                    Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                    Err(other) => panic!("writer {writer}: {other}"),
                }
            }
            won
        });
    }
    let mut versions: Vec<u64> = writers.join_all().await.into_iter().flatten().collect();
    versions.sort_unstable();

    let last = 1 + WRITERS * UPDATES_EACH;
    assert_eq!(versions, (2..=last).collect::<Vec<_>>(), "each version won exactly once");
    let stored = store.get(&key).await.unwrap().unwrap();
    assert_eq!(stored.version, last);
    for writer in 0..WRITERS {
        let label = stored.labels.get(&format!("writer-{writer}"));
        let last_update = (UPDATES_EACH - 1).to_string();
        assert_eq!(label, Some(&last_update), "writer {writer}'s last update was lost");
    }
    for version in 2..=last {
        let event = next_event(&mut events).await;
        assert_eq!((event.kind, event.version), (ChangeKind::Updated, version));
    }
}

fn resource(document: Value) -> Resource {
    Resource::from_document(&document).unwrap_or_else(|e| panic!("test document {document} is invalid: {e}"))
}

fn mesh(name: &str) -> Resource {
    resource(json!({"type": "Mesh", "name": name}))
}

fn zone(name: &str) -> Resource {
    resource(json!({"type": "Zone", "name": name}))
}

fn global_secret(name: &str) -> Resource {
    resource(json!({"type": "GlobalSecret", "name": name, "data": "c2VjcmV0"}))
}

fn secret(mesh: &str, name: &str, labels: &[(&str, &str)]) -> Resource {
    resource(json!({"type": "Secret", "mesh": mesh, "name": name, "labels": label_map(labels), "data": "c2VjcmV0"}))
}

fn label_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

async fn create_meshes(store: &Store, names: &[&str]) {
    for name in names {
        store.create(mesh(name)).await.unwrap();
    }
}

/// (mesh, name) of each resource, the order `list` promises.
fn keys(resources: &[Resource]) -> Vec<(Option<String>, String)> {
    resources.iter().map(|r| (r.key.mesh.clone(), r.key.name.clone())).collect()
}

fn in_mesh(mesh: &str, name: &str) -> (Option<String>, String) {
    (Some(mesh.to_owned()), name.to_owned())
}

async fn next_event(events: &mut broadcast::Receiver<ChangeEvent>) -> ChangeEvent {
    match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => panic!("watch stopped: {e}"),
        Err(_) => panic!("no change event within 10 s"),
    }
}

/// Waits until the store's clock shows a later time than `time`, so that a
/// change made next gets a later timestamp (they have millisecond precision).
async fn wait_for_clock_to_pass(time: &str) {
    while now_rfc3339().as_str() <= time {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
