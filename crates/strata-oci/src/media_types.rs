//! Media types of the OCI image spec and of Docker's image manifest v2 schema 2, and helpers
//! that classify them.
//!
//! Helpers accept values as they arrive in a `Content-Type` header: parameters
//! (`; charset=utf-8`) and surrounding spaces are ignored, and comparison is ASCII
//! case-insensitive as RFC 6838 requires.

// OCI image spec.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_NONDISTRIBUTABLE_TAR: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// The `{}` blob used as a placeholder config or layer by artifacts.
pub const OCI_EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
pub const OCI_LAYOUT_HEADER: &str = "application/vnd.oci.layout.header.v1+json";

// Docker image manifest v2, schema 2.
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Uncompressed Docker layers: rare, but written by some tools (and accepted by containerd).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// zstd Docker layers: not in the schema 2 text, but written by Docker/BuildKit with zstd.
pub const DOCKER_LAYER_TAR_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// Layers that must be fetched from their `urls` (Windows base layers).
pub const DOCKER_FOREIGN_LAYER_TAR_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

// Docker manifest schema 1: recognised only so it can be refused by name.
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_TAR_GZIP,
            Compression::Zstd => OCI_LAYER_TAR_ZSTD,
        }
    }

    /// The Docker schema 2 layer media type for this compression.
    pub fn docker_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => DOCKER_LAYER_TAR,
            Compression::Gzip => DOCKER_LAYER_TAR_GZIP,
            Compression::Zstd => DOCKER_LAYER_TAR_ZSTD,
        }
    }
}

/// The media type without parameters or surrounding spaces, lower-cased only if needed.
pub fn essence(media_type: &str) -> std::borrow::Cow<'_, str> {
    let bare = media_type.split(';').next().unwrap_or("").trim();
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(bare.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(bare)
    }
}

/// An image manifest (OCI or Docker schema 2), not an index.
pub fn is_manifest(media_type: &str) -> bool {
    matches!(&*essence(media_type), OCI_MANIFEST | DOCKER_MANIFEST_V2)
}

/// An index of manifests (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    matches!(&*essence(media_type), OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// Docker's schema 1 manifests, which Strata refuses.
pub fn is_schema1(media_type: &str) -> bool {
    matches!(&*essence(media_type), DOCKER_MANIFEST_V1 | DOCKER_MANIFEST_V1_SIGNED)
}

/// An image configuration (OCI or Docker).
pub fn is_config(media_type: &str) -> bool {
    matches!(&*essence(media_type), OCI_CONFIG | DOCKER_CONFIG)
}

/// A filesystem layer of any known kind, distributable or not.
pub fn is_layer(media_type: &str) -> bool {
    layer_compression(media_type).is_some()
}

/// A layer that registries may refuse to host and that is fetched from its `urls` instead.
pub fn is_nondistributable_layer(media_type: &str) -> bool {
    matches!(
        &*essence(media_type),
        OCI_LAYER_NONDISTRIBUTABLE_TAR
            | OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP
            | OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD
            | DOCKER_FOREIGN_LAYER_TAR_GZIP
    )
}

/// The compression of a layer media type, or `None` when it is not a layer type.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match &*essence(media_type) {
        OCI_LAYER_TAR | OCI_LAYER_NONDISTRIBUTABLE_TAR | DOCKER_LAYER_TAR => {
            Some(Compression::None)
        }
        OCI_LAYER_TAR_GZIP
        | OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP
        | DOCKER_LAYER_TAR_GZIP
        | DOCKER_FOREIGN_LAYER_TAR_GZIP => Some(Compression::Gzip),
        OCI_LAYER_TAR_ZSTD | OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD | DOCKER_LAYER_TAR_ZSTD => {
            Some(Compression::Zstd)
        }
        _ => None,
    }
}

