//! Interoperability with the peer tools, on the busybox and Debian fixtures: what strata
//! saves, skopeo/umoci/oci-image-tool/podman read; what they write, strata loads with the
//! same digests.

mod common;

use std::process::Command;

use common::*;

fn load_busybox(env: &Env) -> Option<()> {
    let archive = fixture("busybox.docker.tar")?;
    let out = env.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: busybox:latest");
    Some(())
}

#[test]
fn skopeo_reads_strata_save_in_both_formats() {
    if !have("skopeo") {
        return;
    }
    let env = Env::new();
    let Some(()) = load_busybox(&env) else { return };
    let inspect = json(&env.ok(&["inspect", "busybox"]));
    let diff_ids = inspect[0]["RootFS"]["Layers"].clone();
    let manifest_digest = inspect[0]["Descriptor"]["digest"].as_str().unwrap().to_string();

    let docker = env.path("busybox.docker.tar");
    env.ok(&["save", "-o", docker.to_str().unwrap(), "busybox"]);
    let config = json(&run_ok(
        Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("docker-archive:{}", docker.display())),
    ));
    assert_eq!(config["rootfs"]["diff_ids"], diff_ids);
    let info = json(&run_ok(
        Command::new("skopeo").arg("inspect").arg(format!("docker-archive:{}", docker.display())),
    ));
    assert_eq!(info["RepoTags"], serde_json::json!([]), "docker-archive inspect: {info}");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 1);

    let oci = env.path("busybox.oci.tar");
    env.ok(&["save", "--format", "oci", "-o", oci.to_str().unwrap(), "busybox:latest"]);
    let info = json(&run_ok(
        Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", oci.display())),
    ));
    assert_eq!(
        info["Digest"].as_str(),
        Some(manifest_digest.as_str()),
        "the manifest digest survives save"
    );
}

#[test]
fn oci_image_tool_and_umoci_accept_strata_save() {
    if !have("oci-image-tool") || !have("umoci") {
        return;
    }
    let env = Env::new();
    let Some(()) = load_busybox(&env) else { return };
    let oci = env.path("out.oci.tar");
    env.ok(&["save", "--format", "oci", "-o", oci.to_str().unwrap(), "busybox:latest"]);
    let layout = env.path("layout");
    untar(&oci, &layout);
    let out = run_ok(
        Command::new("oci-image-tool")
            .args(["validate", "--type", "image", "--ref", "name=latest"])
            .arg(&layout),
    );
    assert!(out.contains("Validation succeeded") || out.is_empty(), "{out}");
    let bundle = env.path("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", layout.display()))
            .arg(&bundle),
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert!(std::fs::symlink_metadata(bundle.join("rootfs/bin/sh"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn podman_loads_and_runs_strata_save() {
    if !have("podman") {
        return;
    }
    let env = Env::new();
    let Some(()) = load_busybox(&env) else { return };
    let archive = env.path("busybox.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), "busybox:latest"]);
    let podman = podman(&env.path("podman"));
    let out = run_ok(&mut podman(&["load", "-i", archive.to_str().unwrap()]));
    assert!(out.contains("busybox:latest"), "{out}");
    let id = json(&env.ok(&["inspect", "busybox"]))[0]["Id"].as_str().unwrap().to_string();
    let podman_id =
        run_ok(&mut podman(&["image", "inspect", "--format", "{{.Id}}", "busybox:latest"]));
    assert_eq!(format!("sha256:{}", podman_id.trim()), id, "podman sees the same image ID");
    let out = run_ok(&mut podman(&[
        "run",
        "--rm",
        "--network=none",
        "busybox:latest",
        "sh",
        "-c",
        "echo hello from $(busybox | head -1 | cut -d' ' -f1)",
    ]));
    assert_eq!(out.trim(), "hello from BusyBox");
    podman_reset(&env.path("podman"));
}

#[test]
fn skopeo_archives_load_with_the_same_digests() {
    if !have("skopeo") {
        return;
    }
    let Some(layout) = fixture("busybox.oci") else { return };
    let env = Env::new();
    let src = format!("oci:{}:latest", layout.display());
    let manifest = json(&run_ok(Command::new("skopeo").args(["inspect", "--raw"]).arg(&src)));
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();

    let docker = env.path("skopeo.docker.tar");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(&src)
            .arg(format!("docker-archive:{}:skopeo/busybox:1", docker.display())),
    );
    let out = env.ok(&["load", "-i", docker.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: skopeo/busybox:1");
    assert_eq!(json(&env.ok(&["inspect", "skopeo/busybox:1"]))[0]["Id"], config_digest.as_str());

    let oci = env.path("skopeo.oci.tar");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(&src)
            .arg(format!("oci-archive:{}:example.com/skopeo/oci:2", oci.display())),
    );
    let skopeo_digest = json(&run_ok(
        Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", oci.display())),
    ))["Digest"]
        .clone();
    let out = env.ok(&["load", "-i", oci.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: example.com/skopeo/oci:2");
    let inspect = json(&env.ok(&["inspect", "example.com/skopeo/oci:2"]));
    assert_eq!(inspect[0]["Id"], config_digest.as_str());
    assert_eq!(inspect[0]["Descriptor"]["digest"], skopeo_digest);
    assert!(env.ok(&["fsck"]).contains("is consistent"));
}

#[test]
fn podman_save_loads_with_the_same_id() {
    if !have("podman") {
        return;
    }
    let Some(busybox) = fixture("busybox.docker.tar") else { return };
    let env = Env::new();
    let podman = podman(&env.path("podman"));
    run_ok(&mut podman(&["load", "-i", busybox.to_str().unwrap()]));
    let podman_id = format!(
        "sha256:{}",
        run_ok(&mut podman(&["image", "inspect", "--format", "{{.Id}}", "busybox:latest"])).trim()
    );
    for (format, name) in [("docker-archive", "p.docker.tar"), ("oci-archive", "p.oci.tar")] {
        let out = env.path(name);
        run_ok(&mut podman(&[
            "save",
            "--format",
            format,
            "-o",
            out.to_str().unwrap(),
            "busybox:latest",
        ]));
        let loaded = env.ok(&["load", "-i", out.to_str().unwrap()]);
        assert!(loaded.contains("Loaded image: busybox:latest"), "{loaded}");
        let ids = env.ok(&["images", "-q", "--no-trunc"]);
        assert!(ids.lines().any(|l| l == podman_id), "{format}: {podman_id} not in {ids}");
    }
    podman_reset(&env.path("podman"));
}

#[test]
fn docker_save_loads_with_the_same_id() {
    // Written by `docker save` from dockerd (scripts/fixtures.sh), when dockerd could run.
    let Some(archive) = fixture("docker.docker.tar") else { return };
    let env = Env::new();
    let dir = env.path("x");
    untar(&archive, &dir);
    let manifest = json(&std::fs::read_to_string(dir.join("manifest.json")).unwrap());
    let config = manifest[0]["Config"].as_str().unwrap();
    let hex = config.trim_end_matches(".json").rsplit('/').next().unwrap();
    env.ok(&["load", "-i", archive.to_str().unwrap()]);
    let ids = env.ok(&["images", "-q", "--no-trunc"]);
    assert_eq!(ids.trim(), format!("sha256:{hex}"));
}
