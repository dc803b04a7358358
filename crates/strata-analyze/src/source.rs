//! Where an image comes from: the store, a docker-archive / OCI-layout tarball, or an OCI
//! layout (or extracted docker-archive) directory. Each yields the image config and its
//! layers as streams, read once, in whatever order the source stores them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;
use strata_layer::{LayerReader, Limits};

use crate::error::{AnalyzeError, Result};
use crate::scan::{normalize, scan_layer, LayerScan};

/// Metadata and JSON documents larger than this are not metadata: refuse them.
const MAX_JSON: u64 = 16 << 20;

/// What the user named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An image in the local store (tag, digest reference or ID).
    Store(String),
    /// A docker-archive or OCI-layout tarball (plain, gzip or zstd).
    Archive(PathBuf),
    /// An OCI image layout directory, or an extracted docker-archive.
    Dir(PathBuf),
}

impl Input {
    /// `docker-archive:PATH`, `oci-archive:PATH`, `oci:DIR` name a file or directory
    /// explicitly, `store:NAME` an image in the store; otherwise an existing path is a file or directory and anything else is
    /// an image name in the store.
    pub fn parse(arg: &str) -> Input {
        for prefix in ["docker-archive:", "oci-archive:"] {
            if let Some(rest) = arg.strip_prefix(prefix) {
                return Input::Archive(PathBuf::from(rest.trim_start_matches("//")));
            }
        }
        if let Some(rest) = arg.strip_prefix("store:") {
            return Input::Store(rest.to_string());
        }
        if let Some(rest) = arg.strip_prefix("oci:") {
            return Input::Dir(PathBuf::from(rest.trim_start_matches("//")));
        }
        let path = Path::new(arg);
        if path.is_dir() {
            Input::Dir(path.to_path_buf())
        } else if path.is_file() {
            Input::Archive(path.to_path_buf())
        } else {
            Input::Store(arg.to_string())
        }
    }
}

/// Where one layer blob sits in its source.
#[derive(Debug, Clone)]
pub struct LayerLocation {
    /// Path in the archive or directory, or the digest in the store.
    pub key: String,
    /// The blob digest when the source names it (OCI manifests, the store).
    pub digest: Option<String>,
    /// Size of the blob as stored, when known.
    pub blob_size: Option<u64>,
}

/// An image found in a source, before its layers are read.
#[derive(Debug, Clone)]
pub struct ImageMeta {
    /// What to call it in reports: a tag, or the path.
    pub name: String,
    /// The config digest (image ID) when known.
    pub id: Option<String>,
    pub config: Value,
    pub layers: Vec<LayerLocation>,
    /// Other images in the same archive that were not analysed.
    pub others: usize,
}

/// The image and its scanned layers, bottom first.
pub struct Loaded {
    pub meta: ImageMeta,
    pub scans: Vec<LayerScan>,
}

/// Finds the image `input` names and scans every layer once, streaming.
pub fn load(input: &Input, store_root: Option<&Path>) -> Result<Loaded> {
    match input {
        Input::Store(name) => load_store(name, store_root),
        Input::Dir(dir) => load_dir(dir),
        Input::Archive(path) => load_archive(path),
    }
}

fn load_store(name: &str, store_root: Option<&Path>) -> Result<Loaded> {
    let store = match store_root {
        Some(root) => strata_store::Store::open(root)?,
        None => strata_store::Store::open_default()?,
    };
    let image = store.resolve(name)?;
    let config_bytes = store.blobs().read(&image.id)?;
    let config = parse_json(&config_bytes, &format!("image config {}", image.id))?;
    let layers: Vec<LayerLocation> = image
        .layers
        .iter()
        .map(|l| LayerLocation {
            key: l.digest.to_string(),
            digest: Some(l.digest.to_string()),
            blob_size: Some(l.size),
        })
        .collect();
    let mut scans = Vec::with_capacity(layers.len());
    for (index, layer) in image.layers.iter().enumerate() {
        let blob = store.blobs().open_blob(&layer.digest)?;
        scans.push(scan_layer(
            std::io::BufReader::with_capacity(1 << 16, blob),
            index,
            &layer.digest.to_string(),
        )?);
    }
    let name = image.tags.first().map(|t| t.familiar()).unwrap_or_else(|| image.id.to_string());
    Ok(Loaded {
        meta: ImageMeta { name, id: Some(image.id.to_string()), config, layers, others: 0 },
        scans,
    })
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| AnalyzeError::bad(what, format!("is not valid JSON: {e}")))
}

