//! `strata copy` between skopeo's transports: `docker://REF`, `oci:DIR[:REF]`,
//! `oci-archive:FILE[:REF]`, `docker-archive:FILE[:REF]` and `containers-storage:NAME` (the
//! local store).
//!
//! Every blob read from a source is checked against its descriptor (size and sha256) before
//! a destination sees it: registry downloads hash while they stream, archive entries are
//! hashed while they are staged, layout and store files are hashed in place. Manifests are
//! copied byte for byte, so digests survive; only a legacy docker-archive (which has no
//! manifest) gets one written for it. Archives are read with the store's archive reader
//! (`strata_store::archive::read_archive`: path-escape, link and decompression-bomb checks)
//! and docker-archives are written with its writer, so `strata save`/`load` and `copy` agree.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use strata_oci::{
    descriptor_digest, media_types, Digest, Hasher, Manifest, Platform, RawManifest, Reference,
};
use strata_store::archive::{self, ArchiveEntries, ArchiveImage, SaveFormat};
use strata_store::layer_info::Limits;
use strata_store::{Blobs, Lease, Store};

use crate::client::{Client, MANIFEST_LIMIT};
use crate::copy::{image_blobs, TempSink};
use crate::error::{RegistryError, Result};
use crate::pull::fetch_manifest;
use crate::{endpoint, BlobOutcome, Event};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const IMAGE_NAME: &str = "io.containerd.image.name";
/// index.json and manifest.json are small; anything bigger is refused.
const METADATA_LIMIT: u64 = 16 << 20;

/// Where an image is, in skopeo's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `docker://NAME[:TAG|@DIGEST]`
    Registry(Reference),
    /// `oci:DIR[:REF]`: an OCI image layout directory.
    OciLayout { dir: PathBuf, reference: Option<String> },
    /// `oci-archive:FILE[:REF]`: a tar of an OCI image layout.
    OciArchive { file: PathBuf, reference: Option<String> },
    /// `docker-archive:FILE[:REF]`: `docker save`'s format (REF: a name, or `@N` to read).
    DockerArchive { file: PathBuf, reference: Option<String> },
    /// `containers-storage:NAME`: the local store.
    Store(String),
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let with = |f: &mut std::fmt::Formatter<'_>, t: &str, p: &Path, r: &Option<String>| {
            write!(f, "{t}:{}", p.display())?;
            match r {
                Some(r) => write!(f, ":{r}"),
                None => Ok(()),
            }
        };
        match self {
            Transport::Registry(r) => write!(f, "docker://{r}"),
            Transport::OciLayout { dir, reference } => with(f, "oci", dir, reference),
            Transport::OciArchive { file, reference } => with(f, "oci-archive", file, reference),
            Transport::DockerArchive { file, reference } => {
                with(f, "docker-archive", file, reference)
            }
            Transport::Store(n) => write!(f, "containers-storage:{n}"),
        }
    }
}

const SYNTAX: &str = "docker://NAME[:TAG], oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF] or containers-storage:NAME";

impl Transport {
    /// Parses skopeo's `TRANSPORT:REFERENCE` syntax. The path ends at the first `:` after
    /// the transport, as in containers/image.
    pub fn parse(s: &str) -> Result<Transport> {
        let invalid = |m: String| RegistryError::Invalid(m);
        if let Some(r) = s.strip_prefix("docker://") {
            return Reference::parse(r)
                .map(Transport::Registry)
                .map_err(|e| invalid(format!("invalid image name {s:?}: {e}")));
        }
        let Some((kind, rest)) = s.split_once(':') else {
            return Err(invalid(format!("invalid image name {s:?}: expected one of {SYNTAX}")));
        };
        let path_ref = |what: &str| -> Result<(PathBuf, Option<String>)> {
            let (path, reference) = match rest.split_once(':') {
                Some((p, r)) => (p, Some(r.to_string())),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(invalid(format!(
                    "{s:?}: {kind}: needs a {what}, as in {kind}:PATH[:REF]"
                )));
            }
            if let Some(r) = &reference {
                let ok = !r.is_empty()
                    && r.chars().all(|c| c.is_ascii_alphanumeric() || "._-:@/+".contains(c));
                if !ok {
                    return Err(invalid(format!(
                        "{s:?}: invalid reference {r:?}: use letters, digits and . _ - : @ / +"
                    )));
                }
            }
            Ok((PathBuf::from(path), reference))
        };
        match kind {
            "oci" => {
                let (dir, reference) = path_ref("directory")?;
                Ok(Transport::OciLayout { dir, reference })
            }
            "oci-archive" => {
                let (file, reference) = path_ref("file")?;
                Ok(Transport::OciArchive { file, reference })
            }
            "docker-archive" => {
                let (file, reference) = path_ref("file")?;
                if let Some(r) = reference.as_deref().filter(|r| !r.starts_with('@')) {
                    Reference::parse(r).map_err(|e| {
                        invalid(format!("{s:?}: invalid docker reference {r:?}: {e}"))
                    })?;
                }
                Ok(Transport::DockerArchive { file, reference })
            }
            "containers-storage" => Ok(Transport::Store(rest.to_string())),
            "docker" => Err(invalid(format!(
                "invalid image name {s:?}: the docker transport needs two slashes: docker://{rest}"
            ))),
            t @ ("dir" | "docker-daemon" | "ostree" | "sif" | "tarball") => Err(invalid(format!(
                "transport {t:?} is not supported by strata copy (use {SYNTAX})"
            ))),
            _ => Err(invalid(format!("invalid image name {s:?}: expected one of {SYNTAX}"))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TransportCopyOptions {
    /// Copy every manifest of an index, and the index.
    pub all: bool,
    pub platform: Option<Platform>,
    pub max_concurrent: usize,
    /// Decompression limits for compressed archives.
    pub limits: Limits,
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct TransportCopied {
    /// The digest of the top manifest written (the index's with `all`).
    pub digest: Digest,
    pub manifests: usize,
    pub blobs_copied: usize,
    pub blobs_skipped: usize,
}

fn io_err<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> RegistryError + 'p {
    move |e| RegistryError::io(action, path.display(), e)
}

fn invalid(m: impl Into<String>) -> RegistryError {
    RegistryError::Invalid(m.into())
}

/// Reads a whole small file, refusing more than `limit` bytes.
fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            RegistryError::NotFound { what: "file", name: format!("{} ({what})", path.display()) }
        } else {
            RegistryError::io("opening", path.display(), e)
        }
    })?;
    let mut out = Vec::new();
    f.take(limit + 1).read_to_end(&mut out).map_err(io_err("reading", path))?;
    if out.len() as u64 > limit {
        return Err(RegistryError::TooLarge {
            what: format!("{} ({what})", path.display()),
            limit,
        });
    }
    Ok(out)
}

