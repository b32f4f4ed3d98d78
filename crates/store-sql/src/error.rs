use std::path::PathBuf;

/// Why a store's database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("could not create data directory {}: {source}; check that Kodiak may write to its parent", path.display())]
    CreateDirectory { path: PathBuf, source: std::io::Error },
    #[error("could not create database {}: {source}; check that Kodiak may write to the data directory", path.display())]
    CreateDatabase { path: PathBuf, source: std::io::Error },
    #[error("could not open database {}: {source}; check the file's permissions and that the disk is not full", path.display())]
    Connect { path: PathBuf, source: sqlx::Error },
    #[error(
        "could not bring database {} up to date: {source}; if a newer Kodiak wrote it, run that version or start from a fresh data directory",
        path.display()
    )]
    Migrate { path: PathBuf, source: sqlx::migrate::MigrateError },
}
