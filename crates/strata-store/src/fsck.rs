//! `strata fsck`: re-hash every blob and check every reference.

use std::collections::HashSet;

use serde_json::Value;
use strata_oci::Digest;

use crate::error::Result;
use crate::Store;

/// What fsck found. `problems` empty means the store is sound.
#[derive(Debug, Default, Clone)]
pub struct FsckReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub images_checked: u64,
    pub tags_checked: u64,
    /// Blobs no image references: harmless, reclaimable by `image prune`/GC.
    pub unreferenced_blobs: u64,
    /// Leftovers of interrupted writes in ingest/: invisible, removed by GC.
    pub ingest_leftovers: u64,
    pub problems: Vec<String>,
}

impl Store {
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        {
            let db = self.db();
            let check: String = db
                .conn()
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .map_err(|e| db.err(e))?;
            if check != "ok" {
                report.problems.push(format!("metadata database integrity check: {check}"));
            }
        }
        let (blobs, strays) = self.blobs().list()?;
        for stray in strays {
            report.problems.push(format!(
                "{} is in the blob directory but is not named by a digest",
                stray.display()
            ));
        }
        let present: HashSet<Digest> = blobs.iter().cloned().collect();
        for d in &blobs {
            match self.blobs().verify(d) {
                Ok(()) => {
                    report.blobs_checked += 1;
                    report.bytes_checked += self.blobs().size(d).unwrap_or(0);
                }
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        let images = self.images()?;
        let mut referenced = HashSet::new();
        for image in &images {
            report.images_checked += 1;
            report.tags_checked += image.tags.len() as u64;
            let short = image.id.short();
            for d in image.blobs() {
                if !present.contains(&d) {
                    report.problems.push(format!("image {short} needs blob {d}, which is missing"));
                }
                referenced.insert(d);
            }
            if !present.contains(&image.manifest_digest) || !present.contains(&image.id) {
                continue;
            }
            self.check_image_documents(image, &mut report.problems)?;
        }
        // Layers the build cache keeps are referenced too (see cache.rs).
        {
            let db = self.db();
            let mut stmt = db
                .conn()
                .prepare("SELECT layer_digest FROM build_cache WHERE layer_digest IS NOT NULL")
                .map_err(|e| db.err(e))?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| db.err(e))?;
            for d in rows.flatten() {
                if let Ok(d) = d.parse::<Digest>() {
                    referenced.insert(d);
                }
            }
        }
        report.unreferenced_blobs = blobs.iter().filter(|d| !referenced.contains(d)).count() as u64;
        report.ingest_leftovers =
            std::fs::read_dir(self.blobs().ingest_dir()).map(|d| d.count() as u64).unwrap_or(0);
        Ok(report)
    }

    /// The manifest must name the config and layers the database records for the image.
    fn check_image_documents(
        &self,
        image: &crate::ImageRecord,
        problems: &mut Vec<String>,
    ) -> Result<()> {
        let short = image.id.short();
        let manifest: Value =
            match serde_json::from_slice(&self.blobs().read(&image.manifest_digest)?) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!(
                        "image {short}: manifest {} is not JSON: {e}",
                        image.manifest_digest
                    ));
                    return Ok(());
                }
            };
        if manifest["config"]["digest"].as_str() != Some(&image.id.to_string()) {
            problems.push(format!("image {short}: its manifest names a different config"));
        }
        let layers: Vec<&str> = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str())
            .collect();
        let recorded: Vec<String> = image.layers.iter().map(|l| l.digest.to_string()).collect();
        if layers != recorded.iter().map(String::as_str).collect::<Vec<_>>() {
            problems.push(format!(
                "image {short}: the manifest's layers differ from the recorded ones"
            ));
        }
        let config: Value = match serde_json::from_slice(&self.blobs().read(&image.id)?) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("image {short}: config is not JSON: {e}"));
                return Ok(());
            }
        };
        let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let recorded: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
        if diff_ids != recorded.iter().map(String::as_str).collect::<Vec<_>>() {
            problems.push(format!(
                "image {short}: the config's diff_ids differ from the recorded layers"
            ));
        }
        Ok(())
    }
}