/// Hashes a file and checks it against a descriptor.
fn verify_file(path: &Path, digest: &Digest, size: u64) -> Result<()> {
    let mut f = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            RegistryError::NotFound { what: "blob", name: format!("{digest} ({})", path.display()) }
        } else {
            RegistryError::io("opening", path.display(), e)
        }
    })?;
    let len = f.metadata().map_err(io_err("reading", path))?.len();
    if len != size {
        return Err(RegistryError::SizeMismatch {
            what: format!("blob {digest} ({})", path.display()),
            expected: size,
            actual: len,
        });
    }
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let actual = h.finish();
    if &actual != digest {
        return Err(RegistryError::DigestMismatch {
            what: format!("blob {digest} ({})", path.display()),
            expected: digest.clone(),
            actual,
        });
    }
    Ok(())
}

fn check_manifest(
    name: &str,
    bytes: Vec<u8>,
    expected: Option<(&Digest, u64)>,
    media_type: Option<&str>,
) -> Result<RawManifest> {
    if let Some((digest, size)) = expected {
        if bytes.len() as u64 != size {
            return Err(RegistryError::SizeMismatch {
                what: format!("manifest {name}"),
                expected: size,
                actual: bytes.len() as u64,
            });
        }
        let actual = Digest::sha256_of(&bytes);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {name}"),
                expected: digest.clone(),
                actual,
            });
        }
    }
    RawManifest::parse(bytes, media_type).map_err(|e| RegistryError::InvalidManifest {
        name: name.to_string(),
        message: e.to_string(),
    })
}

/// Image content on this machine: an OCI layout, an unpacked archive, or the store.
struct LocalSource<'a> {
    name: String,
    /// `blobs/sha256` of a layout or the store: hashed on every read.
    dir: Option<PathBuf>,
    /// An archive's staged entries (hashed when staged).
    entries: Option<ArchiveEntries>,
    /// Archive paths of blobs not named by digest (legacy docker-archive layers, configs).
    paths: HashMap<Digest, String>,
    /// Manifests written for a legacy docker-archive.
    synthetic: HashMap<Digest, Vec<u8>>,
    // Dropped after `entries`, whose staged files live in it.
    _tmp: Option<tempfile::TempDir>,
    _lease: Option<Lease<'a>>,
}

impl LocalSource<'_> {
    fn manifest(
        &self,
        digest: &Digest,
        size: u64,
        media_type: Option<&str>,
    ) -> Result<RawManifest> {
        let name = format!("{}@{digest}", self.name);
        if size > MANIFEST_LIMIT {
            return Err(RegistryError::TooLarge {
                what: format!("manifest {name}"),
                limit: MANIFEST_LIMIT,
            });
        }
        let bytes = if let Some(b) = self.synthetic.get(digest) {
            b.clone()
        } else if let Some(e) = &self.entries {
            let path = self.archive_path(digest);
            e.small(&path)
                .ok_or_else(|| RegistryError::NotFound {
                    what: "manifest",
                    name: format!("{name} ({path})"),
                })?
                .to_vec()
        } else {
            let dir = self.dir.as_ref().expect("a local source has a directory or entries");
            read_bounded(&dir.join(digest.hex()), MANIFEST_LIMIT, "manifest")?
        };
        check_manifest(&name, bytes, Some((digest, size)), media_type)
    }

    fn archive_path(&self, digest: &Digest) -> String {
        self.paths.get(digest).cloned().unwrap_or_else(|| format!("blobs/sha256/{}", digest.hex()))
    }

    /// A file holding exactly the blob, verified.
    fn blob(&self, digest: &Digest, size: u64) -> Result<PathBuf> {
        if let Some(e) = &self.entries {
            let path = self.archive_path(digest);
            let (file, len, actual) = e.file(&path).ok_or_else(|| RegistryError::NotFound {
                what: "blob",
                name: format!("{digest} (no {path} in {})", self.name),
            })?;
            if actual != digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("blob {path} of {}", self.name),
                    expected: digest.clone(),
                    actual: actual.clone(),
                });
            }
            if len != size {
                return Err(RegistryError::SizeMismatch {
                    what: format!("blob {path} of {}", self.name),
                    expected: size,
                    actual: len,
                });
            }
            return Ok(file.to_path_buf());
        }
        let dir = self.dir.as_ref().expect("a local source has a directory or entries");
        let path = dir.join(digest.hex());
        verify_file(&path, digest, size)?;
        Ok(path)
    }
}

