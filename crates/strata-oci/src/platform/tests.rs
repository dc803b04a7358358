use super::*;
use crate::descriptor::new_descriptor;
use crate::media_types::OCI_MANIFEST;
use crate::Digest;

fn p(s: &str) -> Platform {
    Platform::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn parses_and_normalises() {
    let table = [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("linux/arm64/8", "linux/arm64/v8"),
        ("linux/arm64/v8.0", "linux/arm64/v8"),
        ("linux/arm64/9.0", "linux/arm64/v9"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("Linux/AMD64", "linux/amd64"),
        ("macos/arm64", "darwin/arm64/v8"),
        ("windows/amd64", "windows/amd64"),
        ("linux/s390x", "linux/s390x"),
        ("linux/ppc64le", "linux/ppc64le"),
        ("linux/riscv64", "linux/riscv64"),
    ];
    for (input, want) in table {
        assert_eq!(p(input).to_string(), want, "{input}");
        // Normal forms are fixed points.
        assert_eq!(p(want), p(input), "{want}");
    }
    let host = Platform::host();
    assert_eq!(p("linux").architecture, host.architecture);
    assert_eq!(p("linux").os, "linux");
    assert_eq!(p("arm64").os, host.os);
    assert_eq!(p("arm64").architecture, "arm64");
}

#[test]
fn refuses_malformed() {
    assert_eq!(Platform::parse(""), Err(PlatformError::Empty));
    assert!(matches!(Platform::parse("linux/arm/v7/x"), Err(PlatformError::TooManyParts(_))));
    assert!(matches!(Platform::parse("linux//v7"), Err(PlatformError::EmptyPart(_))));
    assert!(matches!(Platform::parse("linux/"), Err(PlatformError::EmptyPart(_))));
    let e = Platform::parse("linux/amd 64").unwrap_err();
    assert_eq!(e, PlatformError::InvalidPart("linux/amd 64".into(), "amd 64".into()));
    assert!(e.to_string().contains("amd 64"));
}

#[test]
fn host_is_a_normalised_go_name() {
    let host = Platform::host();
    assert_eq!(
        host,
        Platform::normalized(&host.os, &host.architecture, host.variant.as_deref(), None)
    );
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        assert_eq!(host.to_string(), "linux/amd64");
    }
    if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
        assert_eq!(host.to_string(), "linux/arm64/v8");
    }
}

#[test]
fn matching_follows_cpu_compatibility() {
    assert!(p("linux/arm/v7").matches(&p("linux/arm/v6")));
    assert!(!p("linux/arm/v6").matches(&p("linux/arm/v7")));
    assert!(p("linux/arm64").matches(&p("linux/arm/v7")));
    assert!(p("linux/amd64/v3").matches(&p("linux/amd64")));
    assert!(!p("linux/amd64").matches(&p("linux/amd64/v3")));
    assert!(!p("linux/amd64").matches(&p("linux/386")));
    assert!(!p("linux/amd64").matches(&p("windows/amd64")));
    assert!(!p("linux/amd64").matches(&p("linux/arm64")));
    // The spelling of an index entry does not matter.
    let entry = Platform {
        os: "linux".into(),
        architecture: "aarch64".into(),
        variant: None,
        os_version: None,
    };
    assert!(p("linux/arm64/v8").matches(&entry));
}

fn index(platforms: &[Option<&str>]) -> ImageIndex {
    let entries = platforms
        .iter()
        .enumerate()
        .map(|(i, plat)| {
            let mut d =
                new_descriptor(OCI_MANIFEST, &Digest::sha256_of(&[i as u8]), 100 + i as u64);
            d.set_platform(plat.map(|s| p(s).to_oci()));
            d
        })
        .collect();
    crate::manifest::new_index(entries, None)
}

#[test]
fn selects_the_best_index_entry() {
    let idx = index(&[
        None, // an attestation manifest
        Some("linux/amd64"),
        Some("linux/arm/v6"),
        Some("linux/arm/v7"),
        Some("linux/arm64/v8"),
        Some("linux/s390x"),
    ]);
    let size_for = |wanted: &str| select(&idx, &p(wanted)).map(|d| d.size());
    assert_eq!(size_for("linux/amd64"), Some(101));
    assert_eq!(size_for("linux/arm/v7"), Some(103));
    assert_eq!(size_for("linux/arm/v6"), Some(102));
    assert_eq!(size_for("linux/arm64"), Some(104));
    assert_eq!(size_for("linux/amd64/v2"), Some(101));
    assert_eq!(size_for("linux/s390x"), Some(105));
    assert_eq!(size_for("linux/ppc64le"), None);
    assert_eq!(size_for("windows/amd64"), None);

    // Without an arm64 entry, an arm64 host takes the best 32-bit ARM image.
    let idx = index(&[Some("linux/arm/v6"), Some("linux/arm/v7"), Some("linux/amd64")]);
    assert_eq!(select(&idx, &p("linux/arm64")).map(|d| d.size()), Some(101));
    // Ties go to the first entry.
    let idx = index(&[Some("linux/amd64"), Some("linux/x86_64")]);
    assert_eq!(select(&idx, &p("linux/amd64")).map(|d| d.size()), Some(100));
}

#[test]
fn oci_round_trip() {
    let plat = p("linux/arm/v7");
    let oci = plat.to_oci();
    assert_eq!(oci.architecture().to_string(), "arm");
    assert_eq!(oci.variant().as_deref(), Some("v7"));
    assert_eq!(Platform::from_oci(&oci), plat);
}
