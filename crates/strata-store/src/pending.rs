//! Layers recorded before they were read: `pull` keeps a layer exactly as downloaded
//! (digest-checked) and takes its diffID from the image config, without decompressing it,
//! so it costs one hash per byte instead of a hash, an inflate and a second hash. Its
//! content size (what `images` and `df` show) is measured later, by the first command that
//! needs it, which also checks the diffID; unpacking into a snapshot checks the diffID
//! again and the entries' safety as it always does.

use crate::error::{Result, StoreError};
use crate::layer_info::{self, Limits};
use crate::Store;
use strata_oci::Digest;

/// `LayerRecord::content_size` of a layer not measured yet (stored as -1).
pub const CONTENT_SIZE_PENDING: u64 = u64::MAX;

/// A pending layer that could not be measured.
#[derive(Debug, Clone)]
pub struct PendingProblem {
    pub digest: Digest,
    pub message: String,
}

impl Store {
    /// Measures every pending layer (in parallel) and fills in the sizes of the images that
    /// use them. Layers that fail (a diffID that does not match the config's) stay pending
    /// and are returned, so the caller can warn; nothing else is affected.
    pub fn measure_pending_layers(&self, limits: Limits) -> Result<Vec<PendingProblem>> {
        let pending: Vec<(Digest, Digest)> = {
            let db = self.db();
            let r = (|| -> rusqlite::Result<Vec<(String, String)>> {
                let mut stmt = db
                    .conn()
                    .prepare("SELECT digest, diff_id FROM layers WHERE content_size < 0")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })()
            .map_err(|e| db.err(e))?;
            r.into_iter().filter_map(|(d, f)| Some((d.parse().ok()?, f.parse().ok()?))).collect()
        };
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<std::result::Result<u64, String>>>> =
            pending.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let workers =
            std::thread::available_parallelism().map_or(1, |n| n.get()).min(pending.len());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((digest, diff_id)) = pending.get(i) else { break };
                    let r = match self.blobs().open_blob(digest) {
                        Err(e) => Err(e.to_string()),
                        Ok(f) => match layer_info::scan(std::io::BufReader::with_capacity(1 << 20, f), limits, Some(digest)) {
                            Err(e) => Err(e.to_string()),
                            Ok(info) if &info.diff_id != diff_id => Err(format!(
                                "its content has diffID {} but its image config promises {diff_id}: remove the image and pull it again",
                                info.diff_id
                            )),
                            Ok(info) => Ok(info.content_size),
                        },
                    };
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                });
            }
        });
        let mut problems = Vec::new();
        let mut sizes = Vec::new();
        for ((digest, _), r) in pending.iter().zip(results) {
            match r.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(Ok(size)) => sizes.push((digest, size)),
                Some(Err(message)) => {
                    problems.push(PendingProblem { digest: digest.clone(), message })
                }
                None => {}
            }
        }
        let db = self.db();
        db.write_with(|tx| {
            let sql = |e| db.err(e);
            for (digest, size) in &sizes {
                tx.execute(
                    "UPDATE layers SET content_size = ?1 WHERE digest = ?2",
                    rusqlite::params![*size as i64, digest.to_string()],
                )
                .map_err(sql)?;
            }
            tx.execute(
                "UPDATE images SET size = (SELECT COALESCE(SUM(l.content_size), 0) FROM image_layers il
                     JOIN layers l ON l.digest = il.digest WHERE il.image_id = images.id)
                 WHERE size < 0 AND NOT EXISTS (SELECT 1 FROM image_layers il JOIN layers l
                     ON l.digest = il.digest WHERE il.image_id = images.id AND l.content_size < 0)",
                [],
            )
            .map_err(sql)?;
            Ok::<_, StoreError>(())
        })?;
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LayerRecord, NewImage};

    fn layer_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn commit(store: &Store, tag: &str, diff_id: Digest) -> Digest {
        let layer = store.blobs().put(&layer_tar()).unwrap();
        let config = store.blobs().put(format!("{{\"tag\":\"{tag}\"}}").as_bytes()).unwrap();
        let manifest = store.blobs().put(format!("{{\"m\":\"{tag}\"}}").as_bytes()).unwrap();
        let size = store.blobs().size(&layer).unwrap();
        let image = NewImage {
            config_digest: config.clone(),
            manifest_digest: manifest,
            manifest_media_type: strata_oci::media_types::OCI_MANIFEST.into(),
            created: None,
            layers: vec![LayerRecord {
                digest: layer,
                diff_id,
                media_type: strata_oci::media_types::OCI_LAYER_TAR.into(),
                size,
                content_size: CONTENT_SIZE_PENDING,
            }],
        };
        store.commit_image(&image, &[]).unwrap();
        config
    }

    #[test]
    fn pending_layers_are_measured_once_and_bad_diff_ids_stay_pending() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let wrong = Digest::sha256_of(b"not the layer");
        let id = commit(&store, "bad", wrong);
        assert_eq!(store.resolve(&id.to_string()).unwrap().size, u64::MAX);
        let problems = store.measure_pending_layers(Limits::default()).unwrap();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("pull it again"), "{}", problems[0].message);
        assert_eq!(store.resolve(&id.to_string()).unwrap().size, u64::MAX, "still unknown");

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let right = Digest::sha256_of(&layer_tar());
        let id = commit(&store, "good", right);
        assert!(store.measure_pending_layers(Limits::default()).unwrap().is_empty());
        let rec = store.resolve(&id.to_string()).unwrap();
        assert_eq!((rec.size, rec.layers[0].content_size), (5, 5));
        // Nothing left to do: a second call reads nothing.
        assert!(store.measure_pending_layers(Limits::default()).unwrap().is_empty());
    }
}
