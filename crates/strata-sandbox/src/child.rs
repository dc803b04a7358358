//! What runs in the cloned child. The parent may be multi-threaded, so between `clone` and
//! `execve` the child must not allocate or take locks: everything it needs is prepared in a
//! [`Plan`] (C strings, pointer arrays) beforehand, and credentials are changed with raw
//! syscalls (glibc's wrappers would try to broadcast to the parent's threads).

use std::ffi::{c_char, CStr, CString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};

/// The setup steps, for error messages: the child reports an index into this table.
pub(crate) const STEPS: &[&str] = &[
    "making mounts private",        // 0
    "mounting the root filesystem", // 1
    "pivot_root",                   // 2
    "mounting /proc",               // 3
    "mounting /dev",                // 4
    "creating device nodes",        // 5
    "mounting /sys",                // 6
    "creating a mount point",       // 7
    "mounting a volume",            // 8
    "masking a path",               // 9
    "making the root read-only",    // 10
    "setting the hostname",         // 11
    "bringing up lo",               // 12
    "changing to the working dir",  // 13
    "dropping capabilities",        // 14
    "setting groups",               // 15
    "setting gid",                  // 16
    "setting uid",                  // 17
    "setting no_new_privs",         // 18
    "exec",                         // 19
    "setting up stdio",             // 20
    "watching the parent",          // 21
];
pub(crate) const STEP_EXEC: u32 = 19;

const OPEN_TREE_CLONE: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;

/// One filesystem operation inside the new root (container-absolute paths).
#[derive(Debug)]
pub(crate) enum Op {
    /// `mkdir`, an existing entry is fine.
    Mkdir {
        path: CString,
        mode: u32,
        step: u32,
    },
    /// Creates an empty file unless something exists there.
    Touch {
        path: CString,
        step: u32,
    },
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: MsFlags,
        data: Option<CString>,
        step: u32,
    },
    /// Attaches a detached mount tree (from `open_tree`) at `target`.
    MoveMount {
        fd: RawFd,
        target: CString,
        step: u32,
    },
    /// Remounts a bind mount with `flags` (read-only binds need a second call).
    Remount {
        target: CString,
        flags: MsFlags,
        step: u32,
    },
    CharDev {
        path: CString,
        major: u64,
        minor: u64,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// Hides a path: `/dev/null` over a file, an empty read-only tmpfs over a directory.
    Mask {
        path: CString,
    },
    /// Makes an existing path read-only (bind onto itself, remount).
    ReadOnly {
        path: CString,
    },
}

#[derive(Debug)]
pub(crate) enum RootMount {
    /// Overlay options; `chdir` first so lower dirs can be given relative (the option string
    /// is limited to one page).
    Overlay { chdir: CString, data: CString },
    /// `read_only`: remounted read-only at once (a snapshot dir must never be written).
    Bind { source: CString, read_only: bool },
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub merged: CString,
    pub root: RootMount,
    /// Bind sources to open inside the new mount namespace (a bind from a mount of another
    /// namespace is EINVAL) onto reserved fd numbers, before `pivot_root` hides the host.
    pub sources: Vec<(CString, RawFd)>,
    pub ops: Vec<Op>,
    pub read_only_root: bool,
    pub hostname: CString,
    pub lo_up: bool,
    pub cwd_dirs: Vec<CString>,
    pub cwd: CString,
    pub no_new_privs: bool,
    pub keep_caps: u64,
    pub last_cap: u32,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    /// Candidate executable paths in `PATH` order, and argv/envp as NULL-terminated arrays
    /// pointing into `_argv`/`_envp`.
    pub exec_paths: Vec<CString>,
    pub _argv: Vec<CString>,
    pub _envp: Vec<CString>,
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub report: RawFd,
}

fn fail(report: RawFd, step: u32, errno: Errno) -> isize {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&step.to_ne_bytes());
    buf[4..].copy_from_slice(&(errno as i32).to_ne_bytes());
    // SAFETY: writing a stack buffer to a pipe fd we own; nothing to do if it fails.
    unsafe {
        libc::write(report, buf.as_ptr().cast(), buf.len());
        libc::_exit(127);
    }
}

fn check(r: nix::Result<()>, report: RawFd, step: u32) -> Result<(), isize> {
    r.map_err(|e| fail(report, step, e))
}

fn raw(r: libc::c_long) -> nix::Result<()> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

