//! Content hashes of build context sources, for COPY/ADD cache keys.
//!
//! A source's hash covers, for every entry it selects after `.dockerignore` (in sorted
//! order): the relative name, the file type, mode, owner, symlink target and the sha256 of
//! the contents.
//!
//! Contents are read only when the store's stat-cache (`strata_store::statcache`) has no
//! record of the file with the same size, mtime, ctime, inode, device and mode, so a no-op
//! rebuild costs about one `stat()` per entry (done on the rayon pool, a directory per
//! task). The ctime is what makes this safe: tools can set an mtime back (a rewrite with the
//! same size and mtime must still rebuild), but every write, chmod or utime sets the ctime
//! to the current time, and nothing can set it back. Files that do need hashing are read on
//! the rayon pool with sha256 (which uses the CPU's SHA extensions where it has them), each
//! at most once per build, however many steps read it.
//!
//! Racily clean files (git's term): timestamps have a granularity (a kernel tick), so a
//! write just after we read a file can leave its ctime unchanged. A file whose ctime or
//! mtime is within [`RACY_WINDOW`] of the start of the hash (or after it) is hashed but not
//! recorded, so the next build hashes it again.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use strata_dockerfile::{IgnoreMatcher, WalkDecision};
use strata_store::{StatCache, StatRecord, Store};

use crate::BuildError;

/// A file changed less than this before a hash starts is not recorded in the stat-cache
/// (nor its copy offered for linking, see `filecopy`): well above a kernel tick (1-10 ms)
/// and the 1-2 s timestamps of some filesystems.
pub(crate) const RACY_WINDOW: Duration = Duration::from_secs(2);

pub(crate) struct ContextHasher {
    root: PathBuf,
    racy_window: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Contents this build read, by relative path (cache hits are not copied here).
    memo: HashMap<PathBuf, [u8; 32]>,
    /// The store's records for this context, loaded by the first hash.
    stat: Option<StatCache>,
    /// Files whose contents were read.
    hashed: usize,
}

/// An entry of the context and the parts of its stat that matter here.
struct Entry {
    rel: PathBuf,
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

impl Entry {
    fn new(rel: PathBuf, md: &fs::Metadata) -> Entry {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        let kind = match md.mode() & libc::S_IFMT {
            libc::S_IFDIR => b'd',
            libc::S_IFLNK => b'l',
            libc::S_IFREG => b'f',
            libc::S_IFIFO => b'p',
            _ => b'o',
        };
        Entry {
            rel,
            kind,
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            mtime_ns: ns(md.mtime(), md.mtime_nsec()),
            ctime_ns: ns(md.ctime(), md.ctime_nsec()),
            ino: md.ino(),
            dev: md.dev(),
        }
    }

    fn is_file(&self) -> bool {
        self.kind == b'f'
    }

    fn is_dir(&self) -> bool {
        self.kind == b'd'
    }

    /// What the stat-cache keeps of this file, with contents `sha256`.
    fn record(&self, sha256: [u8; 32]) -> StatRecord {
        StatRecord {
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
            dev: self.dev,
            mode: self.mode,
            sha256,
        }
    }
}

/// One directory item, walked.
enum Walked {
    Skip,
    File(Entry),
    Dir(Entry, Vec<Entry>),
}

impl ContextHasher {
    pub(crate) fn new(root: &Path) -> Self {
        ContextHasher {
            root: root.to_path_buf(),
            racy_window: RACY_WINDOW,
            state: Mutex::new(State::default()),
        }
    }

