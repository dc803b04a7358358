//! Hostile layers: each must be refused with a message naming the entry, and nothing may be
//! written outside the root (nor anything after the refused entry).

mod common;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use common::{gzip, Layer, Sandbox};
use strata_layer::{diff_id, unpack, LayerError, LimitExceeded, Limits, UnpackMode, UnpackOptions};
use tar::EntryType;

fn apply(layer: &[u8], root: &Path) -> Result<strata_layer::UnpackStats, LayerError> {
    unpack(layer, root, &UnpackOptions::default())
}

/// Unpacks `layer` (which has `before` first and `after` last around the hostile entry),
/// expects a refusal mentioning `entry` and `reason`, and checks nothing leaked.
fn assert_refused(sb: &Sandbox, layer: &[u8], entry: &str, reason: &str) {
    for mode in [UnpackMode::Apply, UnpackMode::OverlayDiff] {
        let opts = UnpackOptions { mode, ..Default::default() };
        let err = unpack(layer, &sb.root(), &opts).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LayerError::Unsafe { .. }), "{mode:?}: {err:?}");
        assert!(msg.contains(&format!("{entry:?}")), "{mode:?}: {msg} should name {entry:?}");
        assert!(msg.contains(reason), "{mode:?}: {msg} should say {reason:?}");
        assert!(sb.root().join("before").exists(), "entries before the refused one are kept");
        assert!(!sb.root().join("after").exists(), "nothing after a refused entry is written");
        sb.assert_nothing_outside();
    }
}

#[test]
fn dotdot_name_is_refused() {
    let sb = Sandbox::new();
    let layer = Layer::new().file("before", b"1").file("../escape", b"x").file("after", b"2").tar();
    assert_refused(&sb, &layer, "../escape", "climbs out of the root");
}

#[test]
fn dotdot_in_the_middle_is_refused() {
    let sb = Sandbox::new();
    let layer =
        Layer::new().file("before", b"1").file("a/../../escape", b"x").file("after", b"2").tar();
    assert_refused(&sb, &layer, "a/../../escape", "climbs out of the root");
}

#[test]
fn harmless_dotdot_is_folded() {
    let sb = Sandbox::new();
    apply(&Layer::new().file("a/../b", b"x").tar(), &sb.root()).unwrap();
    assert_eq!(fs::read(sb.root().join("b")).unwrap(), b"x");
    sb.assert_nothing_outside();
}

#[test]
fn absolute_name_is_refused() {
    let sb = Sandbox::new();
    let host_target = sb.outside().join("abs");
    let name = host_target.to_str().unwrap().to_string();
    let layer = Layer::new().file("before", b"1").file(&name, b"x").file("after", b"2").tar();
    assert_refused(&sb, &layer, &name, "absolute");
    assert!(!host_target.exists());
}

#[test]
fn symlink_climbing_out_is_refused_before_anything_goes_through_it() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .file("before", b"1")
        .symlink("evil", "../../..")
        .file("evil/pwned", b"x")
        .file("after", b"2")
        .tar();
    assert_refused(&sb, &layer, "evil", "symlink target \"../../..\" resolves outside the root");
    assert!(fs::symlink_metadata(sb.root().join("evil")).is_err());
}

#[test]
fn nested_symlink_climbing_out_is_refused() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .file("before", b"1")
        .dir("a/")
        .symlink("a/up", "../../outside")
        .file("after", b"2")
        .tar();
    assert_refused(&sb, &layer, "a/up", "resolves outside the root");
}

#[test]
fn relative_symlink_inside_is_allowed() {
    let sb = Sandbox::new();
    let layer = Layer::new().dir("usr/").dir("usr/bin/").symlink("bin", "usr/bin").tar();
    apply(&layer, &sb.root()).unwrap();
    let layer = Layer::new().symlink("usr/lib64", "../lib").file("bin/sh", b"#!").tar();
    apply(&layer, &sb.root()).unwrap();
    // Written through the symlink, inside the root.
    assert_eq!(fs::read(sb.root().join("usr/bin/sh")).unwrap(), b"#!");
    sb.assert_nothing_outside();
}

#[test]
fn absolute_symlink_to_slash_is_resolved_inside_the_root() {
    let sb = Sandbox::new();
    let marker = format!("strata-layer-test-{}", std::process::id());
    let layer = Layer::new()
        .symlink("evil", "/")
        .file(&format!("evil/etc/{marker}"), b"pwned")
        .file("evil/tmp/also", b"x")
        .tar();
    apply(&layer, &sb.root()).unwrap();
    assert_eq!(fs::read(sb.root().join("etc").join(&marker)).unwrap(), b"pwned");
    assert!(sb.root().join("tmp/also").is_file());
    assert!(!Path::new("/etc").join(&marker).exists(), "wrote onto the host /etc");
    assert_eq!(fs::read_link(sb.root().join("evil")).unwrap(), Path::new("/"));
    sb.assert_nothing_outside();
}

