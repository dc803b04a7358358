//! COPY and ADD, with Docker's semantics (Dockerfile frontend 1.7+ as BuildKit runs it):
//! sources from the context (single paths, globs, directories through .dockerignore), from
//! another stage or an image, heredocs, http(s) URLs and local archives; `--exclude`,
//! `--parents`, `--link`, octal and symbolic `--chmod`, `--chown`, `--checksum`,
//! `--unpack`.
//!
//! Plain copies go through `copy_context` / `fsview::copy_from_stack`; filtered ones
//! (`--exclude`, `--parents`, symbolic `--chmod`) through [`tree`].

pub(crate) mod archive;
mod chmod;
mod heredoc;
mod tree;
mod url;

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};

use strata_dockerfile::dockerignore::{clean_path, compile_patterns, Pattern};
use strata_dockerfile::Heredoc;

use crate::*;
use chmod::Chmod;
use tree::{has_wildcards, Attrs, Filter, Node, Source, Tree};

/// A COPY/ADD with its words expanded and its flags checked.
struct CopyArgs {
    srcs: Vec<String>,
    dest: String,
    chown: Option<String>,
    chmod: Option<Chmod>,
    /// `--checksum`, normalised (`sha256:<hex>`).
    checksum: Option<String>,
    /// `--link` as BuildKit applies it: dockerfile2llb makes a plain copy when `--chmod` is
    /// also given.
    link: bool,
    parents: bool,
    /// Extract local archives (ADD, unless `--unpack=false`).
    unpack_local: bool,
    /// Extract downloaded archives (`ADD --unpack=true`).
    unpack_url: bool,
    exclude: Option<IgnoreMatcher>,
}

impl CopyArgs {
    /// Whether context sources need the filtered walk (and its own cache-key hash).
    fn filtered(&self) -> bool {
        self.exclude.is_some() || self.parents
    }
}

/// One entry a source names, and the `--parents` pattern selecting inside it.
struct Unit {
    /// The source as named (its last component names a copied file).
    name: PathBuf,
    /// What it resolves to.
    root: Node,
    include: Vec<Pattern>,
}

/// Where this COPY writes and how (shared by all its sources).
struct Target<'a> {
    layer: &'a Path,
    dest_rel: &'a Path,
    dest_is_dir: bool,
    /// The stage below (empty for `--link`): its directories decide where a source lands
    /// and are not to be replaced by files.
    lowers: &'a [PathBuf],
    mk: Mkdirs<'a>,
    /// `--chown`, resolved.
    chown: Option<(u32, u32)>,
}

