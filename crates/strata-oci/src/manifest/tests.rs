use super::*;
use crate::media_types::*;

const A: &str = "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f";
const B: &str = "sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b";

/// The example from Docker's "Image Manifest V2, Schema 2" document, with its own spacing.
fn docker_schema2() -> String {
    format!(
        r#"{{
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {{
        "mediaType": "application/vnd.docker.container.image.v1+json",
        "size": 7023,
        "digest": "{A}"
    }},
    "layers": [
        {{
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": 32654,
            "digest": "{B}"
        }}
    ]
}}"#
    )
}

fn oci_index() -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
        {{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7143,"digest":"{A}",
          "platform":{{"architecture":"ppc64le","os":"linux"}}}},
        {{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7682,"digest":"{B}",
          "platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
    )
}

#[test]
fn parses_docker_schema2_keeping_raw_bytes() {
    let text = docker_schema2();
    let raw = RawManifest::parse(text.as_bytes(), None).unwrap();
    assert_eq!(raw.media_type(), DOCKER_MANIFEST_V2);
    assert_eq!(raw.bytes(), text.as_bytes());
    assert_eq!(raw.digest(), &Digest::sha256_of(text.as_bytes()));
    assert_eq!(raw.size(), text.len() as u64);
    let m = raw.manifest().as_image().unwrap();
    assert_eq!(m.config().media_type().to_string(), DOCKER_CONFIG);
    assert_eq!(m.config().size(), 7023);
    assert_eq!(m.layers()[0].digest().to_string(), B);
    assert_eq!(raw.manifest().children().len(), 2);

    // Re-serialising gives other bytes: why the raw bytes must be kept for the digest.
    let reserialised = serde_json::to_vec(m).unwrap();
    assert_ne!(Digest::sha256_of(&reserialised), *raw.digest());

    let desc = raw.descriptor();
    assert_eq!(desc.media_type().to_string(), DOCKER_MANIFEST_V2);
    assert_eq!(desc.size(), text.len() as u64);
    raw.verify(&Digest::sha256_of(text.as_bytes())).unwrap();
    assert!(matches!(
        raw.verify(&Digest::sha256_of(b"x")),
        Err(ManifestError::DigestMismatch { .. })
    ));
}

#[test]
fn parses_indexes_and_media_type_sources() {
    let idx = oci_index();
    let raw = RawManifest::parse(idx.as_bytes(), Some(OCI_INDEX)).unwrap();
    let i = raw.manifest().as_index().unwrap();
    assert_eq!(i.manifests().len(), 2);

    // No mediaType anywhere: the shape decides (OCI allows omitting it).
    let bare = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","size":2,"digest":"{A}"}},"layers":[]}}"#
    );
    assert_eq!(RawManifest::parse(bare.as_bytes(), None).unwrap().media_type(), OCI_MANIFEST);
    // A generic Content-Type is ignored; a parameterised one is understood.
    let parsed = RawManifest::parse(bare.as_bytes(), Some("application/json")).unwrap();
    assert_eq!(parsed.media_type(), OCI_MANIFEST);
    let parsed =
        RawManifest::parse(docker_schema2(), Some(&format!("{DOCKER_MANIFEST_V2}; charset=utf-8")))
            .unwrap();
    assert_eq!(parsed.media_type(), DOCKER_MANIFEST_V2);
    // Content-Type and document disagree.
    let e = RawManifest::parse(docker_schema2(), Some(OCI_MANIFEST)).unwrap_err();
    assert!(matches!(e, ManifestError::MediaTypeMismatch { .. }), "{e}");
}

fn err(json: &str) -> ManifestError {
    RawManifest::parse(json.as_bytes(), None).unwrap_err()
}

