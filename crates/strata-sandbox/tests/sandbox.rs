//! Real containers over the busybox fixture's store snapshots: namespaces, overlay, users,
//! network modes, mounts. Needs root (skips loudly otherwise) and the fixture archive.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use strata_sandbox::{
    CancelHandle, Capabilities, Config, Error, ExitStatus, Mount, Network, Process, Rootfs,
    RunOptions, Sandbox,
};

struct Fixture {
    _dir: tempfile::TempDir,
    lowers: Vec<PathBuf>,
}

fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        if !nix_is_root() {
            eprintln!("SKIPPED: strata-sandbox tests need root");
            return None;
        }
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let tar = Path::new(&home).join(".cache/strata-fixtures/busybox.docker.tar");
        let Ok(file) = std::fs::File::open(&tar) else {
            eprintln!("SKIPPED: fixture {} is missing", tar.display());
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let store = strata_store::Store::open(dir.path().join("store")).unwrap();
        strata_store::archive::load(
            &store,
            "busybox.docker.tar",
            file,
            strata_store::layer_info::Limits::default(),
            &mut |_| {},
        )
        .unwrap();
        let image = store.resolve("busybox:latest").unwrap();
        let lease = store.lease().unwrap();
        let lowers = store.snapshots(&image, &lease).unwrap();
        // The lease only guards against a concurrent GC, which no test runs.
        drop(lease);
        Some(Fixture { _dir: dir, lowers })
    })
    .as_ref()
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A fresh upper/work pair per container.
struct Rw {
    dir: tempfile::TempDir,
}

impl Rw {
    fn new() -> Rw {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("upper")).unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Rw { dir }
    }
    fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
    fn rootfs(&self, lowers: &[PathBuf]) -> Rootfs {
        Rootfs::Overlay {
            lowers: lowers.to_vec(),
            upper: self.upper(),
            work: self.dir.path().join("work"),
        }
    }
}

fn sh(script: &str) -> Process {
    Process::new(["sh", "-c", script])
}

struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn run(config: Config) -> Out {
    let sb = Sandbox::new(config).unwrap();
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let status = sb.run(&mut o, &mut e, &RunOptions::default()).unwrap();
    Out {
        status,
        stdout: String::from_utf8_lossy(&o).into_owned(),
        stderr: String::from_utf8_lossy(&e).into_owned(),
    }
}

macro_rules! fixture_or_skip {
    () => {
        match fixture() {
            Some(f) => f,
            None => return,
        }
    };
}

#[test]
fn echo_over_store_snapshots() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let out = run(Config::new(rw.rootfs(&f.lowers), Process::new(["echo", "hello", "world"])));
    assert_eq!(out.status, ExitStatus::Code(0), "{}", out.stderr);
    assert_eq!(out.stdout, "hello world\n");
    // Nothing was written, and our /proc,/dev,/sys mount points already existed.
    assert_eq!(std::fs::read_dir(rw.upper()).unwrap().count(), 0);
}

#[test]
fn writes_land_in_upper_and_deletions_become_whiteouts() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let out = run(Config::new(
        rw.rootfs(&f.lowers),
        sh("echo data > /new.txt && rm /bin/ls && rm -rf /home && mkdir /home && touch /home/x"),
    ));
    assert_eq!(out.status, ExitStatus::Code(0), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(rw.upper().join("new.txt")).unwrap(), "data\n");
    for l in &f.lowers {
        assert!(!l.join("new.txt").exists());
    }
    let wh = std::fs::symlink_metadata(rw.upper().join("bin/ls")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "not a whiteout: {wh:?}");
    assert!(
        f.lowers.iter().any(|l| std::fs::symlink_metadata(l.join("bin/ls")).is_ok()),
        "lower lost its file"
    );
    // A directory removed and re-created is opaque.
    let mut v = [0u8; 4];
    let p = std::ffi::CString::new(rw.upper().join("home").to_str().unwrap()).unwrap();
    // SAFETY: NUL-terminated path and name, buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(p.as_ptr(), c"trusted.overlay.opaque".as_ptr(), v.as_mut_ptr().cast(), 4)
    };
    assert_eq!((n, v[0]), (1, b'y'));
}

#[test]
fn upper_layers_stack_over_lower_ones() {
    let f = fixture_or_skip!();
    let extra = tempfile::tempdir().unwrap();
    std::fs::create_dir(extra.path().join("etc")).unwrap();
    std::fs::write(extra.path().join("etc/motd"), "top layer\n").unwrap();
    let mut lowers = f.lowers.clone();
    lowers.push(extra.path().to_path_buf());
    let out = run(Config::new(Rootfs::Lowers(lowers), Process::new(["cat", "/etc/motd"])));
    assert_eq!(out.stdout, "top layer\n", "{}", out.stderr);
}

