//! The folder that holds one sidecar's files (bootstrap.json, Envoy's
//! admin address). A default one is fresh per instance, so sidecars on one
//! host never share it, and removed on exit.

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Debug)]
pub enum WorkDir {
    /// Created by kodiak-dp under $TMPDIR; removed when dropped.
    Temporary(tempfile::TempDir),
    /// Given with --work-dir; kept, so its files can be inspected afterwards.
    Given(PathBuf),
}

impl WorkDir {
    pub fn create(given: Option<PathBuf>, mesh: &str, name: &str) -> anyhow::Result<Self> {
        match given {
            Some(dir) => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create the work directory {}", dir.display()))?;
                Ok(Self::Given(dir))
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("kodiak-dp-{mesh}.{name}-"))
                    .tempdir()
                    .context("cannot create a work directory under $TMPDIR (set TMPDIR or --work-dir)")?;
                Ok(Self::Temporary(dir))
            }
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Self::Temporary(dir) => dir.path(),
            Self::Given(dir) => dir,
        }
    }
}