fn mkdir_ok(path: &CStr, mode: u32) -> nix::Result<()> {
    match nix::unistd::mkdir(path, Mode::from_bits_truncate(mode)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

fn run_op(op: &Op, report: RawFd) -> Result<(), isize> {
    match op {
        Op::Mkdir { path, mode, step } => check(mkdir_ok(path, *mode), report, *step),
        Op::Touch { path, step } => {
            // SAFETY: path is NUL-terminated; the fd is closed right away.
            let fd = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd >= 0 {
                // SAFETY: fd was just opened by us.
                unsafe { libc::close(fd) };
                Ok(())
            } else {
                match Errno::last() {
                    Errno::EEXIST => Ok(()),
                    e => Err(fail(report, *step, e)),
                }
            }
        }
        Op::Mount { source, target, fstype, flags, data, step } => check(
            mount(source.as_deref(), target.as_c_str(), fstype.as_deref(), *flags, data.as_deref()),
            report,
            *step,
        ),
        Op::MoveMount { fd, target, step } => {
            // SAFETY: move_mount with a mount fd we own and a NUL-terminated target.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    *fd,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    target.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                )
            };
            check(raw(r), report, *step)
        }
        Op::Remount { target, flags, step } => check(
            mount(None::<&CStr>, target.as_c_str(), None::<&CStr>, *flags, None::<&CStr>),
            report,
            *step,
        ),
        Op::CharDev { path, major, minor } => check(
            mknod(
                path.as_c_str(),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                libc::makedev(*major as u32, *minor as u32),
            ),
            report,
            5,
        ),
        Op::Symlink { target, link } => {
            match nix::unistd::symlinkat(target.as_c_str(), nix::fcntl::AT_FDCWD, link.as_c_str()) {
                Ok(()) | Err(Errno::EEXIST) => Ok(()),
                Err(e) => Err(fail(report, 5, e)),
            }
        }
        Op::Mask { path } => {
            let r = mount(
                Some(c"/dev/null"),
                path.as_c_str(),
                None::<&CStr>,
                MsFlags::MS_BIND,
                None::<&CStr>,
            );
            match r {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(Errno::ENOTDIR) => check(
                    mount(
                        Some(c"tmpfs"),
                        path.as_c_str(),
                        Some(c"tmpfs"),
                        MsFlags::MS_RDONLY,
                        None::<&CStr>,
                    ),
                    report,
                    9,
                ),
                Err(e) => Err(fail(report, 9, e)),
            }
        }
        Op::ReadOnly { path } => {
            match mount(
                Some(path.as_c_str()),
                path.as_c_str(),
                None::<&CStr>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&CStr>,
            ) {
                Ok(()) => {}
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(fail(report, 9, e)),
            }
            check(
                mount(
                    None::<&CStr>,
                    path.as_c_str(),
                    None::<&CStr>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                    None::<&CStr>,
                ),
                report,
                9,
            )
        }
    }
}

/// Brings `lo` up in a fresh network namespace.
fn lo_up() -> nix::Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq we own; the socket is closed.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(Errno::last());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as c_char;
        req.ifr_name[1] = b'o' as c_char;
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(s, libc::SIOCSIFFLAGS, &req);
        }
        let e = Errno::last();
        libc::close(s);
        if r < 0 {
            Err(e)
        } else {
            Ok(())
        }
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capset(mask: u64) -> nix::Result<()> {
    let hdr = CapHeader { version: 0x2008_0522, pid: 0 }; // _LINUX_CAPABILITY_VERSION_3
    let lo = mask as u32;
    let hi = (mask >> 32) as u32;
    let data = [
        CapData { effective: lo, permitted: lo, inheritable: lo },
        CapData { effective: hi, permitted: hi, inheritable: hi },
    ];
    // SAFETY: header and two data structs, as capset(2) v3 expects.
    raw(unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) })
}

/// The child's body. Never returns on success (execve); on failure it reports the step and
/// errno on `plan.report` and exits 127.
pub(crate) fn child_main(plan: &Plan) -> isize {
    match setup(plan) {
        Ok(never) => never,
        Err(code) => code,
    }
}

