//! Deterministic layer writing: identical bytes for identical trees, faithful round trips
//! through unpack, overlay whiteout conversion, and interoperability with GNU tar.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{names, observe};
use strata_layer::{
    unpack, write_layer, Compression, LayerDescriptor, UnpackMode, UnpackOptions, WriteOptions,
};
use strata_oci::Digest;

fn set_mtime(p: &Path, secs: i64) {
    filetime::set_symlink_file_times(
        p,
        filetime::FileTime::from_unix_time(secs, 0),
        filetime::FileTime::from_unix_time(secs, 0),
    )
    .unwrap();
}

fn mknod(p: &Path, kind: libc::mode_t, major: u32, minor: u32) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o640, libc::makedev(major, minor)) };
    assert_eq!(rc, 0, "mknod {}: {}", p.display(), std::io::Error::last_os_error());
}

type Step = Box<dyn Fn(&Path)>;

/// A tree with one of everything a layer can hold. `reverse` creates the same tree in the
/// opposite order, so readdir order differs.
fn make_tree(root: &Path, reverse: bool) {
    let long_dir = "d".repeat(120);
    let long_path = format!("{}/{}", "p".repeat(150), "q".repeat(150));
    let mut steps: Vec<Step> = vec![
        Box::new(|r| fs::create_dir_all(r.join("etc/ssl")).unwrap()),
        Box::new(|r| fs::write(r.join("etc/hostname"), b"box\n").unwrap()),
        Box::new(|r| fs::write(r.join("etc/ssl/empty"), b"").unwrap()),
        Box::new(|r| {
            let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
            fs::write(r.join("big"), big).unwrap()
        }),
        Box::new(|r| fs::write(r.join("suid"), b"#!/bin/sh\n").unwrap()),
        Box::new(|r| fs::write(r.join("owned"), b"mine").unwrap()),
        Box::new(|r| symlink("etc/hostname", r.join("rel-link")).unwrap()),
        Box::new(|r| symlink("/bin/busybox", r.join("abs-link")).unwrap()),
        Box::new(|r| symlink("missing", r.join("dangling")).unwrap()),
        Box::new(|r| fs::create_dir(r.join("bin")).unwrap()),
        Box::new(|r| fs::write(r.join("bin/busybox"), b"elf").unwrap()),
        Box::new(|r| fs::hard_link(r.join("bin/busybox"), r.join("bin/sh")).unwrap()),
        Box::new(|r| fs::hard_link(r.join("bin/busybox"), r.join("bin/ls")).unwrap()),
        Box::new(|r| fs::create_dir(r.join("dev")).unwrap()),
        Box::new(|r| mknod(&r.join("dev/null"), libc::S_IFCHR, 1, 3)),
        Box::new(|r| mknod(&r.join("dev/sda"), libc::S_IFBLK, 8, 0)),
        Box::new(|r| mknod(&r.join("dev/fifo"), libc::S_IFIFO, 0, 0)),
        Box::new(|r| fs::write(r.join(OsStr::from_bytes(b"latin1-\xe9")), b"x").unwrap()),
        Box::new(move |r| {
            fs::create_dir(r.join(&long_dir)).unwrap();
            fs::write(r.join(&long_dir).join("f".repeat(90)), b"prefix-split").unwrap()
        }),
        Box::new(move |r| {
            let p = r.join(&long_path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"pax path").unwrap()
        }),
        Box::new(|r| fs::create_dir(r.join("private")).unwrap()),
    ];
    if reverse {
        // Creation order matters only within a directory; keep parents first.
        steps.swap(1, 2);
        steps.swap(4, 5);
        steps.swap(6, 8);
    }
    for s in &steps {
        s(root);
    }
    xattr::set(root.join("etc/hostname"), "user.origin", b"test").unwrap();
    xattr::set(root.join("etc/hostname"), "user.another", b"\x00\x01binary").unwrap();
    xattr::set(root.join("bin"), "user.dir", b"d").unwrap();
    std::os::unix::fs::chown(root.join("owned"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(root.join("rel-link"), Some(7), Some(8)).unwrap();
    fs::set_permissions(root.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    // Fixed mtimes everywhere, children before parents.
    let mut all = Vec::new();
    walk(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_600_000_000 + i as i64 % 7);
    }
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            walk(&e.path(), out);
        }
    }
}

fn write(dir: &Path, opts: &WriteOptions) -> (Vec<u8>, LayerDescriptor) {
    let mut out = Vec::new();
    let desc = write_layer(dir, &mut out, opts).unwrap();
    (out, desc)
}

