//! The metadata database: SQLite in WAL mode, shared by every `strata` process on the store.
//!
//! Writers take the lock up front (`BEGIN IMMEDIATE`) so two processes never deadlock while
//! upgrading read locks, and wait for each other through the busy timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{Result, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,                 -- config digest: Docker's image ID
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    created TEXT,                        -- the config's `created`, RFC 3339
    added_at INTEGER NOT NULL,           -- when this store got it, unix seconds
    size INTEGER NOT NULL                -- unpacked content size of all layers
);
CREATE TABLE IF NOT EXISTS image_blobs (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS image_blobs_by_digest ON image_blobs(digest);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (image_id, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS layers (
    digest TEXT PRIMARY KEY,             -- the blob as stored (maybe compressed)
    diff_id TEXT NOT NULL,               -- sha256 of the uncompressed tar
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,               -- blob size
    content_size INTEGER NOT NULL        -- sum of the file sizes inside
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,               -- normalised: docker.io/library/busybox:latest
    image_id TEXT NOT NULL REFERENCES images(id),
    tagged_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_by_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS repo_digests (
    repository TEXT NOT NULL,            -- docker.io/library/busybox
    digest TEXT NOT NULL,                -- manifest digest
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY (repository, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lease_blobs (
    lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (lease_id, digest)
) WITHOUT ROWID;
-- Schema 2: the build cache. A GC root for its layer and its snapshot (see cache.rs).
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,                -- the step's cache key (sha256 hex)
    layer_digest TEXT,                   -- NULL: the step changed no files
    diff_id TEXT,
    media_type TEXT,
    size INTEGER,
    content_size INTEGER,
    chain_id TEXT,                       -- chain ID of the stack up to this layer
    created TEXT NOT NULL,               -- when the step first ran, RFC 3339
    last_used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS build_cache_by_layer ON build_cache(layer_digest);
-- Schema 3: the context stat-cache (see statcache.rs). Not a GC root: it names no blob.
CREATE TABLE IF NOT EXISTS context_stat (
    root BLOB NOT NULL UNIQUE,           -- canonical context directory (raw bytes)
    generation INTEGER NOT NULL,         -- random, new at every save: was it saved since?
    last_used INTEGER NOT NULL,          -- unix seconds, refreshed at most daily
    entries BLOB NOT NULL                -- every file's stat and sha256 (statcache::encode)
);
PRAGMA user_version = 3;
";

pub(crate) struct Db {
    conn: Connection,
    path: PathBuf,
}

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Db> {
        let err = |source| StoreError::Db { path: path.to_path_buf(), source };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        // Many processes share the store; a busy writer makes the others wait, not fail.
        conn.busy_timeout(Duration::from_secs(120)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        // FULL: a committed tag survives power loss, which is what users expect of `tag`.
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(err)?;
        let db = Db { conn, path: path.to_path_buf() };
        db.write(|tx| tx.execute_batch(SCHEMA))?;
        Ok(db)
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Db { path: self.path.clone(), source }
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in a write transaction taken at once (`BEGIN IMMEDIATE`).
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.write_with(|tx| f(tx).map_err(|e| self.err(e)))
    }

    /// [`Db::write`] without the fsync at commit, for rows that mean nothing after a power
    /// loss: leases name live processes (after one none is alive), and a cache entry's
    /// last-used time only orders pruning. In WAL mode `synchronous=NORMAL` keeps the
    /// database consistent; only this transaction may be lost. A no-op build of a
    /// two-stage Dockerfile made 9 WAL fsyncs, most of them for cache hits and lease
    /// changes (about 2 ms each on a journaled ext4), and makes 4 now.
    pub(crate) fn write_volatile<T>(
        &self,
        f: impl FnOnce(&Transaction) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.write_volatile_with(|tx| f(tx).map_err(|e| self.err(e)))
    }

    /// [`Db::write_volatile`] for closures that fail with store errors.
    pub(crate) fn write_volatile_with<T>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T>,
    ) -> Result<T> {
        let set = |mode: &str| {
            self.conn.pragma_update(None, "synchronous", mode).map_err(|e| self.err(e))
        };
        set("NORMAL")?;
        let result = self.write_with(f);
        // Restored even when the transaction failed: every other write must stay durable.
        set("FULL")?;
        result
    }

    /// Like [`Db::write`] for closures that fail with store errors (e.g. file I/O done
    /// under the write lock).
    pub(crate) fn write_with<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        // `Connection::transaction_with_behavior` needs `&mut`; an unchecked transaction
        // gives the same BEGIN IMMEDIATE/COMMIT/ROLLBACK on a shared reference.
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let value = f(&tx)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(value)
    }
}
