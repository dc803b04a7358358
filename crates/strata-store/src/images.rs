//! Images and their names: tags, repo digests, lookup by name or ID, untag and delete with
//! Docker's semantics.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, OptionalExtension, Transaction};
use strata_oci::{Digest, Reference};

use crate::error::{Result, StoreError};
use crate::{now_unix, Store};

/// A layer blob as stored, with what we learnt about it when it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRecord {
    pub digest: Digest,
    pub diff_id: Digest,
    pub media_type: String,
    /// Size of the blob as stored (compressed or not).
    pub size: u64,
    /// Sum of the sizes of the files inside: what Docker reports as a layer's size.
    pub content_size: u64,
}

/// An image whose blobs are all published, ready to be recorded.
#[derive(Clone, Debug)]
pub struct NewImage {
    pub config_digest: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub created: Option<String>,
    pub layers: Vec<LayerRecord>,
}

#[derive(Clone, Debug)]
pub struct ImageRecord {
    /// The config digest, which Docker calls the image ID.
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub created: Option<String>,
    pub added_at: i64,
    pub size: u64,
    pub tags: Vec<Reference>,
    /// `repository@digest` references this image was pulled or pushed as.
    pub repo_digests: Vec<Reference>,
    pub layers: Vec<LayerRecord>,
}

impl ImageRecord {
    pub fn is_dangling(&self) -> bool {
        self.tags.is_empty() && self.repo_digests.is_empty()
    }

    /// Every blob the image needs: manifest, config and layers.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut all = vec![self.manifest_digest.clone(), self.id.clone()];
        all.extend(self.layers.iter().map(|l| l.digest.clone()));
        all
    }
}

/// What `rmi`/`prune` did, in Docker's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemovalEvent {
    Untagged(String),
    Deleted(Digest),
}

/// A tag that moved from one image to another when a new image took its name.
#[derive(Clone, Debug)]
pub struct RetaggedFrom {
    pub tag: Reference,
    pub previous_image: Digest,
}