fn uncompressed() -> WriteOptions {
    WriteOptions { compression: Compression::None, ..Default::default() }
}

#[test]
fn same_tree_gives_the_same_digests() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    make_tree(&a, false);
    make_tree(&b, true);
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let opts = WriteOptions { compression, ..Default::default() };
        let (blob1, d1) = write(&a, &opts);
        // Reading every file changes atimes; that must not matter.
        let (blob2, d2) = write(&a, &opts);
        let (_, d3) = write(&b, &opts);
        assert_eq!(d1, d2, "{compression}");
        assert_eq!(blob1, blob2);
        assert_eq!(d1, d3, "tree built in another order differs ({compression})");
        assert_eq!(d1.digest, Digest::sha256_of(&blob1));
        assert_eq!(d1.size, blob1.len() as u64);
        assert_eq!(d1.media_type, compression.oci_media_type());
        // diff_id() on the produced blob agrees with what the writer computed.
        let check = strata_layer::diff_id(&blob1[..], &Default::default()).unwrap();
        assert_eq!((check.diff_id, check.uncompressed_size), (d1.diff_id, d1.uncompressed_size));
    }
    let diff_ids: Vec<Digest> = [Compression::None, Compression::Gzip, Compression::Zstd]
        .into_iter()
        .map(|compression| write(&a, &WriteOptions { compression, ..Default::default() }).1.diff_id)
        .collect();
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]), "{diff_ids:?}");
}

#[test]
fn tar_is_sorted_with_numeric_owners_only() {
    let t = tempfile::tempdir().unwrap();
    make_tree(t.path(), false);
    let (blob, _) = write(t.path(), &uncompressed());
    let mut ar = tar::Archive::new(&blob[..]);
    let mut paths = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header();
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        assert!(h.as_ustar().is_some());
        let path = e.path_bytes().into_owned();
        if path.ends_with(b"/") != (h.entry_type() == tar::EntryType::Directory) {
            panic!(
                "{:?}: directories and only directories end in /",
                String::from_utf8_lossy(&path)
            );
        }
        if let Some(pax) = e.pax_extensions().unwrap() {
            for r in pax {
                let k = r.unwrap().key().unwrap().to_string();
                assert!(!k.starts_with("SCHILY.xattr.trusted.overlay"), "{k}");
            }
        }
        paths.push(path.strip_suffix(b"/").unwrap_or(&path).to_vec());
    }
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert!(paths.iter().any(|p| p.len() > 255), "the PAX path case is exercised");
    assert_eq!(paths.len(), 24);
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    for (dir, mtime) in [(&a, 1_700_000_000), (&b, 1_800_000_000)] {
        fs::create_dir_all(dir.join("d")).unwrap();
        fs::write(dir.join("d/f"), b"x").unwrap();
        fs::write(dir.join("old"), b"o").unwrap();
        set_mtime(&dir.join("d/f"), mtime);
        set_mtime(&dir.join("d"), mtime);
        set_mtime(&dir.join("old"), 1_000);
    }
    let opts = WriteOptions { source_date_epoch: Some(1_650_000_000), ..uncompressed() };
    let (blob, da) = write(&a, &opts);
    let (_, db) = write(&b, &opts);
    assert_eq!(da.digest, db.digest);
    assert_ne!(write(&a, &uncompressed()).1.digest, write(&b, &uncompressed()).1.digest);
    let mut ar = tar::Archive::new(&blob[..]);
    let mtimes: Vec<(String, u64)> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().display().to_string(), e.header().mtime().unwrap())
        })
        .collect();
    // Older files keep their time; newer ones are clamped to the epoch.
    assert_eq!(
        mtimes,
        [("d/".into(), 1_650_000_000), ("d/f".into(), 1_650_000_000), ("old".into(), 1_000)]
    );
}

#[test]
fn unpack_of_write_round_trips() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    make_tree(&src, false);
    for compression in [Compression::Gzip, Compression::Zstd] {
        let (blob, desc) = write(&src, &WriteOptions { compression, ..Default::default() });
        let stats = unpack(&blob[..], &dst, &UnpackOptions::default()).unwrap();
        assert_eq!(stats.diff_id, desc.diff_id);
        assert_eq!(stats.hardlinks, 2);
        assert_eq!(observe(&src, true), observe(&dst, true));
    }
}

