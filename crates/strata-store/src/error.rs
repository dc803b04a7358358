use std::path::PathBuf;

use strata_oci::Digest;

/// Everything that can go wrong in the store, each naming the object concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store database {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("blob {expected} failed verification: the content hashes to {actual} ({size} bytes)")]
    DigestMismatch { expected: Digest, actual: Digest, size: u64 },
    #[error("blob {digest} has {actual} bytes but {expected} were expected")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
    #[error("blob {0} is not in the store")]
    BlobMissing(Digest),
    #[error("No such image: {0}")]
    ImageNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("archive {archive}: {message}")]
    Archive { archive: String, message: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches a path and an action to I/O errors.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io { action, path: path.into(), source })
    }
}