#[test]
fn absolute_symlink_to_a_real_host_dir_never_reaches_the_host() {
    let sb = Sandbox::new();
    fs::write(sb.outside().join("victim"), b"keep").unwrap();
    let host_dir = sb.outside().to_str().unwrap().to_string();
    let layer = Layer::new()
        .symlink("lnk", &host_dir)
        .file("lnk/pwned", b"x")
        .file("lnk/.wh.victim", b"")
        .tar();
    apply(&layer, &sb.root()).unwrap();
    assert_eq!(fs::read(sb.outside().join("victim")).unwrap(), b"keep");
    assert!(!sb.outside().join("pwned").exists());
    let inside = sb.root().join(host_dir.trim_start_matches('/')).join("pwned");
    assert_eq!(fs::read(inside).unwrap(), b"x");
}

#[test]
fn lower_symlink_leading_out_is_not_followed() {
    let sb = Sandbox::new();
    fs::write(sb.root().join("before"), b"").unwrap();
    symlink("../outside", sb.root().join("evil")).unwrap();
    let layer = Layer::new().file("evil/pwned", b"x").file("after", b"2").tar();
    let err = apply(&layer, &sb.root()).unwrap_err();
    assert!(matches!(err, LayerError::Unsafe { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("\"evil/pwned\"") && msg.contains("leads outside the root"), "{msg}");
    assert!(!sb.outside().join("pwned").exists());
    assert!(!sb.root().join("after").exists());
    // A whiteout through the same symlink must not delete outside either.
    fs::write(sb.outside().join("victim"), b"keep").unwrap();
    let err = apply(&Layer::new().file("evil/.wh.victim", b"").tar(), &sb.root()).unwrap_err();
    assert!(err.to_string().contains("outside the root"), "{err}");
    assert!(sb.outside().join("victim").exists());
}

#[test]
fn symlink_loop_is_refused() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .file("before", b"1")
        .symlink("a", "b")
        .symlink("b", "a")
        .file("a/x", b"x")
        .file("after", b"2")
        .tar();
    assert_refused(&sb, &layer, "a/x", "symlink loop");
}

#[test]
fn hardlink_out_of_the_root_is_refused() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .file("before", b"1")
        .hardlink("passwd", "../../etc/passwd")
        .file("after", b"2")
        .tar();
    assert_refused(&sb, &layer, "passwd", "hardlink target \"../../etc/passwd\" climbs out");
}