/// Reads the small documents of a source by path.
trait Docs {
    fn doc(&self, path: &str) -> Result<Option<Vec<u8>>>;
    fn describe(&self) -> String;
}

/// Finds the image through `manifest.json` (docker-archive) or `index.json` (OCI layout).
fn find_image(docs: &dyn Docs) -> Result<ImageMeta> {
    let what = docs.describe();
    if let Some(bytes) = docs.doc("manifest.json")? {
        let manifest = parse_json(&bytes, &format!("{what}: manifest.json"))?;
        let list = manifest.as_array().ok_or_else(|| {
            AnalyzeError::bad(format!("{what}: manifest.json"), "is not a JSON array")
        })?;
        let first = list
            .first()
            .ok_or_else(|| AnalyzeError::bad(format!("{what}: manifest.json"), "lists no image"))?;
        let config_path = first.get("Config").and_then(Value::as_str).ok_or_else(|| {
            AnalyzeError::bad(
                format!("{what}: manifest.json"),
                "has no \"Config\" for its first image",
            )
        })?;
        let layers = first.get("Layers").and_then(Value::as_array).ok_or_else(|| {
            AnalyzeError::bad(
                format!("{what}: manifest.json"),
                "has no \"Layers\" for its first image",
            )
        })?;
        let mut locations = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let key = l.as_str().ok_or_else(|| {
                AnalyzeError::bad(
                    format!("{what}: manifest.json"),
                    format!("Layers[{i}] is not a string"),
                )
            })?;
            let digest = key.strip_prefix("blobs/sha256/").map(|hex| format!("sha256:{hex}"));
            locations.push(LayerLocation { key: clean_key(key, &what)?, digest, blob_size: None });
        }
        let config_bytes = docs.doc(&clean_key(config_path, &what)?)?.ok_or_else(|| {
            AnalyzeError::bad(what.clone(), format!("the image config {config_path} is missing"))
        })?;
        let config = parse_json(&config_bytes, &format!("{what}: {config_path}"))?;
        let name = first
            .get("RepoTags")
            .and_then(Value::as_array)
            .and_then(|t| t.first())
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| what.clone());
        let id = config_path
            .rsplit('/')
            .next()
            .map(|f| f.trim_end_matches(".json"))
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|h| format!("sha256:{h}"));
        return Ok(ImageMeta { name, id, config, layers: locations, others: list.len() - 1 });
    }
    if let Some(bytes) = docs.doc("index.json")? {
        let index = parse_json(&bytes, &format!("{what}: index.json"))?;
        return from_index(docs, &index, &what, 0, None);
    }
    Err(AnalyzeError::bad(
        what,
        "has neither manifest.json nor index.json: it is not a docker-archive or an OCI image layout",
    ))
}

