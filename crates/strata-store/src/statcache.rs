//! The context stat-cache: for each file of a build context, the stat fields it had when
//! its contents were hashed, and that sha256. A rebuild then hashes only the files whose
//! stat changed, so a no-op rebuild costs about one `stat()` per context file.
//!
//! Table `context_stat` (schema 3): one row per canonical context directory, holding all
//! its records as one compact blob (see `encode`). A build loads it with one query into a
//! [`StatCache`] (20,000 records: about 2 ms, query and decoding) and writes the row back
//! only when something changed. One row per file was measured too: 18-20 ms for the same
//! load (5 ms to step through the rows, the rest reading eight columns of each into the map).
//!
//! Whether a record may be trusted is the caller's business (the build engine compares size,
//! mtime, ctime, inode, device and mode, and never records a file changed within seconds of
//! being hashed); the store only keeps what it is given. Every record is a statement that
//! was true when made ("a file with this stat has this content"), so a save that merges
//! with another build's records, in either order, or a crash at any point, leaves no wrong
//! hash behind. A save writes the whole row in one transaction; when another build saved
//! the same root since this cache was loaded (the row's `generation` changed), the save
//! applies its own changes on top of the other build's records instead of replacing them.
//!
//! Growth is bounded two ways: a caller that walked a whole directory drops the records
//! under it that it did not see ([`StatCache::forget_unseen`]), so deleted files go; and a
//! root no build used for [`ROOT_TTL_DAYS`] days is deleted by the next save of any root.
//! `strata builder prune` ([`Store::cache_prune`]) clears everything.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};

use crate::error::Result;
use crate::{now_unix, Store};

/// A root unused for this long is dropped with its records.
pub const ROOT_TTL_DAYS: i64 = 30;

/// How stale a root's `last_used` may get before a save refreshes it: refreshing on every
/// build would cost a write transaction (an fsync) on every no-op rebuild.
const TOUCH_EVERY_SECS: i64 = 24 * 3600;

/// One file as it was when its contents were hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatRecord {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// sha256 of the contents.
    pub sha256: [u8; 32],
}

type Map = HashMap<Box<[u8]>, StatRecord, BuildHasherDefault<FxHasher>>;

/// The stat-cache of one context root, in memory, with the changes not yet saved.
#[derive(Debug)]
pub struct StatCache {
    root: PathBuf,
    /// The stored row's generation when this was loaded or last saved; `None`: no row.
    generation: Option<i64>,
    last_used: i64,
    entries: Map,
    /// Paths inserted or removed since the last save (the value is in `entries`, or gone).
    dirty: Vec<Box<[u8]>>,
}

/// rustc's FxHash: a load of 20,000 records spent most of its time in SipHash and in
/// `Path`'s component-wise hashing. The keys are the user's own file names, so a hash
/// flooding attack is not a concern.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.add(u64::from_le_bytes(w.try_into().unwrap_or_default()));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // The multiply leaves the high bits best mixed; the table indexes by the low ones.
        self.0.rotate_left(26)
    }
}

impl StatCache {
    /// The canonical context directory this cache belongs to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The record of `rel` (relative to the root), if any.
    pub fn get(&self, rel: &Path) -> Option<&StatRecord> {
        self.entries.get(bytes(rel))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records `rel`; saved by the next [`Store::stat_cache_save`] unless unchanged.
    pub fn insert(&mut self, rel: &Path, record: StatRecord) {
        let key = bytes(rel);
        if self.entries.get(key) != Some(&record) {
            self.entries.insert(key.into(), record);
            self.dirty.push(key.into());
        }
    }

    /// Forgets `rel`.
    pub fn remove(&mut self, rel: &Path) {
        if let Some((key, _)) = self.entries.remove_entry(bytes(rel)) {
            self.dirty.push(key);
        }
    }

    /// Drops the records under the directories `walked` (relative paths; empty: the root)
    /// whose path is not in `seen`: a caller that walked those directories whole knows
    /// such files are gone.
    pub fn forget_unseen<'a>(&mut self, walked: &[&Path], seen: impl Iterator<Item = &'a Path>) {
        let seen: HashSet<&[u8], BuildHasherDefault<FxHasher>> = seen.map(bytes).collect();
        let under = |rel: &[u8]| {
            walked.iter().any(|d| {
                let d = bytes(d);
                d.is_empty() || (rel.starts_with(d) && rel.get(d.len()) == Some(&b'/'))
            })
        };
        let dirty = &mut self.dirty;
        self.entries.retain(|rel, _| {
            let keep = seen.contains(&rel[..]) || !under(rel);
            if !keep {
                dirty.push(rel.clone());
            }
            keep
        });
    }
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// Format of the `entries` blob; a blob of another format decodes as empty.
const MAGIC: &[u8; 4] = b"stc1";
const FIXED: usize = 8 * 5 + 4 + 32;

/// `MAGIC`, the record count (u32), then per record: the path's length (u32) and bytes,
/// size, mtime_ns, ctime_ns, ino, dev (8 bytes each), mode (4), sha256 (32); little-endian.
fn encode(entries: &Map) -> Vec<u8> {
    let paths: usize = entries.keys().map(|k| k.len()).sum();
    let mut out = Vec::with_capacity(8 + paths + entries.len() * (4 + FIXED));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (path, r) in entries {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        for v in [r.size, r.mtime_ns as u64, r.ctime_ns as u64, r.ino, r.dev] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&r.mode.to_le_bytes());
        out.extend_from_slice(&r.sha256);
    }
    out
}

