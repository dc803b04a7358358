//! The OCI and Docker image model shared by every Strata crate.

pub mod config;
pub mod descriptor;
pub mod digest;
pub mod json;
pub mod manifest;
pub mod media_types;
pub mod platform;
pub mod reference;

pub use config::{
    ConfigError, ContainerConfig, Healthcheck, History, ImageConfig, ImageConfigBuilder,
};
pub use descriptor::{descriptor_digest, new_descriptor};
pub use digest::{Digest, DigestError, DigestReader, DigestWriter, Hasher};
pub use json::canonical_json;
pub use manifest::{new_image_manifest, new_index, Manifest, ManifestError, RawManifest};
pub use media_types::Compression;
pub use oci_spec;
pub use platform::{select, Platform, PlatformError};
pub use reference::{Reference, ReferenceError};
