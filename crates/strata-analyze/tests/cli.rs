//! The command end to end (through the example binary, which is what `strata analyze` runs):
//! exit codes, `.dive-ci`, `--json`, `--no-tui`, and the interactive view in tmux.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{image, layer_tar, E};

macro_rules! bin_or_skip {
    () => {
        match common::example_bin() {
            Some(b) => b,
            None => {
                eprintln!("SKIPPED: examples/analyze not built (cargo test builds it)");
                return;
            }
        }
    };
}

fn archive(dir: &Path) -> std::path::PathBuf {
    let img = image(
        vec![
            layer_tar(&[
                E::Dir("etc"),
                E::File("etc/a.conf", 4000),
                E::Dir("data"),
                E::File("data/blob", 30_000),
            ]),
            layer_tar(&[E::Dir("etc"), E::File("etc/a.conf", 4000), E::File("etc/b.conf", 100)]),
            layer_tar(&[
                E::Dir("data"),
                E::Whiteout("data/blob"),
                E::Dir("srv"),
                E::File("srv/app", 777),
            ]),
        ],
        &["/bin/sh -c #(nop) ADD rootfs.tar /", "/bin/sh -c echo conf", "/bin/sh -c rm /data/blob"],
    );
    let path = dir.join("img.tar");
    img.docker_archive(&path, "cli:test");
    path
}

#[test]
fn ci_exit_codes_and_dive_ci_file() {
    let bin = bin_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let img = archive(dir.path());
    // efficiency = (4000 + 0 + 100 + 777) / (8000 + 30000 + 100 + 777)
    let run = |args: &[&str], cwd: &Path| {
        let out = Command::new(&bin).args(args).current_dir(cwd).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let p = img.to_str().unwrap();
    let (code, out, _) = run(&["--ci", p], dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL: lowestEfficiency"), "{out}");
    let (code, out, _) = run(
        &["--ci", "--lowest-efficiency", "0.1", "--highest-user-wasted-percent", "disabled", p],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{out}");
    // dive's camelCase spelling works too.
    let (code, _, _) = run(
        &["--ci", "--lowestEfficiency=0.1", "--highestUserWastedPercent=disabled", p],
        dir.path(),
    );
    assert_eq!(code, Some(0));
    // A .dive-ci in the working directory is read.
    std::fs::write(dir.path().join(".dive-ci"), "rules:\n  lowestEfficiency: 0.1\n  highestWastedBytes: 30KB\n  highestUserWastedPercent: disabled\n").unwrap();
    let (code, out, _) = run(&["--ci", p], dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL: highestWastedBytes: too many bytes wasted (wasted-bytes=38000 > threshold=30000)"), "{out}");
    // Flags win over the file.
    let (code, _, _) = run(&["--ci", "--highest-wasted-bytes", "38000", p], dir.path());
    assert_eq!(code, Some(0));
    // A bad flag value is an error, not a pass.
    let (code, _, err) = run(&["--ci", "--lowest-efficiency", "high", p], dir.path());
    assert_eq!(code, Some(125));
    assert!(err.contains("--lowest-efficiency"), "{err}");
    // --json with --ci carries the outcome.
    let (code, out, _) = run(&["--json", "--ci", p], dir.path());
    assert_eq!(code, Some(1));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["image"]["inefficientBytes"], 38_000);
    assert_eq!(doc["ci"]["pass"], false);
    // Not a terminal: the report.
    let (code, out, _) = run(&["--no-tui", p], dir.path());
    assert_eq!(code, Some(0));
    assert!(out.contains("Potential wasted space: 38kB (38000 bytes)"), "{out}");
    // Missing image.
    let (code, _, err) = run(&[dir.path().join("nope.tar").to_str().unwrap()], dir.path());
    assert_eq!(code, Some(125));
    assert!(!err.is_empty());
}

fn tmux(sock: &str, args: &[&str]) -> std::process::Output {
    Command::new("tmux").arg("-L").arg(sock).args(args).output().unwrap()
}

fn capture(sock: &str) -> String {
    String::from_utf8_lossy(&tmux(sock, &["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
}

fn wait_for(sock: &str, what: &str) -> String {
    let start = Instant::now();
    loop {
        let screen = capture(sock);
        if screen.contains(what) {
            return screen;
        }
        if start.elapsed() > Duration::from_secs(20) {
            panic!("timed out waiting for {what:?}; screen:\n{screen}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills this test's private tmux server however the test ends.
struct Server(String);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = tmux(&self.0, &["kill-server"]);
    }
}

#[test]
fn tui_in_tmux() {
    let bin = bin_or_skip!();
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = archive(dir.path());
    let status = dir.path().join("status");
    let sock = format!("strata-analyze-test-{}", std::process::id());
    let _server = Server(sock.clone());
    let cmd = format!(
        "TERM=xterm-256color {} {}; echo $? > {}",
        bin.display(),
        img.display(),
        status.display()
    );
    let out = tmux(&sock, &["new-session", "-d", "-s", "t", "-x", "160", "-y", "40", &cmd]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let screen = wait_for(&sock, "Layer 0 contents");
    assert!(screen.contains("Layers"), "{screen}");
    assert!(screen.contains("ADD rootfs.tar /"), "{screen}");
    assert!(screen.contains("a.conf"), "{screen}");
    // Down: layer 1, where etc/a.conf is modified and etc/b.conf added.
    tmux(&sock, &["send-keys", "-t", "t", "Down"]);
    let screen = wait_for(&sock, "Layer 1 contents");
    assert!(screen.lines().any(|l| l.contains("M ") && l.contains("a.conf")), "{screen}");
    assert!(screen.lines().any(|l| l.contains("A ") && l.contains("b.conf")), "{screen}");
    // Layer 2 removes data/blob.
    tmux(&sock, &["send-keys", "-t", "t", "j"]);
    let screen = wait_for(&sock, "Layer 2 contents");
    assert!(screen.lines().any(|l| l.contains("D ") && l.contains("blob")), "{screen}");
    // Filter the tree, then collapse a directory in the tree pane.
    tmux(&sock, &["send-keys", "-t", "t", "/", "s", "r", "v", "Enter"]);
    let screen = wait_for(&sock, "[filter: srv]");
    assert!(screen.contains("app"), "{screen}");
    assert!(!screen.contains("b.conf"), "{screen}");
    tmux(&sock, &["send-keys", "-t", "t", "Escape"]);
    wait_for(&sock, "b.conf");
    // "/" moved the focus to the tree: go to its top row (data/) and collapse it.
    tmux(&sock, &["send-keys", "-t", "t", "g", "Space"]);
    let screen = wait_for(&sock, "⊕");
    // (The image pane still lists /data/blob among the wasted files.)
    assert!(
        !screen.lines().any(|l| l.contains("D ") && l.contains("blob")),
        "collapsing data/ hides its files:\n{screen}"
    );
    // Back up one layer from the layers pane, then quit.
    tmux(&sock, &["send-keys", "-t", "t", "Tab", "Up"]);
    wait_for(&sock, "Layer 1 contents");
    tmux(&sock, &["send-keys", "-t", "t", "q"]);
    let start = Instant::now();
    while !status.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the view did not quit:\n{}",
            capture(&sock)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "0");
}
