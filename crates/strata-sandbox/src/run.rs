//! The parent side: prepare a [`Plan`], clone the child into new namespaces, stream its
//! output, enforce the timeout and cancellation, reap it, and tidy the upper dir.

use std::ffi::{c_char, CString};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::child::{self, Op, Plan, RootMount};
use crate::layers::{self, Stack};
use crate::{caps, clean_path, io_err, sys_err, Error, Mount, Network, Result, Rootfs, Sandbox};

/// How a finished process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }

    /// The shell's convention: the code, or 128 + the signal.
    pub fn code(&self) -> i32 {
        match *self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// Cancels runs from another thread. Once cancelled it stays cancelled.
#[derive(Debug, Clone)]
pub struct CancelHandle {
    pipe: Arc<(OwnedFd, OwnedFd)>,
}

impl CancelHandle {
    pub fn new() -> Result<CancelHandle> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(sys_err("creating a cancel pipe"))?;
        Ok(CancelHandle { pipe: Arc::new((r, w)) })
    }

    /// Kills the process of every run using this handle (now or later). Only a write(2):
    /// safe to call from a signal handler's thread.
    pub fn cancel(&self) {
        // A full pipe already means "cancelled", so a failed write changes nothing.
        let _ = nix::unistd::write(&self.pipe.1, b"x");
    }

    /// Whether [`CancelHandle::cancel`] was called (the byte stays in the pipe).
    pub fn is_cancelled(&self) -> bool {
        let mut fds = [PollFd::new(self.pipe.0.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }
}

/// Limits on one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Kill the container after this long.
    pub timeout: Option<Duration>,
    pub cancel: Option<CancelHandle>,
}

const CHILD_STACK: usize = 256 * 1024;

fn cstr(s: impl AsRef<[u8]>, what: &str) -> Result<CString> {
    CString::new(s.as_ref().to_vec()).map_err(|_| Error::Config(format!("NUL byte in {what}")))
}

fn join(comps: &[&str]) -> String {
    format!("/{}", comps.join("/"))
}

/// What the parent keeps while the child runs and needs afterwards.
struct Prepared {
    plan: Plan,
    _merged: tempfile::TempDir,
    _fds: Vec<OwnedFd>,
    /// Paths (container components) that did not exist before the run and that we create
    /// as mount points, with their ancestors that were lower-only; removed from the upper
    /// dir afterwards when still empty.
    created: Vec<Vec<String>>,
    copied_up: Vec<(Vec<String>, PathBuf)>,
}

fn overlay_data(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    volatile: bool,
) -> Result<(CString, CString)> {
    let mut all: Vec<PathBuf> = Vec::new();
    for p in lowers
        .iter()
        .rev()
        .map(PathBuf::as_path)
        .chain(upper_work.iter().flat_map(|(u, w)| [*u, *w]))
    {
        all.push(std::fs::canonicalize(p).map_err(io_err(format!("resolving {}", p.display())))?);
    }
    // The deepest directory containing every layer, so the option string names them by
    // short relative paths (it must fit in one page).
    let mut base = all[0].parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    while !all.iter().all(|p| p.starts_with(&base)) {
        if !base.pop() {
            break;
        }
    }
    let rel = |p: &Path| -> Result<String> {
        let r = p.strip_prefix(&base).unwrap_or(p);
        let s = if r.as_os_str().is_empty() {
            ".".to_string()
        } else {
            r.to_string_lossy().into_owned()
        };
        if s.contains([':', ',', '\\']) || s.contains('\0') {
            return Err(Error::Config(format!(
                "layer path {} contains a character overlayfs options cannot carry (: , \\)",
                p.display()
            )));
        }
        Ok(s)
    };
    let n = lowers.len();
    let lower: Vec<String> = all[..n].iter().map(|p| rel(p)).collect::<Result<_>>()?;
    let mut data = format!("lowerdir={}", lower.join(":"));
    if upper_work.is_some() {
        // No redirects or metacopy: the upper dir must stay a self-contained OCI diff.
        data.push_str(&format!(
            ",upperdir={},workdir={},index=off,redirect_dir=off,metacopy=off",
            rel(&all[n])?,
            rel(&all[n + 1])?
        ));
        if volatile {
            data.push_str(",volatile");
        }
    }
    if data.len() >= 4095 {
        return Err(Error::Config(format!(
            "{n} layers do not fit in overlayfs mount options ({} bytes, limit 4095)",
            data.len()
        )));
    }
    Ok((cstr(base.as_os_str().as_bytes(), "layer path")?, cstr(data, "overlay options")?))
}

fn prepare(
    sb: &Sandbox,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    report: RawFd,
) -> Result<Prepared> {
    let cfg = &sb.config;
    let merged = tempfile::Builder::new()
        .prefix("strata-sandbox-")
        .tempdir()
        .map_err(io_err("creating the container's root mount point"))?;
    let root = match &cfg.rootfs {
        Rootfs::Overlay { lowers, upper, work } => {
            let (chdir, data) = overlay_data(lowers, Some((upper, work)), cfg.volatile)?;
            RootMount::Overlay { chdir, data }
        }
        // overlayfs wants two lowers when it has no upper; one is just a read-only bind.
        Rootfs::Lowers(lowers) if lowers.len() == 1 => RootMount::Bind {
            source: cstr(lowers[0].as_os_str().as_bytes(), "root path")?,
            read_only: true,
        },
        Rootfs::Lowers(lowers) => {
            let (chdir, data) = overlay_data(lowers, None, false)?;
            RootMount::Overlay { chdir, data }
        }
        Rootfs::Dir(d) => RootMount::Bind {
            source: cstr(d.as_os_str().as_bytes(), "root path")?,
            read_only: false,
        },
    };

    let stack = Stack::new(&cfg.rootfs);
    let tracks_upper = matches!(cfg.rootfs, Rootfs::Overlay { .. });
    let mut created: Vec<Vec<String>> = Vec::new();
    let mut copied_up: Vec<(Vec<String>, PathBuf)> = Vec::new();
    let mut ops = Vec::new();
    let mut fds = Vec::new();
    let mut sources = Vec::new();

    // Mount points that the image lacks get created in the root: remember them (and the
    // lower directories their creation copies up) so they can be taken out again.
    let mut mount_point = |comps: &[&str], file: bool, ops: &mut Vec<Op>| -> Result<()> {
        if tracks_upper {
            let found: Vec<Option<PathBuf>> =
                (1..=comps.len()).map(|i| stack.lookup(&comps[..i])).collect();
            if let Some(first_missing) = found.iter().position(Option::is_none) {
                for (i, f) in found.iter().enumerate() {
                    let owned: Vec<String> = comps[..=i].iter().map(|s| s.to_string()).collect();
                    let lower_only = |p: &PathBuf| stack.top().is_some_and(|t| !p.starts_with(t));
                    match f {
                        None if i >= first_missing && !created.contains(&owned) => {
                            created.push(owned);
                        }
                        Some(p)
                            if i < first_missing
                                && lower_only(p)
                                && !copied_up.iter().any(|(c, _)| *c == owned) =>
                        {
                            copied_up.push((owned, p.clone()));
                        }
                        _ => {}
                    }
                }
            }
        }
        for i in 1..=comps.len() {
            let path = cstr(join(&comps[..i]), "mount target")?;
            if i == comps.len() && file {
                ops.push(Op::Touch { path, step: 7 });
            } else {
                ops.push(Op::Mkdir { path, mode: 0o755, step: 7 });
            }
        }
        Ok(())
    };

    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    let mk = |s: &str| CString::new(s).unwrap_or_default();
    mount_point(&["proc"], false, &mut ops)?;
    ops.push(Op::Mount {
        source: Some(mk("proc")),
        target: mk("/proc"),
        fstype: Some(mk("proc")),
        flags: nodev,
        data: None,
        step: 3,
    });
    mount_point(&["dev"], false, &mut ops)?;
    ops.push(Op::Mount {
        source: Some(mk("tmpfs")),
        target: mk("/dev"),
        fstype: Some(mk("tmpfs")),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        data: Some(mk("mode=755,size=65536k")),
        step: 4,
    });
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        ops.push(Op::CharDev { path: mk(&format!("/dev/{name}")), major, minor });
    }
    for (target, link) in [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ] {
        ops.push(Op::Symlink { target: mk(target), link: mk(link) });
    }
    for (dir, mode, fstype, data, flags) in [
        (
            "/dev/pts",
            0o755,
            "devpts",
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        ),
        ("/dev/shm", 0o1777, "tmpfs", "mode=1777,size=65536k", nodev),
        ("/dev/mqueue", 0o755, "mqueue", "", nodev),
    ] {
        ops.push(Op::Mkdir { path: mk(dir), mode, step: 4 });
        ops.push(Op::Mount {
            source: Some(mk(fstype)),
            target: mk(dir),
            fstype: Some(mk(fstype)),
            flags,
            data: (!data.is_empty()).then(|| mk(data)),
            step: 4,
        });
    }
    mount_point(&["sys"], false, &mut ops)?;
    ops.push(Op::Mount {
        source: Some(mk("sysfs")),
        target: mk("/sys"),
        fstype: Some(mk("sysfs")),
        flags: nodev | MsFlags::MS_RDONLY,
        data: None,
        step: 6,
    });

    for m in &cfg.mounts {
        let comps = clean_path(m.target());
        let target = cstr(join(&comps), "mount target")?;
        match m {
            Mount::Tmpfs { size, .. } => {
                mount_point(&comps, false, &mut ops)?;
                ops.push(Op::Mount {
                    source: Some(mk("tmpfs")),
                    target,
                    fstype: Some(mk("tmpfs")),
                    flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    data: size.map(|s| mk(&format!("size={s}"))),
                    step: 8,
                });
            }
            Mount::Bind { source, read_only, .. } => {
                bind(
                    source,
                    &comps,
                    target,
                    *read_only,
                    MsFlags::empty(),
                    &mut fds,
                    &mut sources,
                    &mut ops,
                    &mut mount_point,
                )?;
            }
            Mount::Cache { source, .. } => {
                bind(
                    source,
                    &comps,
                    target,
                    false,
                    MsFlags::empty(),
                    &mut fds,
                    &mut sources,
                    &mut ops,
                    &mut mount_point,
                )?;
            }
            Mount::Secret { source, .. } => {
                bind(
                    source,
                    &comps,
                    target,
                    true,
                    nodev,
                    &mut fds,
                    &mut sources,
                    &mut ops,
                    &mut mount_point,
                )?;
            }
        }
    }
    for p in oci_spec::runtime::get_default_maskedpaths() {
        ops.push(Op::Mask { path: mk(&p) });
    }
    for p in oci_spec::runtime::get_default_readonly_paths() {
        ops.push(Op::ReadOnly { path: mk(&p) });
    }

    let p = &cfg.process;
    let cwd_comps = clean_path(&p.cwd);
    let cwd_dirs =
        (1..=cwd_comps.len()).map(|i| cstr(join(&cwd_comps[..i]), "cwd")).collect::<Result<_>>()?;
    let path_var =
        sb.env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(crate::DEFAULT_PATH);
    let exe = &p.args[0];
    let exec_paths: Vec<CString> = if exe.contains('/') {
        vec![cstr(exe, "command")?]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstr(format!("{}/{exe}", d.trim_end_matches('/')), "command"))
            .collect::<Result<_>>()?
    };
    let argv_c: Vec<CString> = p.args.iter().map(|a| cstr(a, "argument")).collect::<Result<_>>()?;
    let envp_c: Vec<CString> =
        sb.env.iter().map(|a| cstr(a, "environment")).collect::<Result<_>>()?;
    let argv = argv_c.iter().map(|c| c.as_ptr()).chain([std::ptr::null::<c_char>()]).collect();
    let envp = envp_c.iter().map(|c| c.as_ptr()).chain([std::ptr::null::<c_char>()]).collect();

    let plan = Plan {
        merged: cstr(merged.path().as_os_str().as_bytes(), "temp dir")?,
        root,
        sources,
        ops,
        read_only_root: cfg.read_only_root,
        hostname: cstr(&cfg.hostname, "hostname")?,
        lo_up: cfg.network == Network::None,
        cwd_dirs,
        cwd: cstr(join(&cwd_comps), "cwd")?,
        no_new_privs: cfg.no_new_privileges,
        keep_caps: caps::mask(&cfg.capabilities.list()),
        last_cap: caps::last_cap(),
        uid: sb.user.uid,
        gid: sb.user.gid,
        groups: sb.user.additional_gids.clone(),
        exec_paths,
        _argv: argv_c,
        _envp: envp_c,
        argv,
        envp,
        stdin,
        stdout,
        stderr,
        report,
    };
    Ok(Prepared { plan, _merged: merged, _fds: fds, created, copied_up })
}