impl Builder<'_> {
    pub(crate) fn copy_step(
        &self,
        st: &mut StageState,
        spec: &CopySpec,
        add: bool,
        env: &VarEnv,
        span: Span,
    ) -> Result<PathBuf> {
        let c = self.copy_args(spec, add, env, span)?;
        let dest_abs = if c.dest.starts_with('/') {
            c.dest.clone()
        } else {
            format!("{}/{}", st.workdir, c.dest)
        };
        // BuildKit builds a linked layer on scratch and merges it: it never reads the stage,
        // so neither do we (the snapshots below are not even unpacked).
        let lowers = if c.link { Vec::new() } else { self.lowers(st)? };
        // The stage's symlinks on the way are followed (`/lib/x` lands in `/usr/lib/x` on
        // a merged-/usr Debian), so the layer never shadows a link with a directory.
        let dest_rel = self.resolve_in_stage(&lowers, &dest_abs, span)?;
        let chown = match &c.chown {
            Some(s) if c.link => Some(numeric_owner(s).ok_or_else(|| {
                self.err(
                    span,
                    format!(
                        "--chown={s} with --link: a linked layer cannot look names up in the \
                         stage's /etc/passwd and /etc/group (BuildKit fails here too); use \
                         numeric ids, --chown=UID:GID"
                    ),
                )
            })?),
            Some(s) => Some(self.resolve_owner(&lowers, s, span)?),
            None => None,
        };
        let n_sources = c.srcs.len() + spec.heredocs.len();
        let layer = self.fresh_dir("copy")?;
        let t = Target {
            layer: &layer,
            dest_rel: &dest_rel,
            dest_is_dir: c.dest.ends_with('/')
                || c.dest.ends_with("/.")
                || c.dest == "."
                || n_sources > 1
                || fsview::is_dir(&lowers, &dest_rel),
            lowers: &lowers,
            // Directories the copy creates belong to the --chown user, else root.
            mk: Mkdirs { lowers: &lowers, owner: chown.unwrap_or((0, 0)) },
            chown,
        };
        let from_stack = match &spec.from {
            Some(f) => Some(self.source_stack(f, span)?),
            None => None,
        };
        let ignore = self.ignore()?;
        for src in &c.srcs {
            if url::is_http(src) {
                self.add_url(&c, src, &t, span)?;
                continue;
            }
            match &from_stack {
                Some(stack) => self.copy_source(&Tree::Stack(stack), &c, src, &t, add, span)?,
                None => {
                    let tree = Tree::Context { root: &self.opts.context, ignore: &ignore };
                    self.copy_source(&tree, &c, src, &t, add, span)?
                }
            }
        }
        for h in &spec.heredocs {
            self.write_heredoc(h, &c, env, &t, span)?;
        }
        Ok(layer)
    }

    /// Expands the words BuildKit expands (sources, destination, `--chown`, `--chmod`,
    /// `--checksum`; not `--exclude`) and refuses what BuildKit refuses.
    fn copy_args(&self, spec: &CopySpec, add: bool, env: &VarEnv, span: Span) -> Result<CopyArgs> {
        let mut srcs = Vec::new();
        for s in &spec.srcs {
            srcs.push(self.expand(s, env, span)?);
        }
        let word = |w: &Option<String>| -> Result<Option<String>> {
            match w {
                Some(w) => Ok(Some(self.expand(w, env, span)?)),
                None => Ok(None),
            }
        };
        let chmod = match word(&spec.chmod)? {
            Some(m) => Some(Chmod::parse(&m).map_err(|e| self.err(span, e))?),
            None => None,
        };
        for src in &srcs {
            if add && url::is_git(src) {
                return Err(self.err(
                    span,
                    format!(
                        "ADD {src}: adding a git repository is not supported yet; clone it in a \
                         RUN (or a separate stage) instead"
                    ),
                ));
            }
            if !add && (url::is_http(src) || url::is_git(src)) {
                return Err(self.err(span, format!("COPY {src}: source can't be a URL for COPY")));
            }
        }
        let checksum = match word(&spec.checksum)? {
            Some(sum) => {
                if srcs.len() + spec.heredocs.len() != 1 {
                    return Err(self.err(span, "checksum can't be specified for multiple sources"));
                }
                if !srcs.first().is_some_and(|s| url::is_http(s)) {
                    return Err(self.err(span, "checksum requires HTTP(S) or Git sources"));
                }
                Some(url::parse_checksum(&sum).map_err(|e| self.err(span, e))?)
            }
            None => None,
        };
        let exclude = if spec.exclude.is_empty() {
            None
        } else {
            Some(
                IgnoreMatcher::new(&spec.exclude)
                    .map_err(|e| self.err(span, format!("--exclude: {e}")))?,
            )
        };
        Ok(CopyArgs {
            srcs,
            dest: self.expand(&spec.dest, env, span)?,
            chown: word(&spec.chown)?,
            link: spec.link && chmod.is_none(),
            chmod,
            checksum,
            parents: spec.parents,
            unpack_local: add && spec.unpack != Some(false),
            unpack_url: add && spec.unpack == Some(true),
            exclude,
        })
    }

    /// The cache-key inputs of a COPY/ADD (see `key_inputs`): heredoc bodies, the `--from`
    /// source's key, downloaded contents (or the `--checksum`), and the content hash of the
    /// context entries it copies, after `.dockerignore`, `--exclude` and `--parents`.
    pub(crate) fn copy_key_inputs(
        &self,
        spec: &CopySpec,
        add: bool,
        env: &VarEnv,
        span: Span,
    ) -> Result<String> {
        let c = self.copy_args(spec, add, env, span)?;
        let mut out = String::new();
        for h in &spec.heredocs {
            // The environment is in the key already, so the raw body fixes the file.
            out.push_str(&format!("heredoc {} {} {} {}\n", h.name, h.expand, h.chomp, h.content));
        }
        if let Some(f) = &spec.from {
            out.push_str(&self.source_key(f, span)?);
            return Ok(out);
        }
        for src in &c.srcs {
            if url::is_http(src) {
                match &c.checksum {
                    Some(sum) => out.push_str(&format!("url {src} {sum}\n")),
                    None => {
                        let d = url::fetch(src, &self.tmp).map_err(|e| self.err(span, e))?;
                        out.push_str(&format!("url {src} {}\n", d.digest));
                    }
                }
            } else if c.filtered() {
                out.push_str(&format!("src {src} {}\n", self.hash_filtered(&c, src, span)?));
            } else {
                let rel = fsview::clean_rel(src);
                let matches = self.context_matches(src, &rel, span)?;
                let rels: Vec<PathBuf> = matches.into_iter().map(|m| m.node.rel).collect();
                out.push_str(&format!("src {src} {}\n", self.hash_context(&rels)?));
            }
        }
        Ok(out)
    }

    /// The hash of exactly what a filtered copy takes from the context: what it leaves
    /// out is never read, so changing it does not change the key.
    fn hash_filtered(&self, c: &CopyArgs, src: &str, span: Span) -> Result<String> {
        let ignore = self.ignore()?;
        let tree = Tree::Context { root: &self.opts.context, ignore: &ignore };
        let mut h = Sha256::new();
        let mut leaves = Vec::new();
        for u in self.units(&tree, c, src, span)? {
            h.update(format!("root {}\n", u.root.rel.display()));
            let f = Filter { exclude: c.exclude.as_ref(), include: &u.include };
            let mut entries = vec![u.root.clone()];
            if u.root.is_dir() {
                entries = tree::select(&tree, &u.root, &f)
                    .map_err(io_ctx(format!("reading {}", u.root.host.display())))?;
            }
            for n in entries {
                if n.is_dir() {
                    let m = &n.md;
                    h.update(format!(
                        "dir {} {:o} {}:{}\n",
                        n.rel.display(),
                        m.mode() & 0o7777,
                        m.uid(),
                        m.gid()
                    ));
                } else {
                    leaves.push(n.rel);
                }
            }
        }
        h.update(self.hasher.hash(self.store, &leaves, &ignore)?);
        Ok(hex::encode(h.finalize()))
    }

    /// The entries source `src` names in `tree`: with `--parents`, the directory before
    /// its `/./` (the root when there is none) and the pattern after it.
    fn units(&self, tree: &Tree, c: &CopyArgs, src: &str, span: Span) -> Result<Vec<Unit>> {
        let not_found = |rel: &Path| {
            self.err(
                span,
                format!("failed to compute cache key: \"/{}\": not found", rel.display()),
            )
        };
        if c.parents {
            let (pivot, pattern) = src.split_once("/./").unwrap_or(("/", src));
            let pivot_rel = fsview::clean_rel(pivot);
            let pattern = clean_path(&format!("/{pattern}")).trim_start_matches('/').to_string();
            let include = if pattern.is_empty() {
                Vec::new()
            } else {
                compile_patterns(&[&pattern])
                    .map_err(|e| self.err(span, format!("--parents {src}: {e}")))?
            };
            // BuildKit requires the path only when nothing in it is a wildcard.
            let required = pivot_rel.join(&pattern);
            if !has_wildcards(pivot) && !has_wildcards(&pattern) && tree.stat(&required).is_none() {
                return Err(not_found(&required));
            }
            let roots = if has_wildcards(pivot) {
                tree.glob(&pivot_rel).map_err(|e| self.err(span, format!("{src}: {e}")))?
            } else {
                let node = tree.stat(&pivot_rel);
                node.map(|node| Source { name: pivot_rel, node }).into_iter().collect()
            };
            return Ok(roots
                .into_iter()
                .map(|s| Unit { name: s.name, root: s.node, include: include.clone() })
                .collect());
        }
        let roots = self.matches(tree, src, &fsview::clean_rel(src), span)?;
        Ok(roots
            .into_iter()
            .map(|s| Unit { name: s.name, root: s.node, include: Vec::new() })
            .collect())
    }

    /// Copies one source (from the context or a stage) into the layer.
    fn copy_source(
        &self,
        tree: &Tree,
        c: &CopyArgs,
        src: &str,
        t: &Target,
        add: bool,
        span: Span,
    ) -> Result<()> {
        let from_context = matches!(tree, Tree::Context { .. });
        // BuildKit keeps the owners of files from another stage or image; context files
        // are root's.
        let owner = t.chown.or(if from_context { Some((0, 0)) } else { None });
        let attrs = Attrs { owner, chmod: c.chmod.as_ref() };
        let plain = CopyAttrs { owner, chmod: c.chmod.as_ref().and_then(Chmod::octal) };
        let symbolic = c.chmod.as_ref().is_some_and(|m| m.octal().is_none());
        let copy_err = |n: &Node| io_ctx(format!("copying /{}", n.rel.display()));
        for u in self.units(tree, c, src, span)? {
            let (root, f) = (&u.root, Filter { exclude: c.exclude.as_ref(), include: &u.include });
            if c.parents && root.is_dir() {
                // The parents are kept under the destination, which is always a directory.
                t.mk.make(t.layer, t.dest_rel)?;
                let dir = t.layer.join(t.dest_rel);
                tree::copy_tree(tree, root, &f, &dir, attrs).map_err(copy_err(root))?;
                continue;
            }
            if from_context && add && c.unpack_local && archive::is_archive(&root.host) {
                t.mk.make(t.layer, t.dest_rel)?;
                let dir = t.layer.join(t.dest_rel);
                archive::extract(&root.host, &dir, t.chown).map_err(|e| {
                    self.err(
                        span,
                        format!("ADD {}: extracting the archive: {e}", root.rel.display()),
                    )
                })?;
                continue;
            }
            let is_dir = root.is_dir();
            let target =
                self.dest_for(t.layer, t.dest_rel, &u.name, is_dir, t.dest_is_dir, &t.mk)?;
            if !is_dir {
                self.check_file_target(t, &target, span)?;
            }
            match tree {
                _ if c.exclude.is_some() || symbolic => {
                    tree::copy_tree(tree, root, &f, &target, attrs).map_err(copy_err(root))?
                }
                Tree::Context { .. } => self.copy_context(
                    &root.rel,
                    &root.host,
                    &root.md,
                    &target,
                    plain,
                    Some(t.layer),
                )?,
                Tree::Stack(stack) => {
                    fsview::copy_from_stack(stack, &root.rel, &target, plain, true)
                        .map_err(copy_err(root))?
                }
            }
        }
        Ok(())
    }

    /// ADD <url>: downloaded (once per build), checked against `--checksum` before
    /// anything is written to the layer, then placed as a 0600 file or, with
    /// `--unpack=true`, extracted.
    fn add_url(&self, c: &CopyArgs, src: &str, t: &Target, span: Span) -> Result<()> {
        let d = url::fetch(src, &self.tmp).map_err(|e| self.err(span, e))?;
        if let Some(want) = &c.checksum {
            if d.digest != *want {
                return Err(self.err(
                    span,
                    format!(
                        "ADD {src}: checksum mismatch: --checksum is {want} but the downloaded \
                         file is {}",
                        d.digest
                    ),
                ));
            }
        }
        if c.unpack_url && archive::is_archive(&d.path) {
            t.mk.make(t.layer, t.dest_rel)?;
            let dir = t.layer.join(t.dest_rel);
            return archive::extract(&d.path, &dir, t.chown)
                .map_err(|e| self.err(span, format!("ADD {src}: extracting the archive: {e}")));
        }
        let name = url::file_name(src);
        let target =
            self.dest_for(t.layer, t.dest_rel, Path::new(&name), false, t.dest_is_dir, &t.mk)?;
        self.check_file_target(t, &target, span)?;
        let md = fs::metadata(&d.path).map_err(io_ctx(format!("reading the download of {src}")))?;
        let mode = c.chmod.as_ref().map_or(0o600, |m| m.apply(0o600, false));
        let a = CopyAttrs { owner: Some(t.chown.unwrap_or((0, 0))), chmod: Some(mode) };
        filecopy::copy_leaf(&d.path, &md, &target, a)
            .map_err(io_ctx(format!("copying the download of {src}")))
    }

    /// `COPY <<NAME dest`: a file NAME (or `dest` itself), 0644 unless `--chmod`, owned by
    /// root or the `--chown` user.
    fn write_heredoc(
        &self,
        h: &Heredoc,
        c: &CopyArgs,
        env: &VarEnv,
        t: &Target,
        span: Span,
    ) -> Result<()> {
        let body = heredoc::body(h, env)
            .map_err(|e| self.err(span, format!("expanding the heredoc <<{}: {e}", h.name)))?;
        let target =
            self.dest_for(t.layer, t.dest_rel, Path::new(&h.name), false, t.dest_is_dir, &t.mk)?;
        self.check_file_target(t, &target, span)?;
        let mode = c.chmod.as_ref().map_or(0o644, |m| m.apply(0o644, false));
        let (uid, gid) = t.chown.unwrap_or((0, 0));
        let write = || -> io::Result<()> {
            if target.symlink_metadata().is_ok() {
                // An earlier source of this COPY wrote the same name: the later one wins.
                fs::remove_file(&target)?;
            }
            let mut f =
                fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&target)?;
            f.write_all(body.as_bytes())?;
            // Owner before mode: chown clears set-id bits.
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            f.set_permissions(fs::Permissions::from_mode(mode))
        };
        write().map_err(io_ctx(format!("writing the heredoc <<{} to {}", h.name, target.display())))
    }

    /// A file may not replace a directory (BuildKit: "cannot replace to directory ... with
    /// file"), neither one this COPY made nor one the stage has.
    fn check_file_target(&self, t: &Target, target: &Path, span: Span) -> Result<()> {
        let rel = target.strip_prefix(t.layer).unwrap_or(target);
        let in_layer = target.symlink_metadata().is_ok_and(|m| m.is_dir());
        if in_layer || fsview::is_dir(t.lowers, rel) {
            return Err(self.err(
                span,
                format!("cannot replace the directory /{} with a file", rel.display()),
            ));
        }
        Ok(())
    }

    /// The path in the layer dir where source `src_rel` lands.
    pub(crate) fn dest_for(
        &self,
        layer: &Path,
        dest_rel: &Path,
        src_rel: &Path,
        src_is_dir: bool,
        dest_is_dir: bool,
        mk: &Mkdirs,
    ) -> Result<PathBuf> {
        let base = layer.join(dest_rel);
        let target = if src_is_dir || !dest_is_dir {
            base.clone()
        } else {
            match src_rel.file_name() {
                Some(n) => base.join(n),
                None => base.clone(),
            }
        };
        let parent = if src_is_dir { Some(target.as_path()) } else { target.parent() };
        if let Some(p) = parent.and_then(|p| p.strip_prefix(layer).ok()) {
            mk.make(layer, p)?;
        }
        Ok(target)
    }

    /// `abs`, a path in the stage, with the stage's symlinks followed (relative).
    pub(crate) fn resolve_in_stage(
        &self,
        lowers: &[PathBuf],
        abs: &str,
        span: Span,
    ) -> Result<PathBuf> {
        fsview::resolve_in_stack(lowers, &fsview::clean_rel(abs), true).ok_or_else(|| {
            self.err(span, format!("{abs}: too many levels of symbolic links in the stage"))
        })
    }

    /// The context entries a COPY source names (see [`Builder::matches`]).
    pub(crate) fn context_matches(&self, src: &str, rel: &Path, span: Span) -> Result<Vec<Source>> {
        let ignore = self.ignore()?;
        self.matches(&Tree::Context { root: &self.opts.context, ignore: &ignore }, src, rel, span)
    }

    /// The entries a COPY source names in `tree`: one path, or a glob's matches, each with
    /// its symlinks followed inside the tree.
    fn matches(&self, tree: &Tree, src: &str, rel: &Path, span: Span) -> Result<Vec<Source>> {
        if !has_wildcards(src) {
            let node = tree.stat(rel).ok_or_else(|| {
                let why = match tree {
                    Tree::Context { .. } => " in the build context or excluded by .dockerignore",
                    Tree::Stack(_) => "",
                };
                self.err(
                    span,
                    format!("failed to compute cache key: \"/{}\": not found{why}", rel.display()),
                )
            })?;
            return Ok(vec![Source { name: rel.to_path_buf(), node }]);
        }
        let found =
            tree.glob(rel).map_err(|e| self.err(span, format!("bad pattern {src:?}: {e}")))?;
        if found.is_empty() {
            return Err(
                self.err(span, format!("no source files were specified: {src:?} matches nothing"))
            );
        }
        Ok(found)
    }

    /// Copies a context file or directory (honouring .dockerignore inside directories).
    /// Into a COPY's `layer` directory, unchanged files an earlier COPY copied are linked
    /// and the copies are recorded for the next build (see `filecopy`); a mount's private
    /// copy (`layer` None), which RUN may write to, gets real copies.
    pub(crate) fn copy_context(
        &self,
        rel: &Path,
        host: &Path,
        md: &fs::Metadata,
        target: &Path,
        a: CopyAttrs,
        layer: Option<&Path>,
    ) -> Result<()> {
        let pool = layer.map(|l| (l, self.copy_pool()));
        let mut batch = match pool {
            Some((l, p)) => CopyBatch::pooled(l, p),
            None => CopyBatch::default(),
        };
        if md.is_dir() {
            let ignore = self.ignore()?;
            if !target.is_dir() {
                fsview::make_dir(md, target, a)
                    .map_err(io_ctx(format!("creating {}", target.display())))?;
            }
            copy_ctx_dir(&ignore, rel, host, target, a, &mut batch)
                .map_err(io_ctx(format!("copying {}", host.display())))?;
        } else {
            batch.add_context(host, rel, md.clone(), target.to_path_buf(), a);
        }
        let copied = batch.run_recorded().map_err(io_ctx(format!("copying {}", host.display())))?;
        if let Some(l) = layer {
            lock(&self.copy_records).entry(l.to_path_buf()).or_default().extend(copied);
        }
        Ok(())
    }

    /// Copies of context files that recent snapshots hold, loaded once per build.
    fn copy_pool(&self) -> &HashMap<PathBuf, PooledCopy> {
        self.copy_pool.get_or_init(|| match self.context_root() {
            Some(root) => self.store.copy_sources(&root),
            None => HashMap::new(),
        })
    }
}