#[test]
fn user_nobody_runs_as_65534_without_capabilities() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let mut p = sh("id -u; id -g; grep CapEff /proc/self/status; echo $HOME");
    p.user = "nobody".into();
    let out = run(Config::new(rw.rootfs(&f.lowers), p));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..2], ["65534", "65534"], "{}", out.stderr);
    assert!(lines[2].ends_with("0000000000000000"), "{}", lines[2]);

    let mut p = sh("id -u; id -g");
    p.user = "1000:1000".into();
    let out = run(Config::new(rw.rootfs(&f.lowers), p));
    assert_eq!(out.stdout, "1000\n1000\n");

    let mut p = Process::new(["true"]);
    p.user = "no-such-user".into();
    let err = Sandbox::new(Config::new(rw.rootfs(&f.lowers), p)).unwrap_err();
    assert!(err.to_string().contains("unable to find user no-such-user"), "{err}");
}

#[test]
fn root_gets_docker_default_capabilities_or_none() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let out =
        run(Config::new(rw.rootfs(&f.lowers), sh("grep -E 'CapEff|CapBnd' /proc/self/status")));
    assert!(out.stdout.contains("CapEff:\t00000000a80425fb"), "{}", out.stdout);
    assert!(out.stdout.contains("CapBnd:\t00000000a80425fb"), "{}", out.stdout);
    let mut c =
        Config::new(rw.rootfs(&f.lowers), sh("grep CapBnd /proc/self/status; chown 1 /tmp"));
    c.capabilities = Capabilities::None;
    let out = run(c);
    assert!(out.stdout.contains("CapBnd:\t0000000000000000"), "{}", out.stdout);
    assert_ne!(out.status, ExitStatus::Code(0));
}

fn links(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.split_whitespace().map(String::from).collect();
    v.sort();
    v
}

#[test]
fn network_none_has_only_lo_and_it_is_up() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let mut c = Config::new(
        rw.rootfs(&f.lowers),
        sh("ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags"),
    );
    c.network = Network::None;
    let out = run(c);
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("lo"), "{}{}", out.stdout, out.stderr);
    lines.next(); // operstate of lo is "unknown" even when up
    let flags = u32::from_str_radix(lines.next().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up");
    assert_eq!(lines.next(), None);
}

#[test]
fn host_network_sees_host_interfaces() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let out = run(Config::new(rw.rootfs(&f.lowers), Process::new(["ls", "/sys/class/net"])));
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut host = host;
    host.sort();
    assert_eq!(links(&out.stdout), host);
}

#[test]
fn secret_is_readable_and_never_reaches_the_upper_dir() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let secrets = tempfile::tempdir().unwrap();
    let src = secrets.path().join("token");
    std::fs::write(&src, "s3cr3t").unwrap();
    let mut c = Config::new(
        rw.rootfs(&f.lowers),
        sh("cat /run/secrets/token; echo; echo x > /run/secrets/token || echo refused"),
    );
    c.mounts.push(Mount::Secret { source: src.clone(), target: "/run/secrets/token".into() });
    let out = run(c);
    assert_eq!(out.stdout, "s3cr3t\nrefused\n", "{}", out.stderr);
    assert!(!rw.upper().join("run").exists(), "mount point left in the upper dir");
    assert_eq!(std::fs::read_dir(rw.upper()).unwrap().count(), 0);
    assert_eq!(std::fs::read_to_string(&src).unwrap(), "s3cr3t");
}

#[test]
fn bind_cache_and_tmpfs_mounts() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "from host").unwrap();
    let cache = host.path().join("cache");
    let script = "cat /src/in.txt; echo; touch /src/nope 2>/dev/null || echo ro; \
                  echo hit >> /var/cache/x/log; grep -c tmpfs /proc/mounts >/dev/null; \
                  echo t > /scratch/f && echo tmpfs-ok";
    let mk = |cache: &Path| {
        let mut c = Config::new(rw.rootfs(&f.lowers), sh(script));
        c.mounts = vec![
            Mount::Bind { source: host.path().into(), target: "/src".into(), read_only: true },
            Mount::Cache { source: cache.into(), target: "/var/cache/x".into() },
            Mount::Tmpfs { target: "/scratch".into(), size: Some(1 << 20) },
        ];
        c
    };
    let out = run(mk(&cache));
    assert_eq!(out.stdout, "from host\nro\ntmpfs-ok\n", "{}", out.stderr);
    run(mk(&cache));
    // The cache persists across runs; the tmpfs and mount points leave nothing behind.
    assert_eq!(std::fs::read_to_string(cache.join("log")).unwrap(), "hit\nhit\n");
    assert!(!rw.upper().join("scratch").exists());
    assert!(!rw.upper().join("src").exists());
}