enum Source<'a> {
    Registry { client: &'a Client, reference: Reference },
    Local(Box<LocalSource<'a>>),
}

/// A blob ready for a destination.
struct Fetched {
    path: PathBuf,
    /// A temporary file of ours: the destination may move it instead of copying.
    owned: bool,
}

impl Source<'_> {
    fn name(&self) -> String {
        match self {
            Source::Registry { reference, .. } => reference.to_string(),
            Source::Local(l) => l.name.clone(),
        }
    }

    async fn manifest(
        &self,
        digest: &Digest,
        size: u64,
        media_type: Option<&str>,
    ) -> Result<RawManifest> {
        match self {
            Source::Registry { client, reference } => {
                let (reg, repo, _) = endpoint(reference);
                fetch_manifest(
                    client,
                    &reg,
                    &repo,
                    &digest.to_string(),
                    Some((digest, Some(size))),
                    media_type,
                )
                .await
            }
            Source::Local(l) => l.manifest(digest, size, media_type),
        }
    }

    async fn blob(&self, digest: &Digest, size: u64, tmp: &Path) -> Result<Fetched> {
        match self {
            Source::Registry { client, reference } => {
                let (reg, repo, _) = endpoint(reference);
                let file =
                    tempfile::Builder::new().prefix(".strata-blob-").tempfile_in(tmp).map_err(
                        |e| RegistryError::io("creating a temporary file in", tmp.display(), e),
                    )?;
                let (file, path) = file
                    .keep()
                    .map_err(|e| RegistryError::io("creating", tmp.display(), e.error))?;
                let mut sink = TempSink {
                    file: io::BufWriter::with_capacity(1 << 20, file),
                    path: path.clone(),
                    hasher: Hasher::new(),
                };
                let result = async {
                    client.download_into(&reg, &repo, digest, size, &mut sink).await?;
                    sink.file.flush().map_err(io_err("writing", &path))?;
                    let len = sink.hasher.len();
                    let actual = std::mem::take(&mut sink.hasher).finish();
                    if len != size {
                        return Err(RegistryError::SizeMismatch {
                            what: format!("blob {digest}"),
                            expected: size,
                            actual: len,
                        });
                    }
                    if &actual != digest {
                        return Err(RegistryError::DigestMismatch {
                            what: format!("blob {digest}"),
                            expected: digest.clone(),
                            actual,
                        });
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    let _ = fs::remove_file(&path);
                    return Err(e);
                }
                Ok(Fetched { path, owned: true })
            }
            Source::Local(l) => Ok(Fetched { path: l.blob(digest, size)?, owned: false }),
        }
    }
}

/// Writes an OCI image layout directory. Blobs land through a temporary name and a rename,
/// so a reader never sees a partial blob.
struct LayoutWriter {
    dir: PathBuf,
    blobs: PathBuf,
    tmp: tempfile::TempDir,
}

impl LayoutWriter {
    fn open(dir: &Path) -> Result<LayoutWriter> {
        let layout = dir.join("oci-layout");
        match fs::read_dir(dir) {
            Ok(mut it) => {
                if !layout.is_file() && it.next().is_some() {
                    return Err(invalid(format!(
                        "{} exists and is not an OCI image layout (it has no oci-layout file): give a new or empty directory",
                        dir.display()
                    )));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(invalid(format!("{} is a file, not a directory: oci: needs a directory (use oci-archive: for a tar file)", dir.display())));
            }
            Err(e) => return Err(RegistryError::io("reading", dir.display(), e)),
        }
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
        if !layout.is_file() {
            fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(io_err("writing", &layout))?;
        }
        let tmp = tempfile::Builder::new()
            .prefix(".strata-tmp-")
            .tempdir_in(dir)
            .map_err(io_err("creating a temporary directory in", dir))?;
        Ok(LayoutWriter { dir: dir.to_path_buf(), blobs, tmp })
    }

    fn has(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.blobs.join(digest.hex())).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    fn put_file(&self, digest: &Digest, from: &Fetched) -> Result<()> {
        let target = self.blobs.join(digest.hex());
        if from.owned && fs::rename(&from.path, &target).is_ok() {
            return Ok(());
        }
        let tmp = self.tmp.path().join(digest.hex());
        fs::copy(&from.path, &tmp).map_err(io_err("copying into", &tmp))?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, &target).map_err(io_err("writing", &target))?;
        if from.owned {
            let _ = fs::remove_file(&from.path);
        }
        Ok(())
    }

    fn put_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let target = self.blobs.join(digest.hex());
        let tmp = self.tmp.path().join(digest.hex());
        fs::write(&tmp, bytes).map_err(io_err("writing", &tmp))?;
        fs::rename(&tmp, &target).map_err(io_err("writing", &target))
    }

    /// Adds the top manifest to index.json under `reference`, replacing what had that name.
    fn set_ref(&self, head: &RawManifest, reference: Option<&str>) -> Result<()> {
        let path = self.dir.join("index.json");
        let mut index: Value = match fs::metadata(&path) {
            Ok(_) => serde_json::from_slice(&read_bounded(&path, METADATA_LIMIT, "index.json")?)
                .map_err(|e| invalid(format!("{} is not valid JSON: {e}", path.display())))?,
            Err(_) => json!({"schemaVersion": 2, "manifests": []}),
        };
        let mut desc = json!({
            "mediaType": head.media_type(),
            "digest": head.digest().to_string(),
            "size": head.bytes().len(),
        });
        if let Some(r) = reference {
            desc["annotations"] = json!({ REF_NAME: r });
        }
        let list = index
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| invalid(format!("{} has no manifests list", path.display())))?;
        list.retain(|d| {
            let name = d
                .pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                .and_then(Value::as_str);
            match reference {
                Some(r) => name != Some(r),
                None => {
                    !(name.is_none() && d["digest"].as_str() == Some(&head.digest().to_string()))
                }
            }
        });
        list.push(desc);
        let bytes = serde_json::to_vec(&index).map_err(|e| invalid(e.to_string()))?;
        let tmp = self.tmp.path().join("index.json");
        fs::write(&tmp, bytes).map_err(io_err("writing", &tmp))?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("writing", &path))
    }
}

