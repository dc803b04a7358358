//! Where the registry keeps its data. [`Storage`] is the seam for other backends (object
//! storage next); [`FsStorage`] is the local filesystem.
//!
//! Filesystem layout under the root:
//! ```text
//! blobs/sha256/<hex>, blobs/sha512/<hex>     content, immutable, shared by all repositories
//! uploads/<id>                               bytes of upload sessions; never served
//! repositories/<name>/_layers/<hex>          link: the blob belongs to this repository
//! repositories/<name>/_manifests/<hex>       link: a manifest revision; content = media type
//! repositories/<name>/_tags/<tag>            content = the manifest digest
//! repositories/<name>/_referrers/<subject hex>/<hex>   content = the referrer's descriptor
//! ```
//! Repository name components cannot start with `_`, so the `_` directories never clash with
//! names. Every file is written to a temporary name, fsynced and renamed, then its directory
//! is fsynced: a crash leaves the old state or the new one, never a torn file.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::digest::{Algorithm, Digest, Hasher};
use bytes::Bytes;

use crate::error::{IoCtx, StorageError};

pub type Result<T> = std::result::Result<T, StorageError>;

/// A registry storage backend. Methods block; the server calls them off the async threads.
pub trait Storage: Send + Sync + 'static {
    /// Size of a stored blob, or `None`.
    fn blob_size(&self, digest: &Digest) -> Result<Option<u64>>;
    /// The whole blob, without copying it into memory where the backend can avoid it.
    fn blob_bytes(&self, digest: &Digest) -> Result<Option<Bytes>>;
    /// Every stored blob with its modification time (for GC).
    fn list_blobs(&self) -> Result<Vec<(Digest, SystemTime)>>;
    fn delete_blob(&self, digest: &Digest) -> Result<bool>;

    /// Opens a new upload file for `id`.
    fn upload_create(&self, id: &str) -> Result<Box<dyn UploadWriter>>;
    /// Reopens an existing upload for appending.
    fn upload_open(&self, id: &str) -> Result<Option<Box<dyn UploadWriter>>>;
    /// Makes a finished upload the blob `digest` (durably), consuming the upload.
    fn upload_commit(&self, id: &str, digest: &Digest) -> Result<()>;
    fn upload_delete(&self, id: &str) -> Result<()>;
    /// Hashes an upload's bytes again with another algorithm (the digest a client names at
    /// the end may not be the sha256 computed while streaming).
    fn upload_digest(&self, id: &str, algorithm: Algorithm) -> Result<Digest>;
    /// Upload ids with their last modification time.
    fn list_uploads(&self) -> Result<Vec<(String, SystemTime)>>;
    /// Stores small content (manifests) as the blob `digest` (computed by the caller).
    fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<()>;

    fn link_layer(&self, repo: &str, digest: &Digest) -> Result<()>;
    /// `Some(mtime)` when the repository has the blob.
    fn layer_linked(&self, repo: &str, digest: &Digest) -> Result<Option<SystemTime>>;
    fn unlink_layer(&self, repo: &str, digest: &Digest) -> Result<bool>;
    fn list_layers(&self, repo: &str) -> Result<Vec<(Digest, SystemTime)>>;
    /// Refreshes a link's time so a concurrent GC keeps what a new manifest references.
    fn touch_layer(&self, repo: &str, digest: &Digest) -> Result<()>;

    fn link_manifest(&self, repo: &str, digest: &Digest, media_type: &str) -> Result<()>;
    /// The media type when the repository has the manifest.
    fn manifest_media_type(&self, repo: &str, digest: &Digest) -> Result<Option<String>>;
    fn unlink_manifest(&self, repo: &str, digest: &Digest) -> Result<bool>;
    fn list_manifests(&self, repo: &str) -> Result<Vec<(Digest, SystemTime)>>;

    fn set_tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()>;
    fn get_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>>;
    fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool>;
    fn list_tags(&self, repo: &str) -> Result<Vec<String>>;

    fn add_referrer(
        &self,
        repo: &str,
        subject: &Digest,
        referrer: &Digest,
        descriptor: &[u8],
    ) -> Result<()>;
    fn remove_referrer(&self, repo: &str, subject: &Digest, referrer: &Digest) -> Result<()>;
    /// Descriptors (JSON) of the manifests that name `subject`.
    fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Vec<u8>>>;

    /// Every repository name, sorted.
    fn repositories(&self) -> Result<Vec<String>>;
    fn repository_exists(&self, repo: &str) -> Result<bool>;
}

