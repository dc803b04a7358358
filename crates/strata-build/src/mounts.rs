//! `RUN --mount`: secrets, cache directories, binds (from the context, a stage or an
//! image) and tmpfs, turned into sandbox mounts.
//!
//! Secrets are copied into a private file (mode 0400 unless `mode=` says otherwise) that
//! is bind-mounted read-only and deleted after the run; the sandbox takes the mount point
//! back out of the upper dir, and the history records only the command, so a secret
//! reaches neither a layer nor the image config. Cache mounts are directories under
//! `<store>/cache-mounts/`, named by the hash of their id, shared by every build on the
//! store and never part of a layer.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use strata_dockerfile::{Mount, MountType, Span};
use strata_sandbox::Mount as SbMount;

use crate::{
    fsview, io_ctx, write_private, BuildError, Builder, CopyAttrs, Result, SecretSource, VarEnv,
};

/// Context files show up owned by root, as COPY makes them.
const ROOT: CopyAttrs = CopyAttrs { owner: Some((0, 0)), chmod: None };
/// A stage's or image's files keep their owners, as in the mounted snapshot.
const KEEP: CopyAttrs = CopyAttrs { owner: None, chmod: None };

/// What a RUN's mounts hold on to while it runs.
#[derive(Default)]
pub(crate) struct Prepared {
    pub(crate) mounts: Vec<SbMount>,
    /// Locks of `sharing=locked` cache mounts, released on drop.
    locks: Vec<fs::File>,
    /// Secret files and private copies, deleted on drop.
    scratch: Vec<PathBuf>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for p in &self.scratch {
            let _ = fs::remove_dir_all(p);
        }
        self.locks.clear();
    }
}

