//! The local image store: content-addressed blobs plus a SQLite metadata database, shared
//! safely by many `strata` processes at once and consistent after a crash at any instant.
//!
//! Invariants every write path keeps:
//! - a blob is visible only once whole and verified (see [`blobs`]);
//! - an image row is written only after all its blobs are visible, in one transaction with
//!   its tags, so no tag ever points at a missing blob;
//! - a blob is deleted only under the database write lock, after checking that no image and
//!   no live lease references it; writers record a lease before they publish blobs.

pub mod archive;
pub mod blobs;
pub mod cache;
pub mod copy_sources;
mod db;
pub mod error;
pub mod fsck;
pub mod gc;
pub mod images;
pub mod import;
pub mod layer_info;
pub mod lease;
pub mod pending;
pub mod root;
pub mod snapshots;
pub mod statcache;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub use blobs::{Blobs, Ingest, Staged};
pub use cache::{CacheEntry, CacheUsage};
pub use copy_sources::{CopySource, PooledCopy, SourceStat};
pub use error::{Result, StoreError};
pub use images::{ImageRecord, LayerRecord, NewImage, RemovalEvent};
pub use lease::Lease;
pub use pending::{PendingProblem, CONTENT_SIZE_PENDING};
pub use statcache::{StatCache, StatRecord};

use error::IoContext;

/// An open store. Cheap to share between threads; every process opens its own.
pub struct Store {
    root: PathBuf,
    blobs: Blobs,
    db: Mutex<db::Db>,
    // Held open for the life of the store so other processes see a shared flock.
    _lock_file: File,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root).ctx("creating store directory", &root)?;
        let blobs = Blobs::open(&root)?;
        let lock_path = root.join("store.lock");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx("opening", &lock_path)?;
        let db = db::Db::open(&root.join("meta.db"))?;
        Ok(Store { root, blobs, db: Mutex::new(db), _lock_file: lock_file })
    }

    /// Opens the store at the default root (see [`root::default_root`]).
    pub fn open_default() -> Result<Store> {
        Store::open(root::default_root())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    pub(crate) fn db(&self) -> MutexGuard<'_, db::Db> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back on drop), so a poisoned mutex is still safe to use.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a process with this PID exists (on this machine).
pub(crate) fn process_alive(pid: i64) -> bool {
    if pid <= 0 || pid > i32::MAX as i64 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