enum Finish {
    /// `oci:DIR[:REF]`: name the image in index.json.
    Layout(Option<String>),
    /// Tar the temporary layout into FILE.
    OciArchive { file: PathBuf, reference: Option<String> },
    /// Write FILE in Docker's save format with these names.
    DockerArchive { file: PathBuf, names: Vec<Reference> },
    /// Load into the store and tag.
    Store(Option<Reference>),
}

enum Dest<'a> {
    Registry { client: &'a Client, reference: Reference, mount_from: Option<String> },
    Layout { writer: LayoutWriter, finish: Finish, _tmp: Option<tempfile::TempDir> },
}

/// A temporary layout next to `file` (same filesystem, so the final rename is atomic).
fn temp_layout_beside(file: &Path) -> Result<(tempfile::TempDir, LayoutWriter)> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(invalid(format!(
            "{}: the directory {} does not exist",
            file.display(),
            parent.display()
        )));
    }
    if file.is_dir() {
        return Err(invalid(format!(
            "{} is a directory: an archive destination must be a file",
            file.display()
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".strata-copy-")
        .tempdir_in(&parent)
        .map_err(io_err("creating a temporary directory in", &parent))?;
    let writer = LayoutWriter::open(tmp.path())?;
    Ok((tmp, writer))
}

/// Selects an index.json entry by name: the ref.name annotation, or the full image name.
fn select_entry<'v>(index: &'v Value, reference: Option<&str>, name: &str) -> Result<&'v Value> {
    let list = index["manifests"]
        .as_array()
        .ok_or_else(|| invalid(format!("{name}: index.json has no manifests list")))?;
    let ref_of = |d: &Value| d["annotations"][REF_NAME].as_str().map(str::to_string);
    match reference {
        Some(r) => {
            let wanted = Reference::parse(r).ok().map(|x| x.with_default_tag());
            list.iter()
                .find(|d| {
                    ref_of(d).as_deref() == Some(r)
                        || d["annotations"][IMAGE_NAME].as_str().is_some_and(|n| {
                            n == r
                                || wanted.is_some()
                                    && Reference::parse(n).ok().map(|x| x.with_default_tag())
                                        == wanted
                        })
                })
                .ok_or_else(|| {
                    let names: Vec<String> = list.iter().filter_map(ref_of).collect();
                    invalid(format!(
                        "{name} has no image named {r:?} (its index.json names: {})",
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    ))
                })
        }
        None if list.len() == 1 => Ok(&list[0]),
        None if list.is_empty() => Err(invalid(format!("{name}: index.json lists no images"))),
        None => {
            let names: Vec<String> = list.iter().filter_map(ref_of).collect();
            Err(invalid(format!(
                "{name} holds {} images: name one as {name}:REF (names: {})",
                list.len(),
                names.join(", ")
            )))
        }
    }
}

fn descriptor_of(entry: &Value, name: &str) -> Result<(Digest, u64, Option<String>)> {
    let digest: Digest = entry["digest"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| invalid(format!("{name}: index.json has a bad digest: {e}")))?;
    let size = entry["size"]
        .as_u64()
        .ok_or_else(|| invalid(format!("{name}: index.json entry {digest} has no valid size")))?;
    Ok((digest, size, entry["mediaType"].as_str().map(str::to_string)))
}