fn flock(f: &fs::File, nonblocking: bool) -> bool {
    let op = libc::LOCK_EX | if nonblocking { libc::LOCK_NB } else { 0 };
    // SAFETY: flock only reads the descriptor, which `f` keeps open.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

impl Builder<'_> {
    pub(crate) fn run_mounts(
        &self,
        mounts: &[Mount],
        env: &VarEnv,
        span: crate::Span,
        process_env: &mut Vec<String>,
    ) -> Result<Prepared> {
        let mut p = Prepared::default();
        for m in mounts {
            let target = match &m.target {
                Some(t) => Some(self.expand(t, env, span)?),
                None => None,
            };
            let abs = |t: String| -> String {
                if t.starts_with('/') {
                    t
                } else {
                    format!("/{t}")
                }
            };
            match m.kind {
                MountType::Secret => {
                    self.secret_mount(m, target, env, span, process_env, &mut p)?
                }
                MountType::Cache => {
                    let target =
                        abs(target.ok_or_else(|| self.err(span, "a cache mount needs target="))?);
                    if m.from.is_some() {
                        return Err(self.err(span, "cache mounts with from= are not supported yet"));
                    }
                    let id = match &m.id {
                        Some(i) => self.expand(i, env, span)?,
                        None => target.clone(),
                    };
                    let name = hex::encode(&Sha256::digest(id.as_bytes())[..16]);
                    let root = self.store.cache_mounts_dir();
                    fs::create_dir_all(&root)
                        .map_err(io_ctx(format!("creating {}", root.display())))?;
                    let mut dir = root.join(&name);
                    let lock = fs::File::options()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(root.join(format!("{name}.lock")))
                        .map_err(io_ctx("opening the cache mount's lock"))?;
                    match m.sharing.as_deref().unwrap_or("shared") {
                        "shared" => {}
                        "locked" => {
                            flock(&lock, false);
                            p.locks.push(lock);
                        }
                        "private" => {
                            if flock(&lock, true) {
                                p.locks.push(lock);
                            } else {
                                // In use by another step: this one gets a fresh directory.
                                dir = self.fresh_dir("cache")?;
                                p.scratch.push(dir.clone());
                            }
                        }
                        other => {
                            return Err(self.err(
                                span,
                                format!("unknown cache sharing mode {other:?}: use shared, private or locked"),
                            ))
                        }
                    }
                    if !dir.is_dir() {
                        // Made under a temporary name so no step sees it half set up.
                        let tmp = tempfile::Builder::new()
                            .prefix(".tmp-")
                            .tempdir_in(&root)
                            .map_err(io_ctx("creating the cache mount"))?
                            .keep();
                        fs::set_permissions(
                            &tmp,
                            fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
                        )
                        .map_err(io_ctx("setting the cache mount's mode"))?;
                        std::os::unix::fs::lchown(
                            &tmp,
                            Some(m.uid.unwrap_or(0)),
                            Some(m.gid.unwrap_or(0)),
                        )
                        .map_err(io_ctx("setting the cache mount's owner"))?;
                        // Another build may have made it meanwhile: theirs is as good.
                        if fs::rename(&tmp, &dir).is_err() {
                            let _ = fs::remove_dir_all(&tmp);
                        }
                    }
                    p.mounts.push(if m.readonly {
                        SbMount::Bind { source: dir, target, read_only: true }
                    } else {
                        SbMount::Cache { source: dir, target }
                    });
                }
                MountType::Tmpfs => {
                    let target =
                        abs(target.ok_or_else(|| self.err(span, "a tmpfs mount needs target="))?);
                    p.mounts.push(SbMount::Tmpfs { target, size: m.size });
                }
                MountType::Bind => {
                    let target =
                        abs(target.ok_or_else(|| self.err(span, "a bind mount needs target="))?);
                    let src = match &m.source {
                        Some(s) => self.expand(s, env, span)?,
                        None => String::new(),
                    };
                    let rel = fsview::clean_rel(&src);
                    let source = match &m.from {
                        None => {
                            // Symlinks are followed inside the context only: a link to
                            // /etc must not mount the host's.
                            let not_found = || {
                                self.err(
                                    span,
                                    format!(
                                        "bind mount source {src:?} is not in the build context"
                                    ),
                                )
                            };
                            let rel = fsview::resolve_in_dir(&self.opts.context, &rel, true)
                                .ok_or_else(not_found)?;
                            let host = self.opts.context.join(&rel);
                            let md = fs::symlink_metadata(&host).map_err(|_| not_found())?;
                            if m.readonly && !self.has_ignore_patterns()? {
                                host
                            } else {
                                // A private copy: .dockerignore'd files stay out, and writes
                                // (rw) are thrown away as BuildKit does.
                                let dir = self.fresh_dir("bind")?;
                                p.scratch.push(dir.clone());
                                let copy = dir.join("src");
                                self.copy_context(&rel, &host, &md, &copy, ROOT, None)?;
                                copy
                            }
                        }
                        Some(f) => {
                            let f = self.expand(f, env, span)?;
                            let stack = self.source_stack(&f, span)?;
                            let rel = self.resolve_in_stage(&stack, &src, span)?;
                            let dir = self.fresh_dir("bind")?;
                            p.scratch.push(dir.clone());
                            let copy = dir.join("src");
                            fsview::copy_from_stack(&stack, &rel, &copy, KEEP, m.readonly)
                                .map_err(|e| {
                                    self.err(span, format!("bind mount source {src:?} in {f}: {e}"))
                                })?;
                            copy
                        }
                    };
                    p.mounts.push(SbMount::Bind { source, target, read_only: m.readonly });
                }
                MountType::Ssh => {
                    return Err(self.err(span, "RUN --mount=type=ssh is not supported yet"));
                }
            }
        }
        Ok(p)
    }

    fn secret_mount(
        &self,
        m: &Mount,
        target: Option<String>,
        env: &VarEnv,
        span: Span,
        process_env: &mut Vec<String>,
        p: &mut Prepared,
    ) -> Result<()> {
        let id = match (&m.id, &target) {
            (Some(i), _) => self.expand(i, env, span)?,
            (None, Some(t)) => t.rsplit('/').next().unwrap_or_default().to_string(),
            (None, None) => return Err(self.err(span, "a secret mount needs id= or target=")),
        };
        let Some(source) = self.opts.secrets.get(&id) else {
            if m.required {
                return Err(BuildError::Dockerfile(
                    strata_dockerfile::Diag::error(
                        "build::secret",
                        format!("secret {id} is required but was not given"),
                    )
                    .at(span)
                    .in_file(&self.df.source)
                    .with_help(format!(
                        "pass it with --secret id={id},src=FILE or --secret id={id},env=VAR"
                    )),
                ));
            }
            return Ok(());
        };
        let value = match source {
            SecretSource::File(f) => {
                fs::read(f).map_err(io_ctx(format!("reading secret {id} from {}", f.display())))?
            }
            SecretSource::Env(v) => std::env::var_os(v)
                .ok_or_else(|| {
                    BuildError::Other(format!("secret {id}: environment variable {v} is not set"))
                })?
                .into_encoded_bytes(),
        };
        if let Some(var) = &m.env {
            process_env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(var.as_str()));
            process_env.push(format!("{var}={}", String::from_utf8_lossy(&value)));
            if target.is_none() {
                return Ok(());
            }
        }
        let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
        let target = if target.starts_with('/') { target } else { format!("/{target}") };
        let dir = self.fresh_dir("secret")?;
        p.scratch.push(dir.clone());
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io_ctx("securing the secret's directory"))?;
        let file = dir.join("secret");
        write_private(&file, &value, m.mode.unwrap_or(0o400))
            .map_err(io_ctx(format!("writing secret {id}")))?;
        std::os::unix::fs::lchown(&file, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
            .map_err(io_ctx("setting the secret's owner"))?;
        p.mounts.push(SbMount::Secret { source: file, target });
        Ok(())
    }
}
