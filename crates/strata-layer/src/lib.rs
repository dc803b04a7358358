//! OCI layer tarballs: compression detection, safe extraction with whiteouts, deterministic
//! writing.
//!
//! - [`compression`]: which codec a blob uses, from its magic bytes or media type.
//! - [`LayerReader`] / [`diff_id`]: a decompressing reader with decompression-bomb limits,
//!   and the diffID (sha256 of the uncompressed tar) of a blob.
//! - [`unpack()`]: extract a layer into a directory without ever writing outside it, applying
//!   whiteouts onto a full rootfs or converting them to overlayfs form.
//! - [`write_layer`]: a deterministic layer from a directory tree (e.g. an overlay upper dir),
//!   streamed through diffID hash -> compressor -> digest hash -> the caller's writer.

pub mod compression;
mod error;
mod limits;
mod reader;
pub mod unpack;
mod whiteout;
pub mod write;
mod xattrs;

pub use compression::Compression;
pub use error::LayerError;
pub use limits::{LimitExceeded, Limits};
pub use reader::{decompressor, diff_id, LayerDigests, LayerReader};
pub use unpack::{unpack, UnpackMode, UnpackOptions, UnpackStats};
pub use write::{write_layer, LayerDescriptor, WriteOptions};