/// Opens a source: the local source and its top manifest.
async fn open_source<'a>(
    client: &'a Client,
    store: Option<&'a Store>,
    t: &Transport,
    limits: Limits,
) -> Result<(Source<'a>, RawManifest)> {
    let name = t.to_string();
    let local = |dir: Option<PathBuf>,
                 entries: Option<ArchiveEntries>,
                 tmp: Option<tempfile::TempDir>| LocalSource {
        name: name.clone(),
        dir,
        entries,
        paths: HashMap::new(),
        synthetic: HashMap::new(),
        _tmp: tmp,
        _lease: None,
    };
    match t {
        Transport::Registry(r) => {
            let r = if r.digest().is_none() { r.clone().with_default_tag() } else { r.clone() };
            let (reg, repo, target) = endpoint(&r);
            let top =
                fetch_manifest(client, &reg, &repo, &target, r.digest().map(|d| (d, None)), None)
                    .await?;
            Ok((Source::Registry { client, reference: r }, top))
        }
        Transport::OciLayout { dir, reference } => {
            if !dir.join("oci-layout").is_file() {
                return Err(invalid(format!(
                    "{} is not an OCI image layout (no oci-layout file{})",
                    dir.display(),
                    if dir.exists() { "" } else { "; the directory does not exist" }
                )));
            }
            let index: Value = serde_json::from_slice(&read_bounded(
                &dir.join("index.json"),
                METADATA_LIMIT,
                "index.json",
            )?)
            .map_err(|e| invalid(format!("{}/index.json is not valid JSON: {e}", dir.display())))?;
            let (digest, size, mt) =
                descriptor_of(select_entry(&index, reference.as_deref(), &name)?, &name)?;
            let src = local(Some(dir.join("blobs").join("sha256")), None, None);
            let top = src.manifest(&digest, size, mt.as_deref())?;
            Ok((Source::Local(Box::new(src)), top))
        }
        Transport::OciArchive { file, reference }
        | Transport::DockerArchive { file, reference } => {
            let docker = matches!(t, Transport::DockerArchive { .. });
            let input = File::open(file).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    RegistryError::NotFound { what: "archive", name: file.display().to_string() }
                } else {
                    RegistryError::io("opening", file.display(), e)
                }
            })?;
            let tmp = tempfile::Builder::new()
                .prefix("strata-copy-")
                .tempdir()
                .map_err(|e| RegistryError::io("creating", "a temporary directory", e))?;
            let blobs = Blobs::open(tmp.path())?;
            let shown = file.display().to_string();
            let entries = tokio::task::block_in_place(|| {
                archive::read_archive(
                    &blobs,
                    &shown,
                    io::BufReader::with_capacity(1 << 20, input),
                    limits,
                )
            })?;
            let has_index = entries.small("index.json").is_some();
            let legacy =
                docker && !(has_index && reference.as_deref().is_none_or(|r| !r.starts_with('@')));
            if !legacy {
                let bytes = entries.small("index.json").ok_or_else(|| {
                    invalid(format!(
                        "{shown} has no index.json: it is not an OCI image layout archive{}",
                        if entries.small("manifest.json").is_some() {
                            " (it looks like a docker-archive: use docker-archive:)"
                        } else {
                            ""
                        }
                    ))
                })?;
                let index: Value = serde_json::from_slice(bytes)
                    .map_err(|e| invalid(format!("{shown}: index.json is not valid JSON: {e}")))?;
                let (digest, size, mt) =
                    descriptor_of(select_entry(&index, reference.as_deref(), &name)?, &name)?;
                let src = local(None, Some(entries), Some(tmp));
                let top = src.manifest(&digest, size, mt.as_deref())?;
                return Ok((Source::Local(Box::new(src)), top));
            }
            let (manifest, paths) = docker_manifest(&entries, &shown, reference.as_deref())?;
            let mut src = local(None, Some(entries), Some(tmp));
            src.paths = paths;
            let top = check_manifest(&name, manifest, None, Some(media_types::OCI_MANIFEST))?;
            src.synthetic.insert(top.digest().clone(), top.bytes().to_vec());
            Ok((Source::Local(Box::new(src)), top))
        }
        Transport::Store(n) => {
            let store = store.ok_or_else(|| invalid("the local store is not open"))?;
            let image = store.resolve(n)?;
            let lease = store.lease()?;
            lease.add(&image.blobs())?;
            let mut src = local(Some(store.blobs().dir().to_path_buf()), None, None);
            src._lease = Some(lease);
            let size = store.blobs().size(&image.manifest_digest)?;
            let top =
                src.manifest(&image.manifest_digest, size, Some(&image.manifest_media_type))?;
            Ok((Source::Local(Box::new(src)), top))
        }
    }
}

/// An OCI manifest for one image of a legacy docker-archive (manifest.json only), with the
/// archive paths of its config and layers by digest. OCI rather than Docker schema 2, as
/// skopeo's `oci:` reader takes only OCI media types; layers keep their bytes (docker and
/// podman save them uncompressed, so their digests are their diffIDs).
fn docker_manifest(
    entries: &ArchiveEntries,
    shown: &str,
    reference: Option<&str>,
) -> Result<(Vec<u8>, HashMap<Digest, String>)> {
    let bytes = entries.small("manifest.json").ok_or_else(|| {
        invalid(format!(
            "{shown} has neither manifest.json nor index.json: it is not a docker save archive"
        ))
    })?;
    let items: Vec<Value> = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("{shown}: manifest.json is not valid: {e}")))?;
    let tags_of = |v: &Value| -> Vec<String> {
        v["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let item = match reference {
        Some(r) if r.starts_with('@') => {
            let n: usize =
                r[1..].parse().map_err(|_| invalid(format!("{shown}: {r:?} is not @INDEX")))?;
            items.get(n).ok_or_else(|| {
                invalid(format!("{shown} has {} images; @{n} is out of range", items.len()))
            })?
        }
        Some(r) => {
            let wanted =
                Reference::parse(r).map_err(|e| invalid(format!("{r:?}: {e}")))?.with_default_tag();
            items
                .iter()
                .find(|i| {
                    tags_of(i)
                        .iter()
                        .any(|t| Reference::parse(t).is_ok_and(|t| t.with_default_tag() == wanted))
                })
                .ok_or_else(|| invalid(format!("{shown} has no image tagged {r}")))?
        }
        None if items.len() == 1 => &items[0],
        None => {
            return Err(invalid(format!(
                "{shown} holds {} images: name one as docker-archive:{shown}:NAME or :@INDEX",
                items.len()
            )))
        }
    };
    let config_path = item["Config"]
        .as_str()
        .ok_or_else(|| invalid(format!("{shown}: manifest.json entry has no Config")))?;
    let (_, config_size, config_digest) = entries.file(config_path).ok_or_else(|| {
        invalid(format!("{shown}: {config_path} is named by manifest.json but missing"))
    })?;
    let mut paths = HashMap::new();
    paths.insert(config_digest.clone(), config_path.to_string());
    let mut layers = Vec::new();
    for l in item["Layers"].as_array().into_iter().flatten() {
        let lp = l
            .as_str()
            .ok_or_else(|| invalid(format!("{shown}: manifest.json has a non-string layer")))?;
        let (file, size, digest) = entries.file(lp).ok_or_else(|| {
            invalid(format!("{shown}: layer {lp} is named by manifest.json but missing"))
        })?;
        let mut head = [0u8; 8];
        let n = File::open(file)
            .and_then(|mut f| f.read(&mut head))
            .map_err(io_err("reading", file))?;
        let mt = strata_layer::compression::detect(&head[..n])
            .map_err(|e| invalid(format!("{shown}: layer {lp}: {e}")))?
            .oci_media_type();
        paths.insert(digest.clone(), lp.to_string());
        layers.push(json!({"mediaType": mt, "size": size, "digest": digest.to_string()}));
    }
    let m = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "size": config_size, "digest": config_digest.to_string()},
        "layers": layers,
    });
    Ok((serde_json::to_vec_pretty(&m).map_err(|e| invalid(e.to_string()))?, paths))
}

