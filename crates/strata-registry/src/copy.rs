//! Registry-to-registry copy (`docker://` to `docker://`): blobs stream through a
//! temporary file, hashed and size-checked, then uploaded (or mounted, or skipped when the
//! destination has them); manifests are copied byte for byte, so digests are preserved.
//! With `all`, every manifest of an index is copied and then the index itself.

use std::io::Write;

use futures_util::stream::{self, StreamExt};
use strata_oci::{descriptor_digest, Digest, Hasher, Manifest, Platform, RawManifest, Reference};

use crate::client::{BlobSink, Client};
use crate::error::{RegistryError, Result};
use crate::pull::fetch_manifest;
use crate::{endpoint, BlobOutcome, Event};

#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Copy every manifest of an index (and the index); else only the selected platform's.
    pub all: bool,
    /// The platform to select when not `all` (the host's when `None`).
    pub platform: Option<Platform>,
    pub max_concurrent: usize,
}

#[derive(Debug, Clone)]
pub struct Copied {
    /// The digest of what the destination tag now names.
    pub digest: Digest,
    pub manifests: usize,
    pub blobs_copied: usize,
    pub blobs_skipped: usize,
}

pub(crate) struct TempSink {
    pub(crate) file: std::io::BufWriter<std::fs::File>,
    pub(crate) path: std::path::PathBuf,
    pub(crate) hasher: Hasher,
}

impl BlobSink for TempSink {
    fn len(&self) -> u64 {
        self.hasher.len()
    }
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| RegistryError::io("writing", self.path.display(), e))?;
        self.hasher.update(bytes);
        Ok(())
    }
    fn restart(&mut self) -> Result<()> {
        let f = std::fs::File::create(&self.path)
            .map_err(|e| RegistryError::io("writing", self.path.display(), e))?;
        self.file = std::io::BufWriter::new(f);
        self.hasher = Hasher::new();
        Ok(())
    }
}

pub(crate) fn image_blobs(raw: &RawManifest) -> Result<Vec<(Digest, u64)>> {
    let m = raw.manifest().as_image().ok_or_else(|| RegistryError::InvalidManifest {
        name: raw.digest().to_string(),
        message: "not an image manifest".into(),
    })?;
    let mut out = Vec::new();
    for d in std::iter::once(m.config()).chain(m.layers()) {
        let digest = descriptor_digest(d).map_err(|e| RegistryError::InvalidManifest {
            name: raw.digest().to_string(),
            message: e.to_string(),
        })?;
        out.push((digest, d.size()));
    }
    Ok(out)
}

/// Copies `src` to `dst` between registries.
pub async fn copy_image(
    client: &Client,
    src: &Reference,
    dst: &Reference,
    opts: &CopyOptions,
) -> Result<Copied> {
    let src = if src.digest().is_none() { src.clone().with_default_tag() } else { src.clone() };
    let dst = if dst.digest().is_none() { dst.clone().with_default_tag() } else { dst.clone() };
    let (sreg, srepo, sref) = endpoint(&src);
    let (dreg, drepo, dref) = endpoint(&dst);
    let top =
        fetch_manifest(client, &sreg, &srepo, &sref, src.digest().map(|d| (d, None)), None).await?;
    // (manifests to put by digest first, the one to put under the destination reference)
    let (children, head) = match top.manifest() {
        Manifest::Image(_) => (Vec::new(), top.clone()),
        Manifest::Index(index) if opts.all => {
            let mut children = Vec::new();
            for d in index.manifests() {
                let digest = descriptor_digest(d).map_err(|e| RegistryError::InvalidManifest {
                    name: src.to_string(),
                    message: e.to_string(),
                })?;
                let child = fetch_manifest(
                    client,
                    &sreg,
                    &srepo,
                    &digest.to_string(),
                    Some((&digest, Some(d.size()))),
                    Some(d.media_type().as_ref()),
                )
                .await?;
                if child.manifest().as_index().is_some() {
                    return Err(RegistryError::InvalidManifest {
                        name: format!("{src}@{digest}"),
                        message: "nested indexes are not supported".into(),
                    });
                }
                children.push(child);
            }
            (children, top.clone())
        }
        Manifest::Index(_) => {
            let (_, image) = crate::pull::resolve(client, &src, opts.platform.as_ref()).await?;
            (Vec::new(), image)
        }
    };
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for m in
        children.iter().chain(std::iter::once(&head)).filter(|m| m.manifest().as_image().is_some())
    {
        for b in image_blobs(m)? {
            if !blobs.iter().any(|(d, _)| d == &b.0) {
                blobs.push(b);
            }
        }
    }
    let same_registry = sreg == dreg && srepo != drepo;
    let results: Vec<Result<bool>> = stream::iter(blobs.iter())
        .map(|(digest, size)| {
            let (sreg, srepo, dreg, drepo) = (&sreg, &srepo, &dreg, &drepo);
            async move {
                if client.blob_exists(dreg, drepo, digest, true).await? {
                    client.emit(Event::BlobDone {
                        digest: digest.clone(),
                        size: *size,
                        outcome: BlobOutcome::Exists,
                    });
                    return Ok(false);
                }
                if same_registry && client.mount_blob(dreg, drepo, srepo, digest).await? {
                    client.emit(Event::BlobDone {
                        digest: digest.clone(),
                        size: *size,
                        outcome: BlobOutcome::Mounted { from: srepo.clone() },
                    });
                    return Ok(false);
                }
                client.emit(Event::BlobStart { digest: digest.clone(), size: *size });
                let tmp = tempfile::NamedTempFile::new()
                    .map_err(|e| RegistryError::io("creating", "a temporary file", e))?;
                let path = tmp.path().to_path_buf();
                let file =
                    tmp.reopen().map_err(|e| RegistryError::io("opening", path.display(), e))?;
                let mut sink = TempSink {
                    file: std::io::BufWriter::new(file),
                    path: path.clone(),
                    hasher: Hasher::new(),
                };
                client.download_into(sreg, srepo, digest, *size, &mut sink).await?;
                sink.file.flush().map_err(|e| RegistryError::io("writing", path.display(), e))?;
                let actual = std::mem::take(&mut sink.hasher).finish();
                if &actual != digest {
                    return Err(RegistryError::DigestMismatch {
                        what: format!("blob {digest}"),
                        expected: digest.clone(),
                        actual,
                    });
                }
                client.upload_blob(dreg, drepo, digest, *size, &path).await?;
                client.emit(Event::BlobDone {
                    digest: digest.clone(),
                    size: *size,
                    outcome: BlobOutcome::Uploaded,
                });
                drop(tmp);
                Ok(true)
            }
        })
        .buffer_unordered(opts.max_concurrent.max(1))
        .collect()
        .await;
    let (mut copied, mut skipped) = (0, 0);
    for r in results {
        if r? {
            copied += 1;
        } else {
            skipped += 1;
        }
    }
    for child in &children {
        client
            .put_manifest(
                &dreg,
                &drepo,
                &child.digest().to_string(),
                child.bytes(),
                child.media_type(),
            )
            .await?;
    }
    let answered =
        client.put_manifest(&dreg, &drepo, &dref, head.bytes(), head.media_type()).await?;
    if let Some(d) = answered {
        if d != head.digest().to_string() {
            return Err(RegistryError::Invalid(format!(
                "the registry stored {dst} as {d}, but its digest is {}",
                head.digest()
            )));
        }
    }
    Ok(Copied {
        digest: head.digest().clone(),
        manifests: children.len() + 1,
        blobs_copied: copied,
        blobs_skipped: skipped,
    })
}