fn blob_key(digest: &str, what: &str) -> Result<String> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| AnalyzeError::bad(what, format!("invalid digest {digest:?}")))?;
    if alg.is_empty() || hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(AnalyzeError::bad(what, format!("invalid digest {digest:?}")));
    }
    Ok(format!("blobs/{alg}/{hex}"))
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn from_index(
    docs: &dyn Docs,
    index: &Value,
    what: &str,
    depth: usize,
    name: Option<String>,
) -> Result<ImageMeta> {
    if depth > 4 {
        return Err(AnalyzeError::bad(what, "image indexes nest more than 4 deep"));
    }
    let manifests = index.get("manifests").and_then(Value::as_array).ok_or_else(|| {
        AnalyzeError::bad(format!("{what}: index.json"), "has no \"manifests\" list")
    })?;
    if manifests.is_empty() {
        return Err(AnalyzeError::bad(format!("{what}: index.json"), "lists no image"));
    }
    // Prefer the host platform; then anything that is not an attestation; then the first.
    let platform_of = |m: &Value| {
        let p = m.get("platform")?;
        Some((p.get("os")?.as_str()?.to_string(), p.get("architecture")?.as_str()?.to_string()))
    };
    let chosen = manifests
        .iter()
        .find(|m| platform_of(m).is_some_and(|(os, arch)| os == "linux" && arch == host_arch()))
        .or_else(|| manifests.iter().find(|m| platform_of(m).is_none_or(|(os, _)| os != "unknown")))
        .unwrap_or(&manifests[0]);
    let others = if depth == 0 { manifests.len() - 1 } else { 0 };
    let digest = chosen.get("digest").and_then(Value::as_str).ok_or_else(|| {
        AnalyzeError::bad(format!("{what}: index"), "a manifest descriptor has no digest")
    })?;
    let annotated = chosen
        .get("annotations")
        .and_then(|a| {
            a.get("io.containerd.image.name").or_else(|| a.get("org.opencontainers.image.ref.name"))
        })
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = name.or(annotated);
    let key = blob_key(digest, what)?;
    let bytes = docs
        .doc(&key)?
        .ok_or_else(|| AnalyzeError::bad(what, format!("the manifest {digest} is missing")))?;
    let doc = parse_json(&bytes, &format!("{what}: manifest {digest}"))?;
    if doc.get("manifests").is_some() {
        let mut meta = from_index(docs, &doc, what, depth + 1, name)?;
        meta.others += others;
        return Ok(meta);
    }
    let config_digest =
        doc.get("config").and_then(|c| c.get("digest")).and_then(Value::as_str).ok_or_else(
            || AnalyzeError::bad(format!("{what}: manifest {digest}"), "has no config digest"),
        )?;
    let config_bytes = docs.doc(&blob_key(config_digest, what)?)?.ok_or_else(|| {
        AnalyzeError::bad(what, format!("the image config {config_digest} is missing"))
    })?;
    let config = parse_json(&config_bytes, &format!("{what}: config {config_digest}"))?;
    let layers = doc.get("layers").and_then(Value::as_array).ok_or_else(|| {
        AnalyzeError::bad(format!("{what}: manifest {digest}"), "has no layers list")
    })?;
    let mut locations = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let d = l.get("digest").and_then(Value::as_str).ok_or_else(|| {
            AnalyzeError::bad(
                format!("{what}: manifest {digest}"),
                format!("layers[{i}] has no digest"),
            )
        })?;
        locations.push(LayerLocation {
            key: blob_key(d, what)?,
            digest: Some(d.to_string()),
            blob_size: l.get("size").and_then(Value::as_u64),
        });
    }
    // A bare `org.opencontainers.image.ref.name` is only a tag: show it after the path.
    let name = match name {
        Some(n) if n.contains('/') || n.contains(':') => n,
        Some(tag) => format!("{what}:{tag}"),
        None => what.to_string(),
    };
    Ok(ImageMeta { name, id: Some(config_digest.to_string()), config, layers: locations, others })
}

