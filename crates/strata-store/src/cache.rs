//! The build cache: one row per build step, keyed by the step's content-based cache key
//! (computed by the build engine), naming the layer the step produced (if any) and when it
//! was first made.
//!
//! Reachability: a cache row is a GC root, like an image. The layer blob it names is never
//! swept while the row exists, and neither is the snapshot of its chain ID, so a cached
//! step can be reused without a download or an unpack. Rows go away only through
//! [`Store::cache_prune`] (`strata builder prune`, which also clears the context stat-cache);
//! the next GC then sweeps what they kept.
//! A lookup leases the layer and checks that its blob exists in the same write transaction,
//! so a prune + GC racing with a build either happens before (a miss) or after the lease.

use rusqlite::{params, OptionalExtension};
use strata_oci::Digest;

use crate::error::{IoContext, Result};
use crate::{now_unix, LayerRecord, Lease, Store};

/// What a cached build step left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    /// The layer the step produced; `None` for a step that changed no files.
    pub layer: Option<LayerRecord>,
    /// Chain ID of the layer stack up to and including `layer` (keeps its snapshot).
    pub chain_id: Option<Digest>,
    /// When the step first ran (RFC 3339): reused so a cached rebuild has the same image ID.
    pub created: String,
}

/// A build cache entry and what it holds (see [`Store::cache_entries`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheUsage {
    pub key: String,
    pub layer: Option<Digest>,
    /// The layer blob's size; 0 for a step that changed no files.
    pub size: u64,
    pub created: String,
    /// Unix seconds.
    pub last_used: i64,
    /// An image has the layer too: pruning the entry frees nothing.
    pub in_use: bool,
}

fn digest(s: Option<String>) -> Option<Digest> {
    s.and_then(|s| s.parse().ok())
}

