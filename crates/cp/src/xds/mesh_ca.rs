//! The certificate authorities of mesh mTLS backends, as the control plane
//! keeps them: a `builtin` backend's root is generated once and kept in two
//! Secrets of the mesh (`<mesh>.ca-builtin-cert-<backend>` and
//! `<mesh>.ca-builtin-key-<backend>`, PEM, base64 in `data` like every
//! Secret); a `provided` backend's certificate and key are read from its data
//! sources and checked before use.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kodiak_api::mesh::{CaBackendView, CaKind, DataSource, builtin_cert_secret, builtin_key_secret};
use kodiak_api::{Resource, ResourceKey, ResourceType};
use kodiak_ca::{Ca, CaError, KeyKind, RootCa};
use kodiak_store::{ResourceStore, StoreError};

/// Why a backend's CA cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MeshCaError {
    /// One of a provided CA's sources cannot be read.
    #[error("the CA {part} of backend {backend:?} cannot be read: {reason}")]
    Source { backend: String, part: Part, reason: String },
    /// The certificate or key was read but is not a usable CA.
    #[error("backend {backend:?}: {error}")]
    Invalid { backend: String, part: Part, error: CaError },
    /// A builtin CA's certificate Secret exists without its key: no
    /// certificate can be signed with it.
    #[error(
        "the builtin CA of backend {backend:?} is incomplete: Secret {present:?} exists but {missing:?} does not; \
         restore {missing:?}, or remove the backend from mtls.backends and then delete {present:?} to have a new CA \
         generated"
    )]
    Incomplete { backend: String, present: String, missing: String },
    /// A builtin CA's Secrets were deleted while it was being stored.
    #[error(
        "the builtin CA of backend {backend:?} changed while it was being stored; it is read again on the next change"
    )]
    Contended { backend: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which half of a CA a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Cert,
    Key,
}

impl Part {
    /// The field of a provided backend's `conf` that holds this part.
    pub fn field(self) -> &'static str {
        match self {
            Part::Cert => "cert",
            Part::Key => "key",
        }
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Cert => "certificate",
            Part::Key => "key",
        })
    }
}

impl MeshCaError {
    /// The part of the backend the error is about, when it is one of them.
    pub fn part(&self) -> Option<Part> {
        match self {
            MeshCaError::Source { part, .. } | MeshCaError::Invalid { part, .. } => Some(*part),
            _ => None,
        }
    }
}

/// The part of a CA that an error of the CA crate is about.
fn part_of(error: &CaError) -> Part {
    match error {
        CaError::KeyPem { .. } | CaError::KeyMismatch { .. } => Part::Key,
        _ => Part::Cert,
    }
}

/// Loads the CA of `backend` in `mesh`: a builtin one from its Secrets
/// (generated first when they do not exist yet), a provided one from its
/// sources (checked: a CA, key matching, valid now).
pub async fn load(store: &dyn ResourceStore, mesh: &str, backend: &CaBackendView) -> Result<Ca, MeshCaError> {
    match &backend.kind {
        CaKind::Builtin { rsa_bits, lifetime } => ensure_builtin(store, mesh, backend, *rsa_bits, *lifetime).await,
        CaKind::Provided { cert, key } => load_provided(store, mesh, &backend.name, cert, key).await,
    }
}

/// A provided CA from its two sources, checked at `now`.
pub async fn load_provided(
    store: &dyn ResourceStore,
    mesh: &str,
    backend: &str,
    cert: &DataSource,
    key: &DataSource,
) -> Result<Ca, MeshCaError> {
    let cert_pem = read_part(store, mesh, backend, Part::Cert, cert).await?;
    let key_pem = read_part(store, mesh, backend, Part::Key, key).await?;
    Ca::from_pem(&cert_pem, &key_pem, SystemTime::now()).map_err(|error| MeshCaError::Invalid {
        backend: backend.to_owned(),
        part: part_of(&error),
        error,
    })
}