type MountPointFn<'a> = dyn FnMut(&[&str], bool, &mut Vec<Op>) -> Result<()> + 'a;

#[allow(clippy::too_many_arguments)]
fn bind(
    source: &Path,
    comps: &[&str],
    target: CString,
    read_only: bool,
    extra: MsFlags,
    fds: &mut Vec<OwnedFd>,
    sources: &mut Vec<(CString, RawFd)>,
    ops: &mut Vec<Op>,
    mount_point: &mut MountPointFn<'_>,
) -> Result<()> {
    let meta =
        std::fs::metadata(source).map_err(io_err(format!("mount source {}", source.display())))?;
    // The child clones the source mount onto this reserved fd number and attaches it after
    // pivot_root: the target is resolved inside the new root (a symlink
    // in the image cannot point the mount at the host).
    let fd = nix::fcntl::open(
        "/dev/null",
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys_err("reserving an fd"))?;
    sources.push((cstr(source.as_os_str().as_bytes(), "mount source")?, fd.as_raw_fd()));
    mount_point(comps, !meta.is_dir(), ops)?;
    ops.push(Op::MoveMount { fd: fd.as_raw_fd(), target: target.clone(), step: 8 });
    if read_only || !extra.is_empty() {
        let ro = if read_only { MsFlags::MS_RDONLY } else { MsFlags::empty() };
        ops.push(Op::Remount {
            target,
            flags: MsFlags::MS_REMOUNT | MsFlags::MS_BIND | ro | extra,
            step: 8,
        });
    }
    fds.push(fd);
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("creating a pipe"))
}

