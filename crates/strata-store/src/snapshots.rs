//! Layer snapshots: each layer unpacked once, in overlayfs form, under
//! `snapshots/<chain id>/fs`, and shared by every image, build and container that stacks it.
//!
//! A snapshot is unpacked into a private `.tmp-<pid>-<n>` directory, flushed, and renamed
//! into place, so a snapshot directory is either complete or absent; two processes racing
//! for the same one both succeed and one copy wins. Callers hold a lease naming the chain
//! IDs they use, which keeps GC away from them.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

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
        let dir = self.snapshots_dir();
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        let mut out = Vec::new();
        for (layer, chain_id) in layers.iter().zip(&chain) {
            let target = dir.join(chain_id.hex());
            if !target.join("fs").is_dir() {
                self.unpack_snapshot(layer, &target)?;
            }
            out.push(target.join("fs"));
        }
        Ok(out)
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
            return Ok(target.join("fs"));
        }
        let tmp = sdir.join(format!(".tmp-{}-{:016x}", std::process::id(), rand::random::<u64>()));
        fs::create_dir(&tmp).ctx("creating", &tmp)?;
        let moved = (|| {
            fs::rename(dir, tmp.join("fs")).ctx("moving into the snapshots", dir)?;
            let d = fs::File::open(tmp.join("fs")).ctx("opening", &tmp)?;
            // SAFETY: syncfs only reads the descriptor, which is open for the call.
            if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
                return Err(io::Error::last_os_error()).ctx("syncing", &tmp);
            }
            Ok(())
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
        let tmp = self.snapshots_dir().join(format!(
            ".tmp-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
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
            // Flush the files before the rename makes the snapshot visible.
            let d = fs::File::open(&fs_dir).ctx("opening", &fs_dir)?;
            // SAFETY: syncfs only reads the descriptor, which is open for the call.
            if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
                return Err(io::Error::last_os_error()).ctx("syncing", &fs_dir);
            }
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
