//! Images with known waste, checked exactly against dive's formula computed by hand.

mod common;

use common::{dive_formula, image, layer_tar, TestImage, E};
use strata_analyze::{analyze_image, ci, Analysis, CiRules};

/// Layer 0 writes three files; layer 1 overwrites one, deletes one (a whiteout) and adds a
/// directory; layer 2 deletes that directory, overwrites the big file and adds an empty dir.
fn wasteful() -> TestImage {
    let l0 = layer_tar(&[
        E::Dir("etc"),
        E::File("etc/base.conf", 1000),
        E::Dir("tmp"),
        E::File("tmp/scratch", 20_000),
        E::Dir("usr"),
        E::File("usr/big.bin", 50_000),
        E::Link("usr/link", "big.bin"),
    ]);
    let l1 = layer_tar(&[
        E::Dir("cache"),
        E::File("cache/a", 4000),
        E::File("cache/b", 6000),
        E::Dir("etc"),
        E::File("etc/base.conf", 3000),
        E::File("etc/new.txt", 500),
        E::Dir("tmp"),
        E::Whiteout("tmp/scratch"),
    ]);
    let l2 = layer_tar(&[
        E::Whiteout("cache"),
        E::Dir("opt"),
        E::Dir("usr"),
        E::File("usr/big.bin", 60_000),
    ]);
    image(
        vec![l0, l1, l2],
        &[
            "/bin/sh -c #(nop) ADD file:abc in / ",
            "/bin/sh -c make things",
            "/bin/sh -c rm -rf /cache",
        ],
    )
}

/// dive's per-path sizes for `wasteful()`, worked out by hand:
/// - leaves only: `etc`, `tmp`, `usr`, `cache` have children in their layers, so they
///   are not occurrences; `opt` is an empty directory, a leaf of size 0; the symlink is a
///   leaf of size 0;
/// - `tmp/.wh.scratch` counts under `/tmp/scratch` with size 0 (it was a file below);
/// - `.wh.cache` counts under `/cache` with the sum of the subtree below: 0 + 4000 + 6000.
const WASTEFUL: &[(&str, &[u64])] = &[
    ("/etc/base.conf", &[1000, 3000]),
    ("/tmp/scratch", &[20_000, 0]),
    ("/usr/big.bin", &[50_000, 60_000]),
    ("/usr/link", &[0]),
    ("/cache/a", &[4000]),
    ("/cache/b", &[6000]),
    ("/etc/new.txt", &[500]),
    ("/cache", &[10_000]),
    ("/opt", &[0]),
];

fn check_wasteful(a: &Analysis) {
    let (eff, wasted, count) = dive_formula(WASTEFUL);
    assert_eq!(eff, 71_500.0 / 154_500.0);
    assert_eq!(wasted, 134_000);
    assert_eq!(a.efficiency, eff, "efficiency");
    assert_eq!(a.wasted_bytes, wasted, "wasted bytes");
    assert_eq!(a.inefficiencies.len(), count);
    let listed: Vec<(&str, usize, u64, Vec<usize>)> = a
        .inefficiencies
        .iter()
        .map(|w| (w.path.as_str(), w.count, w.wasted_bytes, w.layers.clone()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("/usr/big.bin", 2, 110_000, vec![0, 2]),
            ("/tmp/scratch", 2, 20_000, vec![0, 1]),
            ("/etc/base.conf", 2, 4000, vec![0, 1]),
        ]
    );
    // Layer sizes: dive sums the header sizes of each layer's entries.
    let sizes: Vec<u64> = a.layers.iter().map(|l| l.size).collect();
    assert_eq!(sizes, vec![71_000, 13_500, 60_000]);
    assert_eq!(a.size_bytes, 144_500);
    assert_eq!(a.user_size_bytes, 73_500);
    assert_eq!(a.user_wasted_percent, 134_000.0 / 73_500.0);
    // Per-layer changes.
    let changes: Vec<(usize, usize, usize)> =
        a.layers.iter().map(|l| (l.added, l.modified, l.removed)).collect();
    assert_eq!(
        changes,
        vec![
            (7, 0, 0), // etc, etc/base.conf, tmp, tmp/scratch, usr, usr/big.bin, usr/link
            (4, 1, 1), // + cache, cache/a, cache/b, etc/new.txt; ~ etc/base.conf; - tmp/scratch
            (1, 1, 3), // + opt; ~ usr/big.bin; - cache, cache/a, cache/b
        ]
    );
    let commands: Vec<&str> = a.layers.iter().map(|l| l.command.as_str()).collect();
    assert_eq!(commands, vec!["ADD file:abc in /", "RUN make things", "RUN rm -rf /cache"]);
}