fn open_dest<'a>(client: &'a Client, t: &Transport, src: &Transport) -> Result<Dest<'a>> {
    match t {
        Transport::Registry(r) => {
            let r = if r.digest().is_none() { r.clone().with_default_tag() } else { r.clone() };
            let mount_from = match src {
                Transport::Registry(s)
                    if s.registry() == r.registry() && s.repository() != r.repository() =>
                {
                    Some(s.repository().to_string())
                }
                _ => None,
            };
            Ok(Dest::Registry { client, reference: r, mount_from })
        }
        Transport::OciLayout { dir, reference } => Ok(Dest::Layout {
            writer: LayoutWriter::open(dir)?,
            finish: Finish::Layout(reference.clone()),
            _tmp: None,
        }),
        Transport::OciArchive { file, reference } => {
            let (tmp, writer) = temp_layout_beside(file)?;
            Ok(Dest::Layout {
                writer,
                finish: Finish::OciArchive { file: file.clone(), reference: reference.clone() },
                _tmp: Some(tmp),
            })
        }
        Transport::DockerArchive { file, reference } => {
            let names = match reference {
                Some(r) if r.starts_with('@') => {
                    return Err(invalid(format!("{t}: @INDEX names an image to read; to write, give a name (docker-archive:FILE:NAME:TAG)")))
                }
                Some(r) => vec![Reference::parse(r).map_err(|e| invalid(format!("{r:?}: {e}")))?.with_default_tag()],
                None => Vec::new(),
            };
            let (tmp, writer) = temp_layout_beside(file)?;
            Ok(Dest::Layout {
                writer,
                finish: Finish::DockerArchive { file: file.clone(), names },
                _tmp: Some(tmp),
            })
        }
        Transport::Store(name) => {
            let name = if name.is_empty() {
                None
            } else {
                Some(
                    Reference::parse(name)
                        .map_err(|e| invalid(format!("containers-storage:{name}: {e}")))?
                        .with_default_tag(),
                )
            };
            let tmp = tempfile::Builder::new()
                .prefix("strata-copy-")
                .tempdir()
                .map_err(|e| RegistryError::io("creating", "a temporary directory", e))?;
            let writer = LayoutWriter::open(tmp.path())?;
            Ok(Dest::Layout { writer, finish: Finish::Store(name), _tmp: Some(tmp) })
        }
    }
}

