//! The SQLite backend: one database file in the data directory, in WAL mode
//! so that reads never wait for a write.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kodiak_api::name::check_label_key;
use kodiak_api::{Resource, ResourceKey, ResourceType};
use kodiak_store::{ChangeEvent, ChangeKind, EVENT_BUFFER, ListQuery, Page, ResourceStore, StoreError, now_rfc3339};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio::sync::{Mutex, broadcast};

use crate::row::{ResourceRow, body_column, key_from_columns, labels_column, mesh_column, version_from_column};
use crate::{OpenError, migrations, sql};

/// The database file inside the data directory.
const DATABASE_FILE: &str = "kodiak.db";

/// How long a statement waits for a lock held by another process (a backup
/// tool, `sqlite3` in a shell) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`ResourceStore`] in `<data dir>/kodiak.db`.
///
/// Every write is one transaction. Writes take turns (SQLite has a single
/// writer anyway), and each announces its events after commit and before the
/// next write starts, so watchers see changes in commit order. Taking turns
/// in-process is enough because one control plane owns a data directory
/// (`kodiak-cp` locks it); a shared database such as PostgreSQL needs the
/// database itself to order writes and carry events (LISTEN/NOTIFY).
pub struct SqliteStore {
    shared: Arc<Shared>,
}

/// The database and its write discipline, shared with write tasks.
struct Shared {
    pool: SqlitePool,
    write_turn: Mutex<()>,
    events: broadcast::Sender<ChangeEvent>,
}

impl SqliteStore {
    /// Opens (creating if needed) the data directory and its database, and
    /// brings the schema up to date. A directory or database created here is
    /// readable by its owner only (the database holds keys and tokens);
    /// SQLite gives its `-wal` and `-shm` files the database file's mode.
    pub async fn open(data_dir: &Path) -> Result<Self, OpenError> {
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .await
            .map_err(|source| OpenError::CreateDirectory { path: data_dir.to_owned(), source })?;
        let path = data_dir.join(DATABASE_FILE);
        create_private_file(&path).await.map_err(|source| OpenError::CreateDatabase { path: path.clone(), source })?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| OpenError::Connect { path: path.clone(), source })?;
        let migrated = match migrations::sqlite().await {
            Ok(migrator) => migrator.run(&pool).await,
            Err(e) => Err(e),
        };
        migrated.map_err(|source| OpenError::Migrate { path: path.clone(), source })?;
        tracing::info!(path = %path.display(), "opened resource database");
        let shared = Shared { pool, write_turn: Mutex::new(()), events: broadcast::channel(EVENT_BUFFER).0 };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// Waits for running statements and closes the database, so that the
    /// write-ahead log is folded into the file before the process exits.
    pub async fn close(&self) {
        self.shared.pool.close().await;
    }
}

