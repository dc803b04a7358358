//! Bridges between Strata's [`Digest`] and `oci-spec`'s descriptors, which are used as-is.

use oci_spec::image::{Descriptor, MediaType};

use crate::digest::{Digest, DigestError};

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        // A Strata digest is always a well-formed sha256 digest, which oci-spec accepts.
        d.hex()
            .parse::<oci_spec::image::Sha256Digest>()
            .map(Into::into)
            .expect("a valid sha256 digest is accepted by oci-spec")
    }
}

impl From<Digest> for oci_spec::image::Digest {
    fn from(d: Digest) -> Self {
        (&d).into()
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;
    /// Fails for algorithms other than sha256, which Strata does not store.
    fn try_from(d: &oci_spec::image::Digest) -> Result<Digest, DigestError> {
        d.to_string().parse()
    }
}

/// A descriptor for a blob of `media_type` with `digest` and `size`.
pub fn new_descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor::new(MediaType::from(media_type), size, digest)
}

/// The descriptor's digest as a Strata digest (sha256 only).
pub fn descriptor_digest(descriptor: &Descriptor) -> Result<Digest, DigestError> {
    Digest::try_from(descriptor.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_through_oci_spec() {
        let d = Digest::sha256_of(b"hello");
        let desc = new_descriptor(crate::media_types::OCI_LAYER_TAR_GZIP, &d, 5);
        assert_eq!(desc.digest().to_string(), d.to_string());
        assert_eq!(descriptor_digest(&desc).unwrap(), d);
        assert_eq!(desc.media_type().to_string(), crate::media_types::OCI_LAYER_TAR_GZIP);
        assert_eq!(desc.size(), 5);

        let sha512: oci_spec::image::Digest =
            format!("sha512:{}", "a".repeat(128)).parse().unwrap();
        assert!(matches!(Digest::try_from(&sha512), Err(DigestError::UnsupportedAlgorithm(..))));
    }
}