fn parse_digest(s: String) -> rusqlite::Result<Digest> {
    s.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn parse_ref(s: String) -> rusqlite::Result<Reference> {
    Reference::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Store {
    /// Records an image and points `tags` at it, in one transaction. Every blob must already
    /// be published (and leased by the caller); this is checked under the write lock.
    pub fn commit_image(&self, image: &NewImage, tags: &[Reference]) -> Result<Vec<RetaggedFrom>> {
        let db = self.db();
        db.write_with(|tx| {
            let mut needed = vec![&image.manifest_digest, &image.config_digest];
            needed.extend(image.layers.iter().map(|l| &l.digest));
            for d in &needed {
                if !self.blobs().exists(d) {
                    return Err(StoreError::BlobMissing((*d).clone()));
                }
            }
            let sql = |e| db.err(e);
            // -1 (unknown) until every layer's content size is measured (see `pending`).
            let size: i64 = if image.layers.iter().any(|l| l.content_size == crate::CONTENT_SIZE_PENDING) {
                -1
            } else {
                image.layers.iter().map(|l| l.content_size).sum::<u64>() as i64
            };
            let id = image.config_digest.to_string();
            tx.execute(
                "INSERT INTO images (id, manifest_digest, manifest_media_type, created, added_at, size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                     manifest_media_type = excluded.manifest_media_type",
                params![id, image.manifest_digest.to_string(), image.manifest_media_type, image.created, now_unix(), size],
            )
            .map_err(sql)?;
            tx.execute("DELETE FROM image_blobs WHERE image_id = ?1", [&id]).map_err(sql)?;
            tx.execute("DELETE FROM image_layers WHERE image_id = ?1", [&id]).map_err(sql)?;
            for d in &needed {
                tx.execute("INSERT OR IGNORE INTO image_blobs (image_id, digest) VALUES (?1, ?2)", params![id, d.to_string()])
                    .map_err(sql)?;
            }
            for (i, l) in image.layers.iter().enumerate() {
                tx.execute(
                    "INSERT OR REPLACE INTO layers (digest, diff_id, media_type, size, content_size) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![l.digest.to_string(), l.diff_id.to_string(), l.media_type, l.size as i64, l.content_size as i64],
                )
                .map_err(sql)?;
                tx.execute(
                    "INSERT INTO image_layers (image_id, position, digest) VALUES (?1, ?2, ?3)",
                    params![id, i as i64, l.digest.to_string()],
                )
                .map_err(sql)?;
            }
            let mut moved = Vec::new();
            for tag in tags {
                if let Some(prev) = set_tag(tx, tag, &image.config_digest).map_err(sql)? {
                    moved.push(RetaggedFrom { tag: tag.clone(), previous_image: prev });
                }
            }
            Ok(moved)
        })
    }

    /// Records `repo@digest` names for an image (after a pull or push).
    pub fn add_repo_digest(&self, image: &Digest, reference: &Reference) -> Result<()> {
        let digest = reference
            .digest()
            .ok_or_else(|| StoreError::Invalid(format!("{reference} has no digest")))?;
        self.db().write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO repo_digests (repository, digest, image_id) VALUES (?1, ?2, ?3)",
                params![reference.name(), digest.to_string(), image.to_string()],
            )
        })?;
        Ok(())
    }

    /// All images, newest first, with their names and layers.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let db = self.db();
        let conn = db.conn();
        let load = || -> rusqlite::Result<Vec<ImageRecord>> {
            let mut tags: BTreeMap<String, Vec<Reference>> = BTreeMap::new();
            let mut stmt = conn.prepare("SELECT image_id, name FROM tags")?;
            for row in
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            {
                let (id, name) = row?;
                tags.entry(id).or_default().push(parse_ref(name)?);
            }
            let mut digests: BTreeMap<String, Vec<Reference>> = BTreeMap::new();
            let mut stmt = conn.prepare("SELECT image_id, repository, digest FROM repo_digests")?;
            for row in stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })? {
                let (id, repo, digest) = row?;
                digests.entry(id).or_default().push(parse_ref(format!("{repo}@{digest}"))?);
            }
            let mut layers: BTreeMap<String, Vec<LayerRecord>> = BTreeMap::new();
            let mut stmt = conn.prepare(
                "SELECT il.image_id, l.digest, l.diff_id, l.media_type, l.size, l.content_size
                 FROM image_layers il JOIN layers l ON l.digest = il.digest ORDER BY il.image_id, il.position",
            )?;
            for row in stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    LayerRecord {
                        digest: parse_digest(r.get(1)?)?,
                        diff_id: parse_digest(r.get(2)?)?,
                        media_type: r.get(3)?,
                        size: r.get::<_, i64>(4)? as u64,
                        content_size: r.get::<_, i64>(5)? as u64,
                    },
                ))
            })? {
                let (id, layer) = row?;
                layers.entry(id).or_default().push(layer);
            }
            let mut stmt = conn.prepare(
                "SELECT id, manifest_digest, manifest_media_type, created, added_at, size FROM images",
            )?;
            let rows = stmt.query_map([], |r| {
                let id: String = r.get(0)?;
                let mut t = tags.remove(&id).unwrap_or_default();
                t.sort();
                let mut rd = digests.remove(&id).unwrap_or_default();
                rd.sort();
                Ok(ImageRecord {
                    layers: layers.remove(&id).unwrap_or_default(),
                    id: parse_digest(id)?,
                    manifest_digest: parse_digest(r.get(1)?)?,
                    manifest_media_type: r.get(2)?,
                    created: r.get(3)?,
                    added_at: r.get(4)?,
                    size: r.get::<_, i64>(5)? as u64,
                    tags: t,
                    repo_digests: rd,
                })
            })?;
            let mut all = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            all.sort_by(|a, b| {
                b.created.cmp(&a.created).then(b.added_at.cmp(&a.added_at)).then(a.id.cmp(&b.id))
            });
            Ok(all)
        };
        conn.execute_batch("BEGIN").map_err(|e| db.err(e))?;
        let result = load();
        let _ = conn.execute_batch("COMMIT");
        result.map_err(|e| db.err(e))
    }

    /// Finds an image the way Docker does: a reference (tag or digest) first, then a full
    /// or abbreviated image ID.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord> {
        let images = self.images()?;
        match find(&images, name)? {
            Some(i) => Ok(images[i].clone()),
            None => Err(StoreError::ImageNotFound(name.to_string())),
        }
    }

    /// Points `target` at the image `source` names (`docker tag`).
    pub fn tag(&self, source: &str, target: &Reference) -> Result<Digest> {
        if target.digest().is_some() {
            return Err(StoreError::Invalid(format!(
                "refusing to create a tag with a digest reference: {}",
                target.familiar()
            )));
        }
        let target = target.clone().with_default_tag();
        let image = self.resolve(source)?;
        let db = self.db();
        db.write(|tx| {
            // The image may have been removed since we resolved it: the foreign key refuses then.
            set_tag(tx, &target, &image.id)
        })
        .map_err(|e| match e {
            StoreError::Db { source: rusqlite::Error::SqliteFailure(f, _), .. }
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::ImageNotFound(source.to_string())
            }
            other => other,
        })?;
        Ok(image.id)
    }

    /// `docker rmi NAME`: untags, and deletes the image once nothing names it.
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<RemovalEvent>> {
        let images = self.images()?;
        let idx =
            find(&images, name)?.ok_or_else(|| StoreError::ImageNotFound(name.to_string()))?;
        let image = &images[idx];
        let by_reference = Reference::parse(name).ok().filter(|r| {
            let r = r.clone().with_default_tag();
            image.tags.contains(&r) || image.repo_digests.contains(&r)
        });
        let mut events = Vec::new();
        let db = self.db();
        let deleted = db.write_with(|tx| {
            let sql = |e| db.err(e);
            let (untag, delete): (Vec<Reference>, bool) = match &by_reference {
                Some(r) => {
                    // Removing one name of several only untags (even with -f, as Docker).
                    let r = r.clone().with_default_tag();
                    let remaining = image.tags.len() + image.repo_digests.len() - 1;
                    let mut names = vec![r.clone()];
                    if remaining > 0 && r.digest().is_none() {
                        // Docker also drops repo digests of a repository whose last tag goes.
                        let repo = r.name();
                        let tags_left = image.tags.iter().filter(|t| t.name() == repo && **t != r).count();
                        if tags_left == 0 {
                            names.extend(image.repo_digests.iter().filter(|d| d.name() == repo).cloned());
                        }
                    }
                    let left = image.tags.len() + image.repo_digests.len() - names.len();
                    (names, left == 0)
                }
                _ => {
                    let repos: BTreeSet<String> =
                        image.tags.iter().chain(&image.repo_digests).map(|r| r.name()).collect();
                    if repos.len() > 1 && !force {
                        return Err(StoreError::Conflict(format!(
                            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                            image.id.short()
                        )));
                    }
                    (image.tags.iter().chain(&image.repo_digests).cloned().collect(), true)
                }
            };
            for r in &untag {
                if let Some(d) = r.digest() {
                    tx.execute("DELETE FROM repo_digests WHERE repository = ?1 AND digest = ?2", params![r.name(), d.to_string()])
                        .map_err(sql)?;
                } else {
                    tx.execute("DELETE FROM tags WHERE name = ?1 AND image_id = ?2", params![r.to_string(), image.id.to_string()])
                        .map_err(sql)?;
                }
                events.push(RemovalEvent::Untagged(r.familiar()));
            }
            if delete {
                let still_named: i64 = tx
                    .query_row("SELECT count(*) FROM tags WHERE image_id = ?1", [image.id.to_string()], |r| r.get(0))
                    .map_err(sql)?;
                if still_named == 0 {
                    tx.execute("DELETE FROM images WHERE id = ?1", [image.id.to_string()]).map_err(sql)?;
                    events.push(RemovalEvent::Deleted(image.id.clone()));
                    return Ok(true);
                }
            }
            Ok(false)
        })?;
        drop(db);
        if deleted {
            self.sweep(&image.blobs())?;
        }
        Ok(events)
    }

    /// `docker image prune [-a]`: removes dangling images, or with `all` every image.
    /// Returns what was removed and the bytes freed on disk.
    pub fn prune(&self, all: bool) -> Result<(Vec<RemovalEvent>, u64)> {
        let images = self.images()?;
        let mut events = Vec::new();
        let mut candidates = Vec::new();
        for image in images.iter().filter(|i| all || i.tags.is_empty()) {
            let db = self.db();
            let removed = db.write_with(|tx| {
                let sql = |e| db.err(e);
                // Re-check under the lock: another process may have tagged it meanwhile.
                let tags: Vec<String> = {
                    let mut stmt =
                        tx.prepare("SELECT name FROM tags WHERE image_id = ?1").map_err(sql)?;
                    let rows = stmt.query_map([image.id.to_string()], |r| r.get(0)).map_err(sql)?;
                    rows.collect::<rusqlite::Result<_>>().map_err(sql)?
                };
                if !all && !tags.is_empty() {
                    return Ok(None);
                }
                let mut ev = Vec::new();
                for t in &tags {
                    tx.execute("DELETE FROM tags WHERE name = ?1", [t]).map_err(sql)?;
                    ev.push(RemovalEvent::Untagged(
                        Reference::parse(t).map(|r| r.familiar()).unwrap_or_else(|_| t.clone()),
                    ));
                }
                let n = tx
                    .execute("DELETE FROM images WHERE id = ?1", [image.id.to_string()])
                    .map_err(sql)?;
                if n == 1 {
                    ev.push(RemovalEvent::Deleted(image.id.clone()));
                }
                Ok(Some(ev))
            })?;
            if let Some(ev) = removed {
                events.extend(ev);
                candidates.extend(image.blobs());
            }
        }
        let freed = self.sweep(&candidates)?;
        Ok((events, freed))
    }
}