/// An upload being written.
pub trait UploadWriter: Send {
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<()>;
    /// Bytes written so far (including earlier requests).
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug)]
pub struct FsStorage {
    root: PathBuf,
    /// Mappings of recently served large blobs: a new mapping per request would page-fault
    /// every 4 KiB of the blob again.
    maps: Arc<Mutex<HashMap<Digest, Bytes>>>,
}

const MAP_CACHE: usize = 64;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FsStorage {
    pub fn open(root: &Path) -> Result<FsStorage> {
        for d in ["blobs/sha256", "blobs/sha512", "uploads", "repositories", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).ctx("creating", &p)?;
        }
        let s = FsStorage { root: root.to_path_buf(), maps: Arc::default() };
        // Temporary files of dead processes (killed mid-write) are garbage; those of a live
        // one (a server while `gc` opens the same root) are not.
        if let Ok(rd) = fs::read_dir(root.join("tmp")) {
            for e in rd.flatten() {
                let name = e.file_name();
                let pid = name
                    .to_str()
                    .and_then(|n| n.split('.').next())
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_none_or(|p| !process_alive(p)) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.algorithm().as_str()).join(digest.hex())
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join("repositories").join(repo)
    }

    /// Writes `bytes` to `dest` atomically and durably.
    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        let dir = dest.parent().expect("destination has a parent");
        fs::create_dir_all(dir).ctx("creating", dir)?;
        let tmp = self.tmp_path();
        let mut f = File::create(&tmp).ctx("creating", &tmp)?;
        f.write_all(bytes).ctx("writing", &tmp)?;
        f.sync_all().ctx("syncing", &tmp)?;
        drop(f);
        fs::rename(&tmp, dest).ctx("renaming into", dest)?;
        sync_dir(dir)
    }

    fn tmp_path(&self) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(format!(
            "{}.{}.{}",
            std::process::id(),
            rand::random::<u32>(),
            n
        ))
    }

    fn remove(&self, path: &Path) -> Result<bool> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx("removing", path),
        }
    }

    fn list_digests(&self, dir: &Path) -> Result<Vec<(Digest, SystemTime)>> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).ctx("listing", dir),
        };
        for e in rd {
            let e = e.ctx("listing", dir)?;
            if let Some(Ok(d)) = e.file_name().to_str().map(Digest::from_hex) {
                let mtime =
                    e.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                out.push((d, mtime));
            }
        }
        Ok(out)
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("syncing", dir)
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory =>
        {
            Ok(None)
        }
        Err(e) => Err(e).ctx("reading", path),
    }
}

struct FsUpload {
    file: File,
    path: PathBuf,
    len: u64,
}

impl UploadWriter for FsUpload {
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).ctx("writing", &self.path)?;
        self.len += bytes.len() as u64;
        Ok(())
    }
    fn len(&self) -> u64 {
        self.len
    }
}

