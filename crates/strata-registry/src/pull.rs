//! Pull: resolve a manifest (picking a platform from an index), fetch and verify the
//! config, download the layers in parallel (each checked for size, digest and diffID before
//! it is published), then record the image in the store.

use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};
use strata_oci::{
    descriptor_digest, Digest, ImageConfig, Manifest, Platform, RawManifest, Reference,
};
use strata_store::layer_info::{self, Limits};
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
    /// Decompression limits applied while checking each layer.
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
    let limits = opts.limits;
    let results: Vec<Result<(LayerRecord, bool)>> = stream::iter(jobs.iter())
        .map(|job| {
            let known = &known;
            let blobs = blobs.clone();
            let registry = &registry;
            let repo = &repo;
            async move {
                let what = format!("layer {}", job.digest);
                if blobs.exists(&job.digest) {
                    if let Some(r) = known.get(&job.digest).filter(|r| r.diff_id == job.diff_id) {
                        let mut r = r.clone();
                        r.media_type = job.media_type.clone();
                        client.emit(Event::BlobDone {
                            digest: job.digest.clone(),
                            size: job.size,
                            outcome: BlobOutcome::AlreadyPresent,
                        });
                        return Ok((r, false));
                    }
                    // Published by an earlier, interrupted pull: verified then, scanned now.
                    let path = blobs.path(&job.digest);
                    let digest = job.digest.clone();
                    let info = tokio::task::spawn_blocking(move || {
                        let f = std::fs::File::open(&path)
                            .map_err(|e| RegistryError::io("reading", path.display(), e))?;
                        layer_info::scan(f, limits, Some(&digest))
                            .map_err(|e| RegistryError::Invalid(format!("layer {digest}: {e}")))
                    })
                    .await
                    .map_err(|e| RegistryError::Invalid(format!("layer check failed: {e}")))??;
                    check_diff_id(&what, &job.diff_id, &info.diff_id)?;
                    client.emit(Event::BlobDone {
                        digest: job.digest.clone(),
                        size: job.size,
                        outcome: BlobOutcome::AlreadyPresent,
                    });
                    return Ok((record(job, &info), false));
                }
                client.emit(Event::BlobStart { digest: job.digest.clone(), size: job.size });
                // The layer is scanned (diffID, safety) while it downloads: the bytes go
                // to the ingest file and, through a bounded channel, to a scanner thread.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
                let digest = job.digest.clone();
                let scanner = tokio::task::spawn_blocking(move || {
                    layer_info::scan(
                        ChannelReader { rx, buf: Vec::new(), pos: 0 },
                        limits,
                        Some(&digest),
                    )
                });
                let mut sink = TeeSink {
                    blobs: &blobs,
                    ingest: blobs.ingest()?,
                    tx: Some(tx),
                    restarted: false,
                };
                let downloaded =
                    client.download_into(registry, repo, &job.digest, job.size, &mut sink).await;
                let TeeSink { ingest, tx, restarted, .. } = sink;
                drop(tx);
                let streamed = scanner.await;
                downloaded?;
                let staged =
                    ingest.stage(Some(&job.digest)).map_err(|e| store_mismatch(what.clone(), e))?;
                let digest = job.digest.clone();
                let (staged, info) = match streamed {
                    Ok(Ok(info)) if !restarted => (staged, info),
                    Ok(Err(e)) if !restarted => {
                        return Err(RegistryError::Invalid(format!(
                            "layer {digest}: {e}; refusing the image"
                        )))
                    }
                    // The download started over (or the scanner died): scan the file instead.
                    _ => tokio::task::spawn_blocking(move || {
                        let f = std::fs::File::open(staged.path()).map_err(|e| {
                            RegistryError::io("reading", staged.path().display(), e)
                        })?;
                        let info = layer_info::scan(f, limits, Some(&digest)).map_err(|e| {
                            RegistryError::Invalid(format!(
                                "layer {digest}: {e}; refusing the image"
                            ))
                        })?;
                        Ok::<_, RegistryError>((staged, info))
                    })
                    .await
                    .map_err(|e| RegistryError::Invalid(format!("layer check failed: {e}")))??,
                };
                check_diff_id(&what, &job.diff_id, &info.diff_id)?;
                staged.publish()?;
                client.emit(Event::BlobDone {
                    digest: job.digest.clone(),
                    size: job.size,
                    outcome: BlobOutcome::Downloaded,
                });
                Ok((record(job, &info), true))
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

fn check_diff_id(what: &str, expected: &Digest, actual: &Digest) -> Result<()> {
    if expected != actual {
        return Err(RegistryError::Invalid(format!(
            "{what} has diffID {actual} but the image config expects {expected}; refusing the image"
        )));
    }
    Ok(())
}

fn record(job: &LayerJob, info: &layer_info::LayerInfo) -> LayerRecord {
    LayerRecord {
        digest: job.digest.clone(),
        diff_id: info.diff_id.clone(),
        media_type: job.media_type.clone(),
        size: job.size,
        content_size: info.content_size,
    }
}

/// Writes to the ingest file and feeds the scanner; a restart cuts the scanner off.
struct TeeSink<'a> {
    blobs: &'a strata_store::Blobs,
    ingest: strata_store::Ingest,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    restarted: bool,
}

impl crate::client::BlobSink for TeeSink<'_> {
    fn len(&self) -> u64 {
        self.ingest.len()
    }
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        self.ingest
            .write_all(bytes)
            .map_err(|e| RegistryError::io("writing", self.ingest.temp_path().display(), e))?;
        if let Some(tx) = &self.tx {
            // A scanner that stopped (bad layer) has dropped its end: stop feeding it.
            if tx.send(bytes.to_vec()).is_err() {
                self.tx = None;
            }
        }
        Ok(())
    }
    fn restart(&mut self) -> Result<()> {
        self.ingest = self.blobs.ingest()?;
        self.tx = None;
        self.restarted = true;
        Ok(())
    }
}

/// The scanner's side of the channel, as a `Read`.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