#[test]
fn overlay_upper_dir_becomes_whiteouts_and_back() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::create_dir_all(upper.join("var/cache")).unwrap();
    fs::write(upper.join("etc/added"), b"a").unwrap();
    mknod(&upper.join("etc/gone"), libc::S_IFCHR, 0, 0);
    // Recent kernels share one whiteout inode between many deletions.
    fs::hard_link(upper.join("etc/gone"), upper.join("etc/gone2")).unwrap();
    xattr::set(upper.join("var/cache"), "trusted.overlay.opaque", b"y").unwrap();
    xattr::set(upper.join("var/cache"), "trusted.overlay.origin", b"junk").unwrap();
    fs::write(upper.join("var/cache/fresh"), b"f").unwrap();

    let (blob, _) = write(&upper, &uncompressed());
    let mut ar = tar::Archive::new(&blob[..]);
    let listing: Vec<(String, tar::EntryType)> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (String::from_utf8_lossy(&e.path_bytes()).into_owned(), e.header().entry_type())
        })
        .collect();
    use tar::EntryType::{Directory as D, Regular as R};
    assert_eq!(
        listing,
        [
            ("etc/".to_string(), D),
            ("etc/.wh.gone".into(), R),
            ("etc/.wh.gone2".into(), R),
            ("etc/added".into(), R),
            ("var/".into(), D),
            ("var/cache/".into(), D),
            ("var/cache/.wh..wh..opq".into(), R),
            ("var/cache/fresh".into(), R),
        ]
    );
    // As Docker writes them: whiteouts are 0600 files, the opaque marker has its dir's mode.
    let cache_mode = fs::metadata(upper.join("var/cache")).unwrap().permissions();
    fs::set_permissions(upper.join("var/cache"), fs::Permissions::from_mode(0o750)).unwrap();
    let (blob2, _) = write(&upper, &uncompressed());
    fs::set_permissions(upper.join("var/cache"), cache_mode).unwrap();
    for e in tar::Archive::new(&blob2[..]).entries().unwrap() {
        let e = e.unwrap();
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mode = e.header().mode().unwrap();
        match path.as_str() {
            "etc/.wh.gone" | "etc/.wh.gone2" => assert_eq!(mode, 0o600, "{path}"),
            "var/cache/.wh..wh..opq" => assert_eq!(mode, 0o750, "{path}"),
            _ => {}
        }
    }

    // Applied onto a lower rootfs: deletions and the opaque dir take effect.
    let lower = t.path().join("lower");
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::create_dir_all(lower.join("var/cache/apt")).unwrap();
    fs::write(lower.join("etc/gone"), b"").unwrap();
    fs::write(lower.join("etc/gone2"), b"").unwrap();
    fs::write(lower.join("etc/kept"), b"").unwrap();
    unpack(&blob[..], &lower, &UnpackOptions::default()).unwrap();
    assert_eq!(names(&lower.join("etc")), ["added", "kept"]);
    assert_eq!(names(&lower.join("var/cache")), ["fresh"]);

    // Unpacked for overlayfs: the same upper dir again (minus overlay bookkeeping xattrs).
    let again = t.path().join("again");
    fs::create_dir(&again).unwrap();
    let opts = UnpackOptions { mode: UnpackMode::OverlayDiff, ..Default::default() };
    unpack(&blob[..], &again, &opts).unwrap();
    xattr::remove(upper.join("var/cache"), "trusted.overlay.origin").unwrap();
    let strip_links = |mut m: std::collections::BTreeMap<String, common::Observed>| {
        // The shared whiteout inode comes back as two separate whiteouts.
        m.values_mut().for_each(|o| o.inode_group = None);
        m.values_mut().for_each(|o| {
            if o.kind == "char" {
                o.mtime = 0;
                o.mode = 0;
            }
        });
        m
    };
    assert_eq!(strip_links(observe(&upper, true)), strip_links(observe(&again, true)));
}

#[test]
fn gnu_tar_extracts_our_layers_identically() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    make_tree(&src, false);
    let (blob, _) = write(&src, &WriteOptions::default());
    let path = t.path().join("layer.tar.gz");
    fs::write(&path, &blob).unwrap();
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpzf"])
        .arg(&path)
        .arg("-C")
        .arg(&dst)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "GNU tar warned: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(observe(&src, true), observe(&dst, true));
}