impl Storage for FsStorage {
    fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let p = self.blob_path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx("reading", p),
        }
    }

    fn blob_bytes(&self, digest: &Digest) -> Result<Option<Bytes>> {
        let p = self.blob_path(digest);
        let cached = self.maps.lock().expect("map cache").get(digest).cloned();
        if let Some(b) = cached {
            // `strata registry gc` in another process may have removed the file since.
            if p.exists() {
                return Ok(Some(b));
            }
            self.maps.lock().expect("map cache").remove(digest);
        }
        let file = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx("opening", p),
        };
        let len = file.metadata().ctx("reading", &p)?.len();
        if len < 64 * 1024 {
            // Small blobs (manifests, configs): a read is cheaper than a mapping.
            return Ok(Some(Bytes::from(fs::read(&p).ctx("reading", &p)?)));
        }
        // Blobs are never modified in place (only renamed in whole or unlinked), so a
        // mapping stays valid; plain-HTTP connections send it with sendfile (zerocopy.rs).
        let bytes = crate::zerocopy::map_file(file).ctx("mapping", &p)?;
        let mut cache = self.maps.lock().expect("map cache");
        if cache.len() >= MAP_CACHE {
            cache.clear();
        }
        cache.insert(digest.clone(), bytes.clone());
        Ok(Some(bytes))
    }

    fn list_blobs(&self) -> Result<Vec<(Digest, SystemTime)>> {
        let mut all = self.list_digests(&self.root.join("blobs/sha256"))?;
        all.extend(self.list_digests(&self.root.join("blobs/sha512"))?);
        Ok(all)
    }

    fn delete_blob(&self, digest: &Digest) -> Result<bool> {
        self.maps.lock().expect("map cache").remove(digest);
        self.remove(&self.blob_path(digest))
    }

    fn upload_create(&self, id: &str) -> Result<Box<dyn UploadWriter>> {
        let path = self.upload_path(id);
        let file = File::create(&path).ctx("creating", &path)?;
        Ok(Box::new(FsUpload { file, path, len: 0 }))
    }

    fn upload_open(&self, id: &str) -> Result<Option<Box<dyn UploadWriter>>> {
        let path = self.upload_path(id);
        let file = match fs::OpenOptions::new().append(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx("opening", path),
        };
        let len = file.metadata().ctx("reading", &path)?.len();
        Ok(Some(Box::new(FsUpload { file, path, len })))
    }

    fn upload_commit(&self, id: &str, digest: &Digest) -> Result<()> {
        let path = self.upload_path(id);
        File::open(&path).and_then(|f| f.sync_all()).ctx("syncing", &path)?;
        let dest = self.blob_path(digest);
        fs::rename(&path, &dest).ctx("renaming into", &dest)?;
        sync_dir(dest.parent().expect("blob dir"))
    }

    fn upload_digest(&self, id: &str, algorithm: Algorithm) -> Result<Digest> {
        let path = self.upload_path(id);
        let mut f = File::open(&path).ctx("opening", &path)?;
        let mut h = Hasher::new(algorithm);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = io::Read::read(&mut f, &mut buf).ctx("reading", &path)?;
            if n == 0 {
                return Ok(h.finish());
            }
            h.update(&buf[..n]);
        }
    }

    fn upload_delete(&self, id: &str) -> Result<()> {
        self.remove(&self.upload_path(id)).map(|_| ())
    }

    fn list_uploads(&self) -> Result<Vec<(String, SystemTime)>> {
        let dir = self.root.join("uploads");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).ctx("listing", &dir)? {
            let e = e.ctx("listing", &dir)?;
            let mtime = e.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((e.file_name().to_string_lossy().into_owned(), mtime));
        }
        Ok(out)
    }

    fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let dest = self.blob_path(digest);
        if !dest.exists() {
            self.write_atomic(&dest, bytes)?;
        }
        Ok(())
    }

    fn link_layer(&self, repo: &str, digest: &Digest) -> Result<()> {
        let p = self.repo_dir(repo).join("_layers").join(digest.hex());
        self.write_atomic(&p, b"")
    }

    fn layer_linked(&self, repo: &str, digest: &Digest) -> Result<Option<SystemTime>> {
        let p = self.repo_dir(repo).join("_layers").join(digest.hex());
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.modified().unwrap_or(SystemTime::UNIX_EPOCH))),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                Ok(None)
            }
            Err(e) => Err(e).ctx("reading", p),
        }
    }

    fn unlink_layer(&self, repo: &str, digest: &Digest) -> Result<bool> {
        self.remove(&self.repo_dir(repo).join("_layers").join(digest.hex()))
    }

    fn list_layers(&self, repo: &str) -> Result<Vec<(Digest, SystemTime)>> {
        self.list_digests(&self.repo_dir(repo).join("_layers"))
    }

    fn touch_layer(&self, repo: &str, digest: &Digest) -> Result<()> {
        let p = self.repo_dir(repo).join("_layers").join(digest.hex());
        match File::options().write(true).open(&p) {
            Ok(f) => f.set_modified(SystemTime::now()).ctx("touching", &p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx("touching", &p),
        }
    }

    fn link_manifest(&self, repo: &str, digest: &Digest, media_type: &str) -> Result<()> {
        let p = self.repo_dir(repo).join("_manifests").join(digest.hex());
        self.write_atomic(&p, media_type.as_bytes())
    }

    fn manifest_media_type(&self, repo: &str, digest: &Digest) -> Result<Option<String>> {
        let p = self.repo_dir(repo).join("_manifests").join(digest.hex());
        Ok(read_opt(&p)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    fn unlink_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        self.remove(&self.repo_dir(repo).join("_manifests").join(digest.hex()))
    }

    fn list_manifests(&self, repo: &str) -> Result<Vec<(Digest, SystemTime)>> {
        self.list_digests(&self.repo_dir(repo).join("_manifests"))
    }

    fn set_tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        let p = self.repo_dir(repo).join("_tags").join(tag);
        self.write_atomic(&p, digest.to_string().as_bytes())
    }

    fn get_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        let p = self.repo_dir(repo).join("_tags").join(tag);
        match read_opt(&p)? {
            None => Ok(None),
            Some(b) => {
                let s = String::from_utf8_lossy(&b);
                s.trim()
                    .parse::<Digest>()
                    .map(Some)
                    .map_err(|e| StorageError::Invalid(format!("tag file {}: {e}", p.display())))
            }
        }
    }

    fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        self.remove(&self.repo_dir(repo).join("_tags").join(tag))
    }

    fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        let dir = self.repo_dir(repo).join("_tags");
        let mut out = Vec::new();
        match fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd {
                    out.push(e.ctx("listing", &dir)?.file_name().to_string_lossy().into_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx("listing", dir),
        }
        out.sort();
        Ok(out)
    }

    fn add_referrer(
        &self,
        repo: &str,
        subject: &Digest,
        referrer: &Digest,
        descriptor: &[u8],
    ) -> Result<()> {
        let p = self.repo_dir(repo).join("_referrers").join(subject.hex()).join(referrer.hex());
        self.write_atomic(&p, descriptor)
    }

    fn remove_referrer(&self, repo: &str, subject: &Digest, referrer: &Digest) -> Result<()> {
        let p = self.repo_dir(repo).join("_referrers").join(subject.hex()).join(referrer.hex());
        self.remove(&p).map(|_| ())
    }

    fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Vec<u8>>> {
        let dir = self.repo_dir(repo).join("_referrers").join(subject.hex());
        let mut out = Vec::new();
        for (d, _) in self.list_digests(&dir)? {
            if let Some(b) = read_opt(&dir.join(d.hex()))? {
                out.push(b);
            }
        }
        Ok(out)
    }

    fn repositories(&self) -> Result<Vec<String>> {
        let base = self.root.join("repositories");
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx("listing", dir),
            };
            let mut is_repo = false;
            for e in rd {
                let e = e.ctx("listing", &dir)?;
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('_') {
                    is_repo |= name == "_manifests" || name == "_layers";
                } else if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
            if is_repo {
                if let Ok(rel) = dir.strip_prefix(&base) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn repository_exists(&self, repo: &str) -> Result<bool> {
        let d = self.repo_dir(repo);
        Ok(d.join("_manifests").is_dir() || d.join("_layers").is_dir())
    }
}
