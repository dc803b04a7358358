//! `save` and `load`: docker-archive and OCI image-layout tarballs.
//!
//! Loading streams the archive once into staged blobs (hashed, fsynced, invisible), then
//! checks every manifest, config and layer against each other, and only then publishes the
//! blobs and records the images in one transaction. A bad or malicious archive therefore
//! leaves nothing behind. Saving writes the Docker 25 layout, which is at once an OCI image
//! layout (`index.json`, `blobs/`) and a docker-archive (`manifest.json`), with the blobs
//! exactly as stored, so digests survive a round trip.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde_json::{json, Value};
use strata_oci::media_types::{
    DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V2 as DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX,
    OCI_MANIFEST,
};
use strata_oci::{Digest, Reference};

use crate::error::{Result, StoreError};
use crate::images::{ImageRecord, LayerRecord, NewImage, RetaggedFrom};
use crate::layer_info::{self, check_entry_path, Limits};
use crate::{Blobs, Staged, Store};

const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Files we parse are small; anything bigger under these names is refused.
const MAX_METADATA_FILE: u64 = 16 << 20;

/// One image that `load` recorded.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub id: Digest,
    pub tags: Vec<Reference>,
    pub retagged: Vec<RetaggedFrom>,
}

/// Progress events, so the CLI can draw bars without this crate printing anything.
#[derive(Debug, Clone)]
pub enum LoadEvent {
    /// An archive entry has been read and staged.
    Entry { name: String, bytes: u64 },
    /// A layer was checked.
    LayerChecked { digest: Digest },
}

fn archive_err(archive: &str, message: impl Into<String>) -> StoreError {
    StoreError::Archive { archive: archive.to_string(), message: message.into() }
}

/// Normalises an archive entry name to a clean relative path, refusing escapes.
fn clean_entry_name(archive: &str, raw: &Path) -> Result<String> {
    check_entry_path(raw).map_err(|reason| {
        archive_err(
            archive,
            format!("entry {:?} {reason}; refusing the whole archive", raw.display().to_string()),
        )
    })?;
    let mut parts: Vec<String> = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    Ok(parts.join("/"))
}

struct Entries {
    /// Staged blobs by their archive path.
    files: HashMap<String, Staged>,
    /// Small files kept in memory for parsing, by archive path.
    small: HashMap<String, Vec<u8>>,
    /// Symlinks and hardlinks: path -> target path, both relative to the archive root.
    links: HashMap<String, String>,
}

impl Entries {
    fn resolve<'a>(&'a self, mut name: &'a str) -> &'a str {
        for _ in 0..16 {
            match self.links.get(name) {
                Some(t) => name = t,
                None => break,
            }
        }
        name
    }
    fn staged(&self, archive: &str, name: &str) -> Result<&Staged> {
        self.files.get(self.resolve(name)).ok_or_else(|| {
            archive_err(
                archive,
                format!("{name} is named by the archive's manifest but is missing from it"),
            )
        })
    }
    fn bytes(&self, archive: &str, name: &str) -> Result<&[u8]> {
        self.small.get(self.resolve(name)).map(|v| &v[..]).ok_or_else(|| {
            archive_err(
                archive,
                format!("{name} is missing from the archive (or is too large to be metadata)"),
            )
        })
    }
}