#[test]
fn refuses_bad_manifests_with_reasons() {
    let schema1 = r#"{"schemaVersion":1,"name":"library/busybox","tag":"latest","fsLayers":[]}"#;
    let e = err(schema1);
    assert!(matches!(e, ManifestError::Schema1(_)), "{e:?}");
    assert!(e.to_string().contains("schema 1"), "{e}");
    let e = RawManifest::parse(schema1, Some(DOCKER_MANIFEST_V1_SIGNED)).unwrap_err();
    assert!(matches!(&e, ManifestError::Schema1(mt) if mt == DOCKER_MANIFEST_V1_SIGNED), "{e:?}");

    let e = err(&format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#));
    assert!(matches!(e, ManifestError::MissingConfig), "{e:?}");

    let bad_digest = docker_schema2().replace(B, "sha256:1234");
    match err(&bad_digest) {
        ManifestError::BadDigest { field, value, .. } => {
            assert_eq!(field, "layers[0].digest");
            assert_eq!(value, "sha256:1234");
        }
        other => panic!("{other:?}"),
    }
    let bad_config_digest = docker_schema2().replace(A, "md5:abc");
    assert!(
        matches!(err(&bad_config_digest), ManifestError::BadDigest { field, .. } if field == "config.digest")
    );

    let negative = docker_schema2().replace("32654", "-1");
    match err(&negative) {
        ManifestError::BadSize { field, value } => {
            assert_eq!(field, "layers[0].size");
            assert_eq!(value, "-1");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(err(&docker_schema2().replace("7023", "7.5")), ManifestError::BadSize { .. }));

    let unknown =
        docker_schema2().replace(DOCKER_MANIFEST_V2, "application/vnd.example.thing+json");
    let e = err(&unknown);
    assert!(
        matches!(&e, ManifestError::UnknownMediaType(m) if m == "application/vnd.example.thing+json")
    );
    assert!(e.to_string().contains("application/vnd.example.thing+json"));

    assert!(matches!(err("[1,2]"), ManifestError::NotAnObject("an array")));
    assert!(matches!(err("{not json"), ManifestError::Json(_)));
    assert!(matches!(err(r#"{"schemaVersion":2}"#), ManifestError::UnknownShape));
    assert!(matches!(
        err(&docker_schema2().replace("\"schemaVersion\": 2", "\"schemaVersion\": 3")),
        ManifestError::SchemaVersion(v) if v == "3"
    ));
    let no_layers = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","size":2,"digest":"{A}"}}}}"#
    );
    assert!(matches!(err(&no_layers), ManifestError::MissingField(f) if f == "layers"));
    let no_media = docker_schema2()
        .replace("\"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\",", "");
    assert!(matches!(err(&no_media), ManifestError::MissingField(f) if f == "layers[0].mediaType"));
    let idx = oci_index().replace("\"size\":7682,", "");
    assert!(matches!(err(&idx), ManifestError::MissingField(f) if f == "manifests[1].size"));
}

#[test]
fn builds_deterministic_oci_manifests() {
    let config = crate::descriptor::new_descriptor(OCI_CONFIG, &A.parse().unwrap(), 7023);
    let layer = crate::descriptor::new_descriptor(OCI_LAYER_TAR_GZIP, &B.parse().unwrap(), 32654);
    let annotations: HashMap<String, String> =
        (0..16).map(|i| (format!("org.example.k{i}"), format!("v{i}"))).collect();
    let m = new_image_manifest(config.clone(), vec![layer.clone()], Some(annotations.clone()));
    let raw = RawManifest::from_image(&m).unwrap();
    assert_eq!(raw.media_type(), OCI_MANIFEST);
    assert_eq!(raw.manifest(), &Manifest::Image(m.clone()));
    // Keys sorted at every level, compact.
    let text = std::str::from_utf8(raw.bytes()).unwrap();
    assert!(
        text.starts_with(r#"{"annotations":{"org.example.k0":"v0","org.example.k1":"v1","#),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#""config":{{"digest":"{A}","mediaType":"{OCI_CONFIG}","size":7023}}"#
        )),
        "{text}"
    );
    assert!(
        text.ends_with(
            r#""mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#
        ),
        "{text}"
    );

    // The same content built again (new HashMap, new order) gives the same digest.
    let again = new_image_manifest(config, vec![layer], Some(annotations.into_iter().collect()));
    assert_eq!(RawManifest::from_image(&again).unwrap().digest(), raw.digest());

    let index = new_index(vec![raw.descriptor()], None);
    let raw_index = RawManifest::from_index(&index).unwrap();
    assert_eq!(raw_index.media_type(), OCI_INDEX);
    assert_eq!(
        raw_index.manifest().as_index().unwrap().manifests()[0].digest().to_string(),
        raw.digest().to_string()
    );
}