/// Points a tag at an image; returns the image it pointed at before, if another.
fn set_tag(tx: &Transaction, tag: &Reference, image: &Digest) -> rusqlite::Result<Option<Digest>> {
    let name = tag.to_string();
    let previous: Option<String> = tx
        .query_row("SELECT image_id FROM tags WHERE name = ?1", [&name], |r| r.get(0))
        .optional()?;
    tx.execute(
        "INSERT INTO tags (name, image_id, tagged_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, tagged_at = excluded.tagged_at",
        params![name, image.to_string(), now_unix()],
    )?;
    match previous {
        Some(p) if p != image.to_string() => Ok(Some(parse_digest(p)?)),
        _ => Ok(None),
    }
}

/// Docker's lookup order: a reference, then an ID or unique ID prefix.
pub fn find(images: &[ImageRecord], name: &str) -> Result<Option<usize>> {
    if let Ok(reference) = Reference::parse(name) {
        if let Some(d) = reference.digest() {
            if let Some(i) = images.iter().position(|i| {
                i.repo_digests.iter().any(|r| r.digest() == Some(d) && r.name() == reference.name())
                    || (&i.manifest_digest == d
                        && (reference.tag().is_none()
                            || i.tags.iter().any(|t| t.name() == reference.name())))
            }) {
                return Ok(Some(i));
            }
        } else {
            let with_tag = reference.clone().with_default_tag();
            if let Some(i) = images.iter().position(|i| i.tags.contains(&with_tag)) {
                return Ok(Some(i));
            }
        }
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if !hex.is_empty()
        && hex.len() <= 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        let matches: Vec<usize> = images
            .iter()
            .enumerate()
            .filter(|(_, i)| i.id.hex().starts_with(hex))
            .map(|(n, _)| n)
            .collect();
        return match matches.len() {
            0 => Ok(None),
            1 => Ok(Some(matches[0])),
            _ => Err(StoreError::Invalid(format!(
                "{name} is ambiguous: it is a prefix of {} image IDs; give more digits",
                matches.len()
            ))),
        };
    }
    if let Err(e) = Reference::parse(name) {
        return Err(StoreError::Invalid(format!("invalid reference format: {e}")));
    }
    Ok(None)
}
