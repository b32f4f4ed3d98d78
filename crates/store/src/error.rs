use kodiak_api::ResourceKey;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    AlreadyExists(ResourceKey),
    #[error("{0} does not exist")]
    NotFound(ResourceKey),
    #[error("mesh {0:?} does not exist; create the Mesh first")]
    MeshNotFound(String),
    #[error(
        "{key} was changed by someone else: expected version {expected}, stored version is {actual}; read it again and retry"
    )]
    Conflict { key: ResourceKey, expected: u64, actual: u64 },
    #[error("storage backend failed: {0}")]
    Backend(String),
}
