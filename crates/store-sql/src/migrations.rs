//! The schema as numbered migrations compiled into the binary, so an
//! upgraded Kodiak brings its database along when it starts.

use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};

/// (version, description, SQL) of each SQLite migration, oldest first.
/// Never edit a released one: sqlx refuses a database whose applied
/// migration's checksum changed. Add the next number instead.
const SQLITE: &[(i64, &str, &str)] = &[(1, "resources", include_str!("../migrations/sqlite/0001_resources.sql"))];

/// The migrator for SQLite databases.
pub(crate) async fn sqlite() -> Result<Migrator, MigrateError> {
    Migrator::new(Embedded(SQLITE)).await
}

/// Migrations held in the binary (sqlx's own `migrate!` needs its macros).
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(version, description.into(), MigrationType::Simple, sql.into(), false)
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}
