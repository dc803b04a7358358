//! Image manifests and indexes, OCI or Docker schema 2, parsed with their raw bytes kept.
//!
//! Docker's schema 2 manifest and manifest list have the same JSON shape as OCI's manifest and
//! index; only `mediaType` tells them apart, so both are parsed into `oci-spec` types. A
//! manifest's digest is always taken over the bytes it arrived as: re-serialising a parsed
//! manifest would change the bytes (key order, spacing) and so the digest.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use serde_json::{Map, Value};

use crate::digest::{Digest, DigestError};
use crate::json::canonical_json;
use crate::media_types::{self, essence};

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("manifest must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error(
        "Docker image manifest schema 1 ({0}) is not supported: it is deprecated; \
         push the image again with a current client to get a schema 2 or OCI manifest"
    )]
    Schema1(String),
    #[error(
        "unknown manifest media type {0:?}: expected an OCI image manifest or index, \
         or a Docker schema 2 manifest or manifest list"
    )]
    UnknownMediaType(String),
    #[error("manifest media type conflict: {declared_by} says {declared:?} but the document's mediaType is {document:?}")]
    MediaTypeMismatch { declared_by: &'static str, declared: String, document: String },
    #[error(
        "cannot tell what kind of manifest this is: it has no mediaType and neither a \
         \"config\" nor a \"manifests\" field"
    )]
    UnknownShape,
    #[error("manifest schemaVersion is {0}: expected 2")]
    SchemaVersion(String),
    #[error("image manifest has no config descriptor")]
    MissingConfig,
    #[error("manifest is missing the required field {0}")]
    MissingField(String),
    #[error("manifest field {field} must be {expected}, found {found}")]
    WrongType { field: String, expected: &'static str, found: String },
    #[error("manifest field {field} has an invalid digest {value:?}: {source}")]
    BadDigest {
        field: String,
        value: String,
        #[source]
        source: DigestError,
    },
    #[error("manifest field {field} must be a non-negative integer size, found {value}")]
    BadSize { field: String, value: String },
    #[error("manifest does not follow the image spec: {0}")]
    Schema(#[source] serde_json::Error),
    #[error("manifest digest is {actual}, expected {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
}

/// A parsed manifest: one image, or an index of manifests (multi-platform images).
// Unboxed so callers can match on the oci-spec types directly; manifests are few and short-lived.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

impl Manifest {
    /// The descriptors this manifest points at: config then layers, or the index entries.
    pub fn children(&self) -> Vec<&Descriptor> {
        match self {
            Manifest::Image(m) => std::iter::once(m.config()).chain(m.layers()).collect(),
            Manifest::Index(i) => i.manifests().iter().collect(),
        }
    }

    pub fn as_image(&self) -> Option<&ImageManifest> {
        match self {
            Manifest::Image(m) => Some(m),
            Manifest::Index(_) => None,
        }
    }

    pub fn as_index(&self) -> Option<&ImageIndex> {
        match self {
            Manifest::Index(i) => Some(i),
            Manifest::Image(_) => None,
        }
    }
}

/// A manifest together with the exact bytes it came from, their digest and its media type.
#[derive(Debug, Clone, PartialEq)]
pub struct RawManifest {
    bytes: Vec<u8>,
    digest: Digest,
    media_type: String,
    manifest: Manifest,
}

impl RawManifest {
    /// Parses and validates `bytes`. `media_type` is what the bytes were served or described
    /// as (a registry `Content-Type`, a descriptor's `mediaType`); generic values such as
    /// `application/json` are ignored and the document decides.
    pub fn parse(
        bytes: impl Into<Vec<u8>>,
        media_type: Option<&str>,
    ) -> Result<RawManifest, ManifestError> {
        let bytes = bytes.into();
        let value: Value = serde_json::from_slice(&bytes).map_err(ManifestError::Json)?;
        let obj = value.as_object().ok_or_else(|| ManifestError::NotAnObject(kind(&value)))?;
        let media_type = resolve_media_type(obj, media_type)?;
        check_schema_version(obj)?;
        let manifest = if media_types::is_manifest(&media_type) {
            check_image(obj)?;
            Manifest::Image(serde_json::from_value(value).map_err(ManifestError::Schema)?)
        } else {
            check_index(obj)?;
            Manifest::Index(serde_json::from_value(value).map_err(ManifestError::Schema)?)
        };
        let digest = Digest::sha256_of(&bytes);
        Ok(RawManifest { bytes, digest, media_type, manifest })
    }

    /// Serialises a new image manifest deterministically (sorted keys, compact) and parses it
    /// back, so what is returned is exactly what a reader of the bytes will see.
    pub fn from_image(manifest: &ImageManifest) -> Result<RawManifest, ManifestError> {
        let media_type = manifest
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| media_types::OCI_MANIFEST.to_string());
        let bytes = canonical_json(manifest).map_err(ManifestError::Schema)?;
        RawManifest::parse(bytes, Some(&media_type))
    }

    /// Serialises a new index deterministically; see [`RawManifest::from_image`].
    pub fn from_index(index: &ImageIndex) -> Result<RawManifest, ManifestError> {
        let media_type = index
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| media_types::OCI_INDEX.to_string());
        let bytes = canonical_json(index).map_err(ManifestError::Schema)?;
        RawManifest::parse(bytes, Some(&media_type))
    }

    /// The exact bytes, as stored and as hashed.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The sha256 of [`RawManifest::bytes`].
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The effective media type (without parameters).
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn into_manifest(self) -> Manifest {
        self.manifest
    }

    /// A descriptor pointing at this manifest (for an index entry, a tag, an OCI layout).
    pub fn descriptor(&self) -> Descriptor {
        crate::descriptor::new_descriptor(&self.media_type, &self.digest, self.size())
    }

    /// Refuses the manifest unless its bytes hash to `expected` (e.g. pulled by digest).
    pub fn verify(&self, expected: &Digest) -> Result<(), ManifestError> {
        if &self.digest == expected {
            Ok(())
        } else {
            Err(ManifestError::DigestMismatch {
                expected: expected.clone(),
                actual: self.digest.clone(),
            })
        }
    }
}