/// True for the Docker schema 2 family (manifest, list, config, layers).
pub fn is_docker(media_type: &str) -> bool {
    essence(media_type).starts_with("application/vnd.docker.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_manifests_and_indexes() {
        assert!(is_manifest(OCI_MANIFEST));
        assert!(is_manifest(DOCKER_MANIFEST_V2));
        assert!(!is_manifest(OCI_INDEX));
        assert!(is_index(OCI_INDEX));
        assert!(is_index(DOCKER_MANIFEST_LIST));
        assert!(!is_index(DOCKER_MANIFEST_V2));
        assert!(is_schema1(DOCKER_MANIFEST_V1_SIGNED));
        assert!(!is_manifest(DOCKER_MANIFEST_V1));
        assert!(is_config(DOCKER_CONFIG) && is_config(OCI_CONFIG));
        assert!(!is_config(OCI_EMPTY_JSON));
    }

    #[test]
    fn header_values_are_accepted() {
        // Registries send parameters and sometimes odd case.
        assert!(is_manifest("application/vnd.oci.image.manifest.v1+json; charset=utf-8"));
        assert!(is_index(" Application/VND.OCI.Image.Index.v1+json "));
        assert_eq!(essence("text/plain;x=y"), "text/plain");
    }

    #[test]
    fn layer_compressions() {
        let table = [
            (OCI_LAYER_TAR, Some(Compression::None)),
            (OCI_LAYER_TAR_GZIP, Some(Compression::Gzip)),
            (OCI_LAYER_TAR_ZSTD, Some(Compression::Zstd)),
            (OCI_LAYER_NONDISTRIBUTABLE_TAR, Some(Compression::None)),
            (OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP, Some(Compression::Gzip)),
            (OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD, Some(Compression::Zstd)),
            (DOCKER_LAYER_TAR, Some(Compression::None)),
            (DOCKER_LAYER_TAR_GZIP, Some(Compression::Gzip)),
            (DOCKER_LAYER_TAR_ZSTD, Some(Compression::Zstd)),
            (DOCKER_FOREIGN_LAYER_TAR_GZIP, Some(Compression::Gzip)),
            (OCI_CONFIG, None),
            (OCI_MANIFEST, None),
            (OCI_EMPTY_JSON, None),
            ("application/octet-stream", None),
        ];
        for (mt, want) in table {
            assert_eq!(layer_compression(mt), want, "{mt}");
            assert_eq!(is_layer(mt), want.is_some(), "{mt}");
        }
        assert!(is_nondistributable_layer(DOCKER_FOREIGN_LAYER_TAR_GZIP));
        assert!(!is_nondistributable_layer(OCI_LAYER_TAR_GZIP));
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(layer_compression(c.oci_layer_media_type()), Some(c));
            assert_eq!(layer_compression(c.docker_layer_media_type()), Some(c));
        }
    }

    #[test]
    fn constants_agree_with_oci_spec() {
        use oci_spec::image::MediaType;
        let pairs = [
            (MediaType::ImageManifest, OCI_MANIFEST),
            (MediaType::ImageIndex, OCI_INDEX),
            (MediaType::ImageConfig, OCI_CONFIG),
            (MediaType::ImageLayer, OCI_LAYER_TAR),
            (MediaType::ImageLayerGzip, OCI_LAYER_TAR_GZIP),
            (MediaType::ImageLayerZstd, OCI_LAYER_TAR_ZSTD),
            (MediaType::ImageLayerNonDistributable, OCI_LAYER_NONDISTRIBUTABLE_TAR),
            (MediaType::ImageLayerNonDistributableGzip, OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP),
            (MediaType::ImageLayerNonDistributableZstd, OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD),
            (MediaType::EmptyJSON, OCI_EMPTY_JSON),
            (MediaType::LayoutHeader, OCI_LAYOUT_HEADER),
        ];
        for (typed, s) in pairs {
            assert_eq!(typed.to_string(), s);
        }
        assert!(is_docker(DOCKER_CONFIG) && !is_docker(OCI_CONFIG));
    }
}
