//! Unpacking real layers: whiteouts and opaque dirs in both modes, type replacement,
//! hardlinks, and faithful metadata (modes, owners, mtimes, xattrs, devices).

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::{names, Layer};
use strata_layer::{unpack, Compression, UnpackMode, UnpackOptions, UnpackStats};
use strata_oci::Digest;
use tar::EntryType;

fn apply(layer: &[u8], root: &Path) -> UnpackStats {
    unpack(layer, root, &UnpackOptions::default()).unwrap()
}

fn overlay(layer: &[u8], root: &Path) -> UnpackStats {
    let opts = UnpackOptions { mode: UnpackMode::OverlayDiff, ..Default::default() };
    unpack(layer, root, &opts).unwrap()
}

/// A lower rootfs, built by unpacking a real layer.
fn base_layer() -> Vec<u8> {
    Layer::new()
        .dir("etc/")
        .file("etc/keep", b"k")
        .file("etc/gone", b"g")
        .dir("etc/gonedir/")
        .file("etc/gonedir/inner", b"i")
        .dir("opq/")
        .file("opq/old", b"o")
        .dir("opq/sub/")
        .file("opq/sub/old2", b"o2")
        .dir("opq2/")
        .file("opq2/old", b"o")
        .tar()
}

#[test]
fn whiteouts_remove_lower_content_and_never_appear() {
    let t = tempfile::tempdir().unwrap();
    apply(&base_layer(), t.path());
    let stats =
        apply(&Layer::new().file("etc/.wh.gone", b"").file("etc/.wh.gonedir", b"").tar(), t.path());
    assert_eq!(names(&t.path().join("etc")), ["keep"]);
    assert_eq!(stats.whiteouts, 2);
    assert_eq!(stats.files, 0);
}

#[test]
fn whiteout_in_a_missing_dir_creates_nothing() {
    let t = tempfile::tempdir().unwrap();
    apply(&Layer::new().file("nowhere/.wh.x", b"").tar(), t.path());
    assert!(names(t.path()).is_empty());
}

#[test]
fn whiteout_does_not_remove_this_layers_own_file() {
    let t = tempfile::tempdir().unwrap();
    apply(&base_layer(), t.path());
    apply(&Layer::new().file("etc/gone", b"new").file("etc/.wh.gone", b"").tar(), t.path());
    assert_eq!(fs::read(t.path().join("etc/gone")).unwrap(), b"new");
}

#[test]
fn opaque_dir_hides_lower_content_whatever_the_marker_position() {
    let t = tempfile::tempdir().unwrap();
    apply(&base_layer(), t.path());
    // Marker first in opq/, last in opq2/; sub/ is re-added by this layer but its lower
    // content must still go.
    let layer = Layer::new()
        .dir("opq/")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"n")
        .dir("opq2/")
        .file("opq2/new", b"n")
        .dir("opq2/sub/")
        .file("opq2/sub/new2", b"n2")
        .file("opq2/.wh..wh..opq", b"")
        .tar();
    let stats = apply(&layer, t.path());
    assert_eq!(names(&t.path().join("opq")), ["new"]);
    assert_eq!(names(&t.path().join("opq2")), ["new", "sub"]);
    assert_eq!(names(&t.path().join("opq2/sub")), ["new2"]);
    assert_eq!(stats.whiteouts, 2);

    // A re-added directory with lower children under an opaque parent loses those children.
    let t = tempfile::tempdir().unwrap();
    apply(&base_layer(), t.path());
    let layer = Layer::new()
        .dir("opq/")
        .dir("opq/sub/")
        .file("opq/sub/fresh", b"f")
        .file("opq/.wh..wh..opq", b"")
        .tar();
    apply(&layer, t.path());
    assert_eq!(names(&t.path().join("opq")), ["sub"]);
    assert_eq!(names(&t.path().join("opq/sub")), ["fresh"]);
}

#[test]
fn entries_replace_paths_of_another_type() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    apply(
        &Layer::new()
            .file("x", b"file")
            .dir("y/")
            .file("y/child", b"c")
            .dir("usr/")
            .dir("usr/bin/")
            .file("usr/bin/tool", b"t")
            .symlink("bin", "usr/bin")
            .dir("merge/")
            .file("merge/lower", b"l")
            .tar(),
        root,
    );
    apply(
        &Layer::new()
            .dir("x/")
            .file("x/inner", b"i")
            .file("y", b"now a file")
            .dir("bin/")
            .file("bin/own", b"o")
            .dir_full("merge/", 0o700, 0, 0, 1_000)
            .file("merge/upper", b"u")
            .tar(),
        root,
    );
    assert_eq!(fs::read(root.join("x/inner")).unwrap(), b"i");
    assert_eq!(fs::read(root.join("y")).unwrap(), b"now a file");
    // A directory entry over a symlink replaces the symlink (lstat semantics, as Docker).
    assert!(fs::symlink_metadata(root.join("bin")).unwrap().is_dir());
    assert_eq!(names(&root.join("bin")), ["own"]);
    assert_eq!(names(&root.join("usr/bin")), ["tool"]);
    // A directory over a directory merges, taking the new metadata.
    assert_eq!(names(&root.join("merge")), ["lower", "upper"]);
    let m = fs::metadata(root.join("merge")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o700, 1_000));
}

