//! Real images (the shared fixtures): every source kind gives the same analysis, and the
//! numbers agree with the store's own accounting.

mod common;

use strata_analyze::analyze_image;

macro_rules! fixtures_or_skip {
    () => {
        match common::fixtures() {
            Some(d) => d,
            None => {
                eprintln!("SKIPPED: fixtures not found (set STRATA_FIXTURES or build ~/.cache/strata-fixtures)");
                return;
            }
        }
    };
}

#[test]
fn busybox_every_source_agrees() {
    let fx = fixtures_or_skip!();
    let (_, docker) = analyze_image(None, fx.join("busybox.docker.tar").to_str().unwrap()).unwrap();
    let (_, oci_dir) = analyze_image(None, fx.join("busybox.oci").to_str().unwrap()).unwrap();
    let (_, oci_tar) = analyze_image(None, fx.join("busybox.oci.tar").to_str().unwrap()).unwrap();
    for a in [&oci_dir, &oci_tar] {
        assert_eq!(a.efficiency, docker.efficiency);
        assert_eq!(a.wasted_bytes, docker.wasted_bytes);
        assert_eq!(a.size_bytes, docker.size_bytes);
        assert_eq!(a.layers.len(), docker.layers.len());
    }
    assert!(docker.size_bytes > 500_000, "{}", docker.size_bytes);
    assert!(docker.layers[0].added > 10);

    // Loaded into a store: same numbers, and the layer sizes are the store's content sizes.
    let dir = tempfile::tempdir().unwrap();
    let store = strata_store::Store::open(dir.path()).unwrap();
    let f = std::fs::File::open(fx.join("busybox.docker.tar")).unwrap();
    let loaded = strata_store::archive::load(
        &store,
        "busybox.docker.tar",
        f,
        strata_layer::Limits::default(),
        &mut |_| {},
    )
    .unwrap();
    let id = loaded[0].id.to_string();
    let record = store.resolve(&id).unwrap();
    drop(store);
    let (_, stored) = analyze_image(Some(dir.path()), &id).unwrap();
    assert_eq!(stored.efficiency, docker.efficiency);
    assert_eq!(stored.wasted_bytes, docker.wasted_bytes);
    for (l, r) in stored.layers.iter().zip(&record.layers) {
        assert_eq!(l.blob_size, Some(r.size));
        assert_eq!(l.digest, r.digest.to_string());
    }
}

#[test]
fn debian_layers_and_sizes() {
    let fx = fixtures_or_skip!();
    let path = fx.join("debian.docker.tar");
    if !path.is_file() {
        eprintln!("SKIPPED: {} not found", path.display());
        return;
    }
    let (loaded, a) = analyze_image(None, path.to_str().unwrap()).unwrap();
    assert_eq!(a.size_bytes, loaded.scans.iter().map(|s| s.size).sum::<u64>());
    assert!(a.efficiency > 0.0 && a.efficiency <= 1.0);
    let wasted: u64 = a.inefficiencies.iter().map(|w| w.wasted_bytes).sum();
    assert_eq!(wasted, a.wasted_bytes);
    for w in &a.inefficiencies {
        assert!(w.count >= 2 && w.layers.len() == w.count, "{w:?}");
    }
    let text = strata_analyze::report::text(&a, 5, false);
    assert!(text.contains("Image efficiency score"), "{text}");
}