fn clean_key(key: &str, what: &str) -> Result<String> {
    match normalize(key) {
        Ok(Some(k)) => Ok(k),
        _ => Err(AnalyzeError::bad(
            what,
            format!("refers to {key:?}, which is not a path inside it"),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Directories

struct DirDocs<'a>(&'a Path);

impl Docs for DirDocs<'_> {
    fn doc(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let full = self.0.join(path);
        match std::fs::metadata(&full) {
            Ok(m) if m.len() > MAX_JSON => Err(AnalyzeError::bad(
                full.display().to_string(),
                format!("is {} bytes, too large for an image metadata document", m.len()),
            )),
            Ok(_) => std::fs::read(&full).map(Some).map_err(|e| AnalyzeError::io(&full, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AnalyzeError::io(&full, e)),
        }
    }
    fn describe(&self) -> String {
        self.0.display().to_string()
    }
}

fn load_dir(dir: &Path) -> Result<Loaded> {
    if !dir.is_dir() {
        return Err(AnalyzeError::bad(dir.display().to_string(), "is not a directory"));
    }
    let meta = find_image(&DirDocs(dir))?;
    let mut scans = Vec::with_capacity(meta.layers.len());
    for (index, layer) in meta.layers.iter().enumerate() {
        let path = dir.join(&layer.key);
        let file = File::open(&path).map_err(|e| AnalyzeError::io(&path, e))?;
        scans.push(scan_layer(
            std::io::BufReader::with_capacity(1 << 16, file),
            index,
            &layer.key,
        )?);
    }
    Ok(Loaded { meta, scans })
}

// ---------------------------------------------------------------------------------------
// Archives: read twice, first for the small documents (skipping data by seeking when the
// archive is an uncompressed file), then for the layers, each scanned as it streams past.

struct ArchiveDocs {
    what: String,
    docs: HashMap<String, Vec<u8>>,
}

impl Docs for ArchiveDocs {
    fn doc(&self, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.docs.get(path).cloned())
    }
    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// Receives each archive entry: its name, type, size and data.
type EntryVisitor<'a> = dyn FnMut(&str, &tar::EntryType, u64, &mut dyn Read) -> Result<()> + 'a;

/// Calls `f(name, entry)` for every entry of the archive at `path`; `f` reads what it needs.
fn walk_archive(path: &Path, f: &mut EntryVisitor<'_>) -> Result<()> {
    let mut file = File::open(path).map_err(|e| AnalyzeError::io(path, e))?;
    let mut head = [0u8; 8];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(AnalyzeError::io(path, e)),
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| AnalyzeError::io(path, e))?;
    let compression = strata_layer::compression::detect(&head[..filled])
        .map_err(|e| AnalyzeError::bad(path.display().to_string(), e.to_string()))?;
    let tar_err = |e: std::io::Error| {
        AnalyzeError::bad(path.display().to_string(), format!("is not a readable tar archive: {e}"))
    };
    let mut visit = |entry: &mut dyn ReadEntry| -> Result<()> {
        let name = entry.name();
        let etype = entry.etype();
        let size = entry.size();
        f(&name, &etype, size, entry.reader())
    };
    if compression == strata_layer::Compression::None {
        let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 16, file));
        for entry in archive.entries_with_seek().map_err(tar_err)? {
            let mut entry = entry.map_err(tar_err)?;
            visit(&mut entry)?;
        }
    } else {
        let reader =
            LayerReader::new(std::io::BufReader::with_capacity(1 << 16, file), Limits::default())
                .map_err(|e| AnalyzeError::bad(path.display().to_string(), e.to_string()))?;
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(tar_err)? {
            let mut entry = entry.map_err(tar_err)?;
            visit(&mut entry)?;
        }
    }
    Ok(())
}

trait ReadEntry {
    fn name(&self) -> String;
    fn etype(&self) -> tar::EntryType;
    fn size(&self) -> u64;
    fn reader(&mut self) -> &mut dyn Read;
}

impl<R: Read> ReadEntry for tar::Entry<'_, R> {
    fn name(&self) -> String {
        String::from_utf8_lossy(&self.path_bytes()).into_owned()
    }
    fn etype(&self) -> tar::EntryType {
        self.header().entry_type()
    }
    fn size(&self) -> u64 {
        tar::Entry::size(self)
    }
    fn reader(&mut self) -> &mut dyn Read {
        self
    }
}