fn decode(blob: &[u8]) -> Option<Map> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (b.len() >= n).then(|| b.split_at(n))?;
        *b = rest;
        Some(head)
    }
    fn u32_of(b: &[u8]) -> u32 {
        u32::from_le_bytes(b.try_into().unwrap_or_default())
    }
    fn u64_of(b: &[u8]) -> u64 {
        u64::from_le_bytes(b.try_into().unwrap_or_default())
    }
    let mut b = blob;
    if take(&mut b, 4)? != MAGIC {
        return None;
    }
    let n = u32_of(take(&mut b, 4)?) as usize;
    // The count is only a hint for the allocation: never trust it beyond what could fit.
    let mut map = Map::with_capacity_and_hasher(n.min(b.len() / (4 + FIXED)), Default::default());
    for _ in 0..n {
        let len = u32_of(take(&mut b, 4)?) as usize;
        let path = take(&mut b, len)?;
        let f = take(&mut b, FIXED)?;
        let record = StatRecord {
            size: u64_of(&f[0..8]),
            mtime_ns: u64_of(&f[8..16]) as i64,
            ctime_ns: u64_of(&f[16..24]) as i64,
            ino: u64_of(&f[24..32]),
            dev: u64_of(&f[32..40]),
            mode: u32_of(&f[40..44]),
            sha256: f[44..76].try_into().ok()?,
        };
        map.insert(path.into(), record);
    }
    b.is_empty().then_some(map)
}

impl Store {
    /// Loads the stat-cache of the context directory `root` (pass it canonicalized: the
    /// same directory must always get the same key). One query.
    pub fn stat_cache_load(&self, root: &Path) -> Result<StatCache> {
        let db = self.db();
        let row: Option<(i64, i64, Option<Map>)> = db
            .conn()
            .query_row(
                "SELECT generation, last_used, entries FROM context_stat WHERE root = ?1",
                [bytes(root)],
                // Decoded in place: no copy of the (megabytes of) blob.
                |r| Ok((r.get(0)?, r.get(1)?, decode(r.get_ref(2)?.as_blob()?))),
            )
            .optional()
            .map_err(|e| db.err(e))?;
        drop(db);
        let (generation, last_used, entries) = match row {
            // A blob that does not decode (another format) is as good as none.
            Some((g, t, map)) => (Some(g), t, map.unwrap_or_default()),
            None => (None, 0, Map::default()),
        };
        Ok(StatCache {
            root: root.to_path_buf(),
            generation,
            last_used,
            entries,
            dirty: Vec::new(),
        })
    }