/// Creates `path` empty with mode 0600 unless it exists (SQLite takes an
/// empty file as an empty database).
async fn create_private_file(path: &Path) -> std::io::Result<()> {
    let created = tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl Shared {
    fn announce(&self, events: impl IntoIterator<Item = ChangeEvent>) {
        for event in events {
            // Sending fails only when nobody watches, which is fine.
            let _ = self.events.send(event);
        }
    }

    /// Runs one write transaction in this store's turn: commits and then
    /// announces the events `work` returns, or rolls back when it fails.
    /// Rolling back before the turn passes matters: a transaction merely
    /// dropped is ended later, and would meanwhile lock out the next writer.
    async fn write<T>(
        &self,
        work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<(T, Vec<ChangeEvent>), StoreError>,
    ) -> Result<T, StoreError> {
        let _turn = self.write_turn.lock().await;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        match work(&mut tx).await {
            Ok((value, events)) => {
                tx.commit().await.map_err(backend)?;
                self.announce(events);
                Ok(value)
            }
            Err(error) => {
                tx.rollback().await.map_err(backend)?;
                Err(error)
            }
        }
    }

    async fn create(&self, mut resource: Resource) -> Result<Resource, StoreError> {
        self.write(async |db| {
            if let Some(mesh) = &resource.key.mesh
                && sqlx::query(sql::MESH_EXISTS).bind(mesh).fetch_optional(&mut *db).await.map_err(backend)?.is_none()
            {
                return Err(StoreError::MeshNotFound(mesh.clone()));
            }
            let now = now_rfc3339();
            let inserted = bind_key(sqlx::query(sql::INSERT), &resource.key)
                .bind(labels_column(&resource))
                .bind(body_column(&resource))
                .bind(&now)
                .execute(&mut *db)
                .await;
            match inserted {
                Err(e) if e.as_database_error().is_some_and(|e| e.is_unique_violation()) => {
                    return Err(StoreError::AlreadyExists(resource.key.clone()));
                }
                other => other.map_err(backend)?,
            };
            resource.version = 1;
            resource.creation_time = Some(now.clone());
            resource.modification_time = Some(now);
            let event = ChangeEvent { kind: ChangeKind::Created, key: resource.key.clone(), version: 1 };
            Ok((resource, vec![event]))
        })
        .await
    }

    async fn update(&self, mut resource: Resource, expected_version: Option<u64>) -> Result<Resource, StoreError> {
        self.write(async |db| {
            let now = now_rfc3339();
            // No stored version is negative, so a version too large for SQL matches nothing.
            let expected_column = expected_version.map(|v| i64::try_from(v).unwrap_or(-1));
            let updated = bind_key(sqlx::query(sql::UPDATE), &resource.key)
                .bind(labels_column(&resource))
                .bind(body_column(&resource))
                .bind(&now)
                .bind(expected_column)
                .fetch_optional(&mut *db)
                .await
                .map_err(backend)?;
            let Some(updated) = updated else {
                return Err(why_not_updated(db, resource.key.clone(), expected_version).await?);
            };
            resource.version = read_version(&updated, &resource.key)?;
            resource.creation_time = Some(updated.try_get("creation_time").map_err(backend)?);
            resource.modification_time = Some(now);
            let event = ChangeEvent { kind: ChangeKind::Updated, key: resource.key.clone(), version: resource.version };
            Ok((resource, vec![event]))
        })
        .await
    }

    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        self.write(async |db| {
            let deleted = bind_key(sqlx::query(sql::DELETE), key).fetch_optional(&mut *db).await.map_err(backend)?;
            let Some(deleted) = deleted else {
                return Err(StoreError::NotFound(key.clone()));
            };
            let mut events = Vec::new();
            if key.kind == ResourceType::Mesh {
                let inside =
                    sqlx::query(sql::DELETE_IN_MESH).bind(&key.name).fetch_all(&mut *db).await.map_err(backend)?;
                for row in inside {
                    let kind: String = row.try_get("type").map_err(backend)?;
                    let inner = key_from_columns(&kind, &key.name, row.try_get("name").map_err(backend)?)?;
                    let version = read_version(&row, &inner)?;
                    events.push(ChangeEvent { kind: ChangeKind::Deleted, key: inner, version });
                }
                events.sort_by(|l, r| l.key.cmp(&r.key));
            }
            // The Mesh goes last: a watcher that sees it gone knows its contents are gone too.
            let version = read_version(&deleted, key)?;
            events.push(ChangeEvent { kind: ChangeKind::Deleted, key: key.clone(), version });
            Ok(((), events))
        })
        .await
    }
}

#[async_trait]
impl ResourceStore for SqliteStore {
    async fn create(&self, resource: Resource) -> Result<Resource, StoreError> {
        let shared = self.shared.clone();
        run_to_completion(async move { shared.create(resource).await }).await
    }

