//! The OCI and Docker image model shared by every Strata crate.

pub mod digest;

pub use digest::{Digest, DigestError, DigestReader, DigestWriter, Hasher};
pub use oci_spec;