#[test]
fn exit_codes_and_signals_propagate() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    assert_eq!(run(Config::new(rw.rootfs(&f.lowers), sh("exit 42"))).status, ExitStatus::Code(42));
    // PID 1 cannot be SIGKILLed from inside its namespace: the nested shell can.
    let out =
        run(Config::new(rw.rootfs(&f.lowers), sh("echo err >&2; sh -c 'kill -9 $$'; exit $?")));
    assert!(out.stderr.starts_with("err\n"), "{}", out.stderr);
    assert_eq!(out.status, ExitStatus::Code(137));
    let sb =
        Sandbox::new(Config::new(rw.rootfs(&f.lowers), Process::new(["no-such-cmd"]))).unwrap();
    let err = sb.run(&mut Vec::new(), &mut Vec::new(), &RunOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

#[test]
fn env_and_workdir_are_applied() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let mut p = sh("pwd; echo $GREETING; echo $PATH");
    p.env = vec!["GREETING=hi there".into()];
    p.cwd = "/work/dir".into();
    let out = run(Config::new(rw.rootfs(&f.lowers), p));
    assert_eq!(
        out.stdout,
        "/work/dir\nhi there\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        "{}",
        out.stderr
    );
}

#[test]
fn read_only_root_refuses_writes() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let mut c =
        Config::new(rw.rootfs(&f.lowers), sh("touch /x 2>&1; echo ok > /tmp/t/f && echo tmp-ok"));
    c.read_only_root = true;
    c.mounts.push(Mount::Tmpfs { target: "/tmp/t".into(), size: None });
    let out = run(c);
    assert!(out.stdout.contains("Read-only file system"), "{}", out.stdout);
    assert!(out.stdout.contains("tmp-ok"), "{}", out.stdout);
    assert!(!rw.upper().join("x").exists());

    // An overlay with no upper dir is read-only too.
    let out = run(Config::new(Rootfs::Lowers(f.lowers.clone()), sh("touch /x 2>&1")));
    assert!(out.stdout.contains("Read-only file system"), "{}", out.stdout);
}

#[test]
fn process_is_pid_1_with_its_own_hostname() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let out = run(Config::new(
        rw.rootfs(&f.lowers),
        sh("echo $$; hostname; sh -c 'echo $$'; ps -o pid | wc -l"),
    ));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "1");
    assert_eq!(lines[1], "strata");
    assert!(lines[2].parse::<u32>().unwrap() < 10, "{}", lines[2]);
}

#[test]
fn timeout_and_cancel_kill_the_container() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    // A background child that outlives the shell must die with it (PID namespace).
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("s"), "x").unwrap();
    let mut c = Config::new(rw.rootfs(&f.lowers), sh("sleep 100 & sleep 100"));
    c.mounts
        .push(Mount::Secret { source: secrets.path().join("s"), target: "/run/secrets/s".into() });
    let sb = Sandbox::new(c).unwrap();
    let t = Instant::now();
    let opts = RunOptions { timeout: Some(Duration::from_millis(300)), cancel: None };
    let err = sb.run(&mut Vec::new(), &mut Vec::new(), &opts).unwrap_err();
    assert!(matches!(err, Error::TimedOut(_)), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));

    let cancel = CancelHandle::new().unwrap();
    let c2 = cancel.clone();
    let th = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        c2.cancel();
    });
    let opts = RunOptions { timeout: None, cancel: Some(cancel) };
    let err = sb.run(&mut Vec::new(), &mut Vec::new(), &opts).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    th.join().unwrap();
    // Killed runs are tidied too: the secret's mount point is not left in the upper dir.
    assert_eq!(std::fs::read_dir(rw.upper()).unwrap().count(), 0);
}

#[test]
fn spec_describes_the_container() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let mut p = Process::new(["echo", "x"]);
    p.user = "nobody".into();
    let mut c = Config::new(rw.rootfs(&f.lowers), p);
    c.network = Network::None;
    c.mounts.push(Mount::Tmpfs { target: "/t".into(), size: None });
    let spec = Sandbox::new(c).unwrap().spec(Path::new("rootfs")).unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["process"]["user"]["uid"], 65534);
    assert_eq!(json["process"]["args"], serde_json::json!(["echo", "x"]));
    let ns: Vec<&str> = json["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"network") && ns.contains(&"pid") && ns.contains(&"mount"), "{ns:?}");
    assert!(json["mounts"].as_array().unwrap().iter().any(|m| m["destination"] == "/t"));
}

