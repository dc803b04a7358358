//! `strata build` end to end: real images from the busybox fixture, RUN in the sandbox, and
//! the results checked by building on them (their RUN steps run the built image).

mod common;

use std::fs;
use std::path::Path;

use common::{fixture, json, Env};

fn with_busybox() -> Option<Env> {
    let busybox = fixture("busybox.docker.tar")?;
    let env = Env::new();
    env.ok(&["load", "-i", busybox.to_str().unwrap()]);
    Some(env)
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn build(env: &Env, ctx: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    env.cmd().args(&args).output().unwrap()
}

fn build_ok(env: &Env, ctx: &Path, extra: &[&str]) -> String {
    let out = build(env, ctx, extra);
    assert!(
        out.status.success(),
        "build failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn builds_a_busybox_image_with_run_copy_and_metadata() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "hello.txt", "hi\n");
    write(&ctx, "sub/a.txt", "a\n");
    write(&ctx, "sub/b.log", "ignored\n");
    write(&ctx, ".dockerignore", "**/*.log\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         ENV GREETING=hello APP=/app\n\
         WORKDIR $APP\n\
         COPY hello.txt ./\n\
         COPY sub/ sub/\n\
         RUN echo \"$GREETING from run\" > run.txt && echo tester:x:1234:1234::/home/tester:/bin/sh >> /etc/passwd \
             && echo tester:x:1234: >> /etc/group\n\
         COPY --chown=tester:tester --chmod=640 hello.txt owned.txt\n\
         USER tester\n\
         LABEL a=b\n\
         EXPOSE 8080\n\
         CMD [\"cat\", \"/app/run.txt\"]\n",
    );
    let iid = env.path("iid");
    let out = build_ok(
        &env,
        &ctx,
        &["-t", "test:1", "-t", "test:2", "--label", "x=y", "--iidfile", iid.to_str().unwrap()],
    );
    assert!(out.contains("Successfully built "), "{out}");
    assert!(out.contains("Successfully tagged test:1"), "{out}");
    let id = fs::read_to_string(&iid).unwrap();
    assert!(id.starts_with("sha256:"), "{id}");

    let inspect = json(&env.ok(&["inspect", "test:1"]));
    let cfg = &inspect[0]["Config"];
    assert_eq!(inspect[0]["Id"], id.as_str());
    let envs: Vec<&str> =
        cfg["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(envs.contains(&"GREETING=hello") && envs.contains(&"APP=/app"), "{envs:?}");
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["User"], "tester");
    assert_eq!(cfg["Cmd"], serde_json::json!(["cat", "/app/run.txt"]));
    assert_eq!(cfg["Labels"]["a"], "b");
    assert_eq!(cfg["Labels"]["x"], "y");
    assert!(cfg["ExposedPorts"]["8080/tcp"].is_object(), "{cfg}");
    // busybox's layer + WORKDIR + 2 COPY + RUN + COPY.
    let layers = inspect[0]["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 6, "{layers:?}");
    let history = env.ok(&["history", "--no-trunc", "test:1"]);
    assert!(history.contains("RUN /bin/sh -c echo \"$GREETING from run\""), "{history}");

    // Run the result: a build on top of it checks files, owners and the user from its RUNs,
    // and a deletion (a whiteout in an intermediate layer) is seen by the next RUN.
    let ctx2 = env.path("ctx2");
    write(
        &ctx2,
        "Dockerfile",
        "FROM test:1\n\
         RUN test \"$(cat run.txt)\" = \"hello from run\" && test \"$(id -u)\" = 1234 \
             && test \"$(pwd)\" = /app && test -f sub/a.txt && test ! -e sub/b.log \
             && test \"$(stat -c %u:%a owned.txt)\" = 1234:640 && test \"$GREETING\" = hello\n\
         USER root\n\
         RUN rm /app/hello.txt\n\
         RUN test ! -e /app/hello.txt && test -f /app/owned.txt\n",
    );
    build_ok(&env, &ctx2, &["-t", "check:1"]);
}

#[test]
fn a_failing_run_points_at_its_line() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo before\nRUN echo oops-output; exit 3\n");
    let out = build(&env, &ctx, &["-t", "bad:1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(err.contains("echo oops-output; exit 3"), "{err}");
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("oops-output"), "{err}");
    // Nothing was tagged.
    assert!(!env.ok(&["images"]).contains("bad"));
}

#[test]
fn build_check_builds_when_the_lint_passes() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    env.ok(&["tag", "busybox", "busybox:1.36"]);
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox:1.36\nRUN echo linted > /x\nUSER 65534\nCMD [\"cat\", \"/x\"]\n",
    );
    let out = build(&env, &ctx, &["--check", "-t", "linted:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("lint failed"), "{err}");
    assert!(env.ok(&["images", "linted"]).contains("linted"));
}

#[test]
fn a_missing_base_image_says_to_pull_or_load_it() {
    let env = Env::new();
    let ctx = env.path("ctx");
    write(&ctx, "Dockerfile", "FROM nosuchimage:1\nRUN true\n");
    let out = build(&env, &ctx, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuchimage:1 is not in the store"), "{err}");
    assert!(err.contains("pull it or load it"), "{err}");
}

#[test]
fn multi_stage_copies_into_scratch() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS build\n\
         RUN mkdir /out && echo built > /out/file && ln -s file /out/link\n\
         FROM busybox AS unused\n\
         RUN exit 1\n\
         FROM scratch\n\
         COPY --from=build /out/ /\n\
         COPY --from=build /bin/busybox /bin/sh\n\
         CMD [\"/bin/sh\"]\n",
    );
    let out = build(&env, &ctx, &["-t", "multi:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("RUN exit 1"), "the unused stage must not run: {err}");
    let inspect = json(&env.ok(&["inspect", "multi:1"]));
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);

    // The scratch image runs: only shell builtins, since it holds just /bin/sh.
    let ctx2 = env.path("ctx2");
    write(
        &ctx2,
        "Dockerfile",
        "FROM multi:1\nRUN read x < /file && test \"$x\" = built && read y < /link && test \"$y\" = built\n",
    );
    build_ok(&env, &ctx2, &["-t", "multi-check:1"]);

    // The saved image holds exactly those files.
    let tar = env.path("m.tar");
    env.ok(&["save", "-o", tar.to_str().unwrap(), "multi:1"]);
    let dir = env.path("m");
    common::untar(&tar, &dir);
    let manifest = json(&fs::read_to_string(dir.join("manifest.json")).unwrap());
    let mut names = Vec::new();
    for l in manifest[0]["Layers"].as_array().unwrap() {
        let out = std::process::Command::new("tar")
            .arg("-tzf")
            .arg(dir.join(l.as_str().unwrap()))
            .output()
            .unwrap();
        names.extend(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string));
    }
    names.sort();
    assert_eq!(names, ["bin/", "bin/sh", "file", "link"], "{names:?}");
}

#[test]
fn hello_example_builds_and_runs() {
    if std::env::var_os("STRATA_NETWORK_TESTS").is_none() {
        eprintln!("SKIPPED: set STRATA_NETWORK_TESTS=1 to build examples/hello (apt-get over the network)");
        return;
    }
    let (Some(busybox), Some(debian)) =
        (fixture("busybox.docker.tar"), fixture("debian.docker.tar"))
    else {
        return;
    };
    let env = Env::new();
    env.ok(&["load", "-i", busybox.to_str().unwrap()]);
    env.ok(&["load", "-i", debian.to_str().unwrap()]);
    let ctx = common::repo_root().join("examples/hello");
    build_ok(&env, &ctx, &["-t", "hello:1"]);
    let ctx2 = env.path("ctx2");
    write(
        &ctx2,
        "Dockerfile",
        "FROM hello:1\nRUN [\"/bin/sh\", \"-c\", \"test \\\"$(/usr/local/bin/hello world)\\\" = 'hello, world'\"]\n",
    );
    build_ok(&env, &ctx2, &["-t", "hello-check:1"]);
}