pub(crate) fn run(
    sb: &Sandbox,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    options: &RunOptions,
) -> Result<crate::ExitStatus> {
    let start = Instant::now();
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (rep_r, rep_w) = pipe()?;
    let devnull = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys_err("opening /dev/null"))?;
    let prepared =
        prepare(sb, devnull.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd(), rep_w.as_raw_fd())?;

    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if sb.config.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let mut stack = vec![0u8; CHILD_STACK];
    let plan = &prepared.plan;
    // SAFETY: the child only runs `child_main`, which touches nothing but the prepared plan
    // (no allocation, no locks) until it execs or _exits.
    let pid = unsafe {
        nix::sched::clone(
            Box::new(|| child::child_main(plan)),
            &mut stack,
            flags,
            Some(libc::SIGCHLD),
        )
    }
    .map_err(sys_err("starting the container (clone)"))?;
    drop((out_w, err_w, rep_w, devnull));
    // Kill and reap the child whatever happens in `supervise`: its mount namespace, and with
    // it every mount, is gone once the guard is dropped.
    let mut guard = Reaper { pid, reaped: false };
    let result = supervise(sb, &mut guard, rep_r, out_r, err_r, stdout, stderr, options, start);
    drop(guard);
    drop(prepared.plan);
    tidy_upper(sb, &prepared.created, &prepared.copied_up);
    if let (true, Rootfs::Overlay { work, .. }) = (sb.config.volatile, &sb.config.rootfs) {
        // The overlay was unmounted with its namespace (not a crash); overlayfs refuses to
        // reuse a work dir that still carries the volatile marker.
        let _ = std::fs::remove_dir_all(work.join("work/incompat"));
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn supervise(
    sb: &Sandbox,
    guard: &mut Reaper,
    rep_r: OwnedFd,
    out_r: OwnedFd,
    err_r: OwnedFd,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    options: &RunOptions,
    start: Instant,
) -> Result<crate::ExitStatus> {
    let pid = guard.pid;
    // The report pipe closes on a successful exec, or carries (step, errno).
    let mut buf = [0u8; 8];
    let n = read_full(&rep_r, &mut buf);
    if n == 8 {
        guard.wait();
        let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let errno = Errno::from_raw(i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]));
        if step == child::STEP_EXEC && errno == Errno::ENOENT {
            return Err(Error::NotFound(sb.config.process.args[0].clone()));
        }
        let name = child::STEPS.get(step as usize).copied().unwrap_or("an unknown step");
        return Err(Error::Setup { step: name, source: errno });
    }
    drop(rep_r);

    let pidfd = pidfd_open(pid).map_err(sys_err("pidfd_open"))?;
    let deadline = options.timeout.map(|t| start + t);
    let cancel = options.cancel.as_ref().map(|c| c.pipe.0.as_fd());
    let mut out_open = true;
    let mut err_open = true;
    let mut exited = false;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut write_err: Option<std::io::Error> = None;
    while out_open || err_open || !exited {
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    guard.kill();
                    return Err(Error::TimedOut(options.timeout.unwrap_or_default()));
                }
                PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1)
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        // Only fds still of interest: poll reports POLLHUP even with no events requested,
        // so a closed pipe left in the set would make this loop spin.
        const OUT: u8 = 0;
        const ERR: u8 = 1;
        const PID: u8 = 2;
        const CANCEL: u8 = 3;
        let mut kinds = Vec::with_capacity(4);
        let mut fds = Vec::with_capacity(4);
        for (kind, fd, wanted) in [
            (OUT, Some(out_r.as_fd()), out_open),
            (ERR, Some(err_r.as_fd()), err_open),
            (PID, Some(pidfd.as_fd()), !exited),
            (CANCEL, cancel, cancel.is_some()),
        ] {
            if let (Some(fd), true) = (fd, wanted) {
                kinds.push(kind);
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::Sys { context: "poll".into(), source: e }),
        }
        let ready = |k: u8| {
            kinds
                .iter()
                .position(|x| *x == k)
                .is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty()))
        };
        let (r_out, r_err, r_pid, r_cancel) = (ready(OUT), ready(ERR), ready(PID), ready(CANCEL));
        drop(fds);
        if r_cancel {
            guard.kill();
            return Err(Error::Cancelled);
        }
        if r_out && out_open {
            out_open = pump(&out_r, &mut chunk, stdout, &mut write_err);
        }
        if r_err && err_open {
            err_open = pump(&err_r, &mut chunk, stderr, &mut write_err);
        }
        if r_pid {
            // PID 1 of the namespace is gone, so the kernel has killed the rest: the pipes
            // reach EOF as soon as they are drained.
            exited = true;
        }
    }
    let status =
        guard.wait().ok_or_else(|| Error::Config("the container's process vanished".into()))?;
    if let Some(e) = write_err {
        return Err(Error::Output(e));
    }
    Ok(status)
}

fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    n
}

/// Moves one read's worth of output; false at EOF. A failing writer does not stop the
/// process: its output is drained and the error reported at the end.
fn pump(
    fd: &OwnedFd,
    chunk: &mut [u8],
    w: &mut dyn Write,
    err: &mut Option<std::io::Error>,
) -> bool {
    match nix::unistd::read(fd, chunk) {
        Ok(0) => false,
        Ok(n) => {
            if err.is_none() {
                if let Err(e) = w.write_all(&chunk[..n]).and_then(|_| w.flush()) {
                    *err = Some(e);
                }
            }
            true
        }
        Err(Errno::EINTR) | Err(Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd we then own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Kills and reaps the container's init if the run ends early (error, timeout, cancel).
struct Reaper {
    pid: Pid,
    reaped: bool,
}

impl Reaper {
    fn kill(&mut self) {
        // Killing a PID namespace's init kills everything in it.
        let _ = kill(self.pid, Signal::SIGKILL);
        self.wait();
    }

    fn wait(&mut self) -> Option<crate::ExitStatus> {
        if self.reaped {
            return None;
        }
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, c)) => {
                    self.reaped = true;
                    return Some(crate::ExitStatus::Code(c));
                }
                Ok(WaitStatus::Signaled(_, s, _)) => {
                    self.reaped = true;
                    return Some(crate::ExitStatus::Signal(s as i32));
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => {
                    self.reaped = true;
                    return None;
                }
            }
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
        }
    }
}