fn read_entries(
    blobs: &Blobs,
    archive: &str,
    input: impl Read,
    limits: Limits,
    progress: &mut dyn FnMut(LoadEvent),
) -> Result<Entries> {
    let stream = strata_layer::LayerReader::new(input, limits)
        .map_err(|e| archive_err(archive, e.to_string()))?;
    let mut tar = tar::Archive::new(stream);
    let mut entries =
        Entries { files: HashMap::new(), small: HashMap::new(), links: HashMap::new() };
    let tar_err = |e: io::Error| {
        if let Some(bomb) = layer_info::limit_exceeded(&e) {
            return archive_err(
                archive,
                format!("decompression bomb: {bomb}; refusing the archive"),
            );
        }
        // The tar crate reports a short archive as a plain error mentioning EOF.
        let msg = if e.kind() == io::ErrorKind::UnexpectedEof || e.to_string().contains("EOF") {
            format!("is truncated ({e}); the file is incomplete: copy or save it again")
        } else {
            format!("is not a valid tar archive: {e}")
        };
        archive_err(archive, msg)
    };
    for entry in tar.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw = entry.path().map_err(tar_err)?.into_owned();
        let name = clean_entry_name(archive, &raw)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || name.is_empty() {
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name().map_err(tar_err)?.unwrap_or_default().into_owned();
            let joined = if kind.is_symlink() && !target.is_absolute() {
                Path::new(&name).parent().unwrap_or(Path::new("")).join(&target)
            } else {
                target.clone()
            };
            let resolved = clean_entry_name(archive, &joined).map_err(|_| {
                archive_err(archive, format!("link {name:?} -> {:?} points outside the archive; refusing the whole archive", target.display().to_string()))
            })?;
            entries.links.insert(name, resolved);
            continue;
        }
        if !kind.is_file() {
            return Err(archive_err(
                archive,
                format!("entry {name:?} is a {kind:?}, which an image archive never contains"),
            ));
        }
        let size = entry.size();
        let mut ingest = blobs.ingest()?;
        if size <= MAX_METADATA_FILE {
            let mut bytes = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut bytes).map_err(tar_err)?;
            if bytes.len() as u64 != size {
                return Err(archive_err(
                    archive,
                    format!("is truncated: entry {name:?} declares {size} bytes but only {} follow; the file is incomplete: copy or save it again", bytes.len()),
                ));
            }
            ingest.write_all(&bytes).map_err(|e| StoreError::Io {
                action: "writing",
                path: ingest.temp_path().to_path_buf(),
                source: e,
            })?;
            entries.small.insert(name.clone(), bytes);
        } else {
            let path = ingest.temp_path().to_path_buf();
            let copied = copy_entry(&mut entry, &mut ingest).map_err(|e| match e {
                CopyError::Read(e) => tar_err(e),
                CopyError::Write(source) => StoreError::Io { action: "writing", path, source },
            })?;
            // The tar reader ends an entry quietly at the end of the input: a header that
            // claims more bytes than follow is a truncated (or forged) archive.
            if copied != size {
                return Err(archive_err(
                    archive,
                    format!("is truncated: entry {name:?} declares {size} bytes but only {copied} follow; the file is incomplete: copy or save it again"),
                ));
            }
        }
        // Blobs in an OCI layout are named by their digest: check it while staging.
        let expected =
            name.strip_prefix("blobs/sha256/").map(Digest::from_hex).transpose().map_err(|e| {
                archive_err(archive, format!("entry {name:?} is not named by a valid digest: {e}"))
            })?;
        let staged = ingest.stage(expected.as_ref()).map_err(|e| match e {
            StoreError::DigestMismatch { expected, actual, .. } => archive_err(
                archive,
                format!("blob {name} does not match its name: its content hashes to {actual}, not {expected}; the archive is corrupt"),
            ),
            other => other,
        })?;
        progress(LoadEvent::Entry { name: name.clone(), bytes: size });
        entries.files.insert(name, staged);
    }
    Ok(entries)
}

/// The files of an image archive, each staged (hashed, fsynced) in a [`Blobs`] ingest area,
/// with entries named `blobs/sha256/<hex>` checked against their names. Links are resolved
/// within the archive; names that escape it refuse the whole archive. Dropping it deletes
/// the staged files.
pub struct ArchiveEntries {
    entries: Entries,
}

impl ArchiveEntries {
    /// The staged file for an archive path (after links): (path, size, digest).
    pub fn file(&self, name: &str) -> Option<(&Path, u64, &Digest)> {
        self.entries.files.get(self.entries.resolve(name)).map(|s| (s.path(), s.size, &s.digest))
    }
    /// The bytes of a small (metadata-sized) file.
    pub fn small(&self, name: &str) -> Option<&[u8]> {
        self.entries.small.get(self.entries.resolve(name)).map(|v| &v[..])
    }
}