#[test]
fn docker_archive_with_known_waste() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("waste.tar");
    wasteful().docker_archive(&archive, "waste:1");
    let (_, a) = analyze_image(None, archive.to_str().unwrap()).unwrap();
    assert_eq!(a.image, "waste:1");
    check_wasteful(&a);
}

#[test]
fn compressed_docker_archive() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("waste.tar");
    wasteful().docker_archive(&archive, "waste:1");
    let gz_path = dir.path().join("waste.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz_path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&std::fs::read(&archive).unwrap()).unwrap();
    gz.finish().unwrap();
    let (_, a) = analyze_image(None, &format!("docker-archive:{}", gz_path.display())).unwrap();
    check_wasteful(&a);
}

#[test]
fn oci_layout_dir_with_gzip_layers() {
    let dir = tempfile::tempdir().unwrap();
    wasteful().oci_dir(dir.path());
    let (_, a) = analyze_image(None, dir.path().to_str().unwrap()).unwrap();
    check_wasteful(&a);
    assert!(a.layers.iter().all(|l| l.blob_size.is_some() && l.digest.starts_with("sha256:")));
}

#[test]
fn image_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    wasteful().load_into_store(&root, "waste:1");
    let (_, a) = analyze_image(Some(&root), "waste:1").unwrap();
    check_wasteful(&a);
    // By ID too.
    let id = a.id.clone().unwrap();
    let (_, b) = analyze_image(Some(&root), &id[7..19]).unwrap();
    assert_eq!(b.wasted_bytes, a.wasted_bytes);
    // `store:` forces a store lookup even when a file of that name exists.
    let input = strata_analyze::Input::parse(&format!("store:{}", "waste:1"));
    assert_eq!(input, strata_analyze::Input::Store("waste:1".into()));
}

/// A file written, then overwritten twice with the same size; a file written and deleted.
#[test]
fn overwritten_and_deleted_file() {
    let img = image(
        vec![
            layer_tar(&[E::Dir("app"), E::File("app/data", 7000), E::File("app/keep", 100)]),
            layer_tar(&[E::Dir("app"), E::File("app/data", 7000), E::File("app/tmp.log", 900)]),
            layer_tar(&[E::Dir("app"), E::File("app/data", 7000), E::Whiteout("app/tmp.log")]),
        ],
        &["/bin/sh -c a", "/bin/sh -c b", "/bin/sh -c c"],
    );
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("img.tar");
    img.docker_archive(&archive, "over:1");
    let (_, a) = analyze_image(None, archive.to_str().unwrap()).unwrap();
    let (eff, wasted, count) = dive_formula(&[
        ("/app/data", &[7000, 7000, 7000]),
        ("/app/keep", &[100]),
        ("/app/tmp.log", &[900, 0]),
    ]);
    assert_eq!((7000.0 + 100.0 + 0.0) / (21_000.0 + 100.0 + 900.0), eff);
    assert_eq!(a.efficiency, eff);
    assert_eq!(a.wasted_bytes, wasted);
    assert_eq!(wasted, 21_900);
    assert_eq!(a.inefficiencies.len(), count);
    assert_eq!(a.inefficiencies[0].path, "/app/data");
    assert_eq!(a.inefficiencies[0].count, 3);
    assert_eq!(a.inefficiencies[0].layers, vec![0, 1, 2]);
}

/// No waste at all: efficiency 1, nothing listed, CI passes with dive's defaults.
#[test]
fn efficient_image_passes_ci() {
    let img = image(
        vec![
            layer_tar(&[E::Dir("bin"), E::File("bin/sh", 1234)]),
            layer_tar(&[E::Dir("srv"), E::File("srv/app", 10)]),
        ],
        &["/bin/sh -c #(nop) ADD x in /", "/bin/sh -c #(nop) COPY app /srv/"],
    );
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("img.tar");
    img.docker_archive(&archive, "ok:1");
    let (_, a) = analyze_image(None, archive.to_str().unwrap()).unwrap();
    assert_eq!(a.efficiency, 1.0);
    assert_eq!(a.wasted_bytes, 0);
    assert!(a.inefficiencies.is_empty());
    let o = ci::evaluate(&a, &CiRules::default());
    assert!(o.pass);
    let text = ci::report(&a, &o);
    assert!(
        text.contains("Result:PASS [Total:3] [Passed:2] [Failed:0] [Warn:0] [Skipped:1]"),
        "{text}"
    );
}

