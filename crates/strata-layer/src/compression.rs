//! Which codec a layer blob uses: from its first bytes, or from its media type.

use crate::error::LayerError;

/// OCI layer media type of an uncompressed tar.
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer media type of a gzip-compressed tar.
pub const MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer media type of a zstd-compressed tar.
pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema2 layer media type (always gzip).
pub const DOCKER_MEDIA_TYPE_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker schema2 "foreign" layer (e.g. Windows base layers); gzip as well.
pub const DOCKER_MEDIA_TYPE_FOREIGN_LAYER: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// How many leading bytes [`detect`] needs to be certain.
pub const MAGIC_LEN: usize = 6;

/// A layer codec. OCI allows exactly these three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// The codec of a blob from its first bytes (pass at least [`MAGIC_LEN`] when available).
///
/// Anything that is not gzip or zstd is taken to be a plain tar, except bzip2 and xz, which
/// are recognised so the user gets "unsupported compression" instead of a tar parse error.
pub fn detect(head: &[u8]) -> Result<Compression, LayerError> {
    if head.starts_with(GZIP_MAGIC) {
        Ok(Compression::Gzip)
    } else if head.starts_with(ZSTD_MAGIC) || is_zstd_skippable_frame(head) {
        Ok(Compression::Zstd)
    } else if head.starts_with(BZIP2_MAGIC) {
        Err(LayerError::UnsupportedCompression { format: "bzip2" })
    } else if head.starts_with(XZ_MAGIC) {
        Err(LayerError::UnsupportedCompression { format: "xz" })
    } else {
        Ok(Compression::None)
    }
}

/// zstd streams may start with a skippable frame (magic 0x184D2A50..=0x184D2A5F, little
/// endian); the zstd decoder handles them, so they count as zstd.
fn is_zstd_skippable_frame(head: &[u8]) -> bool {
    head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18]
}

impl Compression {
    /// The OCI layer media type for a tar compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => MEDIA_TYPE_TAR,
            Compression::Gzip => MEDIA_TYPE_TAR_GZIP,
            Compression::Zstd => MEDIA_TYPE_TAR_ZSTD,
        }
    }

    /// The Docker schema2 layer media type, which exists for gzip only.
    pub fn docker_media_type(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some(DOCKER_MEDIA_TYPE_LAYER),
            Compression::None | Compression::Zstd => None,
        }
    }

    /// The codec a layer media type promises. Accepts the OCI types (including the
    /// deprecated non-distributable ones) and the Docker schema2 ones.
    pub fn from_media_type(media_type: &str) -> Result<Compression, LayerError> {
        let unknown = || LayerError::UnknownMediaType(media_type.to_string());
        if media_type == DOCKER_MEDIA_TYPE_LAYER || media_type == DOCKER_MEDIA_TYPE_FOREIGN_LAYER {
            return Ok(Compression::Gzip);
        }
        let rest = media_type
            .strip_prefix("application/vnd.oci.image.layer.v1.tar")
            .or_else(|| {
                media_type.strip_prefix("application/vnd.oci.image.layer.nondistributable.v1.tar")
            })
            .ok_or_else(unknown)?;
        match rest {
            "" => Ok(Compression::None),
            "+gzip" => Ok(Compression::Gzip),
            "+zstd" => Ok(Compression::Zstd),
            _ => Err(unknown()),
        }
    }

    /// A short lower-case name ("none", "gzip", "zstd") for messages and flags.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_real_encoder_output() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(detect(&gz).unwrap(), Compression::Gzip);

        let zst = zstd::encode_all(&b"hello"[..], 3).unwrap();
        assert_eq!(detect(&zst).unwrap(), Compression::Zstd);

        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("a").unwrap();
        h.set_size(0);
        h.set_cksum();
        tar.append(&h, &[][..]).unwrap();
        assert_eq!(detect(&tar.into_inner().unwrap()).unwrap(), Compression::None);
        assert_eq!(detect(b"").unwrap(), Compression::None);
    }

    #[test]
    fn skippable_zstd_frame_is_zstd() {
        assert_eq!(detect(&[0x5e, 0x2a, 0x4d, 0x18, 0, 0]).unwrap(), Compression::Zstd);
    }

    #[test]
    fn bzip2_and_xz_are_refused_by_name() {
        let err = detect(b"BZh91AY&SY").unwrap_err();
        assert!(err.to_string().contains("bzip2"), "{err}");
        let err = detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]).unwrap_err();
        assert!(err.to_string().contains("compressed with xz"), "{err}");
    }

    #[test]
    fn media_types_round_trip() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::from_media_type(c.oci_media_type()).unwrap(), c);
        }
        assert_eq!(
            Compression::from_media_type(DOCKER_MEDIA_TYPE_LAYER).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type(
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            )
            .unwrap(),
            Compression::Zstd
        );
        assert_eq!(Compression::Gzip.docker_media_type(), Some(DOCKER_MEDIA_TYPE_LAYER));
        assert_eq!(Compression::Zstd.docker_media_type(), None);
        let err =
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+lz4").unwrap_err();
        assert!(err.to_string().contains("+lz4"), "{err}");
        assert!(Compression::from_media_type("application/json").is_err());
    }
}