/// Reads a docker-archive or OCI-layout tarball (plain, gzip or zstd, bounded by `limits`)
/// into `blobs`' ingest area, with the same checks as [`load`], without touching a store.
pub fn read_archive(
    blobs: &Blobs,
    archive: &str,
    input: impl Read,
    limits: Limits,
) -> Result<ArchiveEntries> {
    Ok(ArchiveEntries { entries: read_entries(blobs, archive, input, limits, &mut |_| {})? })
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_entry(from: &mut impl Read, to: &mut impl Write) -> std::result::Result<u64, CopyError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

fn parse_json<'a, T: serde::Deserialize<'a>>(
    archive: &str,
    what: &str,
    bytes: &'a [u8],
) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| archive_err(archive, format!("{what} is not valid: {e}")))
}

/// A layer an archive's image needs.
struct CandidateLayer {
    /// Where it is in the archive; None when the archive leaves it out because the store has it.
    path: Option<String>,
    digest: Digest,
    diff_id: Digest,
    /// From the manifest; None for docker-archives, where the content decides.
    media_type: Option<String>,
}

/// An image found in the archive, before anything is published.
struct Candidate {
    /// The manifest bytes; empty for docker-archives until one is written.
    manifest: Vec<u8>,
    manifest_media_type: String,
    config_digest: Digest,
    created: Option<String>,
    layers: Vec<CandidateLayer>,
    config_path: Option<String>,
    manifest_path: Option<String>,
    tags: Vec<Reference>,
}

fn config_diff_ids(archive: &str, config: &Value) -> Result<Vec<Digest>> {
    let ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .ok_or_else(|| archive_err(archive, "image config has no rootfs.diff_ids"))?;
    ids.iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_default()
                .parse::<Digest>()
                .map_err(|e| archive_err(archive, format!("image config has a bad diff_id: {e}")))
        })
        .collect()
}