#[test]
fn writing_through_a_symlinked_parent_lands_in_its_target() {
    let t = tempfile::tempdir().unwrap();
    apply(&Layer::new().dir("usr/").dir("usr/bin/").symlink("bin", "/usr/bin").tar(), t.path());
    apply(&Layer::new().file("bin/new", b"n").tar(), t.path());
    assert_eq!(fs::read(t.path().join("usr/bin/new")).unwrap(), b"n");
    assert!(fs::symlink_metadata(t.path().join("bin")).unwrap().file_type().is_symlink());
}

#[test]
fn replacing_a_hardlinked_file_keeps_the_other_link() {
    let t = tempfile::tempdir().unwrap();
    apply(&Layer::new().file("a", b"old").hardlink("b", "a").tar(), t.path());
    assert_eq!(fs::metadata(t.path().join("a")).unwrap().nlink(), 2);
    apply(&Layer::new().file("a", b"new").tar(), t.path());
    assert_eq!(fs::read(t.path().join("a")).unwrap(), b"new");
    assert_eq!(fs::read(t.path().join("b")).unwrap(), b"old");
}

#[test]
fn hardlinks_share_an_inode() {
    let t = tempfile::tempdir().unwrap();
    let stats = apply(
        &Layer::new()
            .file_full("bin/busybox", b"elf", 0o755, 0, 0, 1)
            .hardlink("bin/sh", "bin/busybox")
            .hardlink("sbin/init", "./bin/busybox")
            .tar(),
        t.path(),
    );
    let ino = |p: &str| fs::metadata(t.path().join(p)).unwrap().ino();
    assert_eq!(ino("bin/sh"), ino("bin/busybox"));
    assert_eq!(ino("sbin/init"), ino("bin/busybox"));
    assert_eq!(fs::metadata(t.path().join("bin/busybox")).unwrap().nlink(), 3);
    assert_eq!((stats.files, stats.hardlinks), (1, 2));
}

#[test]
fn metadata_is_preserved() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let stats = apply(
        &Layer::new()
            .dir_full("./", 0o751, 0, 0, 1_234)
            .dir_full("ro/", 0o555, 1000, 1000, 1_111_111_111)
            .file_full("ro/inside", b"x", 0o444, 1000, 1000, 1_000_000_000)
            .file_full("suid", b"#!", 0o4755, 0, 0, 1_500_000_000)
            .file_full("owned", b"o", 0o640, 1234, 5678, 1_700_000_000)
            .pax("mtime", b"1700000000.5")
            .file("precise", b"p")
            .xattr("user.comment", b"hello")
            .xattr(
                "security.capability",
                &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            )
            .file("withxattrs", b"x")
            .raw(EntryType::Symlink, b"link", b"owned", b"", 0o777, 42, 43, 1_400_000_000)
            .device(EntryType::Char, "dev/null", 1, 3)
            .device(EntryType::Block, "dev/loop9", 7, 9)
            .device(EntryType::Fifo, "run/fifo", 0, 0)
            .tar(),
        root,
    );
    let m = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(m("").mode() & 0o7777, 0o751);
    assert_eq!(m("").mtime(), 1_234);
    assert_eq!(
        (m("ro").mode() & 0o7777, m("ro").uid(), m("ro").mtime()),
        (0o555, 1000, 1_111_111_111)
    );
    assert_eq!(m("ro/inside").mode() & 0o7777, 0o444);
    assert_eq!(m("suid").mode() & 0o7777, 0o4755);
    let owned = m("owned");
    assert_eq!((owned.uid(), owned.gid(), owned.mode() & 0o7777), (1234, 5678, 0o640));
    assert_eq!((m("precise").mtime(), m("precise").mtime_nsec()), (1_700_000_000, 500_000_000));
    assert_eq!(xattr::get(root.join("withxattrs"), "user.comment").unwrap().unwrap(), b"hello");
    assert!(xattr::get(root.join("withxattrs"), "security.capability").unwrap().is_some());
    let link = m("link");
    assert!(link.file_type().is_symlink());
    assert_eq!((link.uid(), link.gid(), link.mtime()), (42, 43, 1_400_000_000));
    let null = m("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!((libc::major(null.rdev()), libc::minor(null.rdev())), (1, 3));
    assert_eq!((null.mode() & 0o7777, null.gid(), null.mtime()), (0o620, 5, 1_500_000_000));
    let lp = m("dev/loop9");
    assert!(lp.file_type().is_block_device());
    assert_eq!((libc::major(lp.rdev()), libc::minor(lp.rdev())), (7, 9));
    assert!(m("run/fifo").file_type().is_fifo());
    assert_eq!(stats.special, 3);
    assert_eq!(stats.dirs, 2);
    assert_eq!(stats.symlinks, 1);
}

