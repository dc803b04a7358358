//! Pull: resolve a manifest (picking a platform from an index), fetch and verify the
//! config, download the layers in parallel (each checked for size, digest and diffID before
//! it is published), then record the image in the store.

use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};
use strata_oci::{
    descriptor_digest, Digest, ImageConfig, Manifest, Platform, RawManifest, Reference,
};
use strata_store::layer_info::Limits;
use strata_store::{LayerRecord, NewImage, Store, StoreError};

use crate::client::{Client, CONFIG_LIMIT};
use crate::error::{RegistryError, Result};
use crate::{endpoint, BlobOutcome, Event};

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to pick from an index; the host's when `None`.
    pub platform: Option<Platform>,
    /// Layers downloaded at once.
    pub max_concurrent: usize,
    /// Decompression limits. Pull itself does not decompress layers (see
    /// `strata_store::pending`); kept for callers that check layers themselves.
    pub limits: Limits,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions { platform: None, max_concurrent: 4, limits: Limits::default() }
    }
}

/// What a pull recorded.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference as pulled (tag defaulted to `latest`).
    pub reference: Reference,
    /// The image ID (config digest).
    pub image_id: Digest,
    /// The digest the registry knows the image by (the index's, for a multi-platform image).
    pub digest: Digest,
    /// The image manifest's digest.
    pub manifest_digest: Digest,
    pub downloaded: usize,
    pub already_present: usize,
    pub bytes_downloaded: u64,
}

/// A manifest fetched and verified against `expected` (digest and size), when given.
pub async fn fetch_manifest(
    client: &Client,
    registry: &str,
    repo: &str,
    reference: &str,
    expected: Option<(&Digest, Option<u64>)>,
    media_type_hint: Option<&str>,
) -> Result<RawManifest> {
    let name = format!("{registry}/{repo}@{reference}");
    let fetched = client.get_manifest(registry, repo, reference).await?;
    if let Some((digest, size)) = expected {
        let actual = Digest::sha256_of(&fetched.bytes);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {name}"),
                expected: digest.clone(),
                actual,
            });
        }
        if let Some(size) = size {
            if size != fetched.bytes.len() as u64 {
                return Err(RegistryError::SizeMismatch {
                    what: format!("manifest {name}"),
                    expected: size,
                    actual: fetched.bytes.len() as u64,
                });
            }
        }
    }
    let hint = fetched.content_type.as_deref().or(media_type_hint);
    RawManifest::parse(fetched.bytes, hint)
        .map_err(|e| RegistryError::InvalidManifest { name, message: e.to_string() })
}

/// Resolves `reference` to an image manifest: (top-level manifest, image manifest).
pub async fn resolve(
    client: &Client,
    reference: &Reference,
    platform: Option<&Platform>,
) -> Result<(RawManifest, RawManifest)> {
    let (registry, repo, target) = endpoint(reference);
    let expected = reference.digest().map(|d| (d, None));
    let top = fetch_manifest(client, &registry, &repo, &target, expected, None).await?;
    let image = match top.manifest() {
        Manifest::Image(_) => top.clone(),
        Manifest::Index(index) => {
            let wanted = platform.cloned().unwrap_or_else(Platform::host);
            let desc =
                strata_oci::select(index, &wanted).ok_or_else(|| RegistryError::NoPlatform {
                    name: reference.to_string(),
                    platform: wanted.to_string(),
                })?;
            let digest = descriptor_digest(desc).map_err(|e| RegistryError::InvalidManifest {
                name: reference.to_string(),
                message: e.to_string(),
            })?;
            let child = fetch_manifest(
                client,
                &registry,
                &repo,
                &digest.to_string(),
                Some((&digest, Some(desc.size()))),
                Some(desc.media_type().as_ref()),
            )
            .await?;
            if child.manifest().as_image().is_none() {
                return Err(RegistryError::InvalidManifest {
                    name: format!("{reference}@{digest}"),
                    message: "an index entry for a platform is itself an index".into(),
                });
            }
            child
        }
    };
    Ok((top, image))
}

fn known_layers(store: &Store) -> Result<HashMap<Digest, LayerRecord>> {
    let mut out = HashMap::new();
    for image in store.images()? {
        for l in image.layers {
            out.insert(l.digest.clone(), l);
        }
    }
    Ok(out)
}

fn store_mismatch(what: String, e: StoreError) -> RegistryError {
    match e {
        StoreError::DigestMismatch { expected, actual, .. } => {
            RegistryError::DigestMismatch { what, expected, actual }
        }
        other => other.into(),
    }
}

#[derive(Clone)]
struct LayerJob {
    digest: Digest,
    size: u64,
    media_type: String,
    diff_id: Digest,
}

