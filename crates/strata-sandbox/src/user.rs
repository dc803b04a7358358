//! Docker's `USER` resolution against the container's own `/etc/passwd` and `/etc/group`.

use crate::layers::Stack;
use crate::{Error, Result};

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from `/etc/group` membership when no group was given).
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_db(stack: &Stack, name: &str) -> Result<Option<String>> {
    match stack.lookup(&["etc", name]) {
        None => Ok(None),
        Some(p) => {
            let meta = std::fs::symlink_metadata(&p)
                .map_err(crate::io_err(format!("reading {}", p.display())))?;
            if !meta.is_file() {
                // A symlinked /etc/passwd would need resolving inside the root: Docker's
                // images never do this, so treat it as absent rather than follow it out.
                return Ok(None);
            }
            let bytes =
                std::fs::read(&p).map_err(crate::io_err(format!("reading {}", p.display())))?;
            Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
        }
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| m.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves Docker's `USER` value (`""`, `name`, `uid`, `name:group`, `uid:gid`...) in the
/// root filesystem described by `stack`.
pub(crate) fn resolve_user_in(stack: &Stack, spec: &str) -> Result<ResolvedUser> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let passwd = read_db(stack, "passwd")?.map(|t| parse_passwd(&t)).unwrap_or_default();
    let uid_num: Option<u32> = user_part.parse().ok();
    let entry = passwd.iter().find(|e| match uid_num {
        Some(n) => e.uid == n,
        None => e.name == user_part,
    });
    let mut user = match (entry, uid_num) {
        (Some(e), _) => ResolvedUser {
            uid: e.uid,
            gid: e.gid,
            additional_gids: Vec::new(),
            home: e.home.clone(),
        },
        (None, Some(n)) => {
            ResolvedUser { uid: n, gid: 0, additional_gids: Vec::new(), home: "/".into() }
        }
        (None, None) => {
            return Err(Error::User(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            )))
        }
    };
    if user.home.is_empty() {
        user.home = "/".into();
    }
    let groups = read_db(stack, "group")?.map(|t| parse_group(&t)).unwrap_or_default();
    match group_part {
        Some(g) if !g.is_empty() => {
            let gid_num: Option<u32> = g.parse().ok();
            let found = groups.iter().find(|e| match gid_num {
                Some(n) => e.gid == n,
                None => e.name == g,
            });
            user.gid = match (found, gid_num) {
                (Some(e), _) => e.gid,
                (None, Some(n)) => n,
                (None, None) => {
                    return Err(Error::User(format!(
                        "unable to find group {g}: no matching entries in group file"
                    )))
                }
            };
        }
        _ => {
            if let Some(e) = entry {
                let mut gids: Vec<u32> = groups
                    .iter()
                    .filter(|g| g.members.contains(&e.name) && g.gid != user.gid)
                    .map(|g| g.gid)
                    .collect();
                gids.dedup();
                user.additional_gids = gids;
            }
        }
    }
    Ok(user)
}

/// Resolves a `USER` value against a root filesystem (see [`crate::Rootfs`]).
pub fn resolve_user(rootfs: &crate::Rootfs, spec: &str) -> Result<ResolvedUser> {
    resolve_user_in(&Stack::new(rootfs), spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rootfs;

    fn rootfs(passwd: Option<&str>, group: Option<&str>) -> (tempfile::TempDir, Rootfs) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        if let Some(p) = passwd {
            std::fs::write(d.path().join("etc/passwd"), p).unwrap();
        }
        if let Some(g) = group {
            std::fs::write(d.path().join("etc/group"), g).unwrap();
        }
        let r = Rootfs::Dir(d.path().into());
        (d, r)
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\nnogroup:x:65534:\napp:x:1000:\n";

    #[test]
    fn docker_user_syntax() {
        let (_d, r) = rootfs(Some(PASSWD), Some(GROUP));
        let u = resolve_user(&r, "").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        let u = resolve_user(&r, "app").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.clone()), (1000, 1000, vec![10]));
        let u = resolve_user(&r, "app:nogroup").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 65534, 0));
        let u = resolve_user(&r, "1000").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/app"));
        let u = resolve_user(&r, "4242:4343").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 4343, "/"));
        let e = resolve_user(&r, "ghost").unwrap_err().to_string();
        assert!(e.contains("unable to find user ghost"), "{e}");
        let e = resolve_user(&r, "app:ghosts").unwrap_err().to_string();
        assert!(e.contains("unable to find group ghosts"), "{e}");
    }

    #[test]
    fn missing_files_allow_numeric_ids_only() {
        let (_d, r) = rootfs(None, None);
        let u = resolve_user(&r, "1000:1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert!(resolve_user(&r, "nobody").is_err());
    }

    #[test]
    fn whiteout_in_upper_hides_lower_passwd() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: making a whiteout needs root");
            return;
        }
        let lower = tempfile::tempdir().unwrap();
        std::fs::create_dir(lower.path().join("etc")).unwrap();
        std::fs::write(lower.path().join("etc/passwd"), PASSWD).unwrap();
        let upper = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let r = Rootfs::Overlay {
            lowers: vec![lower.path().into()],
            upper: upper.path().into(),
            work: work.path().into(),
        };
        assert_eq!(resolve_user(&r, "app").unwrap().uid, 1000);
        std::fs::create_dir(upper.path().join("etc")).unwrap();
        nix::sys::stat::mknod(
            &upper.path().join("etc/passwd"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        assert!(resolve_user(&r, "app").is_err());
    }
}