    /// The hash (hex) of the context paths `rels` (files or directories, walked with
    /// `ignore` as COPY walks them). Reads and updates `store`'s stat-cache.
    pub(crate) fn hash(
        &self,
        store: &Store,
        rels: &[PathBuf],
        ignore: &IgnoreMatcher,
    ) -> Result<String, BuildError> {
        let io = |source| BuildError::Io {
            context: format!("hashing the build context {}", self.root.display()),
            source,
        };
        // Before any stat: a file changed after this instant may change again unseen.
        let started = SystemTime::now();
        let mut entries = Vec::new();
        let mut walked = Vec::new();
        for rel in rels {
            let e =
                Entry::new(rel.clone(), &fs::symlink_metadata(self.root.join(rel)).map_err(io)?);
            let is_dir = e.is_dir();
            entries.push(e);
            if is_dir {
                entries.extend(self.walk(rel, ignore).map_err(io)?);
                walked.push(rel.as_path());
            }
        }

        // One hash at a time, so two stages reaching a file at once still read it once;
        // each hash uses every core anyway.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *guard;
        if st.stat.is_none() {
            let canonical = fs::canonicalize(&self.root).map_err(io)?;
            st.stat = Some(store.stat_cache_load(&canonical)?);
        }
        let Some(cache) = st.stat.as_mut() else { unreachable!("loaded above") };

        // Contents known without reading: this build's, or a record whose stat matches.
        let memo = &st.memo;
        let known = |e: &Entry| {
            memo.get(&e.rel).copied().or_else(|| {
                cache.get(&e.rel).filter(|r| e.record(r.sha256) == **r).map(|r| r.sha256)
            })
        };
        let mut sums: Vec<Option<[u8; 32]>> =
            entries.par_iter().map(|e| if e.is_file() { known(e) } else { None }).collect();
        let mut queued = HashSet::new();
        let todo: Vec<&Entry> = entries
            .iter()
            .zip(&sums)
            .filter(|(e, s)| e.is_file() && s.is_none() && queued.insert(&e.rel))
            .map(|(e, _)| e)
            .collect();
        let read: Vec<[u8; 32]> = todo
            .par_iter()
            .map(|e| file_sha256(&self.root.join(&e.rel)))
            .collect::<io::Result<_>>()
            .map_err(io)?;
        st.hashed += todo.len();
        let trust_before = unix_ns(started).saturating_sub(self.racy_window.as_nanos() as i64);
        for (e, sum) in todo.iter().zip(read) {
            st.memo.insert(e.rel.clone(), sum);
            if e.ctime_ns.max(e.mtime_ns) < trust_before {
                cache.insert(&e.rel, e.record(sum));
            } else {
                cache.remove(&e.rel);
            }
        }
        if !walked.is_empty() {
            // A walked directory's records of files the walk did not see are of deleted (or
            // now ignored) files: dropping them bounds the cache to what the context holds.
            cache.forget_unseen(
                &walked,
                entries.iter().filter(|e| e.is_file()).map(|e| e.rel.as_path()),
            );
        }
        // Saved by every hash, in one transaction: each record was true when made, so a
        // crash loses at most this hash's records, never makes a wrong one.
        store.stat_cache_save(cache)?;

        let mut h = Sha256::new();
        let mut line = String::new();
        for (e, sum) in entries.iter().zip(&mut sums) {
            if e.is_file() && sum.is_none() {
                *sum = st.memo.get(&e.rel).copied();
            }
            h.update(e.rel.as_os_str().as_bytes());
            line.clear();
            let _ =
                write!(line, "\0{}\0{:o}\0{}:{}\0", e.kind as char, e.mode & 0o7777, e.uid, e.gid);
            h.update(&line);
            if e.kind == b'l' {
                h.update(fs::read_link(self.root.join(&e.rel)).map_err(io)?.as_os_str().as_bytes());
            } else if let Some(c) = sum {
                h.update(c);
            }
            h.update(b"\n");
        }
        Ok(hex::encode(h.finalize()))
    }

    /// How many files this hasher has read the contents of.
    #[cfg(test)]
    pub(crate) fn files_hashed(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).hashed
    }

    /// The entries under `rel`, sorted, directories before their contents. Directories
    /// with subdirectories fan out on the rayon pool.
    fn walk(&self, rel: &Path, ignore: &IgnoreMatcher) -> io::Result<Vec<Entry>> {
        // DirEntry::metadata stats relative to the open directory (statx on its fd), which
        // saves resolving the whole path again for every file.
        let mut items: Vec<(OsString, fs::Metadata)> = fs::read_dir(self.root.join(rel))?
            .map(|e| e.and_then(|e| Ok((e.file_name(), e.metadata()?))))
            .collect::<io::Result<_>>()?;
        items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let one = |(name, md): (OsString, fs::Metadata)| -> io::Result<Walked> {
            let r = rel.join(&name);
            Ok(match ignore.walk_decision(&r.to_string_lossy(), md.is_dir()) {
                WalkDecision::Skip => Walked::Skip,
                WalkDecision::DescendOnly | WalkDecision::Include if md.is_dir() => {
                    let inside = self.walk(&r, ignore)?;
                    Walked::Dir(Entry::new(r, &md), inside)
                }
                WalkDecision::DescendOnly => Walked::Skip,
                WalkDecision::Include => Walked::File(Entry::new(r, &md)),
            })
        };
        let walked: Vec<Walked> = if items.iter().any(|(_, md)| md.is_dir()) {
            items.into_par_iter().map(one).collect::<io::Result<_>>()?
        } else {
            items.into_iter().map(one).collect::<io::Result<_>>()?
        };
        let mut out = Vec::with_capacity(walked.len());
        for w in walked {
            match w {
                Walked::Skip => {}
                Walked::File(e) => out.push(e),
                Walked::Dir(e, inside) => {
                    out.push(e);
                    out.extend(inside);
                }
            }
        }
        Ok(out)
    }
}