    /// Writes `cache` back if anything changed since it was loaded or last saved, in one
    /// transaction; does nothing (no write lock, no fsync) when nothing did. Also drops the
    /// roots unused for [`ROOT_TTL_DAYS`] days.
    pub fn stat_cache_save(&self, cache: &mut StatCache) -> Result<()> {
        let now = now_unix();
        let stale = now - cache.last_used > TOUCH_EVERY_SECS;
        if cache.dirty.is_empty() && !(stale && cache.generation.is_some()) {
            return Ok(());
        }
        let root = bytes(&cache.root).to_vec();
        let cutoff = now - ROOT_TTL_DAYS * 24 * 3600;
        let generation = self.db().write(|tx| {
            // Not this root: its records were good enough for this build to load.
            tx.execute(
                "DELETE FROM context_stat WHERE last_used < ?1 AND root <> ?2",
                params![cutoff, root],
            )?;
            let stored: Option<i64> = tx
                .query_row("SELECT generation FROM context_stat WHERE root = ?1", [&root], |r| {
                    r.get(0)
                })
                .optional()?;
            if cache.dirty.is_empty() {
                tx.execute(
                    "UPDATE context_stat SET last_used = ?2 WHERE root = ?1",
                    params![root, now],
                )?;
                return Ok(stored);
            }
            if stored.is_some() && stored != cache.generation {
                // Another build saved this root since we loaded it: keep its records and
                // put ours on top.
                let mut merged = tx
                    .query_row("SELECT entries FROM context_stat WHERE root = ?1", [&root], |r| {
                        Ok(decode(r.get_ref(0)?.as_blob()?))
                    })?
                    .unwrap_or_default();
                for key in &cache.dirty {
                    match cache.entries.get(key) {
                        Some(r) => merged.insert(key.clone(), *r),
                        None => merged.remove(key),
                    };
                }
                cache.entries = merged;
            }
            // Random, not a counter: a root deleted (pruned) and saved again must not come
            // back with a generation some loaded cache still holds.
            let generation: i64 = rand::random();
            tx.execute(
                "INSERT INTO context_stat (root, generation, last_used, entries)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (root) DO UPDATE SET generation = excluded.generation,
                   last_used = excluded.last_used, entries = excluded.entries",
                params![root, generation, now, encode(&cache.entries)],
            )?;
            Ok(Some(generation))
        })?;
        cache.dirty.clear();
        cache.generation = generation;
        cache.last_used = now;
        Ok(())
    }

