//! Push: upload an image's config and layers (HEAD first to skip what the registry has,
//! cross-repository mount when the image came from another repository of the same
//! registry), in parallel, then put the manifest under the tag.

use futures_util::stream::{self, StreamExt};
use strata_oci::{descriptor_digest, Digest, RawManifest, Reference};
use strata_store::Store;

use crate::client::Client;
use crate::error::{RegistryError, Result};
use crate::{endpoint, BlobOutcome, Event};

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs uploaded at once.
    pub max_concurrent: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions { max_concurrent: 4 }
    }
}

#[derive(Debug, Clone)]
pub struct Pushed {
    pub reference: Reference,
    pub digest: Digest,
    pub size: u64,
    pub uploaded: usize,
    pub existed: usize,
    pub mounted: usize,
    pub bytes_uploaded: u64,
}

/// Pushes the local image `source` (a name or ID) to `target`.
pub async fn push_image(
    client: &Client,
    store: &Store,
    source: &str,
    target: &Reference,
    opts: &PushOptions,
) -> Result<Pushed> {
    let target =
        if target.digest().is_none() { target.clone().with_default_tag() } else { target.clone() };
    let (registry, repo, tag) = endpoint(&target);
    let image = store.resolve(source)?;
    let bytes = store.blobs().read(&image.manifest_digest)?;
    let raw = RawManifest::parse(bytes, Some(&image.manifest_media_type)).map_err(|e| {
        RegistryError::InvalidManifest { name: source.to_string(), message: e.to_string() }
    })?;
    let manifest = raw.manifest().as_image().ok_or_else(|| RegistryError::InvalidManifest {
        name: source.to_string(),
        message: "the stored manifest is not an image manifest".into(),
    })?;
    let bad = |e: strata_oci::DigestError| RegistryError::InvalidManifest {
        name: source.to_string(),
        message: e.to_string(),
    };
    let mut blobs: Vec<(Digest, u64)> =
        vec![(descriptor_digest(manifest.config()).map_err(bad)?, manifest.config().size())];
    for l in manifest.layers() {
        let d = descriptor_digest(l).map_err(bad)?;
        if !blobs.iter().any(|(b, _)| b == &d) {
            blobs.push((d, l.size()));
        }
    }
    // Repositories of this registry the image is known to be in: mount sources.
    let mount_from: Vec<String> = image
        .repo_digests
        .iter()
        .filter(|r| r.registry() == registry && r.repository() != repo)
        .map(|r| r.repository().to_string())
        .collect();
    let lease = store.lease()?;
    lease.add(blobs.iter().map(|(d, _)| d))?;
    let store_blobs = store.blobs().clone();
    let results: Vec<Result<(BlobOutcome, u64)>> = stream::iter(blobs.iter())
        .map(|(digest, size)| {
            let (registry, repo, mount_from, store_blobs) =
                (&registry, &repo, &mount_from, &store_blobs);
            async move {
                let path = store_blobs.path(digest);
                let actual = store_blobs.size(digest)?;
                if actual != *size {
                    return Err(RegistryError::SizeMismatch {
                        what: format!("local blob {digest}"),
                        expected: *size,
                        actual,
                    });
                }
                if client.blob_exists(registry, repo, digest, true).await? {
                    client.emit(Event::BlobDone {
                        digest: digest.clone(),
                        size: *size,
                        outcome: BlobOutcome::Exists,
                    });
                    return Ok((BlobOutcome::Exists, *size));
                }
                for from in mount_from {
                    if client.mount_blob(registry, repo, from, digest).await? {
                        let outcome = BlobOutcome::Mounted { from: from.clone() };
                        client.emit(Event::BlobDone {
                            digest: digest.clone(),
                            size: *size,
                            outcome: outcome.clone(),
                        });
                        return Ok((outcome, *size));
                    }
                }
                client.emit(Event::BlobStart { digest: digest.clone(), size: *size });
                client.upload_blob(registry, repo, digest, *size, &path).await?;
                client.emit(Event::BlobProgress {
                    digest: digest.clone(),
                    done: *size,
                    total: *size,
                });
                client.emit(Event::BlobDone {
                    digest: digest.clone(),
                    size: *size,
                    outcome: BlobOutcome::Uploaded,
                });
                Ok((BlobOutcome::Uploaded, *size))
            }
        })
        .buffer_unordered(opts.max_concurrent.max(1))
        .collect()
        .await;
    let (mut uploaded, mut existed, mut mounted, mut bytes_uploaded) = (0, 0, 0, 0);
    for r in results {
        match r? {
            (BlobOutcome::Uploaded, s) => {
                uploaded += 1;
                bytes_uploaded += s;
            }
            (BlobOutcome::Mounted { .. }, _) => mounted += 1,
            _ => existed += 1,
        }
    }
    let answered =
        client.put_manifest(&registry, &repo, &tag, raw.bytes(), raw.media_type()).await?;
    if let Some(d) = answered {
        if d != raw.digest().to_string() {
            return Err(RegistryError::Invalid(format!(
                "the registry stored the manifest of {target} as {d}, but its digest is {}",
                raw.digest()
            )));
        }
    }
    store.add_repo_digest(
        &image.id,
        &target.without_tag_or_digest().with_digest(raw.digest().clone()),
    )?;
    drop(lease);
    client.emit(Event::Resolved { reference: target.to_string(), digest: raw.digest().clone() });
    Ok(Pushed {
        reference: target,
        digest: raw.digest().clone(),
        size: raw.size(),
        uploaded,
        existed,
        mounted,
        bytes_uploaded,
    })
}