pub(crate) fn unix_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn file_sha256(path: &Path) -> io::Result<[u8; 32]> {
    // One buffer per pool thread: a fresh 256 KiB one per file is an mmap, page faults
    // and an munmap each, which cost more than hashing a small file.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 256 << 10]);
    }
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    BUF.with_borrow_mut(|buf| loop {
        let n = f.read(buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    /// A racy window short enough for tests to wait out (by sleeping `settle`).
    const WINDOW: Duration = Duration::from_millis(50);

    fn hasher(root: &Path, window: Duration) -> ContextHasher {
        let mut h = ContextHasher::new(root);
        h.racy_window = window;
        h
    }

    fn settle(window: Duration) {
        std::thread::sleep(window * 2);
    }

    fn ignore(patterns: &[&str]) -> IgnoreMatcher {
        IgnoreMatcher::new(patterns).unwrap()
    }

    fn write(ctx: &Path, rel: &str, content: &str) {
        let p = ctx.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// A context of 5 files (one ignored) in subdirectories, a symlink and an empty dir.
    fn context() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        write(&ctx, "a.txt", "aaaa\n");
        write(&ctx, "b.txt", "bbbb\n");
        write(&ctx, "src/main.c", "int main() { return 0; }\n");
        write(&ctx, "src/lib/x.h", "#define X 1\n");
        write(&ctx, "build.log", "ignored\n");
        symlink("a.txt", ctx.join("link")).unwrap();
        fs::create_dir(ctx.join("empty")).unwrap();
        let store = dir.path().join("store");
        (dir, ctx, store)
    }

    /// One build's hash of the whole context ("COPY . /x/"), and how many files it read.
    fn build(store: &Store, ctx: &Path, window: Duration) -> (String, usize) {
        let h = hasher(ctx, window);
        let key = h.hash(store, &[PathBuf::new()], &ignore(&["*.log"])).unwrap();
        (key, h.files_hashed())
    }

    #[test]
    fn an_unchanged_tree_is_not_read_again_even_by_another_process() {
        let (_dir, ctx, store_dir) = context();
        settle(WINDOW);
        let store = Store::open(&store_dir).unwrap();
        let h = hasher(&ctx, WINDOW);
        let all = [PathBuf::new()];
        let key = h.hash(&store, &all, &ignore(&["*.log"])).unwrap();
        assert_eq!(h.files_hashed(), 4, "the ignored file is not read");
        // Another step of the same build, and a single file: nothing is read again.
        assert_eq!(h.hash(&store, &all, &ignore(&["*.log"])).unwrap(), key);
        h.hash(&store, &[PathBuf::from("a.txt")], &ignore(&[])).unwrap();
        assert_eq!(h.files_hashed(), 4);
        assert_eq!(store.stat_cache_len().unwrap(), 4);

        // The next build, then one in another process (the store opened again).
        assert_eq!(build(&store, &ctx, WINDOW), (key.clone(), 0));
        drop(store);
        let store = Store::open(&store_dir).unwrap();
        assert_eq!(build(&store, &ctx, WINDOW), (key.clone(), 0));
        let h = hasher(&ctx, WINDOW);
        h.hash(&store, &[PathBuf::from("src/main.c")], &ignore(&[])).unwrap();
        assert_eq!(h.files_hashed(), 0);

        // The stat-cache does not change keys: a store without it gives the same one.
        let fresh = Store::open(store_dir.with_file_name("fresh")).unwrap();
        assert_eq!(build(&fresh, &ctx, WINDOW), (key, 4));
    }

    #[test]
    fn new_content_with_the_same_size_and_mtime_is_read_again() {
        let (_dir, ctx, store_dir) = context();
        settle(WINDOW);
        let store = Store::open(&store_dir).unwrap();
        let (key, _) = build(&store, &ctx, WINDOW);
        settle(WINDOW);

        let b = ctx.join("b.txt");
        let before = fs::metadata(&b).unwrap();
        fs::write(&b, "BBBB\n").unwrap();
        fs::File::options()
            .write(true)
            .open(&b)
            .unwrap()
            .set_modified(before.modified().unwrap())
            .unwrap();
        let after = fs::metadata(&b).unwrap();
        assert_eq!(
            (after.len(), after.modified().unwrap()),
            (before.len(), before.modified().unwrap())
        );
        let (changed, read) = build(&store, &ctx, WINDOW);
        assert_eq!(read, 1, "only b.txt is read");
        assert_ne!(changed, key);

        // The old content again: the key is content-based, so it comes back.
        settle(WINDOW);
        fs::write(&b, "bbbb\n").unwrap();
        assert_eq!(build(&store, &ctx, WINDOW), (key, 1));
    }

    #[test]
    fn a_new_file_a_removed_file_and_a_chmod_change_the_hash() {
        let (_dir, ctx, store_dir) = context();
        settle(WINDOW);
        let store = Store::open(&store_dir).unwrap();
        let (key, _) = build(&store, &ctx, WINDOW);

        write(&ctx, "src/new.c", "new\n");
        let (with_new, read) = build(&store, &ctx, WINDOW);
        assert_eq!(read, 1);
        assert_ne!(with_new, key);

        fs::remove_file(ctx.join("src/new.c")).unwrap();
        fs::remove_file(ctx.join("src/lib/x.h")).unwrap();
        let (removed, read) = build(&store, &ctx, WINDOW);
        assert_eq!(read, 0);
        assert_ne!(removed, key);
        assert_ne!(removed, with_new);
        // The walk dropped the records of the files it no longer saw.
        assert_eq!(store.stat_cache_len().unwrap(), 3);

        write(&ctx, "src/lib/x.h", "#define X 1\n");
        settle(WINDOW);
        assert_eq!(build(&store, &ctx, WINDOW), (key.clone(), 1));
        fs::set_permissions(ctx.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        let (chmod, _) = build(&store, &ctx, WINDOW);
        assert_ne!(chmod, key);
    }

    #[test]
    fn a_file_changed_right_after_it_was_hashed_is_read_again() {
        let window = Duration::from_millis(300);
        let (_dir, ctx, store_dir) = context();
        settle(window);
        write(&ctx, "fresh.txt", "1111\n");
        let store = Store::open(&store_dir).unwrap();
        let (key, read) = build(&store, &ctx, window);
        assert_eq!(read, 5);
        // The fresh file was read but not recorded: its ctime could still be the one a
        // write in the same clock tick leaves.
        let canonical = fs::canonicalize(&ctx).unwrap();
        let cache = store.stat_cache_load(&canonical).unwrap();
        assert!(cache.get(Path::new("fresh.txt")).is_none());
        assert!(cache.get(Path::new("a.txt")).is_some());

        // Rewritten at once, same size, mtime set back: the next build reads it again.
        let f = ctx.join("fresh.txt");
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        fs::write(&f, "2222\n").unwrap();
        fs::File::options().write(true).open(&f).unwrap().set_modified(mtime).unwrap();
        let (changed, read) = build(&store, &ctx, window);
        assert_eq!(read, 1);
        assert_ne!(changed, key);

        // Once it is old enough it is recorded, and then not read again.
        settle(window);
        assert_eq!(build(&store, &ctx, window), (changed.clone(), 1));
        assert_eq!(build(&store, &ctx, window), (changed, 0));
    }

    #[test]
    fn two_builds_of_one_context_at_once_agree_and_both_record() {
        let (_dir, ctx, store_dir) = context();
        settle(WINDOW);
        let (one, two) = (Store::open(&store_dir).unwrap(), Store::open(&store_dir).unwrap());
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| build(&one, &ctx, WINDOW));
            let b = s.spawn(|| build(&two, &ctx, WINDOW));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(a.0, b.0);
        assert_eq!(build(&Store::open(&store_dir).unwrap(), &ctx, WINDOW), (a.0, 0));
    }

    #[test]
    fn the_default_window_does_not_record_a_file_just_written() {
        let (_dir, ctx, store_dir) = context();
        let store = Store::open(&store_dir).unwrap();
        let (key, read) = build(&store, &ctx, RACY_WINDOW);
        assert_eq!(read, 4);
        assert_eq!(store.stat_cache_len().unwrap(), 0);
        assert_eq!(build(&store, &ctx, RACY_WINDOW), (key, 4));
    }
}