    /// Number of stat-cache records, over all roots.
    pub fn stat_cache_len(&self) -> Result<u64> {
        let db = self.db();
        let mut stmt =
            db.conn().prepare("SELECT entries FROM context_stat").map_err(|e| db.err(e))?;
        let counts = stmt
            .query_map([], |r| Ok(decode(r.get_ref(0)?.as_blob()?).map_or(0, |m| m.len() as u64)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| db.err(e))?;
        Ok(counts.iter().sum())
    }

    /// Drops the whole stat-cache (part of [`Store::cache_prune`]).
    pub(crate) fn stat_cache_clear(&self) -> Result<()> {
        self.db().write(|tx| tx.execute("DELETE FROM context_stat", []).map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> StatRecord {
        StatRecord {
            size: n as u64,
            mtime_ns: -1_000_000_007 * n as i64,
            ctime_ns: 1_700_000_000_123_456_789,
            ino: u64::MAX - n as u64,
            dev: 2049,
            mode: 0o100644,
            sha256: [n; 32],
        }
    }

    fn paths(cache: &StatCache) -> Vec<String> {
        let mut v: Vec<String> =
            cache.entries.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn records_survive_a_reopen_and_only_changes_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/ctx/one");
        let store = Store::open(dir.path()).unwrap();
        let mut c = store.stat_cache_load(root).unwrap();
        assert!(c.is_empty());
        c.insert(Path::new("a"), record(1));
        c.insert(Path::new("dir/b\u{e9}"), record(2));
        store.stat_cache_save(&mut c).unwrap();
        let generation = c.generation;
        // Unchanged: no write (the generation stays).
        c.insert(Path::new("a"), record(1));
        store.stat_cache_save(&mut c).unwrap();
        assert_eq!(c.generation, generation);
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let c = store.stat_cache_load(root).unwrap();
        assert_eq!(c.get(Path::new("a")), Some(&record(1)));
        assert_eq!(c.get(Path::new("dir/b\u{e9}")), Some(&record(2)));
        assert_eq!(c.get(Path::new("dir")), None);
        assert!(store.stat_cache_load(Path::new("/ctx/other")).unwrap().is_empty());
        assert_eq!(store.stat_cache_len().unwrap(), 2);
    }

    #[test]
    fn two_builds_saving_one_root_keep_each_others_records() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/ctx");
        let one = Store::open(dir.path()).unwrap();
        let two = Store::open(dir.path()).unwrap();
        let mut seed = one.stat_cache_load(root).unwrap();
        seed.insert(Path::new("old"), record(9));
        seed.insert(Path::new("gone"), record(8));
        one.stat_cache_save(&mut seed).unwrap();

        let mut a = one.stat_cache_load(root).unwrap();
        let mut b = two.stat_cache_load(root).unwrap();
        a.insert(Path::new("a"), record(1));
        a.remove(Path::new("gone"));
        one.stat_cache_save(&mut a).unwrap();
        b.insert(Path::new("b"), record(2));
        b.insert(Path::new("old"), record(3));
        two.stat_cache_save(&mut b).unwrap();
        assert_eq!(paths(&b), ["a", "b", "old"], "the second save merged the first's");
        let c = one.stat_cache_load(root).unwrap();
        assert_eq!(paths(&c), ["a", "b", "old"]);
        assert_eq!(c.get(Path::new("old")), Some(&record(3)));
    }

    #[test]
    fn unseen_records_go_and_prune_clears_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut c = store.stat_cache_load(Path::new("/ctx")).unwrap();
        for p in ["src/a", "src/b", "src2/d", "doc/c"] {
            c.insert(Path::new(p), record(1));
        }
        c.forget_unseen(&[Path::new("src")], [Path::new("src/b")].into_iter());
        store.stat_cache_save(&mut c).unwrap();
        let loaded = store.stat_cache_load(Path::new("/ctx")).unwrap();
        assert_eq!(paths(&loaded), ["doc/c", "src/b", "src2/d"]);
        c.forget_unseen(&[Path::new("")], [Path::new("src/b")].into_iter());
        assert_eq!(paths(&c), ["src/b"]);

        assert_eq!(store.cache_prune().unwrap(), 0);
        assert_eq!(store.stat_cache_len().unwrap(), 0);
        // A cache loaded before the prune still saves (its records are still true).
        c.insert(Path::new("new"), record(2));
        store.stat_cache_save(&mut c).unwrap();
        assert_eq!(paths(&store.stat_cache_load(Path::new("/ctx")).unwrap()), ["new", "src/b"]);
    }

    #[test]
    fn roots_unused_for_a_month_go_at_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for root in ["/old", "/new"] {
            let mut c = store.stat_cache_load(Path::new(root)).unwrap();
            c.insert(Path::new("f"), record(1));
            store.stat_cache_save(&mut c).unwrap();
        }
        let old = now_unix() - (ROOT_TTL_DAYS + 1) * 24 * 3600;
        store
            .db()
            .write(|tx| {
                tx.execute(
                    "UPDATE context_stat SET last_used = ?1 WHERE root = ?2",
                    params![old, b"/old".as_slice()],
                )
            })
            .unwrap();
        // A save of another root drops the root nobody used...
        let mut c = store.stat_cache_load(Path::new("/new")).unwrap();
        c.insert(Path::new("g"), record(2));
        store.stat_cache_save(&mut c).unwrap();
        assert!(store.stat_cache_load(Path::new("/old")).unwrap().is_empty());
        assert_eq!(store.stat_cache_len().unwrap(), 2);

        // ... but a build that loaded a stale root keeps it, refreshed, even if it changed
        // nothing.
        store.db().write(|tx| tx.execute("UPDATE context_stat SET last_used = ?1", [old])).unwrap();
        let mut stale = store.stat_cache_load(Path::new("/new")).unwrap();
        store.stat_cache_save(&mut stale).unwrap();
        let new = store.stat_cache_load(Path::new("/new")).unwrap();
        assert_eq!(new.len(), 2);
        assert!(now_unix() - new.last_used < 60);
    }

    #[test]
    fn a_blob_that_does_not_decode_is_an_empty_cache() {
        let mut map = Map::default();
        map.insert(b"a/b".as_slice().into(), record(1));
        let blob = encode(&map);
        assert_eq!(decode(&blob), Some(map));
        for bad in [&blob[..blob.len() - 1], &blob[4..], b"".as_slice()] {
            assert_eq!(decode(bad), None);
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        // A huge count is only a hint: no huge allocation.
        let mut lying = blob.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&lying), None);
    }

    #[test]
    fn an_old_store_gains_the_table_on_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        {
            // Schema 2, as an older strata left it.
            let conn = rusqlite::Connection::open(dir.path().join("meta.db")).unwrap();
            conn.execute_batch("DROP TABLE context_stat; PRAGMA user_version = 2;").unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let version: i64 =
            store.db().conn().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 3);
        let mut c = store.stat_cache_load(Path::new("/ctx")).unwrap();
        c.insert(Path::new("f"), record(1));
        store.stat_cache_save(&mut c).unwrap();
        assert_eq!(store.stat_cache_len().unwrap(), 1);
    }
}