fn load_archive(path: &Path) -> Result<Loaded> {
    let what = path.display().to_string();
    // Pass 1: the documents, and symlinks (docker save links repeated layers).
    let mut docs = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    walk_archive(path, &mut |name, etype, size, reader| {
        let Ok(Some(name)) = normalize(name) else { return Ok(()) };
        if etype.is_symlink() {
            // Resolved below; the target is read from the header, not the data.
            return Ok(());
        }
        if !etype.is_file() || size > MAX_JSON {
            return Ok(());
        }
        let wanted = name == "manifest.json"
            || name == "index.json"
            || name.ends_with(".json")
            || name.starts_with("blobs/");
        if !wanted {
            return Ok(());
        }
        // Blobs that do not start like JSON are layers: stop after the first bytes.
        let mut buf = Vec::with_capacity(size as usize);
        let mut first = [0u8; 1];
        let n = reader.read(&mut first).map_err(|e| AnalyzeError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        if !matches!(first[0], b'{' | b'[' | b' ' | b'\n' | b'\r' | b'\t') {
            return Ok(());
        }
        buf.push(first[0]);
        reader.read_to_end(&mut buf).map_err(|e| AnalyzeError::io(path, e))?;
        docs.insert(name, buf);
        Ok(())
    })?;
    // Symlink targets need the header: walk the names again only if the manifest points
    // at entries we did not see as files.
    let adocs = ArchiveDocs { what: what.clone(), docs };
    let meta = find_image(&adocs)?;
    drop(adocs);

    // Pass 2: scan each needed layer as it streams past.
    let mut wanted: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, l) in meta.layers.iter().enumerate() {
        wanted.entry(l.key.clone()).or_default().push(i);
    }
    let mut scans: Vec<Option<LayerScan>> = vec![None; meta.layers.len()];
    collect_symlinks(path, &mut links)?;
    // A wanted name that is a symlink to another entry is scanned from its target.
    let mut alias: HashMap<String, Vec<usize>> = HashMap::new();
    for (key, idxs) in &wanted {
        let mut k = key.clone();
        for _ in 0..8 {
            match links.get(&k) {
                Some(t) => k = t.clone(),
                None => break,
            }
        }
        alias.entry(k).or_default().extend(idxs.iter().copied());
    }
    walk_archive(path, &mut |name, etype, _size, reader| {
        let Ok(Some(name)) = normalize(name) else { return Ok(()) };
        if !etype.is_file() {
            return Ok(());
        }
        let Some(idxs) = alias.get(&name) else { return Ok(()) };
        let scan = scan_layer(reader, idxs[0], &name)?;
        for &i in idxs {
            scans[i] = Some(scan.clone());
        }
        Ok(())
    })?;
    let mut out = Vec::with_capacity(scans.len());
    for (i, s) in scans.into_iter().enumerate() {
        match s {
            Some(s) => out.push(s),
            None => {
                return Err(AnalyzeError::bad(
                    what,
                    format!(
                        "layer {i} ({}) is listed in the manifest but not in the archive",
                        meta.layers[i].key
                    ),
                ))
            }
        }
    }
    Ok(Loaded { meta, scans: out })
}

/// Records `name -> target` for every symlink in the archive (targets relative to the
/// link's directory, as docker save writes them).
fn collect_symlinks(path: &Path, links: &mut HashMap<String, String>) -> Result<()> {
    let file = File::open(path).map_err(|e| AnalyzeError::io(path, e))?;
    let mut head = [0u8; 8];
    let n = (&file).read(&mut head).map_err(|e| AnalyzeError::io(path, e))?;
    let compression = strata_layer::compression::detect(&head[..n])
        .map_err(|e| AnalyzeError::bad(path.display().to_string(), e.to_string()))?;
    if compression != strata_layer::Compression::None {
        // Compressed archives with symlinked layers are rare; symlinks are then unresolved
        // and reported as missing layers.
        return Ok(());
    }
    let tar_err = |e: std::io::Error| {
        AnalyzeError::bad(path.display().to_string(), format!("is not a readable tar archive: {e}"))
    };
    let mut file = file;
    file.seek(SeekFrom::Start(0)).map_err(|e| AnalyzeError::io(path, e))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    for entry in archive.entries_with_seek().map_err(tar_err)? {
        let entry = entry.map_err(tar_err)?;
        if !entry.header().entry_type().is_symlink() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(target) = entry.link_name_bytes() else { continue };
        let target = String::from_utf8_lossy(&target).into_owned();
        let Ok(Some(name)) = normalize(&name) else { continue };
        let (parent, _) = crate::scan::split_parent(&name);
        let joined =
            if target.starts_with('/') { target.clone() } else { format!("{parent}/{target}") };
        if let Ok(Some(t)) = normalize(&joined) {
            links.insert(name, t);
        }
    }
    Ok(())
}
