//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

use crate::compression::Compression;
use crate::limits::LimitExceeded;

/// Why reading, unpacking or writing a layer failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The blob uses a codec that OCI layers do not allow.
    #[error(
        "the layer is compressed with {format}, which OCI layers do not use: \
         recompress it with gzip or zstd (or leave it uncompressed)"
    )]
    UnsupportedCompression { format: &'static str },

    /// A media type that is not a layer media type this crate knows.
    #[error(
        "unknown layer media type {0:?}: expected application/vnd.oci.image.layer.v1.tar \
         (optionally +gzip or +zstd) or application/vnd.docker.image.rootfs.diff.tar.gzip"
    )]
    UnknownMediaType(String),

    /// The decompressed stream grew past a configured limit.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),

    /// An entry that would write outside the root, or otherwise abuse the extractor.
    /// Nothing after this entry has been written.
    #[error("refusing layer entry {path:?}: {reason}")]
    Unsafe { path: String, reason: String },

    /// An entry this crate cannot represent (unknown type, malformed whiteout, ...).
    #[error("layer entry {path:?}: {reason}")]
    BadEntry { path: String, reason: String },

    /// The tar stream itself is malformed or truncated.
    #[error("the layer tar stream is malformed {position}: {source}")]
    Tar { position: String, source: io::Error },

    /// A filesystem operation on a named path failed.
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },

    /// Reading or decompressing the input failed (I/O error, corrupt or truncated stream).
    #[error("reading the layer blob (compression: {compression}): {source}")]
    Read { compression: Compression, source: io::Error },

    /// Writing the produced layer to the caller's writer failed.
    #[error("writing the layer blob: {0}")]
    Write(io::Error),
}

impl LayerError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LayerError::Io { op, path: path.into(), source }
    }

    pub(crate) fn unsafe_entry(path: &str, reason: impl Into<String>) -> Self {
        LayerError::Unsafe { path: path.to_string(), reason: reason.into() }
    }

    pub(crate) fn bad_entry(path: &str, reason: impl Into<String>) -> Self {
        LayerError::BadEntry { path: path.to_string(), reason: reason.into() }
    }
}