fn setup(plan: &Plan) -> Result<isize, isize> {
    let rep = plan.report;
    // SAFETY: prctl/getppid/signal calls with constant arguments.
    unsafe {
        // Die with the parent thread (which waits for us). getppid() is 0 in a new PID
        // namespace, so an already-dead parent cannot be detected here; the window is the
        // few instructions since clone.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
            return Err(fail(rep, 21, Errno::ESRCH));
        }
        // Rust programs ignore SIGPIPE and ignored signals survive execve: restore defaults.
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::umask(0);
    }

    check(
        mount(
            None::<&CStr>,
            c"/",
            None::<&CStr>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&CStr>,
        ),
        rep,
        0,
    )?;
    match &plan.root {
        RootMount::Overlay { chdir, data } => {
            check(nix::unistd::chdir(chdir.as_c_str()), rep, 1)?;
            check(
                mount(
                    Some(c"overlay"),
                    plan.merged.as_c_str(),
                    Some(c"overlay"),
                    MsFlags::empty(),
                    Some(data.as_c_str()),
                ),
                rep,
                1,
            )?;
        }
        RootMount::Bind { source, read_only } => {
            check(
                mount(
                    Some(source.as_c_str()),
                    plan.merged.as_c_str(),
                    None::<&CStr>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&CStr>,
                ),
                rep,
                1,
            )?;
            if *read_only {
                let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
                check(
                    mount(
                        None::<&CStr>,
                        plan.merged.as_c_str(),
                        None::<&CStr>,
                        flags,
                        None::<&CStr>,
                    ),
                    rep,
                    1,
                )?;
            }
        }
    }
    for (source, fd) in &plan.sources {
        // SAFETY: open/dup3/close on a NUL-terminated path and fd numbers we reserved.
        unsafe {
            // A detached copy of the source mount, attached after pivot_root (a plain bind
            // from the old root would fail once that root is detached).
            let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_RECURSIVE as u32;
            let f =
                libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, source.as_ptr(), flags) as i32;
            if f < 0 {
                return Err(fail(rep, 8, Errno::last()));
            }
            if libc::dup3(f, *fd, libc::O_CLOEXEC) < 0 {
                return Err(fail(rep, 8, Errno::last()));
            }
            libc::close(f);
        }
    }
    check(nix::unistd::chdir(plan.merged.as_c_str()), rep, 2)?;
    check(nix::unistd::pivot_root(c".", c"."), rep, 2)?;
    check(umount2(c".", MntFlags::MNT_DETACH), rep, 2)?;
    check(nix::unistd::chdir(c"/"), rep, 2)?;

    for op in &plan.ops {
        run_op(op, rep)?;
    }
    if plan.read_only_root {
        check(
            mount(
                None::<&CStr>,
                c"/",
                None::<&CStr>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                None::<&CStr>,
            ),
            rep,
            10,
        )?;
    }
    let hostname = std::ffi::OsStr::from_bytes(plan.hostname.to_bytes());
    check(nix::unistd::sethostname(hostname), rep, 11)?;
    if plan.lo_up {
        check(lo_up(), rep, 12)?;
    }
    for d in &plan.cwd_dirs {
        check(mkdir_ok(d, 0o755), rep, 13)?;
    }
    check(nix::unistd::chdir(plan.cwd.as_c_str()), rep, 13)?;

    if plan.no_new_privs {
        // SAFETY: prctl with constant arguments.
        check(raw(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as _), rep, 18)?;
    }
    for cap in 0..=plan.last_cap {
        if plan.keep_caps & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r < 0 && Errno::last() != Errno::EINVAL {
                return Err(fail(rep, 14, Errno::last()));
            }
        }
    }
    // SAFETY: raw credential syscalls with plain integers and a slice we own.
    unsafe {
        check(
            raw(libc::syscall(libc::SYS_setgroups, plan.groups.len(), plan.groups.as_ptr())),
            rep,
            15,
        )?;
        check(raw(libc::syscall(libc::SYS_setresgid, plan.gid, plan.gid, plan.gid)), rep, 16)?;
        check(raw(libc::syscall(libc::SYS_setresuid, plan.uid, plan.uid, plan.uid)), rep, 17)?;
    }
    if plan.uid == 0 {
        check(capset(plan.keep_caps), rep, 14)?;
    }

    // SAFETY: fd juggling on fds we own; close_range only marks fds close-on-exec.
    unsafe {
        libc::umask(0o022);
        if libc::dup2(plan.stdin, 0) < 0
            || libc::dup2(plan.stdout, 1) < 0
            || libc::dup2(plan.stderr, 2) < 0
        {
            return Err(fail(rep, 20, Errno::last()));
        }
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32 /* CLOSE_RANGE_CLOEXEC */);
    }
    let mut last = Errno::ENOENT;
    for path in &plan.exec_paths {
        // SAFETY: argv and envp are NULL-terminated arrays of pointers into live CStrings.
        unsafe { libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr()) };
        let e = Errno::last();
        // As execvp: keep looking after "not here", remember "found but not runnable".
        match e {
            Errno::ENOENT | Errno::ENOTDIR => {}
            Errno::EACCES => last = e,
            _ => return Err(fail(rep, STEP_EXEC, e)),
        }
    }
    Err(fail(rep, STEP_EXEC, last))
}
