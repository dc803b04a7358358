//! Archives that lie, escape or explode are refused with a clear message, and leave the
//! store exactly as it was: no image, no blob, fsck clean.

mod common;

use common::*;
use strata_store::archive::load;
use strata_store::layer_info::Limits;
use strata_store::Store;

fn refused(archive: &[u8], limits: Limits) -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = load(&store, "evil.tar", archive, limits, &mut |_| {})
        .expect_err("archive must be refused");
    assert!(store.images().unwrap().is_empty(), "no image may be recorded");
    assert!(store.blobs().list().unwrap().0.is_empty(), "no blob may be written");
    let report = store.fsck().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    store.gc().unwrap();
    assert_eq!(
        std::fs::read_dir(store.blobs().ingest_dir()).unwrap().count(),
        0,
        "ingest must be clean"
    );
    err.to_string()
}

fn with_layer(layer: Vec<u8>) -> Vec<u8> {
    docker_archive("evil:latest", &[&layer], &config_for(&[&layer]))
}

#[test]
fn outer_path_traversal() {
    let msg = refused(&tar(&[Entry::File("../../etc/evil", b"x")]), Limits::default());
    assert!(msg.contains("../../etc/evil") && msg.contains("escapes the root"), "{msg}");
}

#[test]
fn outer_absolute_path() {
    let msg = refused(&tar(&[Entry::File("/etc/evil", b"x")]), Limits::default());
    assert!(msg.contains("/etc/evil") && msg.contains("absolute"), "{msg}");
}

#[test]
fn outer_symlink_escape() {
    let msg =
        refused(&tar(&[Entry::Symlink("manifest.json", "../../../etc/passwd")]), Limits::default());
    assert!(msg.contains("points outside the archive"), "{msg}");
}

#[test]
fn layer_path_traversal() {
    let msg = refused(&with_layer(layer(&[("../../evil", b"x")])), Limits::default());
    assert!(msg.contains("../../evil") && msg.contains("escapes the root"), "{msg}");
}

#[test]
fn layer_absolute_path() {
    let msg = refused(&with_layer(layer(&[("/etc/cron.d/evil", b"x")])), Limits::default());
    assert!(msg.contains("/etc/cron.d/evil") && msg.contains("absolute"), "{msg}");
}

#[test]
fn layer_symlink_escape() {
    let l = tar(&[Entry::Symlink("evil", "../../../.."), Entry::File("evil/pwned", b"x")]);
    let msg = refused(&with_layer(l), Limits::default());
    assert!(msg.contains("\"evil\"") && msg.contains("symlink that points outside"), "{msg}");
}

#[test]
fn layer_hardlink_escape() {
    let l = tar(&[Entry::Hardlink("passwd", "../../../etc/passwd")]);
    let msg = refused(&with_layer(l), Limits::default());
    assert!(msg.contains("hard link to a path outside"), "{msg}");
}

#[test]
fn absolute_symlink_is_an_ordinary_image() {
    // `/bin/sh -> /bin/busybox` style links are normal and must load.
    let l = tar(&[
        Entry::Dir("bin/"),
        Entry::File("bin/busybox", b"elf"),
        Entry::Symlink("bin/sh", "/bin/busybox"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    load(&store, "ok.tar", &with_layer(l)[..], Limits::default(), &mut |_| {}).unwrap();
    assert_eq!(store.images().unwrap().len(), 1);
}

#[test]
fn gzip_bomb_layer() {
    // 64 MiB of zeros in ~64 KiB: over 1000:1 once past the (lowered) floor.
    let zeros = vec![0u8; 64 << 20];
    let bomb = gzip(&zeros);
    let mut config_layer = layer(&[("zeros", &zeros)]);
    config_layer.truncate(0);
    let archive = docker_archive("evil:latest", &[&bomb], &config_for(&[&zeros]));
    let limits = Limits { ratio_floor: 8 << 20, ..Limits::default() };
    let msg = refused(&archive, limits);
    assert!(msg.contains("ratio") || msg.contains("bomb"), "{msg}");
}

#[test]
fn gzip_bomb_archive() {
    // The whole archive compressed: a tar of zeros expands past the size cap.
    let inner = layer(&[("zeros", &vec![0u8; 32 << 20])]);
    let archive = gzip(&inner);
    let limits = Limits { max_decompressed: Some(16 << 20), ..Limits::default() };
    let msg = refused(&archive, limits);
    assert!(msg.contains("bomb") || msg.contains("more than"), "{msg}");
}

#[test]
fn truncated_archive() {
    let l = layer(&[("big", &vec![7u8; 100_000])]);
    let mut archive = with_layer(l);
    archive.truncate(archive.len() / 2);
    let msg = refused(&archive, Limits::default());
    assert!(msg.contains("truncated") || msg.contains("missing"), "{msg}");
}

#[test]
fn wrong_digest_blob_in_oci_layout() {
    let l = layer(&[("a", b"hello")]);
    let archive = oci_archive(&[&l], Some(&|blob: &mut Vec<u8>| blob.push(0)));
    let msg = refused(&archive, Limits::default());
    assert!(msg.contains("does not match its name"), "{msg}");
}

#[test]
fn wrong_diff_id_in_docker_archive() {
    let l = layer(&[("a", b"hello")]);
    let other = layer(&[("a", b"HELLO")]);
    let archive = docker_archive("evil:latest", &[&l], &config_for(&[&other]));
    let msg = refused(&archive, Limits::default());
    assert!(msg.contains("diffID") && msg.contains("corrupt"), "{msg}");
}

#[test]
fn not_an_archive() {
    let msg = refused(
        b"this is not a tar file at all, just some text that goes on for a while",
        Limits::default(),
    );
    assert!(msg.contains("evil.tar"), "{msg}");
}