/// An opaque directory hides what was below; dive ignores the marker for efficiency.
#[test]
fn opaque_directory() {
    let img = image(
        vec![
            layer_tar(&[E::Dir("var"), E::File("var/old", 300)]),
            layer_tar(&[E::Dir("var"), E::Opaque("var"), E::File("var/new", 200)]),
        ],
        &["/bin/sh -c a", "/bin/sh -c b"],
    );
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("img.tar");
    img.docker_archive(&archive, "opq:1");
    let (loaded, a) = analyze_image(None, archive.to_str().unwrap()).unwrap();
    // dive: var/old [300], var/new [200]: no waste.
    assert_eq!(a.efficiency, 1.0);
    assert_eq!(a.wasted_bytes, 0);
    // The real filesystem lost var/old.
    assert_eq!((a.layers[1].added, a.layers[1].modified, a.layers[1].removed), (1, 0, 1));
    let rows = strata_analyze::tree::tree_at(&loaded.scans, 1);
    let paths: Vec<(&str, strata_analyze::analysis::Change)> =
        rows.iter().map(|r| (r.path.as_str(), r.change)).collect();
    use strata_analyze::analysis::Change::*;
    assert_eq!(paths, vec![("var", Unchanged), ("var/new", Added), ("var/old", Removed)]);
}

#[test]
fn ci_thresholds_on_the_wasteful_image() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("waste.tar");
    wasteful().docker_archive(&archive, "waste:1");
    let (_, a) = analyze_image(None, archive.to_str().unwrap()).unwrap();
    let rules = |e: &str, b: &str, p: &str| CiRules {
        lowest_efficiency: e.into(),
        highest_wasted_bytes: b.into(),
        highest_user_wasted_percent: p.into(),
    };
    // efficiency 0.4628, wasted 134000, user wasted 1.823
    assert!(ci::evaluate(&a, &rules("0.46", "134000", "1.9")).pass);
    let o = ci::evaluate(&a, &rules("0.47", "134kB", "1.9"));
    assert!(!o.pass);
    let fails: Vec<&str> =
        o.results.iter().filter(|r| r.status == ci::RuleStatus::Fail).map(|r| r.rule).collect();
    assert_eq!(fails, vec!["lowestEfficiency"]);
    let o = ci::evaluate(&a, &rules("disabled", "133999", "disabled"));
    assert!(!o.pass);
    assert_eq!(
        o.results[1].message,
        "too many bytes wasted (wasted-bytes=134000 > threshold=133999)"
    );
    let o = ci::evaluate(&a, &rules("disabled", "disabled", "1.8"));
    assert!(!o.pass);
    let o = ci::evaluate(&a, &rules("0.5", "disabled", "0.1"));
    let text = ci::report(&a, &o);
    assert!(text.contains("  efficiency: 46.2783 %\n"), "{text}");
    assert!(text.contains("  wastedBytes: 134000 bytes (134 kB)\n"), "{text}");
    assert!(text.contains("  userWastedPercent: 182.3129 %\n"), "{text}");
    assert!(text.contains("    2        110 kB  /usr/big.bin\n"), "{text}");
    assert!(text.contains(
        "  FAIL: lowestEfficiency: image efficiency is too low (efficiency=0.4627831715210356 < threshold=0.5)"
    ), "{text}");
    assert!(
        text.contains("Result:FAIL [Total:3] [Passed:0] [Failed:2] [Warn:0] [Skipped:1]"),
        "{text}"
    );
    // A bad value in a rules file fails the rule with dive's message.
    let o = ci::evaluate(&a, &rules("lots", "disabled", "disabled"));
    assert!(o.results[2].message.starts_with("invalid config value ('lots')"), "{:?}", o.results);
}