async fn read_part(
    store: &dyn ResourceStore,
    mesh: &str,
    backend: &str,
    part: Part,
    source: &DataSource,
) -> Result<String, MeshCaError> {
    read_source(store, mesh, source).await.map_err(|reason| match reason {
        SourceError::Store(error) => MeshCaError::Store(error),
        SourceError::Unreadable(reason) => MeshCaError::Source { backend: backend.to_owned(), part, reason },
    })
}

/// Why a data source gives no text.
#[derive(Debug)]
pub enum SourceError {
    Unreadable(String),
    Store(StoreError),
}

/// The text a data source holds (a Secret of `mesh`, a file on this machine,
/// base64 bytes or a string).
pub async fn read_source(store: &dyn ResourceStore, mesh: &str, source: &DataSource) -> Result<String, SourceError> {
    let bytes = match source {
        DataSource::Secret(name) => {
            let key = ResourceKey::new(ResourceType::Secret, Some(mesh), name);
            let secret = store.get(&key).await.map_err(SourceError::Store)?.ok_or_else(|| {
                SourceError::Unreadable(format!("Secret {name:?} does not exist in mesh {mesh:?}; create it first"))
            })?;
            secret_data(&secret).map_err(SourceError::Unreadable)?
        }
        DataSource::File(path) => {
            let file = path.clone();
            tokio::task::spawn_blocking(move || read_regular_file(&file))
                .await
                .map_err(|e| SourceError::Unreadable(format!("reading file {path:?} stopped: {e}")))?
                .map_err(SourceError::Unreadable)?
        }
        DataSource::Inline(text) => {
            STANDARD.decode(text).map_err(|e| SourceError::Unreadable(format!("inline is not base64: {e}")))?
        }
        DataSource::InlineString(text) => text.clone().into_bytes(),
    };
    String::from_utf8(bytes).map_err(|_| SourceError::Unreadable("the data is not PEM text (not UTF-8)".into()))
}

/// The most a `file` source may hold.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The bytes of the regular file at `path`, at most [`MAX_FILE_BYTES`]. It
/// is opened without waiting (a FIFO cannot hang the caller) and checked
/// after opening, so it cannot be swapped for a device in between. Whether
/// it is missing, unreadable or no regular file is told the same way.
fn read_regular_file(path: &str) -> Result<Vec<u8>, String> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read;
    let refused = || format!("cannot read file {path:?} on the control plane: it must be a readable regular file");
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let file = std::fs::File::from(rustix::fs::open(path, flags, Mode::empty()).map_err(|_| refused())?);
    if !file.metadata().is_ok_and(|metadata| metadata.is_file()) {
        return Err(refused());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|_| refused())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "file {path:?} holds more than {MAX_FILE_BYTES} bytes (1 MiB), the most a CA file may hold"
        ));
    }
    Ok(bytes)
}

pub use crate::secrets::data as secret_data;

/// A Secret of `mesh` holding `text`.
fn secret(mesh: &str, name: &str, text: &str) -> Result<Resource, StoreError> {
    crate::secrets::new(ResourceType::Secret, Some(mesh), name, text.as_bytes())
}

/// The key a builtin root is generated with: ECDSA P-256 unless the backend
/// asks for RSA (`caCert.RSAbits`).
pub fn root_key_kind(rsa_bits: Option<u32>) -> KeyKind {
    match rsa_bits {
        None => KeyKind::EcdsaP256,
        Some(4096) => KeyKind::Rsa4096,
        Some(3072) => KeyKind::Rsa3072,
        Some(_) => KeyKind::Rsa2048,
    }
}