    async fn update(&self, resource: Resource, expected_version: Option<u64>) -> Result<Resource, StoreError> {
        let shared = self.shared.clone();
        run_to_completion(async move { shared.update(resource, expected_version).await }).await
    }

    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        let (shared, key) = (self.shared.clone(), key.clone());
        run_to_completion(async move { shared.delete(&key).await }).await
    }

    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>, StoreError> {
        let row = bind_key(sqlx::query(sql::GET), key).fetch_optional(&self.shared.pool).await.map_err(backend)?;
        row.map(|row| read_row(&row)?.into_resource()).transpose()
    }

    /// Filters, counts and pages in SQL, inside one read transaction so the
    /// total and the page agree; only the requested page is read into memory.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        if query.labels.keys().any(|key| check_label_key(key).is_err()) {
            // No stored resource can carry an invalid label key.
            return Ok(Page { total: 0, items: Vec::new() });
        }
        let mut tx = self.shared.pool.begin().await.map_err(backend)?;
        let mut count = QueryBuilder::<Sqlite>::new(sql::COUNT_RESOURCES);
        push_filters(&mut count, query);
        let total: i64 = count.build_query_scalar().fetch_one(&mut *tx).await.map_err(backend)?;
        let mut select = QueryBuilder::<Sqlite>::new(sql::SELECT_RESOURCES);
        push_filters(&mut select, query);
        select.push(" ORDER BY mesh, name LIMIT ").push_bind(as_i64(query.size));
        select.push(" OFFSET ").push_bind(as_i64(query.offset));
        let rows = select.build().fetch_all(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        let items = rows.iter().map(|row| read_row(row)?.into_resource()).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { total: usize::try_from(total).unwrap_or(0), items })
    }

    fn watch(&self) -> broadcast::Receiver<ChangeEvent> {
        self.shared.events.subscribe()
    }
}

/// Runs a write in a task of its own, so it finishes (commit and change
/// events together) even when the caller stops waiting: a client that
/// disconnects mid-request, or a shutdown that gives up on it.
async fn run_to_completion<T: Send + 'static>(
    write: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::spawn(write).await.map_err(|e| StoreError::Backend(format!("a store write failed to finish: {e}")))?
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds `$1` type, `$2` mesh and `$3` name, as every keyed statement expects.
fn bind_key<'q>(query: Query<'q>, key: &'q ResourceKey) -> Query<'q> {
    query.bind(key.kind.name()).bind(mesh_column(key)).bind(key.name.as_str())
}

/// Says why an update changed no row: the resource is missing, or its
/// version is not the expected one.
async fn why_not_updated(
    db: &mut SqliteConnection,
    key: ResourceKey,
    expected: Option<u64>,
) -> Result<StoreError, StoreError> {
    let Some(row) = bind_key(sqlx::query(sql::VERSION), &key).fetch_optional(&mut *db).await.map_err(backend)? else {
        return Ok(StoreError::NotFound(key));
    };
    let actual = read_version(&row, &key)?;
    Ok(match expected {
        Some(expected) => StoreError::Conflict { key, expected, actual },
        // Unreachable inside one transaction; said plainly should it happen.
        None => StoreError::Backend(format!("{key} exists but was not updated; try again")),
    })
}

fn read_version(row: &SqliteRow, key: &ResourceKey) -> Result<u64, StoreError> {
    version_from_column(key, row.try_get("version").map_err(backend)?)
}

fn read_row(row: &SqliteRow) -> Result<ResourceRow, StoreError> {
    let column = |name: &str| row.try_get::<String, _>(name).map_err(backend);
    Ok(ResourceRow {
        kind: column("type")?,
        mesh: column("mesh")?,
        name: column("name")?,
        version: row.try_get("version").map_err(backend)?,
        labels: column("labels")?,
        body: column("body")?,
        creation_time: column("creation_time")?,
        modification_time: column("modification_time")?,
    })
}

/// Appends the WHERE clause of a list query. Label keys were checked, so
/// they are safe inside a JSON path.
fn push_filters(builder: &mut QueryBuilder<'_, Sqlite>, query: &ListQuery) {
    builder.push(" WHERE type = ").push_bind(query.kind.name());
    if let Some(mesh) = &query.mesh {
        builder.push(" AND mesh = ").push_bind(mesh.clone());
    }
    if let Some(name) = &query.name_contains {
        builder.push(" AND instr(name, ").push_bind(name.clone()).push(") > 0");
    }
    for (key, value) in &query.labels {
        builder.push(" AND json_extract(labels, ").push_bind(format!("$.\"{key}\""));
        builder.push(") = ").push_bind(value.clone());
    }
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}