/// A new OCI image manifest (schema version 2) for a config and layers, in stack order.
pub fn new_image_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: Option<HashMap<String, String>>,
) -> ImageManifest {
    let mut m = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .expect("every required field of the builder is set");
    m.set_annotations(annotations);
    m
}

/// A new OCI image index (schema version 2) over `manifests`.
pub fn new_index(
    manifests: Vec<Descriptor>,
    annotations: Option<HashMap<String, String>>,
) -> ImageIndex {
    let mut i = oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .expect("every required field of the builder is set");
    i.set_annotations(annotations);
    i
}

/// Values some registries send as `Content-Type` that say nothing about the manifest kind.
fn is_generic(media_type: &str) -> bool {
    matches!(media_type, "" | "application/json" | "application/octet-stream" | "text/plain")
}

fn resolve_media_type(
    obj: &Map<String, Value>,
    declared: Option<&str>,
) -> Result<String, ManifestError> {
    let document = match obj.get("mediaType") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(essence(s).into_owned()),
        Some(other) => return Err(wrong_type("mediaType", "a string", other)),
    };
    let declared = declared.map(|d| essence(d).into_owned()).filter(|d| !is_generic(d));
    for mt in declared.iter().chain(document.iter()) {
        if media_types::is_schema1(mt) {
            return Err(ManifestError::Schema1(mt.clone()));
        }
    }
    let chosen = match (declared, document) {
        (Some(d), Some(doc)) if d != doc => {
            return Err(ManifestError::MediaTypeMismatch {
                declared_by: "the content type or descriptor",
                declared: d,
                document: doc,
            })
        }
        (Some(d), _) => d,
        (None, Some(doc)) => doc,
        // OCI makes mediaType optional; fall back to the document's shape.
        (None, None) => {
            if obj.contains_key("manifests") {
                media_types::OCI_INDEX.to_string()
            } else if obj.contains_key("config") {
                media_types::OCI_MANIFEST.to_string()
            } else if obj.contains_key("fsLayers") || obj.contains_key("signatures") {
                return Err(ManifestError::Schema1("schemaVersion 1 document".into()));
            } else {
                return Err(ManifestError::UnknownShape);
            }
        }
    };
    if media_types::is_manifest(&chosen) || media_types::is_index(&chosen) {
        Ok(chosen)
    } else {
        Err(ManifestError::UnknownMediaType(chosen))
    }
}