/// The builtin CA of `backend`: read from its Secrets, or generated and
/// stored when neither exists. Never regenerated while they exist. When
/// only the key Secret exists (a generation stopped half-way), a new root
/// certificate is signed for that key. Safe when control planes do this at
/// the same moment: the first Secret stored wins and is read back; nothing
/// waits for another control plane.
async fn ensure_builtin(
    store: &dyn ResourceStore,
    mesh: &str,
    backend: &CaBackendView,
    rsa_bits: Option<u32>,
    lifetime: std::time::Duration,
) -> Result<Ca, MeshCaError> {
    let cert_name = builtin_cert_secret(mesh, &backend.name);
    let key_name = builtin_key_secret(mesh, &backend.name);
    // Each pass either returns or lost a race to a Secret stored meanwhile,
    // which the next pass reads; only Secrets deleted as fast end the passes.
    for _ in 0..3 {
        let (mesh_name, backend_name) = (mesh.to_owned(), backend.name.clone());
        let invalid = |error| MeshCaError::Invalid { backend: backend.name.clone(), part: Part::Cert, error };
        match read_builtin(store, mesh, &backend.name).await? {
            Stored::Whole(ca) => return Ok(*ca),
            Stored::KeyOnly(key_pem) => {
                let signed = blocking(move || {
                    RootCa::with_key(&mesh_name, &backend_name, &key_pem, lifetime, SystemTime::now())
                })
                .await?
                .map_err(invalid)?;
                match store.create(secret(mesh, &cert_name, signed.cert_pem())?).await {
                    Ok(_) => {
                        tracing::warn!(mesh, backend = %backend.name, subject = signed.subject(), "the builtin CA's certificate Secret was missing: signed a new root certificate for its stored key");
                        return Ok(signed);
                    }
                    Err(StoreError::AlreadyExists(_)) => continue,
                    Err(other) => return Err(other.into()),
                }
            }
            Stored::Nothing => {
                let generated = blocking(move || {
                    RootCa::generate(&mesh_name, &backend_name, root_key_kind(rsa_bits), lifetime, SystemTime::now())
                })
                .await?
                .map_err(invalid)?;
                // The key goes first: a certificate Secret is only ever there with its key.
                let stored = match store.create(secret(mesh, &key_name, generated.key_pem())?).await {
                    Ok(_) => store.create(secret(mesh, &cert_name, generated.cert_pem())?).await,
                    Err(error) => Err(error),
                };
                match stored {
                    Ok(_) => {
                        tracing::info!(mesh, backend = %backend.name, subject = generated.subject(), "generated the builtin CA of an mTLS backend");
                        return Ok(generated);
                    }
                    Err(StoreError::AlreadyExists(_)) => continue,
                    Err(other) => return Err(other.into()),
                }
            }
        }
    }
    Err(MeshCaError::Contended { backend: backend.name.clone() })
}

/// Runs CPU-heavy key work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| StoreError::Backend(format!("CA generation stopped: {e}")))
}

/// What a builtin CA's Secrets hold.
enum Stored {
    Nothing,
    /// The key (PEM) without its certificate.
    KeyOnly(String),
    Whole(Box<Ca>),
}

/// The builtin CA as its Secrets hold it.
async fn read_builtin(store: &dyn ResourceStore, mesh: &str, backend: &str) -> Result<Stored, MeshCaError> {
    let (cert_name, key_name) = (builtin_cert_secret(mesh, backend), builtin_key_secret(mesh, backend));
    let get = |name: String| async move { store.get(&ResourceKey::new(ResourceType::Secret, Some(mesh), &name)).await };
    let (cert, key) = (get(cert_name.clone()).await?, get(key_name.clone()).await?);
    let text = |secret: &Resource, part: Part| {
        secret_data(secret)
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "not PEM text".to_owned()))
            .map_err(|reason| MeshCaError::Source { backend: backend.into(), part, reason })
    };
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(Stored::Nothing),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            return Err(MeshCaError::Incomplete { backend: backend.into(), present: cert_name, missing: key_name });
        }
        (None, Some(key)) => return Ok(Stored::KeyOnly(text(&key, Part::Key)?)),
    };
    let (cert_pem, key_pem) = (text(&cert, Part::Cert)?, text(&key, Part::Key)?);
    Ca::from_pem(&cert_pem, &key_pem, SystemTime::now())
        .map(|ca| Stored::Whole(Box::new(ca)))
        .map_err(|error| MeshCaError::Invalid { backend: backend.into(), part: part_of(&error), error })
}

