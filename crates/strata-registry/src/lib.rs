//! The registry client: the OCI distribution protocol (Docker schema 2 and OCI manifests
//! and indexes), basic and bearer-token auth with Docker's `config.json` credentials,
//! parallel, verified and resumable blob transfers between a registry and the local store.
//!
//! Nothing unverified reaches the store: every blob is hashed while it streams into an
//! ingest file, its size bounded by its descriptor, and it is published only after its
//! digest (and, for layers, the diffID its config promises) matched.

pub mod auth;
pub mod client;
pub mod copy;
pub mod credentials;
pub mod error;
pub mod pull;
pub mod push;
pub mod transport;

pub use client::{Client, ClientOptions, CredentialSource};
pub use copy::{copy_image, Copied, CopyOptions};
pub use credentials::{Credentials, DockerConfig};
pub use error::{RegistryError, Result};
pub use pull::{pull_image, PullOptions, Pulled};
pub use push::{push_image, PushOptions, Pushed};
pub use transport::{copy_between, Transport, TransportCopied, TransportCopyOptions};

use strata_oci::Digest;

/// How a blob got where it had to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Pulled: downloaded and verified.
    Downloaded,
    /// Pulled: the store had it already.
    AlreadyPresent,
    /// Pushed: uploaded.
    Uploaded,
    /// Pushed: the registry had it already (HEAD).
    Exists,
    /// Pushed: mounted from another repository of the same registry.
    Mounted { from: String },
}

/// What a transfer reports as it goes; the CLI draws progress from these.
#[derive(Debug, Clone)]
pub enum Event {
    /// The manifest was resolved.
    Resolved { reference: String, digest: Digest },
    /// A blob transfer started.
    BlobStart { digest: Digest, size: u64 },
    /// Bytes transferred so far (throttled).
    BlobProgress { digest: Digest, done: u64, total: u64 },
    /// A blob is done.
    BlobDone { digest: Digest, size: u64, outcome: BlobOutcome },
    /// A request failed and is being retried.
    Retry { what: String, attempt: u32, error: String },
}

/// A runtime for the blocking callers (the CLI): a small multi-threaded tokio runtime.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8))
        .enable_all()
        .build()
        .map_err(|e| RegistryError::io("starting", "the async runtime", e))
}

/// Splits `strata_oci::Reference` into what the protocol needs: (registry, repository,
/// tag-or-digest), defaulting the tag to `latest`.
pub fn endpoint(reference: &strata_oci::Reference) -> (String, String, String) {
    let target = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => strata_oci::reference::DEFAULT_TAG.to_string(),
    };
    (reference.registry().to_string(), reference.repository().to_string(), target)
}
