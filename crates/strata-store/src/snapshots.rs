//! Layer snapshots: each layer unpacked once, in overlayfs form, under
//! `snapshots/<chain id>/fs`, and shared by every image, build and container that stacks it.
//!
//! A snapshot is unpacked into a private `.tmp-<pid>-<n>` directory and renamed into place,
//! so a snapshot directory is either complete or absent; two processes racing for the same
//! one both succeed and one copy wins. Callers hold a lease naming the chain IDs they use,
//! which keeps GC away from them.
//!
//! Durability without a sync on the hot path: a process crash (kill -9) cannot lose page
//! cache data, only a machine crash can, and a machine crash means a new boot. So a new
//! snapshot is not flushed; it carries a marker naming the boot it was written in. A
//! snapshot whose marker names another boot may have lost data and is unpacked again from
//! its blob (blobs are fsynced). [`Store::settle_snapshots`] later flushes snapshots old
//! enough for the kernel to have written them back already (a cheap `syncfs` then) and
//! drops their markers. syncfs per snapshot cost more than the rest of a build step.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use strata_layer::{unpack, UnpackMode, UnpackOptions};
use strata_oci::Digest;

use crate::error::{IoContext, Result, StoreError};
use crate::{process_alive, ImageRecord, Lease, Store};

/// Chain IDs of every image's layers, read inside the caller's transaction.
pub(crate) fn used_chain_ids(tx: &rusqlite::Transaction) -> rusqlite::Result<HashSet<String>> {
    let mut stmt = tx.prepare(
        "SELECT il.image_id, l.diff_id FROM image_layers il JOIN layers l ON l.digest = il.digest
         ORDER BY il.image_id, il.position",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut used = HashSet::new();
    let mut current: Option<(String, Digest)> = None;
    for row in rows {
        let (image, diff) = row?;
        let Ok(diff) = diff.parse::<Digest>() else { continue };
        let chain = match current.take() {
            Some((i, prev)) if i == image => Digest::sha256_of(format!("{prev} {diff}").as_bytes()),
            _ => diff,
        };
        used.insert(chain.to_string());
        current = Some((image, chain));
    }
    Ok(used)
}

/// Beside a snapshot's `fs`: the boot ID of the boot its files were written in, while they
/// may still be only in the page cache.
const UNSYNCED_MARKER: &str = "unsynced-boot";

/// How old an unsynced snapshot must be before [`Store::settle_snapshots`] flushes it: the
/// kernel writes dirty pages back after 30 s by default, so by then a syncfs is cheap.
const SETTLE_AFTER: Duration = Duration::from_secs(60);

/// This boot's ID (`/proc/sys/kernel/random/boot_id`); empty when unknown, which makes
/// every marker look foreign, so snapshots are re-made rather than trusted.
fn boot_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

/// Whether the snapshot at `target` can be used: no marker (flushed), or written in this
/// boot. Any other state (a marker of another boot, or unreadable) means possibly torn.
pub(crate) fn snapshot_trusted(target: &Path) -> bool {
    match fs::read_to_string(target.join(UNSYNCED_MARKER)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Ok(id) => !boot_id().is_empty() && id.trim() == boot_id(),
        Err(_) => false,
    }
}

fn write_marker(tmp: &Path) -> io::Result<()> {
    fs::write(tmp.join(UNSYNCED_MARKER), boot_id())
}

fn syncfs(dir: &Path) -> io::Result<()> {
    let d = fs::File::open(dir)?;
    // SAFETY: syncfs only reads the descriptor, which is open for the call.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Store {
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root().join("snapshots")
    }

    /// The image's layers as snapshot directories, bottom layer first, unpacking any that
    /// are missing. The lease keeps them from GC while the caller uses them.
    pub fn snapshots(&self, image: &ImageRecord, lease: &Lease) -> Result<Vec<PathBuf>> {
        self.layer_snapshots(&image.layers, lease)
    }

    /// [`Store::snapshots`] for a layer stack (bottom first) that need not be an image's.
    pub fn layer_snapshots(
        &self,
        layers: &[crate::LayerRecord],
        lease: &Lease,
    ) -> Result<Vec<PathBuf>> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let chain = strata_oci::config::chain_ids(&diff_ids);
        lease.add(&chain)?;
        layers.iter().zip(&chain).map(|(layer, id)| self.leased_snapshot(id, layer)).collect()
    }

    /// The snapshot of one layer whose chain ID the caller knows (the layers below it need
    /// not have snapshots), unpacking it if it is missing or untrusted.
    pub fn layer_snapshot(
        &self,
        chain_id: &Digest,
        layer: &crate::LayerRecord,
        lease: &Lease,
    ) -> Result<PathBuf> {
        lease.add([chain_id])?;
        self.leased_snapshot(chain_id, layer)
    }

    /// [`Store::layer_snapshot`] for a chain ID the caller's lease already holds.
    fn leased_snapshot(&self, chain_id: &Digest, layer: &crate::LayerRecord) -> Result<PathBuf> {
        let dir = self.snapshots_dir();
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        let target = dir.join(chain_id.hex());
        if target.join("fs").is_dir() && !snapshot_trusted(&target) {
            self.discard_snapshot(&target)?;
        }
        if !target.join("fs").is_dir() {
            self.unpack_snapshot(layer, &target)?;
        }
        Ok(target.join("fs"))
    }

    /// Makes `dir` (a layer in overlay form that the caller just wrote as a blob, on the
    /// store's filesystem) the snapshot of `chain_id`, by renaming, so a later build need
    /// not unpack it. Returns the snapshot's `fs` directory; when the snapshot already
    /// exists, `dir` is left where it is and the existing one is returned.
    pub fn adopt_snapshot(
        &self,
        chain_id: &Digest,
        dir: &std::path::Path,
        lease: &Lease,
    ) -> Result<PathBuf> {
        lease.add([chain_id])?;
        let sdir = self.snapshots_dir();
        fs::create_dir_all(&sdir).ctx("creating", &sdir)?;
        let target = sdir.join(chain_id.hex());
        if target.join("fs").is_dir() {
            if snapshot_trusted(&target) {
                return Ok(target.join("fs"));
            }
            self.discard_snapshot(&target)?;
        }
        let tmp = self.private_snapshot_path();
        fs::create_dir(&tmp).ctx("creating", &tmp)?;
        let moved = (|| {
            write_marker(&tmp).ctx("marking", &tmp)?;
            fs::rename(dir, tmp.join("fs")).ctx("moving into the snapshots", dir)
        })();
        if let Err(e) = moved {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, &target) {
            Ok(()) => Ok(target.join("fs")),
            Err(_) if target.join("fs").is_dir() => {
                // Another build made the same snapshot first: hand ours back to the caller.
                let _ = fs::rename(tmp.join("fs"), dir);
                let _ = fs::remove_dir_all(&tmp);
                Ok(target.join("fs"))
            }
            Err(e) => {
                let _ = fs::rename(tmp.join("fs"), dir);
                let _ = fs::remove_dir_all(&tmp);
                Err(e).ctx("publishing snapshot", &target)
            }
        }
    }

    fn unpack_snapshot(&self, layer: &crate::LayerRecord, target: &std::path::Path) -> Result<()> {
        let tmp = self.private_snapshot_path();
        let fs_dir = tmp.join("fs");
        fs::create_dir_all(&fs_dir).ctx("creating", &fs_dir)?;
        let result = (|| {
            let blob = self.blobs().open_blob(&layer.digest)?;
            let options =
                UnpackOptions { mode: UnpackMode::OverlayDiff, ..UnpackOptions::default() };
            let stats = unpack(io::BufReader::with_capacity(1 << 20, blob), &fs_dir, &options)
                .map_err(|e| {
                    StoreError::Invalid(format!("unpacking layer {}: {e}", layer.digest))
                })?;
            if stats.diff_id != layer.diff_id {
                return Err(StoreError::Invalid(format!(
                    "layer {} unpacked to diffID {} but the image expects {}",
                    layer.digest, stats.diff_id, layer.diff_id
                )));
            }
            write_marker(&tmp).ctx("marking", &tmp)?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, target) {
            Ok(()) => Ok(()),
            // Another process finished the same snapshot first: theirs is as good.
            Err(_) if target.join("fs").is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e).ctx("publishing snapshot", target)
            }
        }
    }

    /// A new `.tmp-<pid>-<random>` path in the snapshots directory: invisible to readers,
    /// and removed by GC once this process is gone.
    fn private_snapshot_path(&self) -> PathBuf {
        let name = format!(".tmp-{}-{:016x}", std::process::id(), rand::random::<u64>());
        self.snapshots_dir().join(name)
    }

    /// Moves a possibly torn snapshot out of the way (atomically, so a racing process sees
    /// it either whole or gone) and deletes it; it is unpacked again when needed.
    fn discard_snapshot(&self, target: &Path) -> Result<()> {
        let away = self.private_snapshot_path();
        match fs::rename(target, &away) {
            Ok(()) => fs::remove_dir_all(&away).ctx("removing stale snapshot", &away),
            // Another process discarded it first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx("discarding stale snapshot", target),
        }
    }

    /// Flushes the snapshots this boot wrote more than [`SETTLE_AFTER`] ago and drops their
    /// markers, so they survive a machine crash. One syncfs for all of them, and cheap:
    /// the kernel has written most of their pages back by then. Returns how many settled.
    pub fn settle_snapshots(&self) -> Result<usize> {
        let dir = self.snapshots_dir();
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(0) };
        let now = SystemTime::now();
        let mut ripe = Vec::new();
        for entry in entries.flatten() {
            if entry.file_name().as_encoded_bytes().starts_with(b".tmp-") {
                continue;
            }
            let marker = entry.path().join(UNSYNCED_MARKER);
            let Ok(md) = fs::metadata(&marker) else { continue };
            let old = md
                .modified()
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= SETTLE_AFTER);
            if old && snapshot_trusted(&entry.path()) {
                ripe.push(marker);
            }
        }
        if ripe.is_empty() {
            return Ok(0);
        }
        syncfs(&dir).ctx("syncing", &dir)?;
        for m in &ripe {
            // Gone already: another process settled it.
            let _ = fs::remove_file(m);
        }
        Ok(ripe.len())
    }

    /// Removes snapshots no image and no live lease uses, and unpacks abandoned by dead
    /// processes. Called by [`Store::gc`] inside its write transaction.
    pub(crate) fn sweep_snapshots(
        &self,
        used: &HashSet<String>,
        leased: &HashSet<String>,
    ) -> Result<u64> {
        let dir = self.snapshots_dir();
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(0) };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.ctx("listing", &dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let remove = match name.strip_prefix(".tmp-") {
                Some(rest) => rest
                    .split('-')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .is_none_or(|pid| !process_alive(pid)),
                None => {
                    let key = format!("sha256:{name}");
                    !used.contains(&key) && !leased.contains(&key)
                }
            };
            if remove {
                fs::remove_dir_all(entry.path()).ctx("removing snapshot", entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