#[cfg(test)]
mod tests {
    use kodiak_api::mesh::MtlsView;
    use kodiak_store::MemoryStore;

    use super::*;

    async fn store_with_mesh(yaml: &str) -> (MemoryStore, MtlsView) {
        let store = MemoryStore::new();
        let mesh = Resource::from_document(&kodiak_api::parse_document(yaml).unwrap()).unwrap();
        let view = MtlsView::of(&mesh.body);
        store.create(mesh).await.unwrap();
        (store, view)
    }

    #[tokio::test]
    async fn a_builtin_ca_is_generated_once_and_read_back_after() {
        let (store, view) =
            store_with_mesh("{type: Mesh, name: m, mtls: {backends: [{name: ca-1, type: builtin}]}}").await;
        let first = load(&store, "m", &view.backends[0]).await.unwrap();
        let cert = store.get(&ResourceKey::new(ResourceType::Secret, Some("m"), "m.ca-builtin-cert-ca-1")).await;
        let cert = cert.unwrap().expect("the certificate Secret exists");
        assert_eq!(String::from_utf8(secret_data(&cert).unwrap()).unwrap(), first.cert_pem());
        let again = load(&store, "m", &view.backends[0]).await.unwrap();
        assert_eq!(again.cert_pem(), first.cert_pem(), "never regenerated while the Secrets exist");
        assert_eq!(again.key_pem(), first.key_pem());
    }

    #[tokio::test]
    async fn concurrent_generations_agree_on_one_ca() {
        let (store, view) =
            store_with_mesh("{type: Mesh, name: m, mtls: {backends: [{name: ca-1, type: builtin}]}}").await;
        let backend = &view.backends[0];
        let (a, b) = tokio::join!(load(&store, "m", backend), load(&store, "m", backend));
        assert_eq!(a.unwrap().cert_pem(), b.unwrap().cert_pem());
    }

    #[tokio::test]
    async fn half_a_builtin_ca_is_reported_with_what_to_delete() {
        let (store, view) =
            store_with_mesh("{type: Mesh, name: m, mtls: {backends: [{name: ca-1, type: builtin}]}}").await;
        store.create(secret("m", "m.ca-builtin-cert-ca-1", "x").unwrap()).await.unwrap();
        let error = load(&store, "m", &view.backends[0]).await.unwrap_err();
        assert!(matches!(error, MeshCaError::Incomplete { .. }), "{error}");
        assert!(error.to_string().contains("delete \"m.ca-builtin-cert-ca-1\""), "{error}");
    }

    #[tokio::test]
    async fn a_file_source_is_a_regular_file_of_at_most_one_mebibyte() {
        let (store, _) = store_with_mesh("{type: Mesh, name: m}").await;
        let dir = tempfile::tempdir().unwrap();
        let read = |path: std::path::PathBuf| {
            let store = &store;
            async move {
                let source = DataSource::File(path.display().to_string());
                let read = tokio::time::timeout(std::time::Duration::from_secs(5), read_source(store, "m", &source));
                match read.await.expect("reading a file source never hangs") {
                    Ok(text) => Ok(text.len()),
                    Err(SourceError::Unreadable(reason)) => Err(reason),
                    Err(SourceError::Store(error)) => panic!("{error}"),
                }
            }
        };
        let full = dir.path().join("full.pem");
        std::fs::write(&full, "a".repeat(MAX_FILE_BYTES as usize)).unwrap();
        assert_eq!(read(full).await, Ok(1024 * 1024));

        let over = dir.path().join("over.pem");
        std::fs::write(&over, "a".repeat(MAX_FILE_BYTES as usize + 1)).unwrap();
        let error = read(over).await.unwrap_err();
        assert!(error.contains("more than 1048576 bytes (1 MiB)"), "{error}");

        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::RUSR, 0).unwrap();
        let refused = |path: &std::path::Path| {
            format!(
                "cannot read file {:?} on the control plane: it must be a readable regular file",
                path.display().to_string()
            )
        };
        assert_eq!(read(fifo.clone()).await, Err(refused(&fifo)));
        for path in ["/dev/zero".into(), dir.path().to_path_buf(), dir.path().join("missing")] {
            assert_eq!(read(path.clone()).await, Err(refused(&path)), "{}", path.display());
        }