#[test]
fn bad_input_is_a_clear_error() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let err = Sandbox::new(Config::new(rw.rootfs(&f.lowers), Process::new(Vec::<String>::new())))
        .unwrap_err();
    assert!(err.to_string().contains("no command"), "{err}");
    let mut p = Process::new(["true"]);
    p.cwd = "relative".into();
    let err = Sandbox::new(Config::new(rw.rootfs(&f.lowers), p)).unwrap_err();
    assert!(err.to_string().contains("not absolute"), "{err}");
    let err = Sandbox::new(Config::new(Rootfs::Dir("/no/such/dir".into()), Process::new(["true"])))
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/dir"), "{err}");
}

#[test]
fn volatile_overlay_can_be_mounted_again() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    for i in 0..2 {
        let mut c = Config::new(rw.rootfs(&f.lowers), sh(&format!("echo {i} >> /log")));
        c.volatile = true;
        let out = run(c);
        assert_eq!(out.status, ExitStatus::Code(0), "run {i}: {}", out.stderr);
    }
    assert_eq!(std::fs::read_to_string(rw.upper().join("log")).unwrap(), "0\n1\n");
}

#[test]
fn upper_dir_becomes_an_oci_layer_without_mount_points() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("s"), "x").unwrap();
    let mut c = Config::new(
        rw.rootfs(&f.lowers),
        sh("echo a > /added && rm /bin/ls && rm -rf /home && mkdir /home && cat /run/secrets/s"),
    );
    c.mounts
        .push(Mount::Secret { source: secrets.path().join("s"), target: "/run/secrets/s".into() });
    c.mounts
        .push(Mount::Cache { source: secrets.path().join("c"), target: "/var/cache/apt".into() });
    c.volatile = true;
    assert_eq!(run(c).status, ExitStatus::Code(0));
    let opts = strata_layer::WriteOptions {
        overlay_whiteouts: true,
        compression: strata_layer::Compression::None,
        ..Default::default()
    };
    let mut tar_bytes = Vec::new();
    strata_layer::write_layer(&rw.upper(), &mut tar_bytes, &opts).unwrap();
    let mut names: Vec<String> = tar::Archive::new(&tar_bytes[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().trim_end_matches('/').to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["added", "bin", "bin/.wh.ls", "home", "home/.wh..wh..opq"], "{names:?}");
}

#[test]
fn concurrent_runs_from_many_threads_leave_no_mounts() {
    let f = fixture_or_skip!();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let lowers = f.lowers.clone();
            std::thread::spawn(move || {
                for i in 0..5 {
                    let rw = Rw::new();
                    let mut c = Config::new(rw.rootfs(&lowers), sh(&format!("echo {t}-{i}")));
                    c.network = if i % 2 == 0 { Network::None } else { Network::Host };
                    let out = run(c);
                    assert_eq!(out.stdout, format!("{t}-{i}\n"), "{}", out.stderr);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("strata-sandbox-"), "a container mount leaked to the host");
}

#[test]
fn debian_image_runs_apt_as_its_own_users() {
    if fixture().is_none() {
        return;
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let Ok(file) =
        std::fs::File::open(Path::new(&home).join(".cache/strata-fixtures/debian.docker.tar"))
    else {
        eprintln!("SKIPPED: debian fixture is missing");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = strata_store::Store::open(dir.path().join("store")).unwrap();
    let limits = strata_store::layer_info::Limits::default();
    strata_store::archive::load(&store, "debian.docker.tar", file, limits, &mut |_| {}).unwrap();
    let image = store.resolve("debian:bookworm").unwrap();
    let lease = store.lease().unwrap();
    let lowers = store.snapshots(&image, &lease).unwrap();
    let rw = Rw::new();
    // `_apt` exists only in Debian's passwd, with nogroup as its primary group.
    let mut p = sh("id -un; id -gn; apt-get --version | head -1; cat /etc/debian_version");
    p.user = "_apt".into();
    let mut c = Config::new(rw.rootfs(&lowers), p);
    c.network = Network::None;
    let out = run(c);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..2], ["_apt", "nogroup"], "{}{}", out.stdout, out.stderr);
    assert!(lines[2].starts_with("apt "), "{}", out.stdout);
    assert!(lines[3].starts_with("12"), "{}", out.stdout);
}

#[test]
fn no_new_privileges_is_set_when_asked() {
    let f = fixture_or_skip!();
    let rw = Rw::new();
    let mut c = Config::new(rw.rootfs(&f.lowers), sh("grep NoNewPrivs /proc/self/status"));
    c.no_new_privileges = true;
    assert_eq!(run(c).stdout.split_whitespace().last(), Some("1"));
    let c = Config::new(rw.rootfs(&f.lowers), sh("grep NoNewPrivs /proc/self/status"));
    assert_eq!(run(c).stdout.split_whitespace().last(), Some("0"));
}
