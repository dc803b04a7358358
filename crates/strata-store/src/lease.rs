//! Leases protect blobs a process is about to publish or is reading from GC.
//!
//! A lease is a row naming the owning PID; GC ignores leases whose process is gone, so a
//! `strata` killed mid-load never pins blobs forever. For the same reason lease rows are
//! written without an fsync: after a power loss no lease matters.

use strata_oci::Digest;

use crate::error::Result;
use crate::{now_unix, Store};

pub struct Lease<'a> {
    store: &'a Store,
    id: String,
}

impl Store {
    /// Takes a new lease; it ends when dropped.
    pub fn lease(&self) -> Result<Lease<'_>> {
        let id = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        self.db().write_volatile(|tx| {
            tx.execute(
                "INSERT INTO leases (id, pid, created) VALUES (?1, ?2, ?3)",
                rusqlite::params![id, std::process::id(), now_unix()],
            )
        })?;
        Ok(Lease { store: self, id })
    }
}

impl Lease<'_> {
    /// Protects these blobs from GC until the lease ends. Call before publishing them.
    pub fn add<'d>(&self, digests: impl IntoIterator<Item = &'d Digest>) -> Result<()> {
        let digests: Vec<String> = digests.into_iter().map(|d| d.to_string()).collect();
        self.store.db().write_volatile(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO lease_blobs (lease_id, digest) VALUES (?1, ?2)",
            )?;
            for d in &digests {
                stmt.execute(rusqlite::params![self.id, d])?;
            }
            Ok(())
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let _ = self.store.db().write_volatile(|tx| {
            tx.execute("DELETE FROM leases WHERE id = ?1", rusqlite::params![self.id])
        });
    }
}
