//! Where the control plane's certificate comes from: the files the user
//! names, else `kodiak-cp.crt` and `kodiak-cp.key` in the data directory,
//! generated there on the first start and reused on every later one.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

use super::generate::generate;

/// The generated certificate chain in the data directory; also what
/// `kodiak-dp --ca-cert-file` is given.
pub const CERT_FILE: &str = "kodiak-cp.crt";
/// The generated certificate's private key in the data directory.
pub const KEY_FILE: &str = "kodiak-cp.key";

/// A certificate and its key as PEM text, and where they were found.
#[derive(Clone)]
pub struct CertPair {
    pub chain_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub origin: Origin,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair").field("cert_path", &self.cert_path).field("origin", &self.origin).finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `general.tlsCertFile` and `general.tlsKeyFile`.
    Configured,
    /// Generated in the data directory by this start.
    Generated,
    /// Generated in the data directory by an earlier start.
    Reused,
}

/// Reads the user's certificate and key.
pub fn read_configured(cert_path: &Path, key_path: &Path) -> anyhow::Result<CertPair> {
    let read = |path: &Path, setting: &str| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {setting} {}", path.display()))
    };
    Ok(CertPair {
        chain_pem: read(cert_path, "general.tlsCertFile")?,
        key_pem: read(key_path, "general.tlsKeyFile")?,
        cert_path: cert_path.to_owned(),
        key_path: key_path.to_owned(),
        origin: Origin::Configured,
    })
}

/// The certificate in `dir`, generated for `names` when there is none yet.
/// Control planes starting together on one directory end up with the same
/// certificate: files are published with a link that fails if one exists.
pub fn load_or_generate(dir: &Path, names: &[String], now: SystemTime) -> anyhow::Result<CertPair> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let mut waited = Duration::ZERO;
    loop {
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let read = |path: &Path| {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read the control plane's TLS file {}", path.display()))
                };
                return Ok(CertPair {
                    chain_pem: read(&cert_path)?,
                    key_pem: read(&key_path)?,
                    cert_path,
                    key_path,
                    origin: Origin::Reused,
                });
            }
            (false, false) => {
                if let Some(pair) = publish_new(dir, &cert_path, &key_path, names, now)? {
                    return Ok(pair);
                }
            }
            // Another control plane is between its two links; give it a moment.
            _ if waited < Duration::from_secs(2) => {
                std::thread::sleep(Duration::from_millis(50));
                waited += Duration::from_millis(50);
            }
            (cert, _) => {
                let (found, missing) = if cert { (&cert_path, &key_path) } else { (&key_path, &cert_path) };
                bail!(
                    "found {} but not {}: restore the missing file, or delete both to have a new certificate generated (sidecars then need the new {CERT_FILE} as --ca-cert-file)",
                    found.display(),
                    missing.display()
                );
            }
        }
    }
}

/// Generates a certificate and links it into place; `None` when another
/// control plane published one first.
fn publish_new(
    dir: &Path,
    cert_path: &Path,
    key_path: &Path,
    names: &[String],
    now: SystemTime,
) -> anyhow::Result<Option<CertPair>> {
    match std::fs::metadata(dir) {
        // The user's directory keeps the mode they gave it: the key file
        // itself is readable by its owner only.
        Ok(existing) => tracing::debug!(
            data_dir = %dir.display(),
            mode = format_args!("{:04o}", existing.permissions().mode() & 0o7777),
            "writing the generated TLS certificate into the existing data directory"
        ),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?,
    }
    let generated = generate(names, now).context("cannot generate the control plane's TLS certificate")?;
    let suffix = format!("{}.{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let key_tmp = dir.join(format!(".{KEY_FILE}.{suffix}"));
    let cert_tmp = dir.join(format!(".{CERT_FILE}.{suffix}"));
    let result = (|| {
        write_new(&key_tmp, &generated.key_pem, KEY_MODE)?;
        write_new(&cert_tmp, &generated.chain_pem, CERT_MODE)?;
        for (tmp, path) in [(&key_tmp, key_path), (&cert_tmp, cert_path)] {
            match std::fs::hard_link(tmp, path) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::AlreadyExists => return Ok(false),
                Err(error) => return Err(error).with_context(|| format!("cannot create {}", path.display())),
            }
        }
        Ok(true)
    })();
    let _ = std::fs::remove_file(&key_tmp);
    let _ = std::fs::remove_file(&cert_tmp);
    Ok(result?.then(|| CertPair {
        chain_pem: generated.chain_pem,
        key_pem: generated.key_pem,
        cert_path: cert_path.to_owned(),
        key_path: key_path.to_owned(),
        origin: Origin::Generated,
    }))
}

/// The private key: its owner only.
const KEY_MODE: u32 = 0o600;
/// The certificate holds no secret; other local users (a sidecar run by
/// another account) read it as their `--ca-cert-file`.
const CERT_MODE: u32 = 0o644;

/// A new file with exactly `mode` (whatever the umask).
fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into()]
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn generated_once_then_reused_with_a_private_key_and_a_readable_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = load_or_generate(&data, &names(), SystemTime::now()).unwrap();
        assert_eq!(first.origin, Origin::Generated);
        assert_eq!(mode(&data), 0o700, "a directory made here is its owner's only");
        assert_eq!(mode(&data.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&data.join(CERT_FILE)), 0o644);
        let second = load_or_generate(&data, &names(), SystemTime::now()).unwrap();
        assert_eq!(second.origin, Origin::Reused);
        assert_eq!((second.chain_pem, second.key_pem), (first.chain_pem, first.key_pem));
        let leftovers: Vec<_> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    #[test]
    fn an_existing_data_directory_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o751)).unwrap();
        load_or_generate(dir.path(), &names(), SystemTime::now()).unwrap();
        assert_eq!(mode(dir.path()), 0o751);
        assert_eq!((mode(&dir.path().join(KEY_FILE)), mode(&dir.path().join(CERT_FILE))), (0o600, 0o644));
    }

    #[test]
    fn starts_racing_on_one_directory_agree_on_one_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let pairs: Vec<CertPair> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                (0..4).map(|_| scope.spawn(|| load_or_generate(dir.path(), &names(), SystemTime::now()))).collect();
            handles.into_iter().map(|handle| handle.join().unwrap().unwrap()).collect()
        });
        let on_disk = std::fs::read_to_string(dir.path().join(CERT_FILE)).unwrap();
        assert!(pairs.iter().all(|pair| pair.chain_pem == on_disk));
        assert_eq!(pairs.iter().filter(|pair| pair.origin == Origin::Generated).count(), 1);
    }

    #[test]
    fn a_lone_file_is_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CERT_FILE), "x").unwrap();
        let error = load_or_generate(dir.path(), &names(), SystemTime::now()).unwrap_err().to_string();
        assert!(error.contains(KEY_FILE) && error.contains(CERT_FILE) && error.contains("delete both"), "{error}");
    }
}