/// Pulls `reference` into `store`, tags it (when pulled by tag) and records its repo digest.
pub async fn pull_image(
    client: &Client,
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
) -> Result<Pulled> {
    let reference = if reference.digest().is_none() {
        reference.clone().with_default_tag()
    } else {
        reference.clone()
    };
    let (registry, repo, _) = endpoint(&reference);
    let (top, image) = resolve(client, &reference, opts.platform.as_ref()).await?;
    client.emit(Event::Resolved { reference: reference.to_string(), digest: top.digest().clone() });
    let manifest = image.manifest().as_image().ok_or_else(|| RegistryError::InvalidManifest {
        name: reference.to_string(),
        message: "not an image manifest".into(),
    })?;
    let bad = |message: String| RegistryError::InvalidManifest {
        name: format!("{reference}@{}", image.digest()),
        message,
    };

    // The config: small, fetched into memory, verified.
    let config_desc = manifest.config();
    let config_digest = descriptor_digest(config_desc).map_err(|e| bad(format!("config: {e}")))?;
    let config_bytes = client
        .get_blob_bytes(&registry, &repo, &config_digest, config_desc.size(), CONFIG_LIMIT)
        .await?;
    let config = ImageConfig::parse(config_bytes.clone())
        .map_err(|e| bad(format!("config {config_digest}: {e}")))?;
    let diff_ids = config.diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(bad(format!(
            "the manifest lists {} layers but the config has {} diffIDs",
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    let mut jobs = Vec::new();
    for (i, (l, diff_id)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        let digest = descriptor_digest(l).map_err(|e| bad(format!("layers[{i}]: {e}")))?;
        jobs.push(LayerJob {
            digest,
            size: l.size(),
            media_type: l.media_type().to_string(),
            diff_id: diff_id.clone(),
        });
    }

    // Protect everything this image needs from a concurrent GC before anything is published.
    let lease = store.lease()?;
    let mut needed = vec![image.digest().clone(), config_digest.clone()];
    needed.extend(jobs.iter().map(|j| j.digest.clone()));
    lease.add(&needed)?;

    let known = known_layers(store)?;
    let blobs = store.blobs().clone();
    let results: Vec<Result<(LayerRecord, bool)>> = stream::iter(jobs.iter())
        .map(|job| {
            // Each layer is its own task, so hashing and writing spread over the
            // runtime's threads instead of sharing one.
            let known = known.get(&job.digest).cloned();
            let blobs = blobs.clone();
            let (registry, repo) = (registry.clone(), repo.clone());
            let (client, job) = (client.clone(), job.clone());
            let task = tokio::spawn(async move {
                let (client, job, registry, repo) = (&client, &job, &registry, &repo);
                let what = format!("layer {}", job.digest);
                if blobs.exists(&job.digest) {
                    if let Some(r) = known.filter(|r| r.diff_id == job.diff_id) {
                        let mut r = r.clone();
                        r.media_type = job.media_type.clone();
                        client.emit(Event::BlobDone {
                            digest: job.digest.clone(),
                            size: job.size,
                            outcome: BlobOutcome::AlreadyPresent,
                        });
                        return Ok((r, false));
                    }
                    // Published by an earlier, interrupted pull: verified then; measured
                    // later, like a fresh download.
                    client.emit(Event::BlobDone {
                        digest: job.digest.clone(),
                        size: job.size,
                        outcome: BlobOutcome::AlreadyPresent,
                    });
                    return Ok((pending_record(job), false));
                }
                client.emit(Event::BlobStart { digest: job.digest.clone(), size: job.size });
                // The layer is kept as downloaded: hashed while it streams into the ingest
                // file, size-bounded, digest-checked when staged. Not decompressed here:
                // its diffID and entries are checked when it is first measured or unpacked
                // (see strata_store::pending).
                let mut ingest = blobs.ingest()?;
                client
                    .download_blob(registry, repo, &job.digest, job.size, &blobs, &mut ingest)
                    .await?;
                let staged = tokio::task::block_in_place(|| ingest.stage(Some(&job.digest)))
                    .map_err(|e| store_mismatch(what.clone(), e))?;
                tokio::task::block_in_place(|| staged.publish())?;
                client.emit(Event::BlobDone {
                    digest: job.digest.clone(),
                    size: job.size,
                    outcome: BlobOutcome::Downloaded,
                });
                Ok((pending_record(job), true))
            });
            async move {
                task.await
                    .map_err(|e| RegistryError::Invalid(format!("layer download failed: {e}")))?
            }
        })
        .buffer_unordered(opts.max_concurrent.max(1))
        .collect()
        .await;
    let mut by_digest = HashMap::new();
    let (mut downloaded, mut present, mut bytes) = (0, 0, 0);
    for r in results {
        let (rec, fresh) = r?;
        if fresh {
            downloaded += 1;
            bytes += rec.size;
        } else {
            present += 1;
        }
        by_digest.insert(rec.digest.clone(), rec);
    }
    let layers: Vec<LayerRecord> =
        jobs.iter()
            .map(|j| {
                by_digest.get(&j.digest).cloned().ok_or_else(|| {
                    RegistryError::Invalid(format!("layer {} was not pulled", j.digest))
                })
            })
            .collect::<Result<_>>()?;

    store.blobs().put(&config_bytes)?;
    store.blobs().put(image.bytes())?;
    let new = NewImage {
        config_digest: config_digest.clone(),
        manifest_digest: image.digest().clone(),
        manifest_media_type: image.media_type().to_string(),
        created: config.created().map(str::to_string),
        layers,
    };
    let tags: Vec<Reference> =
        if reference.digest().is_none() { vec![reference.clone()] } else { Vec::new() };
    store.commit_image(&new, &tags)?;
    store.add_repo_digest(
        &config_digest,
        &reference.without_tag_or_digest().with_digest(top.digest().clone()),
    )?;
    drop(lease);
    Ok(Pulled {
        reference,
        image_id: config_digest,
        digest: top.digest().clone(),
        manifest_digest: image.digest().clone(),
        downloaded,
        already_present: present,
        bytes_downloaded: bytes,
    })
}

/// A layer recorded from its descriptor and the config's diffID, to be measured later.
fn pending_record(job: &LayerJob) -> LayerRecord {
    LayerRecord {
        digest: job.digest.clone(),
        diff_id: job.diff_id.clone(),
        media_type: job.media_type.clone(),
        size: job.size,
        content_size: strata_store::CONTENT_SIZE_PENDING,
    }
}