#[test]
fn text_and_json_reports() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("waste.tar");
    wasteful().docker_archive(&archive, "waste:1");
    let (_, a) = analyze_image(None, archive.to_str().unwrap()).unwrap();
    let text = strata_analyze::report::text(&a, 10, false);
    assert!(text.contains("Potential wasted space: 134kB (134000 bytes)"), "{text}");
    assert!(text.contains("Image efficiency score: 46.2783 %"), "{text}");
    assert!(text.contains("/usr/big.bin"), "{text}");
    let doc = strata_analyze::report::json(&a, None);
    assert_eq!(doc["image"]["inefficientBytes"], 134_000);
    assert_eq!(doc["image"]["sizeBytes"], 144_500);
    assert_eq!(doc["image"]["fileReference"][0]["file"], "/usr/big.bin");
    assert_eq!(doc["image"]["fileReference"][0]["layers"], serde_json::json!([0, 2]));
    assert_eq!(doc["layer"][1]["command"], "RUN make things");
    assert_eq!(doc["layer"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Not an archive at all.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar file, not even close to one............").unwrap();
    let e = analyze_image(None, junk.to_str().unwrap()).err().unwrap().to_string();
    assert!(e.contains("junk.tar"), "{e}");
    // A tar without a manifest.
    let empty = dir.path().join("empty.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&empty).unwrap());
    let mut h = tar::Header::new_ustar();
    h.set_size(2);
    h.set_mode(0o644);
    b.append_data(&mut h, "hello.txt", &b"hi"[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    let e = analyze_image(None, empty.to_str().unwrap()).err().unwrap().to_string();
    assert!(e.contains("neither manifest.json nor index.json"), "{e}");
    // A manifest naming a missing layer.
    let img = wasteful();
    let broken = dir.path().join("broken");
    img.oci_dir(&broken);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(broken.join("index.json")).unwrap()).unwrap();
    let mdigest =
        index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(broken.join("blobs/sha256").join(&mdigest)).unwrap())
            .unwrap();
    let l0 =
        manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    std::fs::remove_file(broken.join("blobs/sha256").join(l0)).unwrap();
    let e = analyze_image(None, broken.to_str().unwrap()).err().unwrap().to_string();
    assert!(e.contains("No such file"), "{e}");
    // A truncated layer.
    let img = image(vec![layer_tar(&[E::File("a", 5000)])[..3000].to_vec()], &["/bin/sh -c x"]);
    let t = dir.path().join("trunc.tar");
    img.docker_archive(&t, "t:1");
    let e = analyze_image(None, t.to_str().unwrap()).err().unwrap().to_string();
    assert!(e.contains("layer 0"), "{e}");
    // A layer entry climbing out of the root.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let img = image(vec![b.into_inner().unwrap()], &["/bin/sh -c x"]);
    let t = dir.path().join("escape.tar");
    img.docker_archive(&t, "t:1");
    let e = analyze_image(None, t.to_str().unwrap()).err().unwrap().to_string();
    assert!(e.contains("climbs above the root"), "{e}");
    // An image name that is not in the store.
    let root = dir.path().join("store");
    let e = analyze_image(Some(&root), "nosuch:latest").err().unwrap().to_string();
    assert!(e.to_lowercase().contains("nosuch"), "{e}");
}

/// dive's own unit test (`TestEfficency` in filetree/efficiency_test.go), as layer tars:
/// no directory entries, so `/etc/nginx` is an implicit node (not a directory) in dive's
/// stacked tree and its whiteout counts 0 bytes. dive expects a score of 0.75 and one
/// inefficient path, `/etc/nginx/nginx.conf`, with 7000 bytes.
#[test]
fn dives_own_efficiency_case() {
    let img = image(
        vec![
            layer_tar(&[E::File("etc/nginx/nginx.conf", 2000), E::File("etc/nginx/public", 3000)]),
            layer_tar(&[E::File("etc/nginx/nginx.conf", 5000), E::File("etc/athing", 10_000)]),
            layer_tar(&[E::Whiteout("etc/nginx")]),
        ],
        &["/bin/sh -c a", "/bin/sh -c b", "/bin/sh -c c"],
    );
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("img.tar");
    img.docker_archive(&archive, "nginx:1");
    let (_, a) = analyze_image(None, archive.to_str().unwrap()).unwrap();
    let (eff, wasted, count) = dive_formula(&[
        ("/etc/nginx/nginx.conf", &[2000, 5000]),
        ("/etc/nginx/public", &[3000]),
        ("/etc/athing", &[10_000]),
        ("/etc/nginx", &[0]),
    ]);
    assert_eq!(eff, 0.75);
    assert_eq!(a.efficiency, eff);
    assert_eq!(a.wasted_bytes, wasted);
    assert_eq!(a.inefficiencies.len(), count);
    assert_eq!(a.inefficiencies[0].path, "/etc/nginx/nginx.conf");
    assert_eq!(a.inefficiencies[0].wasted_bytes, 7000);
    assert_eq!(a.inefficiencies[0].layers, vec![0, 1]);
    // The real filesystem lost the whole directory in layer 2.
    assert_eq!(a.layers[2].removed, 3);
}