/// Takes our mount points (and the directories their creation copied up) back out of the
/// upper dir, so they never reach a layer. Only entries still empty and unchanged go: what
/// the process itself wrote there stays.
fn tidy_upper(sb: &Sandbox, created: &[Vec<String>], copied_up: &[(Vec<String>, PathBuf)]) {
    let Rootfs::Overlay { upper, .. } = &sb.config.rootfs else {
        return;
    };
    let mut created: Vec<&Vec<String>> = created.iter().collect();
    created.sort_by_key(|c| std::cmp::Reverse(c.len()));
    for c in created {
        let p = upper.join(c.join("/"));
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            let _ = std::fs::remove_dir(&p); // fails, as wanted, when not empty
        } else if m.is_file() && m.len() == 0 {
            let _ = std::fs::remove_file(&p);
        }
    }
    let mut copied: Vec<&(Vec<String>, PathBuf)> = copied_up.iter().collect();
    copied.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
    for (c, lower) in copied {
        let p = upper.join(c.join("/"));
        let (Ok(m), Ok(l)) = (std::fs::symlink_metadata(&p), std::fs::symlink_metadata(lower))
        else {
            continue;
        };
        let same = m.is_dir() && m.mode() == l.mode() && m.uid() == l.uid() && m.gid() == l.gid();
        if same && !layers::is_opaque(&p) {
            let _ = std::fs::remove_dir(&p);
        }
    }
}