/// Candidates from a docker-archive's manifest.json.
fn docker_candidates(archive: &str, entries: &Entries) -> Result<Vec<Candidate>> {
    let manifest: Vec<Value> =
        parse_json(archive, "manifest.json", entries.bytes(archive, "manifest.json")?)?;
    let mut out = Vec::new();
    for item in manifest {
        let config_path = item["Config"]
            .as_str()
            .ok_or_else(|| archive_err(archive, "manifest.json entry has no Config"))?;
        let config_bytes = entries.bytes(archive, config_path)?;
        let config: Value = parse_json(archive, config_path, config_bytes)?;
        let config_digest = Digest::sha256_of(config_bytes);
        let layers: Vec<String> = item["Layers"]
            .as_array()
            .ok_or_else(|| archive_err(archive, "manifest.json entry has no Layers"))?
            .iter()
            .map(|l| {
                l.as_str().map(str::to_string).ok_or_else(|| {
                    archive_err(archive, "manifest.json has a non-string layer path")
                })
            })
            .collect::<Result<_>>()?;
        let mut tags = Vec::new();
        for t in item["RepoTags"].as_array().into_iter().flatten() {
            let s = t.as_str().unwrap_or_default();
            tags.push(Reference::parse(s).map_err(|e| {
                archive_err(archive, format!("manifest.json RepoTags has {s:?}: {e}"))
            })?);
        }
        let diff_ids = config_diff_ids(archive, &config)?;
        if diff_ids.len() != layers.len() {
            return Err(archive_err(
                archive,
                format!(
                    "image {config_path} lists {} layers but its config has {} diff_ids",
                    layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let layers = layers
            .into_iter()
            .zip(diff_ids)
            .map(|(path, diff_id)| {
                let digest = entries.staged(archive, &path)?.digest.clone();
                Ok(CandidateLayer { path: Some(path), digest, diff_id, media_type: None })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(Candidate {
            manifest: Vec::new(),
            manifest_media_type: OCI_MANIFEST.to_string(),
            config_digest,
            created: config["created"].as_str().map(str::to_string),
            layers,
            config_path: Some(config_path.to_string()),
            manifest_path: None,
            tags,
        });
    }
    Ok(out)
}

/// Candidates from an OCI layout's index.json.
fn oci_candidates(store: &Store, archive: &str, entries: &Entries) -> Result<Vec<Candidate>> {
    let index: Value = parse_json(archive, "index.json", entries.bytes(archive, "index.json")?)?;
    let mut out = Vec::new();
    let mut queue: Vec<(Value, Option<Reference>)> = Vec::new();
    for desc in index["manifests"]
        .as_array()
        .ok_or_else(|| archive_err(archive, "index.json has no manifests"))?
    {
        let ann = &desc["annotations"];
        let name = ann[ANNOTATION_IMAGE_NAME]
            .as_str()
            .or_else(|| {
                ann[ANNOTATION_REF_NAME].as_str().filter(|n| n.contains('/') || n.contains(':'))
            })
            .and_then(|n| Reference::parse(n).ok());
        queue.push((desc.clone(), name));
    }
    let host = host_platform();
    while let Some((desc, name)) = queue.pop() {
        let digest: Digest = desc["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| archive_err(archive, format!("index.json has a bad digest: {e}")))?;
        let path = format!("blobs/sha256/{}", digest.hex());
        let bytes = entries.bytes(archive, &path)?;
        let manifest: Value = parse_json(archive, &path, bytes)?;
        let media_type = manifest["mediaType"]
            .as_str()
            .or(desc["mediaType"].as_str())
            .unwrap_or(OCI_MANIFEST)
            .to_string();
        if media_type == OCI_INDEX
            || media_type == DOCKER_MANIFEST_LIST
            || manifest.get("manifests").is_some()
        {
            let children = manifest["manifests"].as_array().cloned().unwrap_or_default();
            let chosen = children.iter().find(|c| {
                c["platform"]["os"].as_str() == Some("linux")
                    && c["platform"]["architecture"].as_str() == Some(host)
            });
            match chosen {
                Some(c) => queue.push((c.clone(), name)),
                None => {
                    return Err(archive_err(
                        archive,
                        format!("index {digest} has no image for linux/{host}"),
                    ));
                }
            }
            continue;
        }
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(archive_err(
                archive,
                format!("manifest {digest} has unsupported media type {media_type}"),
            ));
        }
        let config_digest: Digest =
            manifest["config"]["digest"].as_str().unwrap_or_default().parse().map_err(|e| {
                archive_err(archive, format!("manifest {digest} has a bad config digest: {e}"))
            })?;
        let config_path = format!("blobs/sha256/{}", config_digest.hex());
        let config_bytes = match entries.bytes(archive, &config_path) {
            Ok(b) => b.to_vec(),
            Err(e) => store.blobs().read(&config_digest).map_err(|_| e)?,
        };
        let config: Value = parse_json(archive, &config_path, &config_bytes)?;
        let diff_ids = config_diff_ids(archive, &config)?;
        let layer_descs = manifest["layers"].as_array().cloned().unwrap_or_default();
        if layer_descs.len() != diff_ids.len() {
            return Err(archive_err(
                archive,
                format!(
                    "manifest {digest} lists {} layers but its config has {} diff_ids",
                    layer_descs.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (l, diff_id) in layer_descs.iter().zip(diff_ids) {
            let d: Digest = l["digest"].as_str().unwrap_or_default().parse().map_err(|e| {
                archive_err(archive, format!("manifest {digest} has a bad layer digest: {e}"))
            })?;
            let size = l["size"].as_i64().unwrap_or(-1);
            let lp = format!("blobs/sha256/{}", d.hex());
            let in_archive = entries.files.contains_key(entries.resolve(&lp));
            if in_archive {
                let staged = entries.staged(archive, &lp)?;
                if staged.size as i64 != size {
                    return Err(archive_err(
                        archive,
                        format!(
                            "layer {d} has {} bytes but manifest {digest} says {size}",
                            staged.size
                        ),
                    ));
                }
            } else if !store.blobs().exists(&d) {
                return Err(archive_err(
                    archive,
                    format!("layer {d} of manifest {digest} is missing from the archive"),
                ));
            }
            let media_type = l["mediaType"].as_str().map(str::to_string);
            // The layer's own digest is checked by its name; its diffID after scanning.
            layers.push(CandidateLayer {
                path: in_archive.then_some(lp),
                digest: d,
                diff_id,
                media_type,
            });
        }
        out.push(Candidate {
            manifest: bytes.to_vec(),
            manifest_media_type: media_type,
            config_digest,
            created: config["created"].as_str().map(str::to_string),
            layers,
            config_path: Some(config_path),
            manifest_path: Some(path),
            tags: name.into_iter().collect(),
        });
    }
    Ok(out)
}

pub(crate) fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Loads every image of a docker-archive or OCI-layout tarball (plain, gzip or zstd).
pub fn load(
    store: &Store,
    archive: &str,
    input: impl Read,
    limits: Limits,
    progress: &mut dyn FnMut(LoadEvent),
) -> Result<Vec<LoadedImage>> {
    let entries = read_entries(store.blobs(), archive, input, limits, progress)?;
    let mut candidates = if entries.small.contains_key(entries.resolve("index.json")) {
        let mut c = oci_candidates(store, archive, &entries)?;
        // A Docker 25 archive carries RepoTags in manifest.json beside the OCI index.
        if entries.small.contains_key(entries.resolve("manifest.json")) {
            for d in docker_candidates(archive, &entries)? {
                if let Some(c) = c.iter_mut().find(|c| c.config_digest == d.config_digest) {
                    for t in d.tags {
                        if !c.tags.contains(&t) {
                            c.tags.push(t);
                        }
                    }
                }
            }
        }
        c
    } else if entries.small.contains_key(entries.resolve("manifest.json")) {
        docker_candidates(archive, &entries)?
    } else {
        return Err(archive_err(
            archive,
            "has neither manifest.json nor index.json: it is not a docker save archive or an OCI image layout",
        ));
    };

    let layers = check_layers(store, archive, &entries, &candidates, limits, progress)?;

    // Docker archives have no manifest: write one, deterministically.
    for c in &mut candidates {
        if c.manifest.is_empty() {
            let config_size =
                entries.staged(archive, c.config_path.as_deref().unwrap_or_default())?.size;
            let descriptors: Vec<Value> = c
                .layers
                .iter()
                .map(|l| {
                    let r = &layers[&l.digest];
                    json!({"mediaType": r.media_type, "digest": r.digest.to_string(), "size": r.size})
                })
                .collect();
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": c.config_digest.to_string(), "size": config_size},
                "layers": descriptors,
            });
            c.manifest =
                serde_json::to_vec(&manifest).expect("serialising a JSON value cannot fail");
        }
    }

    // Publish under a lease (so no concurrent GC sweeps them), then record each image.
    let lease = store.lease()?;
    let mut needed: Vec<Digest> = Vec::new();
    for c in &candidates {
        needed.push(Digest::sha256_of(&c.manifest));
        needed.push(c.config_digest.clone());
        needed.extend(c.layers.iter().map(|l| l.digest.clone()));
    }
    lease.add(&needed)?;
    let mut entries = entries;
    let mut loaded = Vec::new();
    for c in &candidates {
        let paths = c
            .layers
            .iter()
            .filter_map(|l| l.path.as_deref())
            .chain(c.config_path.as_deref())
            .chain(c.manifest_path.as_deref());
        for path in paths {
            let real = entries.resolve(path).to_string();
            if let Some(staged) = entries.files.remove(&real) {
                staged.publish()?;
            }
        }
        if c.manifest_path.is_none() {
            store.blobs().put(&c.manifest)?;
        }
        let image = NewImage {
            config_digest: c.config_digest.clone(),
            manifest_digest: Digest::sha256_of(&c.manifest),
            manifest_media_type: c.manifest_media_type.clone(),
            created: c.created.clone(),
            layers: c.layers.iter().map(|l| layers[&l.digest].clone()).collect(),
        };
        let tags: Vec<Reference> = c.tags.iter().map(|t| t.clone().with_default_tag()).collect();
        let retagged = store.commit_image(&image, &tags)?;
        loaded.push(LoadedImage { id: image.config_digest, tags, retagged });
    }
    drop(lease);
    Ok(loaded)
}

/// Reads every layer the candidates need once and checks it against the diffID its config
/// promises; layers the store already knows are taken from its records. Layers are
/// scanned in parallel: decompressing and hashing is CPU-bound.
fn check_layers(
    store: &Store,
    archive: &str,
    entries: &Entries,
    candidates: &[Candidate],
    limits: Limits,
    progress: &mut dyn FnMut(LoadEvent),
) -> Result<HashMap<Digest, LayerRecord>> {
    let known = store.known_layers()?;
    let mut checked: HashMap<Digest, LayerRecord> = HashMap::new();
    // (layer, file to read, blob size, name for messages)
    let mut to_scan: Vec<(&CandidateLayer, PathBuf, u64, String)> = Vec::new();
    for layer in candidates.iter().flat_map(|c| &c.layers) {
        if checked.contains_key(&layer.digest)
            || to_scan.iter().any(|(l, ..)| l.digest == layer.digest)
        {
            continue;
        }
        match (known.get(&layer.digest), &layer.path) {
            (Some(r), _) if r.diff_id == layer.diff_id => {
                let mut record = r.clone();
                if let Some(mt) = &layer.media_type {
                    record.media_type = mt.clone();
                }
                checked.insert(layer.digest.clone(), record);
            }
            (_, Some(p)) => {
                let staged = entries.staged(archive, p)?;
                to_scan.push((layer, staged.path().to_path_buf(), staged.size, p.clone()));
            }
            (_, None) => {
                let size = store.blobs().size(&layer.digest)?;
                to_scan.push((
                    layer,
                    store.blobs().path(&layer.digest),
                    size,
                    layer.digest.to_string(),
                ));
            }
        }
    }

    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<layer_info::LayerInfo>>>> =
        to_scan.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(to_scan.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((layer, path, _, shown)) = to_scan.get(i) else { break };
                let result = std::fs::File::open(path)
                    .map_err(|e| StoreError::Io {
                        action: "reading",
                        path: path.clone(),
                        source: e,
                    })
                    .and_then(|file| {
                        layer_info::scan(file, limits, Some(&layer.digest)).map_err(|e| {
                            archive_err(
                                archive,
                                format!("layer {shown}: {e}; refusing the whole archive"),
                            )
                        })
                    });
                *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            });
        }
    });

    for ((layer, _, size, shown), result) in to_scan.iter().zip(results) {
        let info = result
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .ok_or_else(|| archive_err(archive, format!("layer {shown} was not checked")))??;
        if info.diff_id != layer.diff_id {
            return Err(archive_err(
                archive,
                format!(
                    "layer {shown} has diffID {} but the image config expects {}; the archive is corrupt",
                    info.diff_id, layer.diff_id
                ),
            ));
        }
        progress(LoadEvent::LayerChecked { digest: layer.digest.clone() });
        let media_type = layer
            .media_type
            .clone()
            .unwrap_or_else(|| info.compression.oci_media_type().to_string());
        checked.insert(
            layer.digest.clone(),
            LayerRecord {
                digest: layer.digest.clone(),
                diff_id: info.diff_id,
                media_type,
                size: *size,
                content_size: info.content_size,
            },
        );
    }
    Ok(checked)
}

/// Which archive layout `save` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFormat {
    /// Docker 25's layout: docker-archive `manifest.json` plus an OCI layout.
    Docker,
    /// A plain OCI image layout.
    Oci,
}

/// An image to save and the names to record for it.
pub struct SaveItem {
    pub image: ImageRecord,
    pub names: Vec<Reference>,
}

struct TarOut<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> TarOut<W> {
    fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(mode);
        h.set_entry_type(kind);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }
    fn dir(&mut self, name: &str) -> io::Result<()> {
        let mut h = Self::header(0, 0o755, tar::EntryType::Directory);
        self.builder.append_data(&mut h, name, io::empty())
    }
    fn file(&mut self, name: &str, size: u64, data: impl Read) -> io::Result<()> {
        let mut h = Self::header(size, 0o644, tar::EntryType::Regular);
        self.builder.append_data(&mut h, name, data)
    }
}

/// An image to write into an archive, wherever its blobs live.
pub struct ArchiveImage {
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config_digest: Digest,
    pub layers: Vec<Digest>,
    pub names: Vec<Reference>,
}

/// Writes `items` as one archive. Blobs are copied as stored: nothing is recompressed.
pub fn save(store: &Store, items: &[SaveItem], format: SaveFormat, out: impl Write) -> Result<()> {
    let images: Vec<ArchiveImage> = items
        .iter()
        .map(|i| ArchiveImage {
            manifest_digest: i.image.manifest_digest.clone(),
            manifest_media_type: i.image.manifest_media_type.clone(),
            config_digest: i.image.id.clone(),
            layers: i.image.layers.iter().map(|l| l.digest.clone()).collect(),
            names: i.names.clone(),
        })
        .collect();
    write_archive(&images, format, &|d| store.blobs().open_blob(d), out)
}

/// Writes `images` in Docker 25's layout (or a plain OCI layout), reading each blob from
/// `open`. Blobs are copied byte for byte.
pub fn write_archive(
    images: &[ArchiveImage],
    format: SaveFormat,
    open: &dyn Fn(&Digest) -> Result<std::fs::File>,
    out: impl Write,
) -> Result<()> {
    let io_err = |e: io::Error| StoreError::Io {
        action: "writing",
        path: PathBuf::from("the archive"),
        source: e,
    };
    let mut tar = TarOut { builder: tar::Builder::new(io::BufWriter::with_capacity(1 << 20, out)) };
    tar.dir("blobs/").map_err(io_err)?;
    tar.dir("blobs/sha256/").map_err(io_err)?;
    let mut written = std::collections::HashMap::new();
    let mut index_manifests = Vec::new();
    let mut docker_manifest = Vec::new();
    for image in images {
        let all = std::iter::once(&image.manifest_digest)
            .chain(std::iter::once(&image.config_digest))
            .chain(&image.layers);
        for d in all {
            if written.contains_key(d) {
                continue;
            }
            let file = open(d)?;
            let size = file.metadata().map_err(io_err)?.len();
            tar.file(&format!("blobs/sha256/{}", d.hex()), size, file).map_err(io_err)?;
            written.insert(d.clone(), size);
        }
        let manifest_size = written[&image.manifest_digest];
        let descriptor = |name: Option<&Reference>| {
            let mut d = json!({
                "mediaType": image.manifest_media_type,
                "digest": image.manifest_digest.to_string(),
                "size": manifest_size,
            });
            if let Some(n) = name {
                d["annotations"] = json!({
                    ANNOTATION_IMAGE_NAME: n.to_string(),
                    ANNOTATION_REF_NAME: n.tag().unwrap_or("latest"),
                });
            }
            d
        };
        if image.names.is_empty() {
            index_manifests.push(descriptor(None));
        } else {
            index_manifests.extend(image.names.iter().map(|n| descriptor(Some(n))));
        }
        let layers: Vec<String> =
            image.layers.iter().map(|l| format!("blobs/sha256/{}", l.hex())).collect();
        let repo_tags: Option<Vec<String>> =
            (!image.names.is_empty()).then(|| image.names.iter().map(|n| n.familiar()).collect());
        docker_manifest.push(json!({
            "Config": format!("blobs/sha256/{}", image.config_digest.hex()),
            "RepoTags": repo_tags,
            "Layers": layers,
        }));
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_manifests});
    let index = serde_json::to_vec(&index).expect("serialising a JSON value cannot fail");
    tar.file("index.json", index.len() as u64, &index[..]).map_err(io_err)?;
    if format == SaveFormat::Docker {
        let m = serde_json::to_vec(&docker_manifest).expect("serialising a JSON value cannot fail");
        tar.file("manifest.json", m.len() as u64, &m[..]).map_err(io_err)?;
    }
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    tar.file("oci-layout", layout.len() as u64, &layout[..]).map_err(io_err)?;
    let mut inner = tar.builder.into_inner().map_err(io_err)?;
    inner.flush().map_err(io_err)?;
    Ok(())
}

impl Store {
    /// Layer records by blob digest, so re-loading known layers skips the scan.
    pub(crate) fn known_layers(&self) -> Result<HashMap<Digest, LayerRecord>> {
        let db = self.db();
        let mut out = HashMap::new();
        let result = (|| -> rusqlite::Result<()> {
            let mut stmt = db
                .conn()
                .prepare("SELECT digest, diff_id, media_type, size, content_size FROM layers")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            for row in rows {
                let (d, diff, mt, size, content) = row?;
                if let (Ok(digest), Ok(diff_id)) = (d.parse::<Digest>(), diff.parse::<Digest>()) {
                    out.insert(
                        digest.clone(),
                        LayerRecord {
                            digest,
                            diff_id,
                            media_type: mt,
                            size: size as u64,
                            content_size: content as u64,
                        },
                    );
                }
            }
            Ok(())
        })();
        result.map_err(|e| db.err(e))?;
        Ok(out)
    }
}