/// Copies an image between any two transports.
pub async fn copy_between(
    client: &Client,
    store: Option<&Store>,
    src: &Transport,
    dst: &Transport,
    opts: &TransportCopyOptions,
) -> Result<TransportCopied> {
    let single_image_dest = matches!(dst, Transport::DockerArchive { .. } | Transport::Store(_));
    if opts.all && single_image_dest {
        return Err(invalid(format!(
            "--all cannot write to {dst}: it holds one platform per image; use oci:, oci-archive: or docker:// for a multi-platform image"
        )));
    }
    match (src, dst) {
        (Transport::Store(_), Transport::Store(_)) => {
            return Err(invalid("both ends are the local store: use strata tag"));
        }
        (Transport::Registry(s), Transport::Registry(d)) => {
            let o = crate::CopyOptions {
                all: opts.all,
                platform: opts.platform.clone(),
                max_concurrent: opts.max_concurrent,
            };
            let c = crate::copy_image(client, s, d, &o).await?;
            return Ok(TransportCopied {
                digest: c.digest,
                manifests: c.manifests,
                blobs_copied: c.blobs_copied,
                blobs_skipped: c.blobs_skipped,
            });
        }
        (Transport::Registry(s), Transport::Store(name)) => {
            let store = store.ok_or_else(|| invalid("the local store is not open"))?;
            let o = crate::PullOptions {
                platform: opts.platform.clone(),
                max_concurrent: opts.max_concurrent,
                limits: opts.limits,
            };
            let p = crate::pull_image(client, store, s, &o).await?;
            if !name.is_empty() {
                let target = Reference::parse(name)
                    .map_err(|e| invalid(format!("containers-storage:{name}: {e}")))?;
                store.tag(&p.image_id.to_string(), &target.with_default_tag())?;
            }
            return Ok(TransportCopied {
                digest: p.digest,
                manifests: 1,
                blobs_copied: p.downloaded,
                blobs_skipped: p.already_present,
            });
        }
        (Transport::Store(name), Transport::Registry(d)) => {
            let store = store.ok_or_else(|| invalid("the local store is not open"))?;
            let o = crate::PushOptions { max_concurrent: opts.max_concurrent };
            let p = crate::push_image(client, store, name, d, &o).await?;
            return Ok(TransportCopied {
                digest: p.digest,
                manifests: 1,
                blobs_copied: p.uploaded,
                blobs_skipped: p.existed + p.mounted,
            });
        }
        _ => {}
    }
    let (source, top) = open_source(client, store, src, opts.limits).await?;
    let dest = open_dest(client, dst, src)?;
    let (children, head) = match top.manifest() {
        Manifest::Image(_) => (Vec::new(), top.clone()),
        Manifest::Index(index) if opts.all => {
            let mut children = Vec::new();
            for d in index.manifests() {
                let digest = descriptor_digest(d).map_err(|e| RegistryError::InvalidManifest {
                    name: source.name(),
                    message: e.to_string(),
                })?;
                let child =
                    source.manifest(&digest, d.size(), Some(d.media_type().as_ref())).await?;
                if child.manifest().as_index().is_some() {
                    return Err(RegistryError::InvalidManifest {
                        name: format!("{}@{digest}", source.name()),
                        message: "nested indexes are not supported".into(),
                    });
                }
                children.push(child);
            }
            (children, top.clone())
        }
        Manifest::Index(index) => {
            let wanted = opts.platform.clone().unwrap_or_else(Platform::host);
            let d = strata_oci::select(index, &wanted).ok_or_else(|| {
                RegistryError::NoPlatform { name: source.name(), platform: wanted.to_string() }
            })?;
            let digest = descriptor_digest(d).map_err(|e| RegistryError::InvalidManifest {
                name: source.name(),
                message: e.to_string(),
            })?;
            let child = source.manifest(&digest, d.size(), Some(d.media_type().as_ref())).await?;
            if child.manifest().as_index().is_some() {
                return Err(RegistryError::InvalidManifest {
                    name: format!("{}@{digest}", source.name()),
                    message: "an index entry for a platform is itself an index".into(),
                });
            }
            (Vec::new(), child)
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
    let tmp_dir: PathBuf = match &dest {
        Dest::Layout { writer, .. } => writer.tmp.path().to_path_buf(),
        Dest::Registry { .. } => std::env::temp_dir(),
    };
    let results: Vec<Result<bool>> = stream::iter(blobs.iter())
        .map(|(digest, size)| {
            let (source, dest, tmp_dir) = (&source, &dest, &tmp_dir);
            async move {
                let skip = |outcome| {
                    client.emit(Event::BlobDone { digest: digest.clone(), size: *size, outcome });
                    Ok(false)
                };
                match dest {
                    Dest::Registry { client: c, reference, mount_from } => {
                        let (reg, repo, _) = endpoint(reference);
                        if c.blob_exists(&reg, &repo, digest, true).await? {
                            return skip(BlobOutcome::Exists);
                        }
                        if let Some(from) = mount_from {
                            if c.mount_blob(&reg, &repo, from, digest).await? {
                                return skip(BlobOutcome::Mounted { from: from.clone() });
                            }
                        }
                    }
                    Dest::Layout { writer, .. } => {
                        if writer.has(digest, *size) {
                            return skip(BlobOutcome::Exists);
                        }
                    }
                }
                client.emit(Event::BlobStart { digest: digest.clone(), size: *size });
                let fetched = source.blob(digest, *size, tmp_dir).await?;
                let result = match dest {
                    Dest::Registry { client: c, reference, .. } => {
                        let (reg, repo, _) = endpoint(reference);
                        c.upload_blob(&reg, &repo, digest, *size, &fetched.path).await
                    }
                    Dest::Layout { writer, .. } => {
                        let (w, f) = (writer, &fetched);
                        tokio::task::block_in_place(|| w.put_file(digest, f))
                    }
                };
                if fetched.owned {
                    let _ = fs::remove_file(&fetched.path);
                }
                result?;
                client.emit(Event::BlobDone {
                    digest: digest.clone(),
                    size: *size,
                    outcome: BlobOutcome::Uploaded,
                });
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
    match dest {
        Dest::Registry { client: c, reference, .. } => {
            let (reg, repo, target) = endpoint(&reference);
            for child in &children {
                c.put_manifest(
                    &reg,
                    &repo,
                    &child.digest().to_string(),
                    child.bytes(),
                    child.media_type(),
                )
                .await?;
            }
            let answered =
                c.put_manifest(&reg, &repo, &target, head.bytes(), head.media_type()).await?;
            if let Some(d) = answered {
                if d != head.digest().to_string() {
                    return Err(invalid(format!(
                        "the registry stored {reference} as {d}, but its digest is {}",
                        head.digest()
                    )));
                }
            }
        }
        Dest::Layout { writer, finish, _tmp } => {
            for m in children.iter().chain(std::iter::once(&head)) {
                writer.put_bytes(m.digest(), m.bytes())?;
            }
            tokio::task::block_in_place(|| {
                finish_layout(&writer, finish, &head, store, opts.limits)
            })?;
        }
    }
    Ok(TransportCopied {
        digest: head.digest().clone(),
        manifests: children.len() + 1,
        blobs_copied: copied,
        blobs_skipped: skipped,
    })
}

fn finish_layout(
    writer: &LayoutWriter,
    finish: Finish,
    head: &RawManifest,
    store: Option<&Store>,
    limits: Limits,
) -> Result<()> {
    match finish {
        Finish::Layout(reference) => writer.set_ref(head, reference.as_deref()),
        Finish::OciArchive { file, reference } => {
            writer.set_ref(head, reference.as_deref())?;
            write_atomically(&file, |out| tar_layout(&writer.dir, out))
        }
        Finish::DockerArchive { file, names } => {
            let image = archive_image(head, names)?;
            write_atomically(&file, |out| {
                archive::write_archive(&[image], SaveFormat::Docker, &|d| writer.open_blob(d), out)
                    .map_err(Into::into)
            })
        }
        Finish::Store(name) => {
            let store = store.ok_or_else(|| invalid("the local store is not open"))?;
            let image = archive_image(head, name.clone().into_iter().collect())?;
            let tar = writer.tmp.path().join("image.tar");
            let out = File::create(&tar).map_err(io_err("creating", &tar))?;
            archive::write_archive(&[image], SaveFormat::Oci, &|d| writer.open_blob(d), out)?;
            let input = File::open(&tar).map_err(io_err("reading", &tar))?;
            let loaded = archive::load(
                store,
                &tar.display().to_string(),
                io::BufReader::new(input),
                limits,
                &mut |_| {},
            )?;
            if let (Some(n), Some(img)) = (name, loaded.first()) {
                store.tag(&img.id.to_string(), &n)?;
            }
            Ok(())
        }
    }
}

impl LayoutWriter {
    fn open_blob(&self, d: &Digest) -> strata_store::Result<File> {
        let p = self.blobs.join(d.hex());
        File::open(&p).map_err(|e| strata_store::StoreError::Io {
            action: "opening",
            path: p,
            source: e,
        })
    }
}

fn archive_image(head: &RawManifest, names: Vec<Reference>) -> Result<ArchiveImage> {
    let m = head
        .manifest()
        .as_image()
        .ok_or_else(|| invalid("an archive of this kind holds image manifests, not an index"))?;
    let bad = |e: strata_oci::DigestError| invalid(format!("manifest {}: {e}", head.digest()));
    Ok(ArchiveImage {
        manifest_digest: head.digest().clone(),
        manifest_media_type: head.media_type().to_string(),
        config_digest: descriptor_digest(m.config()).map_err(bad)?,
        layers: m
            .layers()
            .iter()
            .map(|l| descriptor_digest(l).map_err(bad))
            .collect::<Result<_>>()?,
        names,
    })
}

/// Writes `file` through a temporary file beside it, renamed into place when complete.
fn write_atomically(file: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".strata-archive-")
        .tempfile_in(parent)
        .map_err(io_err("creating a temporary file in", parent))?;
    write(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(io_err("syncing", tmp.path()))?;
    tmp.persist(file).map_err(|e| RegistryError::io("writing", file.display(), e.error))?;
    Ok(())
}

/// Tars an OCI layout directory (oci-layout, index.json, blobs/sha256/*), skipping our
/// temporary files.
fn tar_layout(dir: &Path, out: &mut File) -> Result<()> {
    let mut b = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, out));
    let err = |e: io::Error| RegistryError::io("writing", "the archive", e);
    let header = |size: u64, kind: tar::EntryType, mode: u32| {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(mode);
        h.set_entry_type(kind);
        h.set_mtime(0);
        h
    };
    for d in ["blobs/", "blobs/sha256/"] {
        b.append_data(&mut header(0, tar::EntryType::Directory, 0o755), d, io::empty())
            .map_err(err)?;
    }
    let blobs = dir.join("blobs").join("sha256");
    let mut names: Vec<String> = fs::read_dir(&blobs)
        .map_err(io_err("listing", &blobs))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| Digest::from_hex(n).is_ok())
        .collect();
    names.sort();
    for n in names {
        let p = blobs.join(&n);
        let f = File::open(&p).map_err(io_err("reading", &p))?;
        let size = f.metadata().map_err(io_err("reading", &p))?.len();
        b.append_data(
            &mut header(size, tar::EntryType::Regular, 0o644),
            format!("blobs/sha256/{n}"),
            f,
        )
        .map_err(err)?;
    }
    for n in ["index.json", "oci-layout"] {
        let bytes = fs::read(dir.join(n)).map_err(io_err("reading", &dir.join(n)))?;
        b.append_data(
            &mut header(bytes.len() as u64, tar::EntryType::Regular, 0o644),
            n,
            &bytes[..],
        )
        .map_err(err)?;
    }
    b.into_inner().map_err(err)?.flush().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_skopeo_syntax() {
        assert_eq!(
            Transport::parse("oci:/tmp/x:v1").unwrap(),
            Transport::OciLayout { dir: "/tmp/x".into(), reference: Some("v1".into()) }
        );
        assert_eq!(
            Transport::parse("oci-archive:a.tar").unwrap(),
            Transport::OciArchive { file: "a.tar".into(), reference: None }
        );
        assert_eq!(
            Transport::parse("docker-archive:a.tar:busybox:1").unwrap(),
            Transport::DockerArchive { file: "a.tar".into(), reference: Some("busybox:1".into()) }
        );
        assert_eq!(
            Transport::parse("containers-storage:x:1").unwrap(),
            Transport::Store("x:1".into())
        );
        let e = |s: &str| Transport::parse(s).unwrap_err().to_string();
        assert!(e("oci:").contains("needs a directory"), "{}", e("oci:"));
        assert!(e("oci:/x:bad ref").contains("invalid reference"));
        assert!(e("docker:busybox").contains("docker://busybox"));
        assert!(e("dir:/x").contains("not supported"));
        assert!(e("busybox").contains("expected one of"));
        assert!(e("docker-archive:a.tar:x@sha256:zz").contains("invalid docker reference"));
    }
}