#[test]
fn overlay_diff_mode_materialises_whiteouts_for_overlayfs() {
    let t = tempfile::tempdir().unwrap();
    let layer = Layer::new()
        .dir("etc/")
        .file("etc/.wh.gone", b"")
        .file("etc/added", b"a")
        .file("opq/.wh..wh..opq", b"")
        .dir("opq/")
        .file("opq/new", b"n")
        .tar();
    let stats = overlay(&layer, t.path());
    let gone = fs::symlink_metadata(t.path().join("etc/gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert_eq!(names(&t.path().join("etc")), ["added", "gone"]);
    assert_eq!(
        xattr::get(t.path().join("opq"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert_eq!(names(&t.path().join("opq")), ["new"]);
    assert_eq!(stats.whiteouts, 2);

    let t = tempfile::tempdir().unwrap();
    let opts = UnpackOptions {
        mode: UnpackMode::OverlayDiff,
        overlay_user_xattr: true,
        ..Default::default()
    };
    unpack(&layer[..], t.path(), &opts).unwrap();
    assert_eq!(
        xattr::get(t.path().join("opq"), "user.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
}

/// Mounts the OverlayDiff-unpacked layers with the kernel's overlayfs and checks it honours
/// the whiteouts and opaque dirs exactly as Apply mode did. Skipped if overlay cannot be
/// mounted here.
#[test]
fn overlayfs_agrees_with_apply_mode() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, merged, applied) = (
        t.path().join("l1"),
        t.path().join("l2"),
        t.path().join("merged"),
        t.path().join("applied"),
    );
    for d in [&lower, &upper, &merged, &applied] {
        fs::create_dir(d).unwrap();
    }
    let top = Layer::new()
        .file("etc/.wh.gone", b"")
        .file("etc/.wh.gonedir", b"")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"n")
        .tar();
    overlay(&base_layer(), &lower);
    overlay(&top, &upper);
    apply(&base_layer(), &applied);
    apply(&top, &applied);

    let opts = format!("lowerdir={}:{}", upper.display(), lower.display());
    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("overlayfs not mountable here; skipping the kernel cross-check");
        return;
    }
    let seen = (names(&merged.join("etc")), names(&merged.join("opq")));
    let _ = std::process::Command::new("umount").arg(&merged).status();
    assert_eq!(seen, (names(&applied.join("etc")), names(&applied.join("opq"))));
    assert_eq!(seen, (vec!["keep".to_string()], vec!["new".to_string()]));
}

#[test]
fn compressions_give_the_same_tree_and_diff_id() {
    let tar = Layer::new().file("a", &[9u8; 10_000]).dir("d/").symlink("d/l", "../a").tar();
    let gz = common::gzip(&tar);
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let mut seen = Vec::new();
    for (blob, c) in
        [(&tar, Compression::None), (&gz, Compression::Gzip), (&zst, Compression::Zstd)]
    {
        let t = tempfile::tempdir().unwrap();
        let stats = apply(blob, t.path());
        assert_eq!(stats.compression, c);
        assert_eq!(stats.diff_id, Digest::sha256_of(&tar));
        assert_eq!(stats.uncompressed_size, tar.len() as u64);
        assert_eq!(stats.bytes, 10_000);
        seen.push(common::observe(t.path(), true));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
}

#[test]
fn diff_id_helper_matches_independent_hashes() {
    let tar = Layer::new().file("f", b"content").tar();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let d = strata_layer::diff_id(&zst[..], &Default::default()).unwrap();
    assert_eq!(d.diff_id, Digest::sha256_of(&tar));
    assert_eq!(d.digest, Digest::sha256_of(&zst));
    assert_eq!((d.uncompressed_size, d.size), (tar.len() as u64, zst.len() as u64));
    assert_eq!(d.compression, Compression::Zstd);
}

/// A layer produced by GNU tar itself (`--xattrs --numeric-owner`, PAX format) unpacks to
/// the same tree it was made from.
#[test]
fn gnu_tar_layers_unpack_faithfully() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("d/e")).unwrap();
    fs::write(src.join("d/e/f"), b"data").unwrap();
    fs::write(src.join("long-".repeat(30)), b"long name").unwrap();
    fs::hard_link(src.join("d/e/f"), src.join("hl")).unwrap();
    std::os::unix::fs::symlink("d/e/f", src.join("sl")).unwrap();
    xattr::set(src.join("d/e/f"), "user.k", b"v").unwrap();
    std::os::unix::fs::chown(src.join("d/e/f"), Some(321), Some(654)).unwrap();
    let blob = t.path().join("layer.tar");
    let status = std::process::Command::new("tar")
        .args(["--format=pax", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&blob)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    apply(&fs::read(&blob).unwrap(), &dst);
    assert_eq!(common::observe(&src, true), common::observe(&dst, true));
}