impl Store {
    /// The entry for `key`, with its layer leased and checked present; `None` on a miss.
    pub fn cache_get(&self, key: &str, lease: &Lease) -> Result<Option<CacheEntry>> {
        let db = self.db();
        // Only a lease row and the last-used time are written: neither needs to survive a
        // power loss.
        db.write_volatile_with(|tx| {
            let sql = |e| db.err(e);
            type Row = (
                Option<String>,
                Option<String>,
                Option<String>,
                Option<i64>,
                Option<i64>,
                Option<String>,
                String,
            );
            let row: Option<Row> = tx
                .query_row(
                    "SELECT layer_digest, diff_id, media_type, size, content_size, chain_id, created
                     FROM build_cache WHERE key = ?1",
                    [key],
                    |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                    },
                )
                .optional()
                .map_err(sql)?;
            let Some((ld, diff, mt, size, csize, chain, created)) = row else { return Ok(None) };
            let layer = match (digest(ld), digest(diff), mt) {
                (Some(d), Some(diff_id), Some(media_type)) => Some(LayerRecord {
                    digest: d,
                    diff_id,
                    media_type,
                    size: size.unwrap_or(0) as u64,
                    content_size: csize.unwrap_or(0) as u64,
                }),
                _ => None,
            };
            let chain_id = digest(chain);
            if let Some(l) = &layer {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO lease_blobs (lease_id, digest) VALUES (?1, ?2)",
                    )
                    .map_err(sql)?;
                stmt.execute(params![lease.id(), l.digest.to_string()]).map_err(sql)?;
                if let Some(c) = &chain_id {
                    stmt.execute(params![lease.id(), c.to_string()]).map_err(sql)?;
                }
                if !self.blobs().exists(&l.digest) {
                    // Someone deleted the blob by hand: a miss, and the row is useless.
                    tx.execute("DELETE FROM build_cache WHERE key = ?1", [key]).map_err(sql)?;
                    return Ok(None);
                }
            }
            tx.execute("UPDATE build_cache SET last_used = ?2 WHERE key = ?1", params![key, now_unix()])
                .map_err(sql)?;
            Ok(Some(CacheEntry { layer, chain_id, created }))
        })
    }

    /// Records a step. Its layer blob must be published and leased by the caller.
    pub fn cache_put(&self, key: &str, entry: &CacheEntry) -> Result<()> {
        let l = entry.layer.as_ref();
        self.db().write(|tx| {
            if let Some(l) = l {
                tx.execute(
                    "INSERT OR IGNORE INTO layers (digest, diff_id, media_type, size, content_size)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        l.digest.to_string(),
                        l.diff_id.to_string(),
                        l.media_type,
                        l.size as i64,
                        l.content_size as i64
                    ],
                )?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO build_cache
                   (key, layer_digest, diff_id, media_type, size, content_size, chain_id, created, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    key,
                    l.map(|l| l.digest.to_string()),
                    l.map(|l| l.diff_id.to_string()),
                    l.map(|l| l.media_type.clone()),
                    l.map(|l| l.size as i64),
                    l.map(|l| l.content_size as i64),
                    entry.chain_id.as_ref().map(|c| c.to_string()),
                    entry.created,
                    now_unix()
                ],
            )?;
            Ok(())
        })
    }

    /// Number of build cache entries.
    pub fn cache_len(&self) -> Result<u64> {
        let db = self.db();
        db.conn()
            .query_row("SELECT COUNT(*) FROM build_cache", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| db.err(e))
    }

    /// Drops every build cache entry, the context stat-cache and the cache mounts'
    /// directories; a GC afterwards frees the layers only the entries kept. Returns how
    /// many build cache entries went.
    pub fn cache_prune(&self) -> Result<u64> {
        let n = self.db().write(|tx| tx.execute("DELETE FROM build_cache", []))?;
        self.stat_cache_clear()?;
        let mounts = self.cache_mounts_dir();
        if mounts.is_dir() {
            std::fs::remove_dir_all(&mounts).ctx("removing", &mounts)?;
        }
        Ok(n as u64)
    }

    /// Every build cache entry, newest use first, for `strata builder du`. `in_use`: an
    /// image in the store has the entry's layer, so pruning the entry frees nothing.
    pub fn cache_entries(&self) -> Result<Vec<CacheUsage>> {
        let db = self.db();
        let mut stmt = db
            .conn()
            .prepare(
                "SELECT c.key, c.layer_digest, c.size, c.created, c.last_used,
                        EXISTS (SELECT 1 FROM image_layers il WHERE il.digest = c.layer_digest)
                 FROM build_cache c ORDER BY c.last_used DESC, c.key",
            )
            .map_err(|e| db.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CacheUsage {
                    key: r.get(0)?,
                    layer: digest(r.get(1)?),
                    size: r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64,
                    created: r.get(3)?,
                    last_used: r.get(4)?,
                    in_use: r.get::<_, bool>(5)?,
                })
            })
            .map_err(|e| db.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| db.err(e))
    }

    /// `strata builder prune` with Docker's options: the entries last used before
    /// `before` (unix seconds; `None`: any), and of those only the ones whose layer no
    /// image has unless `all`. With `all` and no `before`, the stat-cache goes too, as
    /// [`Store::cache_prune`]; without `before` the cache mounts do (no image uses them).
    /// A GC afterwards frees the layers. Returns the keys removed.
    pub fn cache_prune_matching(&self, all: bool, before: Option<i64>) -> Result<Vec<String>> {
        if all && before.is_none() {
            let keys = self.cache_entries()?.into_iter().map(|e| e.key).collect();
            self.cache_prune()?;
            return Ok(keys);
        }
        if before.is_none() {
            let mounts = self.cache_mounts_dir();
            if mounts.is_dir() {
                std::fs::remove_dir_all(&mounts).ctx("removing", &mounts)?;
            }
        }
        let before = before.unwrap_or(i64::MAX);
        self.db().write(|tx| {
            let mut stmt = tx.prepare(
                "DELETE FROM build_cache
                 WHERE last_used < ?1
                   AND (?2 OR NOT EXISTS
                        (SELECT 1 FROM image_layers il WHERE il.digest = build_cache.layer_digest))
                 RETURNING key",
            )?;
            let keys = stmt.query_map(params![before, all], |r| r.get::<_, String>(0))?;
            let keys: rusqlite::Result<Vec<String>> = keys.collect();
            keys
        })
    }

    /// Where `RUN --mount=type=cache` directories live, shared by every build on the store.
    pub fn cache_mounts_dir(&self) -> std::path::PathBuf {
        self.root().join("cache-mounts")
    }
}

/// Layer digests and chain IDs the build cache keeps, read inside a GC transaction.
pub(crate) fn cache_roots(
    tx: &rusqlite::Transaction,
) -> rusqlite::Result<(Vec<String>, Vec<String>)> {
    let mut stmt = tx.prepare("SELECT layer_digest, chain_id FROM build_cache")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?)))?;
    let mut layers = Vec::new();
    let mut chains = Vec::new();
    for row in rows {
        let (l, c) = row?;
        layers.extend(l);
        chains.extend(c);
    }
    Ok((layers, chains))
}