#[test]
fn file_shrinking_during_write_is_an_error_not_a_corrupt_layer() {
    // The walk records sizes first; "b-victim" is truncated while the writer is still
    // compressing the 64 MiB "a-big" that sorts before it.
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("a-big"), vec![1u8; 64 << 20]).unwrap();
    let victim = t.path().join("b-victim");
    fs::write(&victim, vec![2u8; 1 << 20]).unwrap();
    let dir = t.path().to_path_buf();
    let writer = std::thread::spawn(move || {
        write_layer(&dir, std::io::sink(), &WriteOptions::default()).map(|_| ())
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::OpenOptions::new().write(true).open(&victim).unwrap().set_len(10).unwrap();
    let msg = writer.join().unwrap().unwrap_err().to_string();
    assert!(msg.contains("b-victim") && msg.contains("shrank"), "{msg}");
}

/// Deterministic xorshift bytes.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len.div_ceil(8))
        .flat_map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s.to_le_bytes()
        })
        .take(len)
        .collect()
}

/// Big enough for several gzip chunks and several zstd jobs (8 MiB each at level 3):
/// random files, text, and many small random files whose headers compress.
fn make_big_mixed_tree(root: &Path) {
    fs::create_dir_all(root.join("small")).unwrap();
    for i in 0..400 {
        let len = 64 + (i * 37 % 4000);
        fs::write(root.join(format!("small/{i:04}")), random_bytes(len, i as u64)).unwrap();
    }
    let text: Vec<u8> = (0..3_000_000u32)
        .flat_map(|i| format!("line {} of {}\n", i % 977, i % 13).into_bytes())
        .take(3 << 20)
        .collect();
    fs::write(root.join("text"), text).unwrap();
    for i in 0..3 {
        fs::write(root.join(format!("random{i}")), random_bytes(6 << 20, 1000 + i)).unwrap();
    }
}

fn unix_decompress(tool: &str, blob: &[u8]) -> Vec<u8> {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("blob");
    fs::write(&path, blob).unwrap();
    let test = Command::new(tool).arg("-t").arg(&path).output().unwrap();
    assert!(test.status.success(), "{tool} -t: {}", String::from_utf8_lossy(&test.stderr));
    let out = Command::new(tool).arg("-dc").arg(&path).output().unwrap();
    assert!(out.status.success(), "{tool} -dc: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn compressed_bytes_do_not_depend_on_thread_count() {
    let t = tempfile::tempdir().unwrap();
    make_big_mixed_tree(t.path());
    let (tar, plain) = write(t.path(), &uncompressed());
    for (compression, tool) in [(Compression::Gzip, "gzip"), (Compression::Zstd, "zstd")] {
        let with =
            |threads| WriteOptions { compression, threads: Some(threads), ..Default::default() };
        let (one, d1) = write(t.path(), &with(1));
        assert_eq!(d1.diff_id, plain.diff_id);
        for threads in [2, 4] {
            let (blob, d) = write(t.path(), &with(threads));
            assert!(blob == one, "{compression}: {threads} threads wrote other bytes than 1");
            assert_eq!(d, d1);
        }
        assert!(unix_decompress(tool, &one) == tar, "{tool} -dc gives the tar back");
        assert!(one.len() < tar.len() * 9 / 10, "{compression}: {} of {}", one.len(), tar.len());
    }
}

#[test]
fn parallel_gzip_is_one_member_with_the_usual_header() {
    let t = tempfile::tempdir().unwrap();
    make_big_mixed_tree(t.path());
    let (tar, _) = write(t.path(), &uncompressed());
    let (blob, _) = write(t.path(), &WriteOptions::default());
    assert_eq!(&blob[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    let mut member = flate2::bufread::GzDecoder::new(&blob[..]);
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut member, &mut out).unwrap();
    assert!(out == tar);
    assert!(member.into_inner().is_empty(), "nothing after the first member");
}

/// Fails after `budget` bytes, like a full disk.
struct FailingWriter {
    budget: usize,
}

impl std::io::Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.budget {
            return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full"));
        }
        self.budget -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_destination_is_a_write_error() {
    let t = tempfile::tempdir().unwrap();
    make_big_mixed_tree(t.path());
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        for (budget, threads) in [(0, 4), (5 << 20, 2), (5 << 20, 1)] {
            let opts = WriteOptions { compression, threads: Some(threads), ..Default::default() };
            let err = write_layer(t.path(), FailingWriter { budget }, &opts).unwrap_err();
            assert!(
                matches!(&err, strata_layer::LayerError::Write(e) if e.kind() == std::io::ErrorKind::StorageFull),
                "{compression}, budget {budget}: {err}"
            );
        }
    }
}