        let error = load_provided(
            &store,
            "m",
            "ca",
            &DataSource::InlineString("x".into()),
            &DataSource::File("/dev/zero".into()),
        )
        .await
        .unwrap_err();
        assert_eq!(error.part(), Some(Part::Key), "{error}");
        assert!(
            error.to_string().starts_with("the CA key of backend \"ca\" cannot be read: cannot read file"),
            "{error}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_left_without_its_certificate_gets_a_new_root_certificate_at_once() {
        let (store, view) =
            store_with_mesh("{type: Mesh, name: m, mtls: {backends: [{name: ca-1, type: builtin}]}}").await;
        let backend = &view.backends[0];
        let first = load(&store, "m", backend).await.unwrap();
        let cert_key = ResourceKey::new(ResourceType::Secret, Some("m"), "m.ca-builtin-cert-ca-1");
        store.delete(&cert_key).await.unwrap();

        // A paused clock: any wait inside would be seen as time passing.
        let started = tokio::time::Instant::now();
        let (a, b) = tokio::join!(load(&store, "m", backend), load(&store, "m", backend));
        assert_eq!(tokio::time::Instant::now(), started, "nothing waited");
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.cert_pem(), b.cert_pem(), "racing control planes agree on one certificate");
        assert_eq!(a.key_pem(), first.key_pem(), "the stored key is kept");
        assert_ne!(a.cert_pem(), first.cert_pem());
        let stored = store.get(&cert_key).await.unwrap().expect("the certificate Secret is stored again");
        assert_eq!(String::from_utf8(secret_data(&stored).unwrap()).unwrap(), a.cert_pem());
        assert_eq!(load(&store, "m", backend).await.unwrap().cert_pem(), a.cert_pem(), "and read back after");
    }

    #[tokio::test]
    async fn a_provided_ca_is_read_from_every_kind_of_source_and_checked() {
        let root =
            RootCa::generate("m", "ca", KeyKind::EcdsaP256, std::time::Duration::from_secs(3600), SystemTime::now())
                .unwrap();
        let (store, _) = store_with_mesh("{type: Mesh, name: m}").await;
        store.create(secret("m", "cert", root.cert_pem()).unwrap()).await.unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), root.key_pem()).unwrap();
        let cert = DataSource::Secret("cert".into());
        let ok = load_provided(&store, "m", "ca", &cert, &DataSource::File(file.path().display().to_string())).await;
        assert_eq!(ok.unwrap().cert_pem(), root.cert_pem());
        let inline = DataSource::Inline(STANDARD.encode(root.key_pem()));
        assert!(load_provided(&store, "m", "ca", &cert, &inline).await.is_ok());

        let other =
            RootCa::generate("m", "x", KeyKind::EcdsaP256, std::time::Duration::from_secs(3600), SystemTime::now())
                .unwrap();
        let mismatch = load_provided(&store, "m", "ca", &cert, &DataSource::InlineString(other.key_pem().into())).await;
        let error = mismatch.unwrap_err();
        assert_eq!(error.part(), Some(Part::Key), "{error}");
        assert!(error.to_string().contains("does not match"), "{error}");
        let missing = load_provided(&store, "m", "ca", &DataSource::Secret("nope".into()), &inline).await.unwrap_err();
        assert_eq!(missing.part(), Some(Part::Cert), "{missing}");
        assert!(missing.to_string().contains("\"nope\" does not exist in mesh \"m\""), "{missing}");
    }
}
