//! The image commands as a Docker user types them, on images made with `strata import`.

mod common;

use common::*;

fn rootfs(env: &Env, name: &str, files: &[(&str, &[u8])]) -> String {
    let path = env.path(name);
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    for (n, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, n, *data).unwrap();
    }
    b.finish().unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn import_applies_changes_and_images_lists_like_docker() {
    let env = Env::new();
    let tar = rootfs(&env, "root.tar", &[("bin/hello", &[1u8; 1500])]);
    let id = env.ok(&[
        "import",
        "-c",
        "CMD [\"/bin/hello\"]",
        "-c",
        "ENV A=1 B=two",
        "-c",
        "LABEL team=core",
        "-c",
        "EXPOSE 8080",
        "-c",
        "WORKDIR /srv",
        "-m",
        "from a test",
        &tar,
        "me/app:1",
    ]);
    assert!(id.trim().starts_with("sha256:") && id.trim().len() == 71, "{id}");
    let out = env.ok(&["images"]);
    let lines: Vec<&str> = out.lines().collect();
    // Docker's tabwriter: columns at least 10 wide plus 3 spaces; CREATED is as wide as its
    // widest cell ("Less than a second ago", or "N seconds ago" on a slow machine).
    assert!(lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED   "), "{out}");
    assert!(lines[0].ends_with("   SIZE"), "{out}");
    assert_eq!(lines[0].find("SIZE"), lines[1].find("1.5kB"), "SIZE column aligned: {out}");
    assert!(lines[1].starts_with("me/app       1         "), "{out}");
    assert!(lines[1].ends_with("1.5kB"), "{out}");
    let inspect = json(&env.ok(&["inspect", "me/app:1"]))[0].clone();
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["/bin/hello"]));
    assert_eq!(inspect["Config"]["Env"], serde_json::json!(["A=1", "B=two"]));
    assert_eq!(inspect["Config"]["Labels"]["team"], "core");
    assert_eq!(inspect["Config"]["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(inspect["Config"]["WorkingDir"], "/srv");
    assert_eq!(inspect["RepoTags"], serde_json::json!(["me/app:1"]));
    assert_eq!(
        env.ok(&[
            "inspect",
            "--format",
            "{{.Config.WorkingDir}} {{index .RepoTags 0}}",
            "me/app:1"
        ])
        .trim(),
        "/srv me/app:1"
    );
    let history = env.ok(&["history", "me/app:1"]);
    assert!(history.contains("from a test"), "{history}");
    let err = env.fails(&["import", "-c", "RUN true", &tar]);
    assert!(err.contains("RUN is not supported"), "{err}");
}

#[test]
fn filters_formats_and_quiet() {
    let env = Env::new();
    let a = rootfs(&env, "a.tar", &[("a", b"aaaa")]);
    let b = rootfs(&env, "b.tar", &[("b", b"bbbbbbbb")]);
    env.ok(&["import", "-c", "LABEL tier=web", &a, "web/front:1"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.ok(&["import", &b, "db/main:2"]);
    env.ok(&["tag", "web/front:1", "web/front:latest"]);
    let f = |filter: &str| {
        env.ok(&["images", "--filter", filter, "--format", "{{.Repository}}:{{.Tag}}"])
    };
    assert_eq!(f("reference=web/*"), "web/front:1\nweb/front:latest\n");
    assert_eq!(f("reference=*/main:2"), "db/main:2\n");
    assert_eq!(f("label=tier=web"), "web/front:1\nweb/front:latest\n");
    assert_eq!(f("label=tier"), "web/front:1\nweb/front:latest\n");
    assert_eq!(f("before=db/main:2"), "web/front:1\nweb/front:latest\n");
    assert_eq!(f("since=web/front:1"), "db/main:2\n");
    assert_eq!(f("dangling=true"), "");
    assert_eq!(env.ok(&["images", "-q"]).lines().count(), 2, "one ID per image");
    let json_line = env.ok(&["images", "--format", "json", "db/main"]);
    let row = json(json_line.trim());
    assert_eq!(row["Repository"], "db/main");
    assert_eq!(row["Size"], "8B");
    let err = env.fails(&["images", "--filter", "colour=red"]);
    assert!(err.contains("invalid filter 'colour'"), "{err}");
    let err = env.fails(&["images", "--format", "{{.Nope"]);
    assert!(err.contains("template parsing error"), "{err}");
}

#[test]
fn rmi_prune_and_errors_follow_docker() {
    let env = Env::new();
    let a = rootfs(&env, "a.tar", &[("a", b"aaaa")]);
    env.ok(&["import", &a, "one:1"]);
    env.ok(&["tag", "one:1", "two:1"]);
    let id = env.ok(&["images", "-q", "one"]).trim().to_string();
    let err = env.fails(&["rmi", &id]);
    assert!(err.contains("must be forced") && err.contains("multiple repositories"), "{err}");
    assert_eq!(env.ok(&["rmi", "two:1"]), "Untagged: two:1\n");
    let out = env.ok(&["rmi", "one:1"]);
    assert!(out.starts_with("Untagged: one:1\nDeleted: sha256:"), "{out}");
    let err = env.fails(&["rmi", "one:1", "ghost"]);
    assert!(err.contains("No such image: one:1") && err.contains("No such image: ghost"), "{err}");
    let err = env.fails(&["tag", "ghost", "x:1"]);
    assert!(err.contains("No such image: ghost"), "{err}");
    let err = env.fails(&["tag", &a, "Bad/Name"]);
    assert!(err.contains("must be lowercase") || err.contains("invalid reference"), "{err}");

    // A re-import under the same tag leaves the old image dangling; prune removes it.
    env.ok(&["import", &a, "three:1"]);
    env.ok(&["import", &rootfs(&env, "c.tar", &[("c", b"c")]), "three:1"]);
    assert_eq!(env.ok(&["images", "--filter", "dangling=true", "-q"]).lines().count(), 1);
    let out = env.ok(&["image", "prune", "-f"]);
    assert!(out.starts_with("Deleted Images:\ndeleted: sha256:"), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    let err = env.fails(&["image", "prune"]);
    assert!(err.contains("-f/--force"), "{err}");
    let out = env.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: three:1"), "{out}");
    assert_eq!(env.ok(&["images", "-q"]), "");
}

#[test]
fn system_df_counts_shared_layers_once() {
    let Some(busybox) = fixture("busybox.docker.tar") else { return };
    let env = Env::new();
    env.ok(&["load", "-i", busybox.to_str().unwrap()]);
    env.ok(&["tag", "busybox", "copy:1"]);
    let summary = env.ok(&["system", "df"]);
    let images_line = summary.lines().nth(1).unwrap();
    assert!(images_line.starts_with("Images          1         0         "), "{summary}");
    let verbose = env.ok(&["system", "df", "-v"]);
    assert!(verbose.contains("SHARED SIZE   UNIQUE SIZE   CONTAINERS"), "{verbose}");
    let size = env.ok(&["images", "--format", "{{.Size}}", "busybox"]);
    assert!(images_line.contains(size.trim()), "{summary} vs {size}");
}

#[test]
fn save_refuses_a_terminal_and_load_reads_stdin() {
    let Some(busybox) = fixture("busybox.docker.tar") else { return };
    let env = Env::new();
    let out =
        env.cmd().args(["load"]).stdin(std::fs::File::open(&busybox).unwrap()).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Loaded image: busybox:latest\n");
    // Gzip- and zstd-compressed archives load too.
    let gz = env.path("b.tar.gz");
    run_ok(std::process::Command::new("sh").arg("-c").arg(format!(
        "gzip -c {} > {}",
        busybox.display(),
        gz.display()
    )));
    assert_eq!(env.ok(&["load", "-i", gz.to_str().unwrap()]), "Loaded image: busybox:latest\n");
    let err = env.fails(&["load", "-i", "/nonexistent.tar"]);
    assert!(err.contains("/nonexistent.tar"), "{err}");
    let saved = env.cmd().args(["save", "busybox"]).output().unwrap();
    assert!(
        saved.status.success() && saved.stdout.len() > 1_000_000,
        "save to a pipe writes the archive"
    );
}
