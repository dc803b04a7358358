//! Garbage collection while the registry serves, and the lock that makes it safe.
//!
//! Mark: every manifest linked in any repository, and everything it references (config,
//! layers, child manifests). Sweep: blobs neither marked nor linked more recently than the
//! grace period. The grace period is what keeps blobs of pushes in flight (uploaded, their
//! manifest not yet sent). The sweep runs under an exclusive `flock` on `gc.lock`; the
//! server holds it shared while it adds references (manifest PUT, upload commit, mount), so
//! a manifest can never be accepted against a blob that a sweep is deleting.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use serde_json::Value;

use crate::error::{ApiError, IoCtx, StorageError};
use crate::storage::Storage;

/// The server side of the GC lock: a shared `flock` held while any writer is active.
#[derive(Clone)]
pub struct WriteLock {
    path: PathBuf,
    inner: Arc<Mutex<(usize, Option<File>)>>,
}

pub struct WriteGuard {
    lock: WriteLock,
}

fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl WriteLock {
    pub fn new(root: &Path) -> WriteLock {
        WriteLock { path: root.join("gc.lock"), inner: Arc::new(Mutex::new((0, None))) }
    }

    /// Blocks while a GC sweep runs. Call from blocking code only.
    pub fn shared(&self) -> Result<WriteGuard, ApiError> {
        let mut g = self.inner.lock().expect("write lock");
        if g.0 == 0 {
            let f = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&self.path)
                .ctx("opening", &self.path)?;
            flock(&f, libc::LOCK_SH).ctx("locking", &self.path)?;
            g.1 = Some(f);
        }
        g.0 += 1;
        Ok(WriteGuard { lock: self.clone() })
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        let mut g = self.lock.inner.lock().expect("write lock");
        g.0 -= 1;
        if g.0 == 0 {
            g.1 = None; // closing the file releases the flock
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub manifests: usize,
    pub blobs_marked: usize,
    pub blobs_deleted: usize,
    pub bytes_freed: u64,
    pub blobs_kept_recent: usize,
    pub links_removed: usize,
    pub uploads_removed: usize,
    pub dry_run: bool,
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        write!(
            f,
            "{} manifests, {} blobs in use; {verb} {} blobs ({} bytes), {} layer links, {} stale uploads; kept {} recent unreferenced blobs",
            self.manifests, self.blobs_marked, self.blobs_deleted, self.bytes_freed, self.links_removed, self.uploads_removed, self.blobs_kept_recent
        )
    }
}

fn referenced(bytes: &[u8]) -> Vec<Digest> {
    let Ok(doc) = serde_json::from_slice::<Value>(bytes) else { return Vec::new() };
    let mut out = Vec::new();
    let mut push = |v: &Value| {
        if let Some(d) = v.get("digest").and_then(Value::as_str).and_then(|d| d.parse().ok()) {
            out.push(d);
        }
    };
    if let Some(c) = doc.get("config") {
        push(c);
    }
    for key in ["layers", "manifests"] {
        for d in doc.get(key).and_then(Value::as_array).into_iter().flatten() {
            push(d);
        }
    }
    out
}

/// Runs one collection. `lock_timeout` bounds the wait for in-flight writes to pause.
pub fn collect(
    storage: &dyn Storage,
    root: &Path,
    grace: Duration,
    upload_expiry: Duration,
    dry_run: bool,
    lock_timeout: Duration,
) -> Result<GcReport, StorageError> {
    let lock_path = root.join("gc.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .ctx("opening", &lock_path)?;
    let deadline = std::time::Instant::now() + lock_timeout;
    loop {
        match flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => break,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(StorageError::Invalid(format!(
                    "could not pause writers for GC within {lock_timeout:?}: {e}"
                )))
            }
        }
    }
    let now = SystemTime::now();
    let recent = |t: SystemTime| now.duration_since(t).map(|age| age < grace).unwrap_or(true);
    let mut report = GcReport { dry_run, ..Default::default() };
    let mut marked: HashSet<Digest> = HashSet::new();
    // Newest link time of each blob across repositories.
    let mut newest_link: HashMap<Digest, SystemTime> = HashMap::new();
    let repos = storage.repositories()?;
    for repo in &repos {
        for (m, _) in storage.list_manifests(repo)? {
            report.manifests += 1;
            if let Some(bytes) = storage.blob_bytes(&m)? {
                marked.extend(referenced(&bytes));
            }
            marked.insert(m);
        }
        for (l, t) in storage.list_layers(repo)? {
            let e = newest_link.entry(l).or_insert(t);
            if t > *e {
                *e = t;
            }
        }
    }
    report.blobs_marked = marked.len();
    let mut deleted = HashSet::new();
    for (blob, mtime) in storage.list_blobs()? {
        if marked.contains(&blob) {
            continue;
        }
        if recent(mtime) || newest_link.get(&blob).is_some_and(|t| recent(*t)) {
            report.blobs_kept_recent += 1;
            continue;
        }
        report.bytes_freed += storage.blob_size(&blob)?.unwrap_or(0);
        report.blobs_deleted += 1;
        if !dry_run {
            storage.delete_blob(&blob)?;
        }
        deleted.insert(blob);
    }
    for repo in &repos {
        for (l, _) in storage.list_layers(repo)? {
            if deleted.contains(&l) || (storage.blob_size(&l)?.is_none() && !marked.contains(&l)) {
                report.links_removed += 1;
                if !dry_run {
                    storage.unlink_layer(repo, &l)?;
                }
            }
        }
    }
    for (id, mtime) in storage.list_uploads()? {
        if now.duration_since(mtime).is_ok_and(|age| age > upload_expiry) {
            report.uploads_removed += 1;
            if !dry_run {
                storage.upload_delete(&id)?;
            }
        }
    }
    drop(lock);
    Ok(report)
}
