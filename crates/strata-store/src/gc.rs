//! Garbage collection: delete blobs no image and no live lease references.
//!
//! Sweeps run inside a write transaction, so they exclude writers that are about to record a
//! lease: a writer records its lease first and only then checks for and publishes blobs,
//! which means a blob is either leased before the sweep looks or published after it ends.

use std::collections::HashSet;

use rusqlite::Transaction;
use strata_oci::Digest;

use crate::error::Result;
use crate::{process_alive, Store};

/// What a full GC did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    pub dead_leases: u64,
    pub abandoned_ingests: u64,
    pub snapshots_removed: u64,
}

/// Drops leases whose process is gone and returns the blobs the live ones protect.
fn live_leased_blobs(tx: &Transaction) -> rusqlite::Result<(HashSet<String>, u64)> {
    let leases: Vec<(String, i64)> = {
        let mut stmt = tx.prepare("SELECT id, pid FROM leases")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut dead = 0;
    for (id, pid) in &leases {
        if !process_alive(*pid) {
            tx.execute("DELETE FROM leases WHERE id = ?1", [id])?;
            dead += 1;
        }
    }
    let mut stmt = tx.prepare("SELECT digest FROM lease_blobs")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, dead))
}

/// Blobs images or build cache entries reference: GC's roots besides leases.
fn referenced_by_images(tx: &Transaction) -> rusqlite::Result<HashSet<String>> {
    let mut stmt = tx.prepare("SELECT DISTINCT digest FROM image_blobs")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut used: HashSet<String> = rows.collect::<rusqlite::Result<_>>()?;
    used.extend(crate::cache::cache_roots(tx)?.0);
    Ok(used)
}

impl Store {
    /// Deletes those of `candidates` that nothing references any more. Returns bytes freed.
    pub(crate) fn sweep(&self, candidates: &[Digest]) -> Result<u64> {
        if candidates.is_empty() {
            return Ok(0);
        }
        let db = self.db();
        db.write_with(|tx| {
            let sql = |e| db.err(e);
            let (leased, _) = live_leased_blobs(tx).map_err(sql)?;
            let mut freed = 0;
            for d in candidates {
                let key = d.to_string();
                let used: bool = tx
                    .query_row(
                        "SELECT EXISTS(SELECT 1 FROM image_blobs WHERE digest = ?1)
                             OR EXISTS(SELECT 1 FROM build_cache WHERE layer_digest = ?1)",
                        [&key],
                        |r| r.get(0),
                    )
                    .map_err(sql)?;
                if used || leased.contains(&key) {
                    continue;
                }
                let size = self.blobs().size(d).unwrap_or(0);
                if self.blobs().remove(d)? {
                    freed += size;
                }
                tx.execute("DELETE FROM layers WHERE digest = ?1", [&key]).map_err(sql)?;
            }
            Ok(freed)
        })
    }

    /// A full mark-and-sweep over every blob, plus clean-up of what crashed processes left.
    pub fn gc(&self) -> Result<GcReport> {
        let mut report = GcReport::default();
        let db = self.db();
        db.write_with(|tx| {
            let sql = |e| db.err(e);
            let (leased, dead) = live_leased_blobs(tx).map_err(sql)?;
            report.dead_leases = dead;
            let used = referenced_by_images(tx).map_err(sql)?;
            let (present, _strays) = self.blobs().list()?;
            let mut chains = crate::snapshots::used_chain_ids(tx).map_err(sql)?;
            chains.extend(crate::cache::cache_roots(tx).map_err(sql)?.1);
            report.snapshots_removed = self.sweep_snapshots(&chains, &leased)?;
            for d in present {
                let key = d.to_string();
                if used.contains(&key) || leased.contains(&key) {
                    continue;
                }
                let size = self.blobs().size(&d).unwrap_or(0);
                if self.blobs().remove(&d)? {
                    report.blobs_removed += 1;
                    report.bytes_freed += size;
                }
            }
            tx.execute(
                "DELETE FROM layers WHERE digest NOT IN (SELECT digest FROM image_blobs)
                   AND digest NOT IN (SELECT digest FROM lease_blobs)
                   AND digest NOT IN (SELECT layer_digest FROM build_cache
                                      WHERE layer_digest IS NOT NULL)",
                [],
            )
            .map_err(sql)?;
            Ok(())
        })?;
        drop(db);
        report.abandoned_ingests = self.blobs().clean_abandoned_ingests()?;
        Ok(report)
    }
}