/// How a COPY creates the directories on the way to its destination.
pub(crate) struct Mkdirs<'l> {
    pub(crate) lowers: &'l [PathBuf],
    pub(crate) owner: (u32, u32),
}

impl Mkdirs<'_> {
    pub(crate) fn make(&self, layer: &Path, rel: &Path) -> Result<()> {
        fsview::make_parents(layer, rel, self.lowers, self.owner)
            .map_err(io_ctx(format!("creating /{} in the layer", rel.display())))
    }
}

pub(crate) fn copy_ctx_dir(
    ignore: &IgnoreMatcher,
    rel: &Path,
    host: &Path,
    target: &Path,
    a: CopyAttrs,
    batch: &mut CopyBatch,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(host)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let md = e.metadata()?;
        let s = r.to_string_lossy();
        let dst = target.join(e.file_name());
        match ignore.walk_decision(&s, md.is_dir()) {
            WalkDecision::Skip => continue,
            WalkDecision::DescendOnly | WalkDecision::Include if md.is_dir() => {
                fsview::make_dir(&md, &dst, a)?;
                copy_ctx_dir(ignore, &r, &e.path(), &dst, a, batch)?;
            }
            _ => batch.add_context(&e.path(), &r, md, dst, a),
        }
    }
    Ok(())
}

/// `--chown` for `--link`: numeric ids (and `root`), which need no lookup in the stage;
/// a lone user id is also the group id.
fn numeric_owner(spec: &str) -> Option<(u32, u32)> {
    let id = |s: &str| if s == "root" { Some(0) } else { s.parse().ok() };
    match spec.split_once(':') {
        Some((u, g)) => Some((id(u)?, id(g)?)),
        None => id(spec).map(|u| (u, u)),
    }
}
