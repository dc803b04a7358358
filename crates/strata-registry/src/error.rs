use strata_oci::Digest;

/// Everything the registry client can fail with; each names the registry object concerned.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: the registry answered {status}{detail}")]
    Status { url: String, status: u16, detail: String },
    #[error("authentication required for {registry}: {message}")]
    Unauthorized { registry: String, message: String },
    #[error("{what} not found: {name}")]
    NotFound { what: &'static str, name: String },
    #[error("digest mismatch for {what}: expected {expected}, the registry sent content hashing to {actual}; nothing was stored")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error(
        "size mismatch for {what}: expected {expected} bytes, got {actual}; nothing was stored"
    )]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("invalid manifest {name}: {message}")]
    InvalidManifest { name: String, message: String },
    #[error("no manifest in {name} matches platform {platform}")]
    NoPlatform { name: String, platform: String },
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] strata_store::StoreError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    pub(crate) fn io(
        action: &'static str,
        path: impl std::fmt::Display,
        source: std::io::Error,
    ) -> Self {
        RegistryError::Io { action, path: path.to_string(), source }
    }
}
