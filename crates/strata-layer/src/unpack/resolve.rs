//! Resolving an entry's parent directory inside the root, symlinks included.
//!
//! Why a userspace walk (lstat/readlink per component) and not `openat2(RESOLVE_IN_ROOT)`:
//! - The rules differ from RESOLVE_IN_ROOT's: a *relative* symlink that climbs above the
//!   root must be refused (as Docker does), while RESOLVE_IN_ROOT silently clamps it; so
//!   each symlink has to be looked at anyway. Absolute targets are re-rooted, as there.
//! - openat2 needs Linux 5.6 and is commonly blocked by seccomp profiles (ENOSYS) in the
//!   CI containers this tool runs in; a fallback would have to exist regardless.
//! - The result is a host path none of whose components is a symlink, so every later
//!   operation only has to avoid following the *final* component (lstat, O_NOFOLLOW,
//!   lchown, lsetxattr, utimensat(AT_SYMLINK_NOFOLLOW), mknod/symlink/link which never
//!   follow), which keeps the rest free of unsafe fd plumbing.
//!
//! The threat is the layer's content, processed one entry at a time; the target directory
//! is private to the unpacker while it runs (the store renames snapshots into place only
//! when complete), so no concurrent process swaps components between check and use.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use crate::error::LayerError;

/// As the kernel's MAXSYMLINKS: more than this many hops is treated as a loop.
const MAX_SYMLINK_HOPS: usize = 40;

/// A directory inside the root, reached without leaving it.
#[derive(Debug)]
pub(crate) struct ResolvedDir {
    /// Host path with no symlink components.
    pub host: PathBuf,
    /// Number of components below the root, to judge where `..` in a symlink target leads.
    pub depth: usize,
}

/// What to do when a component does not exist.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Create it as a 0755 directory, as tar and Docker do for implied parents.
    Create,
    /// Stop and return `None`.
    Report,
}

/// One pending component; `clamp` marks components of an absolute symlink target, where
/// `..` at the root stays at the root (that is what the kernel does in a chroot).
struct Step {
    name: OsString,
    clamp: bool,
}

/// Resolves the directory `components` below `root`, following symlinks as if `root` were
/// `/`. `entry` names the tar entry for error messages.
pub(crate) fn resolve_dir(
    root: &Path,
    components: &[OsString],
    entry: &str,
    missing: Missing,
) -> Result<Option<ResolvedDir>, LayerError> {
    let mut host = root.to_path_buf();
    let mut depth = 0usize;
    let mut todo: VecDeque<Step> =
        components.iter().map(|c| Step { name: c.clone(), clamp: false }).collect();
    let mut hops = 0usize;

    while let Some(step) = todo.pop_front() {
        if step.name == OsStr::new("..") {
            if depth > 0 {
                host.pop();
                depth -= 1;
            } else if !step.clamp {
                // Only symlink targets can contribute `..` here: entry names were normalised.
                return Err(LayerError::unsafe_entry(
                    entry,
                    "its parent path goes through a symlink whose relative target leads \
                     outside the root",
                ));
            }
            continue;
        }
        host.push(&step.name);
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.is_dir() => depth += 1,
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(LayerError::unsafe_entry(
                        entry,
                        format!(
                            "resolving its parent path followed more than {MAX_SYMLINK_HOPS} \
                             symlinks (a symlink loop?)"
                        ),
                    ));
                }
                let target = fs::read_link(&host)
                    .map_err(|e| LayerError::io("reading symlink", &host, e))?;
                host.pop();
                expand_symlink(&target, &mut todo, &mut host, &mut depth, root);
            }
            Ok(_) => {
                let rel = host.strip_prefix(root).unwrap_or(&host).display().to_string();
                return Err(LayerError::bad_entry(
                    entry,
                    format!("its parent {rel:?} exists and is not a directory"),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match missing {
                Missing::Report => return Ok(None),
                Missing::Create => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&host)
                        .map_err(|e| LayerError::io("creating directory", &host, e))?;
                    depth += 1;
                }
            },
            Err(e) => return Err(LayerError::io("inspecting", &host, e)),
        }
    }
    Ok(Some(ResolvedDir { host, depth }))
}

/// Queues a symlink target's components in front of the remaining ones. An absolute target
/// restarts from the root (never from the host's `/`).
fn expand_symlink(
    target: &Path,
    todo: &mut VecDeque<Step>,
    host: &mut PathBuf,
    depth: &mut usize,
    root: &Path,
) {
    let clamp = target.is_absolute();
    if clamp {
        *host = root.to_path_buf();
        *depth = 0;
    }
    let steps: Vec<Step> = target
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .map(|name| Step { name, clamp })
        .collect();
    for step in steps.into_iter().rev() {
        todo.push_front(step);
    }
}

/// Whether a symlink target, read from the directory at `depth` below the root, stays
/// inside it. Absolute targets always do: they are interpreted from the container root.
pub(crate) fn symlink_target_stays_inside(target: &[u8], depth: usize) -> bool {
    if target.first() == Some(&b'/') {
        return true;
    }
    let mut depth = depth as isize;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn comps(s: &str) -> Vec<OsString> {
        s.split('/').map(OsString::from).collect()
    }

    #[test]
    fn follows_symlinks_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink("/usr", root.join("abs")).unwrap();
        symlink("/../../usr", root.join("clamped")).unwrap();

        let r = resolve_dir(root, &comps("bin"), "e", Missing::Report).unwrap().unwrap();
        assert_eq!(r.host, root.join("usr/bin"));
        assert_eq!(r.depth, 2);
        let r = resolve_dir(root, &comps("abs/bin"), "e", Missing::Report).unwrap().unwrap();
        assert_eq!(r.host, root.join("usr/bin"));
        let r = resolve_dir(root, &comps("clamped/bin"), "e", Missing::Report).unwrap().unwrap();
        assert_eq!(r.host, root.join("usr/bin"));
        assert!(resolve_dir(root, &comps("nope/x"), "e", Missing::Report).unwrap().is_none());
        let r = resolve_dir(root, &comps("bin/new/deeper"), "e", Missing::Create).unwrap().unwrap();
        assert_eq!(r.host, root.join("usr/bin/new/deeper"));
        assert!(root.join("usr/bin/new/deeper").is_dir());
    }

    #[test]
    fn refuses_escapes_and_loops() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        symlink("../..", root.join("up")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        fs::write(root.join("file"), b"").unwrap();

        let e = resolve_dir(root, &comps("up/x"), "up/x/f", Missing::Create).unwrap_err();
        assert!(e.to_string().contains("outside the root"), "{e}");
        let e = resolve_dir(root, &comps("loop1"), "loop1/f", Missing::Create).unwrap_err();
        assert!(e.to_string().contains("symlink loop"), "{e}");
        let e = resolve_dir(root, &comps("file"), "file/f", Missing::Create).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }

    #[test]
    fn symlink_targets() {
        assert!(symlink_target_stays_inside(b"/bin/busybox", 0));
        assert!(symlink_target_stays_inside(b"../lib", 1));
        assert!(!symlink_target_stays_inside(b"../lib", 0));
        assert!(!symlink_target_stays_inside(b"a/../../..", 1));
        assert!(symlink_target_stays_inside(b"./x/../y", 0));
    }
}
