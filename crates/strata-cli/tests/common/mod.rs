//! Shared helpers for the CLI tests: the binary, fixtures, peers, and loud skips.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A fixture made by scripts/fixtures.sh, or None (with a loud message) when absent.
pub fn fixture(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("STRATA_FIXTURES").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/strata-fixtures")
    });
    let path = dir.join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("SKIPPED: fixture {} not found: run scripts/fixtures.sh", path.display());
        None
    }
}

/// Whether a peer tool is installed; prints a loud skip when not.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        eprintln!("SKIPPED: {tool} is not installed (scripts/install-deps.sh installs it)");
    }
    found
}

/// A private store for one test.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(STRATA);
        c.env("STRATA_ROOT", self.root());
        c
    }
    /// Runs strata and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "strata {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
    /// Runs strata and asserts failure, returning stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(!out.status.success(), "strata {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }
}

/// Runs a peer command and asserts success, returning stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out: Output = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A private podman (its own storage and config) for one test.
pub fn podman(dir: &Path) -> impl Fn(&[&str]) -> Command {
    let script = repo_root().join("scripts/peers.sh");
    let exports = run_ok(Command::new("bash").arg(script).arg("podman-env").arg(dir));
    let vars: Vec<(String, String)> = exports
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |args: &[&str]| {
        let mut c = Command::new("podman");
        c.envs(vars.iter().map(|(k, v)| (k, v))).args(args);
        c
    }
}

/// Unmounts and deletes the private podman storage made by [`podman`].
pub fn podman_reset(dir: &Path) {
    run_ok(
        Command::new("bash").arg(repo_root().join("scripts/peers.sh")).arg("podman-reset").arg(dir),
    );
}

pub fn untar(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    run_ok(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(into));
}

/// A `strata registry serve` process on a free loopback port, stopped by its PID.
pub struct StrataRegistry {
    child: Child,
    pub addr: String,
}

impl StrataRegistry {
    pub fn start(root: &Path, extra: &[&str]) -> StrataRegistry {
        let mut child = Command::new(STRATA)
            .args(["registry", "serve", "--addr", "127.0.0.1:0", "--log-level", "info", "--root"])
            .arg(root)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata registry serve");
        // The listening line names the port; the thread then keeps draining the access log
        // so the server never blocks on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening") {
                    if let Some(a) = line.split("addr=").nth(1) {
                        let _ = tx.send(a.split_whitespace().next().unwrap_or("").to_string());
                    }
                } else if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("registry: {line}");
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("strata registry serve did not report its address within 30 s");
            }
        };
        StrataRegistry { child, addr }
    }
}

impl Drop for StrataRegistry {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command with its output captured, killing it after `secs` seconds.
pub fn run_timeout(cmd: &mut Command, secs: u64) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {secs} s; its output so far:\n{}\n{}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output { status, stdout: fs::read(&out_path).unwrap(), stderr: fs::read(&err_path).unwrap() }
}

/// A store with the busybox fixture loaded, or None (a loud skip) without the fixtures.
pub fn with_busybox() -> Option<Env> {
    let busybox = fixture("busybox.docker.tar")?;
    let env = Env::new();
    env.ok(&["load", "-i", busybox.to_str().unwrap()]);
    Some(env)
}

/// Writes `text` to `dir/name`, making the directories on the way.
pub fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}
