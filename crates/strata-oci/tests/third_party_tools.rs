//! Round trips with the tools Strata must interoperate with: umoci writes images we read,
//! skopeo converts them to Docker schema 2, and oci-image-tool, umoci and skopeo read what we
//! write. A test whose tool is missing says so and returns.

use std::path::Path;
use std::process::Command;

use strata_oci::media_types::*;
use strata_oci::{
    new_descriptor, new_image_manifest, new_index, select, Digest, History, ImageConfig,
    ImageConfigBuilder, Manifest, Platform, RawManifest,
};

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

#[test]
fn reads_images_written_by_umoci_and_skopeo() {
    if !have("umoci") || !have("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = format!("{}:t", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "sh",
        "--config.env",
        "A=1",
        "--config.label",
        "k=v",
        "--config.workingdir",
        "/w",
    ]));

    let index =
        RawManifest::parse(std::fs::read(layout.join("index.json")).unwrap(), None).unwrap();
    let Manifest::Index(index) = index.manifest() else { panic!("index.json is an index") };
    let desc = &index.manifests()[0];
    let bytes = blob(&layout, desc.digest().as_ref());
    let manifest = RawManifest::parse(bytes, Some(desc.media_type().as_ref())).unwrap();
    assert_eq!(manifest.digest().to_string(), desc.digest().to_string());
    assert_eq!(manifest.media_type(), OCI_MANIFEST);
    let m = manifest.manifest().as_image().unwrap();
    let config = ImageConfig::parse(blob(&layout, m.config().digest().as_ref())).unwrap();
    assert_eq!(config.digest().to_string(), m.config().digest().to_string());
    assert_eq!(config.config().cmd.as_deref().unwrap(), ["sh"]);
    assert!(config.config().env.as_ref().unwrap().contains(&"A=1".to_string()));
    assert_eq!(config.config().labels.as_ref().unwrap()["k"], "v");
    assert_eq!(config.config().working_dir.as_deref(), Some("/w"));
    assert_eq!(config.diff_ids().len(), m.layers().len());

    // skopeo converts to Docker schema 2: same JSON shape, Docker media types.
    let dir = tmp.path().join("docker-dir");
    run(Command::new("skopeo")
        .args(["copy", "--format", "v2s2"])
        .arg(format!("oci:{}", image))
        .arg(format!("dir:{}", dir.display())));
    let docker =
        RawManifest::parse(std::fs::read(dir.join("manifest.json")).unwrap(), None).unwrap();
    assert_eq!(docker.media_type(), DOCKER_MANIFEST_V2);
    let dm = docker.manifest().as_image().unwrap();
    assert_eq!(dm.config().media_type().to_string(), DOCKER_CONFIG);
    let hex = dm.config().digest().to_string().replace("sha256:", "");
    let dconfig = ImageConfig::parse(std::fs::read(dir.join(hex)).unwrap()).unwrap();
    assert_eq!(dconfig.config().cmd.as_deref().unwrap(), ["sh"]);
}

#[test]
fn images_we_write_pass_oci_image_tool_umoci_and_skopeo() {
    if !have("oci-image-tool") || !have("umoci") || !have("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path();
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| -> Digest {
        let d = Digest::sha256_of(bytes);
        std::fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        d
    };

    // An empty tar archive: two zero blocks.
    let layer = vec![0u8; 1024];
    let layer_digest = put(&layer);
    let platform = Platform::host();
    let mut b = ImageConfigBuilder::new(&platform);
    b.set_created("2024-01-01T00:00:00Z")
        .set_cmd(Some(vec!["/bin/sh".into()]))
        .set_env("PATH", "/bin")
        .set_healthcheck(Some(&strata_oci::Healthcheck {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }))
        .add_layer(
            &layer_digest,
            History { created_by: Some("test".into()), ..Default::default() },
        );
    let config = b.build().unwrap();
    let config_digest = put(config.raw());

    let manifest = RawManifest::from_image(&new_image_manifest(
        new_descriptor(OCI_CONFIG, &config_digest, config.raw().len() as u64),
        vec![new_descriptor(OCI_LAYER_TAR, &layer_digest, layer.len() as u64)],
        None,
    ))
    .unwrap();
    put(manifest.bytes());
    let mut entry = manifest.descriptor();
    entry.set_platform(Some(platform.to_oci()));
    entry.set_annotations(Some(
        [("org.opencontainers.image.ref.name".to_string(), "t".to_string())].into(),
    ));
    let index = RawManifest::from_index(&new_index(vec![entry], None)).unwrap();
    assert_eq!(
        select(index.manifest().as_index().unwrap(), &platform).unwrap().digest().to_string(),
        manifest.digest().to_string()
    );
    std::fs::write(layout.join("index.json"), index.bytes()).unwrap();
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();

    run(Command::new("oci-image-tool")
        .args(["validate", "--type", "image", "--ref", "name=t"])
        .arg(layout));
    let stat = run(Command::new("umoci")
        .args(["stat", "--json", "--image"])
        .arg(format!("{}:t", layout.display())));
    assert!(stat.contains("test"), "umoci sees our history: {stat}");
    let inspect = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--config"])
        .arg(format!("oci:{}:t", layout.display())));
    assert!(inspect.contains("\"Healthcheck\""), "Docker-only fields survive: {inspect}");
    assert!(inspect.contains(&layer_digest.to_string()));
}