#[test]
fn absolute_hardlink_target_is_looked_up_inside_the_root() {
    let sb = Sandbox::new();
    let layer = Layer::new().hardlink("passwd", "/etc/passwd").tar();
    let err = apply(&layer, &sb.root()).unwrap_err();
    assert!(matches!(err, LayerError::BadEntry { .. }), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(!sb.root().join("passwd").exists());

    let layer = Layer::new().file("etc/passwd", b"root:x:0:0").hardlink("pw", "/etc/passwd").tar();
    apply(&layer, &sb.root()).unwrap();
    assert_eq!(fs::read(sb.root().join("pw")).unwrap(), b"root:x:0:0");
}

#[test]
fn hardlink_through_escaping_symlink_is_refused() {
    let sb = Sandbox::new();
    fs::write(sb.outside().join("secret"), b"s").unwrap();
    let layer = Layer::new()
        .file("before", b"1")
        .symlink("out", "/")
        .hardlink("stolen", "out/../../outside/secret")
        .file("after", b"2")
        .tar();
    // `out/../..` folds lexically to `..`: refused before any lookup.
    let err = apply(&layer, &sb.root()).unwrap_err();
    assert!(matches!(err, LayerError::Unsafe { .. }), "{err:?}");
    assert!(err.to_string().contains("\"stolen\"") && err.to_string().contains("climbs out"));
    assert!(!sb.root().join("stolen").exists() && !sb.root().join("after").exists());
    assert_eq!(fs::metadata(sb.outside().join("secret")).unwrap().nlink(), 1);

    // Through an absolute symlink the target is looked up inside the root: not found.
    let layer = Layer::new().hardlink("stolen", "out/outside/secret").tar();
    let err = apply(&layer, &sb.root()).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(fs::metadata(sb.outside().join("secret")).unwrap().nlink(), 1);
}

#[test]
fn whiteout_of_dot_or_dotdot_is_refused() {
    let sb = Sandbox::new();
    fs::create_dir(sb.root().join("a")).unwrap();
    fs::write(sb.root().join("a/f"), b"").unwrap();
    for name in ["a/.wh..", "a/.wh...", "a/.wh."] {
        let err = apply(&Layer::new().file(name, b"").tar(), &sb.root()).unwrap_err();
        assert!(matches!(err, LayerError::BadEntry { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains("names no removable file"), "{err}");
        assert!(sb.root().join("a/f").exists());
    }
}

#[test]
fn overlay_xattrs_in_a_layer_are_not_applied() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .xattr("trusted.overlay.redirect", b"/etc")
        .xattr("user.keep", b"1")
        .dir("d/")
        .tar();
    apply(&layer, &sb.root()).unwrap();
    let d = sb.root().join("d");
    assert_eq!(xattr::get(&d, "trusted.overlay.redirect").unwrap(), None);
    assert_eq!(xattr::get(&d, "user.keep").unwrap(), Some(b"1".to_vec()));
}

/// A layer whose single file is `len` zero bytes, gzip-compressed: ~1000:1.
fn zero_bomb(len: usize) -> Vec<u8> {
    let zeros = vec![0u8; len];
    gzip(&Layer::new().file("before", b"1").file("zeros", &zeros).file("after", b"2").tar())
}

#[test]
fn gzip_bomb_is_stopped_by_ratio() {
    let sb = Sandbox::new();
    let bomb = zero_bomb(64 << 20);
    assert!(bomb.len() < 1 << 20, "compressed to {}", bomb.len());
    let limits = Limits { max_decompressed: None, max_ratio: Some(50), ratio_floor: 1 << 20 };
    let opts = UnpackOptions { limits, ..Default::default() };
    let err = unpack(&bomb[..], &sb.root(), &opts).unwrap_err();
    match &err {
        LayerError::Limit(LimitExceeded::Ratio { decompressed, compressed, max_ratio: 50 }) => {
            assert!(*decompressed > 1 << 20 && *decompressed < 64 << 20, "{decompressed}");
            assert!(decompressed / compressed > 50);
        }
        other => panic!("expected a ratio limit, got {other:?}"),
    }
    assert!(err.to_string().contains("decompression bomb"), "{err}");
    assert!(!sb.root().join("zeros").exists(), "the partial file is removed");
    assert!(!sb.root().join("after").exists());

    // diff_id() enforces the same limits.
    let err = diff_id(&bomb[..], &limits).unwrap_err();
    assert!(matches!(err, LayerError::Limit(LimitExceeded::Ratio { .. })), "{err:?}");
    // ...and the default limits let a legitimate 64 MiB layer through.
    let d = diff_id(&bomb[..], &Limits::default()).unwrap();
    assert!(d.uncompressed_size > 64 << 20);
}

#[test]
fn size_limit_stops_unpacking() {
    let sb = Sandbox::new();
    let bomb = zero_bomb(8 << 20);
    let limits = Limits { max_decompressed: Some(4 << 20), max_ratio: None, ratio_floor: 0 };
    let opts = UnpackOptions { limits, ..Default::default() };
    let err = unpack(&bomb[..], &sb.root(), &opts).unwrap_err();
    assert!(
        matches!(err, LayerError::Limit(LimitExceeded::Size { limit }) if limit == 4 << 20),
        "{err:?}"
    );
    assert!(err.to_string().contains("more than 4194304 bytes"), "{err}");
    // Same for an uncompressed stream.
    let plain = Layer::new().file("zeros", &vec![0u8; 8 << 20]).tar();
    let err = unpack(&plain[..], &sb.root(), &opts).unwrap_err();
    assert!(matches!(err, LayerError::Limit(LimitExceeded::Size { .. })), "{err:?}");
}

#[test]
fn unsupported_entry_type_is_named() {
    let sb = Sandbox::new();
    let layer = Layer::new().raw(EntryType::new(b'Z'), b"weird", b"", b"", 0o644, 0, 0, 0).tar();
    let err = apply(&layer, &sb.root()).unwrap_err();
    assert!(err.to_string().contains("\"weird\"") && err.to_string().contains("'Z'"), "{err}");
}

#[test]
fn truncated_and_unsupported_streams_fail_clearly() {
    let sb = Sandbox::new();
    let full = Layer::new().file("a", &[7u8; 4000]).gzip();
    let err = apply(&full[..full.len() / 2], &sb.root()).unwrap_err();
    assert!(matches!(err, LayerError::Tar { .. } | LayerError::Read { .. }), "{err:?}");
    assert!(!sb.root().join("a").exists());

    let err = apply(&b"BZh91AY&SY rest of a bzip2 stream"[..], &sb.root()).unwrap_err();
    assert!(err.to_string().contains("bzip2"), "{err}");
}
