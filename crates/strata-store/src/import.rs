//! `import`: a one-layer image from a root filesystem tarball.

use std::io::{Read, Write};

use serde_json::{json, Map, Value};
use strata_oci::{Digest, Reference};

use strata_oci::media_types::{OCI_CONFIG, OCI_MANIFEST};

use crate::archive::host_platform;
use crate::error::{IoContext, Result, StoreError};
use crate::images::{LayerRecord, NewImage};
use crate::layer_info::{self, Limits};
use crate::Store;

pub struct ImportOptions {
    pub reference: Option<Reference>,
    /// Container-config fields to set (`Cmd`, `Env`, ...), from `--change`.
    pub config: Map<String, Value>,
    /// The history comment, like Docker's "Imported from -".
    pub comment: String,
    /// RFC 3339 creation time.
    pub created: String,
    pub limits: Limits,
}

/// Stores `rootfs` (a tar, optionally gzip or zstd) as the single layer of a new image.
pub fn import(
    store: &Store,
    source: &str,
    mut rootfs: impl Read,
    options: ImportOptions,
) -> Result<Digest> {
    let mut ingest = store.blobs().ingest()?;
    let temp = ingest.temp_path().to_path_buf();
    std::io::copy(&mut rootfs, &mut ingest).ctx("reading the tarball into", &temp)?;
    ingest.flush().ctx("writing", &temp)?;
    let staged = ingest.stage(None)?;
    let file = std::fs::File::open(staged.path()).ctx("reading", staged.path())?;
    let info = layer_info::scan(file, options.limits, Some(&staged.digest)).map_err(|e| {
        StoreError::Archive {
            archive: source.to_string(),
            message: format!("{e}; nothing was imported"),
        }
    })?;
    let layer = LayerRecord {
        digest: staged.digest.clone(),
        diff_id: info.diff_id.clone(),
        media_type: info.compression.oci_media_type().to_string(),
        size: staged.size,
        content_size: info.content_size,
    };
    let config = json!({
        "architecture": host_platform(),
        "os": "linux",
        "created": options.created,
        "config": Value::Object(options.config),
        "rootfs": {"type": "layers", "diff_ids": [info.diff_id.to_string()]},
        "history": [{"created": options.created, "comment": options.comment}],
    });
    let config = serde_json::to_vec(&config).expect("serialising a JSON value cannot fail");
    let config_digest = Digest::sha256_of(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest.to_string(), "size": layer.size}],
    });
    let manifest = serde_json::to_vec(&manifest).expect("serialising a JSON value cannot fail");
    let manifest_digest = Digest::sha256_of(&manifest);
    let lease = store.lease()?;
    lease.add([&layer.digest, &config_digest, &manifest_digest])?;
    staged.publish()?;
    store.blobs().put(&config)?;
    store.blobs().put(&manifest)?;
    let tags: Vec<Reference> =
        options.reference.into_iter().map(Reference::with_default_tag).collect();
    store.commit_image(
        &NewImage {
            config_digest: config_digest.clone(),
            manifest_digest,
            manifest_media_type: OCI_MANIFEST.to_string(),
            created: Some(options.created),
            layers: vec![layer],
        },
        &tags,
    )?;
    Ok(config_digest)
}