fn check_schema_version(obj: &Map<String, Value>) -> Result<(), ManifestError> {
    match obj.get("schemaVersion") {
        None => Err(ManifestError::MissingField("schemaVersion".into())),
        Some(v) if v.as_u64() == Some(2) => Ok(()),
        Some(v) if v.as_u64() == Some(1) => {
            Err(ManifestError::Schema1("schemaVersion 1 document".into()))
        }
        Some(v) => Err(ManifestError::SchemaVersion(v.to_string())),
    }
}

fn check_image(obj: &Map<String, Value>) -> Result<(), ManifestError> {
    match obj.get("config") {
        None | Some(Value::Null) => return Err(ManifestError::MissingConfig),
        Some(config) => check_descriptor(config, "config")?,
    }
    let layers = match obj.get("layers") {
        None => return Err(ManifestError::MissingField("layers".into())),
        Some(Value::Array(layers)) => layers,
        Some(other) => return Err(wrong_type("layers", "an array", other)),
    };
    for (i, layer) in layers.iter().enumerate() {
        check_descriptor(layer, &format!("layers[{i}]"))?;
    }
    check_subject(obj)
}

fn check_index(obj: &Map<String, Value>) -> Result<(), ManifestError> {
    let manifests = match obj.get("manifests") {
        None => return Err(ManifestError::MissingField("manifests".into())),
        Some(Value::Array(m)) => m,
        Some(other) => return Err(wrong_type("manifests", "an array", other)),
    };
    for (i, m) in manifests.iter().enumerate() {
        check_descriptor(m, &format!("manifests[{i}]"))?;
    }
    check_subject(obj)
}

fn check_subject(obj: &Map<String, Value>) -> Result<(), ManifestError> {
    match obj.get("subject") {
        None | Some(Value::Null) => Ok(()),
        Some(s) => check_descriptor(s, "subject"),
    }
}

/// Checks the parts of a descriptor that `oci-spec` would refuse with an unhelpful message.
fn check_descriptor(value: &Value, field: &str) -> Result<(), ManifestError> {
    let obj = value.as_object().ok_or_else(|| wrong_type(field, "an object", value))?;
    let sub = |name: &str| format!("{field}.{name}");
    match obj.get("mediaType") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::String(_)) => return Err(wrong_type(&sub("mediaType"), "a media type", value)),
        Some(other) => return Err(wrong_type(&sub("mediaType"), "a string", other)),
        None => return Err(ManifestError::MissingField(sub("mediaType"))),
    }
    match obj.get("digest") {
        Some(Value::String(s)) => {
            s.parse::<Digest>().map_err(|source| ManifestError::BadDigest {
                field: sub("digest"),
                value: s.clone(),
                source,
            })?;
        }
        Some(other) => return Err(wrong_type(&sub("digest"), "a string", other)),
        None => return Err(ManifestError::MissingField(sub("digest"))),
    }
    match obj.get("size") {
        Some(v) if v.as_u64().is_some() => Ok(()),
        Some(v) => Err(ManifestError::BadSize { field: sub("size"), value: v.to_string() }),
        None => Err(ManifestError::MissingField(sub("size"))),
    }
}

fn wrong_type(field: &str, expected: &'static str, found: &Value) -> ManifestError {
    ManifestError::WrongType { field: field.to_string(), expected, found: describe(found) }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {s:?}"),
        other => kind(other).to_string(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
