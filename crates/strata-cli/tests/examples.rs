//! The examples under examples/ that need no network build, and their images hold what
//! the Dockerfile says: the demo (scripts/demo.sh) builds examples/offline.

mod common;

use std::fs;

use common::{fixture, json, repo_root, Env};

#[test]
fn offline_example_builds_and_serves_its_pages() {
    let Some(busybox) = fixture("busybox.docker.tar") else { return };
    let env = Env::new();
    env.ok(&["load", "-i", busybox.to_str().unwrap()]);
    let example = repo_root().join("examples/offline");
    let out = env.ok(&["build", "-q", "-t", "demo/site:1", example.to_str().unwrap()]);
    assert!(out.trim().starts_with("sha256:"), "-q prints the image ID: {out}");

    let inspect = json(&env.ok(&["inspect", "demo/site:1"]));
    let cfg = &inspect[0]["Config"];
    assert_eq!(cfg["User"], "65534");
    assert_eq!(cfg["WorkingDir"], "/srv/www");
    assert_eq!(cfg["Cmd"], serde_json::json!(["httpd", "-f", "-p", "8080", "-h", "/srv/www"]));
    // Only the COPY --from adds a layer on top of busybox: the build stage is not shipped.
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);

    // A build on top reads the pages the first stage's RUN made (`ls > index.list` lists
    // index.list too: the shell creates it before ls runs).
    let ctx = env.path("check");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM demo/site:1\n\
         RUN grep -q '<h1>index</h1>' index.html && grep -q '<p>Hello from the offline example.' index.html \
             && test \"$(cat index.list)\" = \"$(printf 'about.html\\nindex.html\\nindex.list')\"\n",
    )
    .unwrap();
    env.ok(&["build", "-q", ctx.to_str().unwrap()]);
}
