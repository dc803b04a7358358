//! Filtered copies: `--exclude`, `--parents` and symbolic `--chmod`, from the build context
//! or from a layer stack (`--from`). Plain copies keep using `copy_context` and
//! `fsview::copy_from_stack`.
//!
//! Filtering is fsutil's (BuildKit's copy): patterns are dockerignore patterns matched
//! against paths relative to the source being copied (so `--exclude=*.txt` on `COPY dir/`
//! drops `dir/a.txt` but not `dir/sub/a.txt`; the source itself is never excluded). A
//! directory that is not selected itself but holds selected entries (an `--exclude` with a
//! `!` exception, an include pattern of `--parents`) is created with its own metadata when
//! the first of them is copied, exactly as fsutil's delayed parent directories.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use strata_dockerfile::dockerignore::Pattern;
use strata_dockerfile::{IgnoreMatcher, WalkDecision};

use super::chmod::Chmod;
use crate::filecopy::CopyBatch;
use crate::fsview::{self, CopyAttrs};

/// Where a COPY reads from.
pub(crate) enum Tree<'a> {
    /// The build context, as `.dockerignore` leaves it.
    Context { root: &'a Path, ignore: &'a IgnoreMatcher },
    /// A stage's or image's layer dirs, bottom first.
    Stack(&'a [PathBuf]),
}

/// An entry of a tree.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// Relative to the tree's root.
    pub(crate) rel: PathBuf,
    /// Where it is on the host.
    pub(crate) host: PathBuf,
    pub(crate) md: fs::Metadata,
    /// Stack only: the layers (counted from the bottom) that may hold its children.
    depth: usize,
}

impl Node {
    pub(crate) fn is_dir(&self) -> bool {
        self.md.is_dir()
    }
}

/// What to leave out of a copy, relative to the copied source.
#[derive(Default)]
pub(crate) struct Filter<'a> {
    /// `--exclude` patterns.
    pub(crate) exclude: Option<&'a IgnoreMatcher>,
    /// `--parents`: only what these select (and the directories on the way).
    pub(crate) include: &'a [Pattern],
}

/// Owner and mode changes of a filtered copy.
#[derive(Clone, Copy)]
pub(crate) struct Attrs<'a> {
    /// `None` keeps the source's owner.
    pub(crate) owner: Option<(u32, u32)>,
    pub(crate) chmod: Option<&'a Chmod>,
}

impl Attrs<'_> {
    fn for_entry(&self, md: &fs::Metadata) -> CopyAttrs {
        CopyAttrs { owner: self.owner, chmod: self.chmod.map(|c| c.apply(md.mode(), md.is_dir())) }
    }
}

/// A source as the Dockerfile names it (its last component names the copy) and the entry
/// it resolves to.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    pub(crate) name: PathBuf,
    pub(crate) node: Node,
}

impl Tree<'_> {
    /// The entry `rel` names, its symlinks followed inside the tree (BuildKit's copy
    /// follows them all in a source path), if the tree has it.
    pub(crate) fn stat(&self, rel: &Path) -> Option<Node> {
        let real = self.resolve(rel)?;
        if let Tree::Context { ignore, .. } = self {
            // The link itself must be in the context too.
            let s = rel.to_string_lossy();
            if real != rel && !s.is_empty() && ignore.matches(&s) {
                return None;
            }
        }
        self.entry(&real)
    }

    /// `rel` with its symlinks followed inside the tree.
    pub(crate) fn resolve(&self, rel: &Path) -> Option<PathBuf> {
        match self {
            Tree::Context { root, .. } => fsview::resolve_in_dir(root, rel, true),
            Tree::Stack(lowers) => fsview::resolve_in_stack(lowers, rel, true),
        }
    }

    /// The entry at `rel`, a path without symlinks on the way (its last component may be
    /// one), if the tree has it.
    fn entry(&self, rel: &Path) -> Option<Node> {
        match self {
            Tree::Context { root, ignore } => {
                let host = root.join(rel);
                let md = fs::symlink_metadata(&host).ok()?;
                let s = rel.to_string_lossy();
                // An ignored directory still exists when a `!` pattern re-includes
                // something inside it.
                if !s.is_empty() && ignore.matches(&s) && !(md.is_dir() && ignore.must_descend(&s))
                {
                    return None;
                }
                Some(Node { rel: rel.to_path_buf(), host, md, depth: 0 })
            }
            Tree::Stack(lowers) => {
                let (host, i) = fsview::lookup(lowers, rel)?;
                let md = fs::symlink_metadata(&host).ok()?;
                Some(Node { rel: rel.to_path_buf(), host, md, depth: i + 1 })
            }
        }
    }

    /// The entries of directory `dir`, sorted by name, with the context's `.dockerignore`
    /// decision for each.
    fn children(&self, dir: &Node) -> io::Result<Vec<(Node, WalkDecision)>> {
        match self {
            Tree::Context { ignore, .. } => {
                let mut out = Vec::new();
                for e in fs::read_dir(&dir.host)? {
                    let e = e?;
                    let md = e.metadata()?;
                    let rel = dir.rel.join(e.file_name());
                    let d = ignore.walk_decision(&rel.to_string_lossy(), md.is_dir());
                    if d != WalkDecision::Skip {
                        out.push((Node { rel, host: e.path(), md, depth: 0 }, d));
                    }
                }
                out.sort_by(|a, b| a.0.rel.cmp(&b.0.rel));
                Ok(out)
            }
            Tree::Stack(lowers) => {
                // The merged listing: the topmost entry of each name, whiteouts hiding
                // lower ones, an opaque directory or a non-directory ending the descent.
                let mut seen: BTreeMap<OsString, Option<Node>> = BTreeMap::new();
                let top = dir.depth.min(lowers.len());
                for (i, layer) in lowers[..top].iter().enumerate().rev() {
                    let d = layer.join(&dir.rel);
                    let Ok(md) = fs::symlink_metadata(&d) else { continue };
                    if !md.is_dir() {
                        break;
                    }
                    for e in fs::read_dir(&d)? {
                        let e = e?;
                        let name = e.file_name();
                        if seen.contains_key(&name) {
                            continue;
                        }
                        let md = e.metadata()?;
                        let node = (!fsview::is_whiteout(&md)).then(|| Node {
                            rel: dir.rel.join(&name),
                            host: e.path(),
                            md,
                            depth: i + 1,
                        });
                        seen.insert(name, node);
                    }
                    if fsview::is_opaque(&d) {
                        break;
                    }
                }
                Ok(seen.into_values().flatten().map(|n| (n, WalkDecision::Include)).collect())
            }
        }
    }

    /// The entries a source path with wildcards names (Go's filepath.Match per component,
    /// as BuildKit's wildcard resolution), sorted, each with its symlinks followed.
    pub(crate) fn glob(&self, pattern: &Path) -> io::Result<Vec<Source>> {
        let Some(root) = self.stat(Path::new("")) else { return Ok(Vec::new()) };
        // The directories matched so far (resolved), then the last component's matches.
        let mut current = vec![root];
        let comps: Vec<_> = pattern.iter().collect();
        for (i, comp) in comps.iter().enumerate() {
            let comp = comp.to_string_lossy();
            let mut next = Vec::new();
            if has_wildcards(&comp) {
                let p = glob::Pattern::new(&comp)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
                for n in current.iter().filter(|n| n.is_dir()) {
                    for (child, _) in self.children(n)? {
                        let name = child.rel.file_name().unwrap_or_default().to_string_lossy();
                        if p.matches(&name) {
                            next.push(child);
                        }
                    }
                }
            } else {
                for n in current.iter().filter(|n| n.is_dir()) {
                    next.extend(self.entry(&n.rel.join(&*comp)));
                }
            }
            if i + 1 < comps.len() {
                // Symlinks to directories lead on.
                next = next.into_iter().filter_map(|n| self.follow(n)).collect();
            }
            current = next;
        }
        let mut out: Vec<Source> = current
            .into_iter()
            .filter_map(|n| Some(Source { name: n.rel.clone(), node: self.follow(n)? }))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `n` itself, or what it links to when it is a symlink.
    fn follow(&self, n: Node) -> Option<Node> {
        if n.md.file_type().is_symlink() {
            self.stat(&n.rel)
        } else {
            Some(n)
        }
    }
}

pub(crate) fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The entries a copy of `root` selects (not `root` itself), directories before their
/// contents.
pub(crate) fn select(tree: &Tree, root: &Node, f: &Filter) -> io::Result<Vec<Node>> {
    let mut out = Vec::new();
    if root.is_dir() {
        walk(tree, root, &root.rel, f, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

fn walk(
    tree: &Tree,
    dir: &Node,
    base: &Path,
    f: &Filter,
    pending: &mut Vec<Node>,
    out: &mut Vec<Node>,
) -> io::Result<()> {
    for (child, in_context) in tree.children(dir)? {
        let rel = child.rel.strip_prefix(base).unwrap_or(&child.rel).to_string_lossy().into_owned();
        let is_dir = child.is_dir();
        let mut d = in_context;
        if let Some(ex) = f.exclude {
            d = narrower(d, ex.walk_decision(&rel, is_dir));
        }
        if !f.include.is_empty() {
            let inc = if f.include.iter().any(|p| p.matches_or_parent(&rel)) {
                WalkDecision::Include
            } else if is_dir && f.include.iter().any(|p| p.may_match_inside(&rel)) {
                WalkDecision::DescendOnly
            } else {
                WalkDecision::Skip
            };
            d = narrower(d, inc);
        }
        match d {
            WalkDecision::Include => {
                out.append(pending);
                out.push(child.clone());
                if is_dir {
                    walk(tree, &child, base, f, pending, out)?;
                }
            }
            WalkDecision::DescendOnly if is_dir => {
                let n = pending.len();
                pending.push(child.clone());
                walk(tree, &child, base, f, pending, out)?;
                pending.truncate(n);
            }
            _ => {}
        }
    }
    Ok(())
}

fn narrower(a: WalkDecision, b: WalkDecision) -> WalkDecision {
    use WalkDecision::*;
    match (a, b) {
        (Skip, _) | (_, Skip) => Skip,
        (DescendOnly, _) | (_, DescendOnly) => DescendOnly,
        _ => Include,
    }
}

/// Copies `root` to `target`: a file or symlink to that path; a directory's selected
/// contents into the existing directory `target`.
pub(crate) fn copy_tree(
    tree: &Tree,
    root: &Node,
    f: &Filter,
    target: &Path,
    a: Attrs,
) -> io::Result<()> {
    let mut batch = CopyBatch::default();
    let queue = |batch: &mut CopyBatch, n: Node, dst: PathBuf| {
        let attrs = a.for_entry(&n.md);
        match tree {
            // Snapshot files may be hard-linked when the copy keeps their attributes.
            Tree::Stack(_) => batch.add_immutable(&n.host, n.md, dst, attrs),
            Tree::Context { .. } => batch.add(&n.host, n.md, dst, attrs),
        }
    };
    if !root.is_dir() {
        queue(&mut batch, root.clone(), target.to_path_buf());
        return batch.run().map(drop);
    }
    for n in select(tree, root, f)? {
        let dst = target.join(n.rel.strip_prefix(&root.rel).unwrap_or(&n.rel));
        if n.is_dir() {
            fsview::make_dir(&n.md, &dst, a.for_entry(&n.md))?;
        } else {
            queue(&mut batch, n, dst);
        }
    }
    batch.run().map(drop)
}

#[cfg(test)]
mod tests {
    use strata_dockerfile::dockerignore::compile_patterns;

    use super::*;

    fn write(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, rel).unwrap();
    }

    fn names(nodes: &[Node]) -> Vec<String> {
        nodes.iter().map(|n| n.rel.to_string_lossy().into_owned()).collect()
    }

    fn source_names(sources: &[Source]) -> Vec<String> {
        sources.iter().map(|s| s.name.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn exclude_and_include_patterns_select_like_fsutil() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        for f in ["d/a.txt", "d/b.md", "d/sub/c.txt", "d/sub/keep.txt", "d/x/y/z.txt", "ign/i"] {
            write(ctx, f);
        }
        let ignore = IgnoreMatcher::new(&["ign"]).unwrap();
        let tree = Tree::Context { root: ctx, ignore: &ignore };
        let d = tree.stat(Path::new("d")).unwrap();

        let ex = IgnoreMatcher::new(&["*.txt"]).unwrap();
        let sel = select(&tree, &d, &Filter { exclude: Some(&ex), include: &[] }).unwrap();
        // Relative to the source: only the top level's *.txt goes.
        assert_eq!(
            names(&sel),
            ["d/b.md", "d/sub", "d/sub/c.txt", "d/sub/keep.txt", "d/x", "d/x/y", "d/x/y/z.txt"]
        );

        let ex = IgnoreMatcher::new(&["sub", "!sub/keep.txt", "x"]).unwrap();
        let sel = select(&tree, &d, &Filter { exclude: Some(&ex), include: &[] }).unwrap();
        assert_eq!(names(&sel), ["d/a.txt", "d/b.md", "d/sub", "d/sub/keep.txt"]);

        let root = tree.stat(Path::new("")).unwrap();
        let inc = compile_patterns(&["d/**/*.txt"]).unwrap();
        let sel = select(&tree, &root, &Filter { exclude: None, include: &inc }).unwrap();
        assert_eq!(
            names(&sel),
            [
                "d",
                "d/a.txt",
                "d/sub",
                "d/sub/c.txt",
                "d/sub/keep.txt",
                "d/x",
                "d/x/y",
                "d/x/y/z.txt"
            ]
        );
        // The context's .dockerignore applies on top.
        let inc = compile_patterns(&["ign/i"]).unwrap();
        assert!(select(&tree, &root, &Filter { exclude: None, include: &inc }).unwrap().is_empty());

        assert_eq!(
            source_names(&tree.glob(Path::new("d/*/*.txt")).unwrap()),
            ["d/sub/c.txt", "d/sub/keep.txt"]
        );
        assert!(tree.glob(Path::new("ign/*")).unwrap().is_empty());
    }

    #[test]
    fn a_stack_is_read_merged() {
        let dir = tempfile::tempdir().unwrap();
        let (l0, l1) = (dir.path().join("0"), dir.path().join("1"));
        write(&l0, "out/a");
        write(&l0, "out/b");
        write(&l1, "out/c");
        let lowers = [l0, l1.clone()];
        let tree = Tree::Stack(&lowers);
        let out = tree.stat(Path::new("out")).unwrap();
        let sel = select(&tree, &out, &Filter::default()).unwrap();
        assert_eq!(names(&sel), ["out/a", "out/b", "out/c"]);
        assert_eq!(sel[2].host, l1.join("out/c"));
        assert_eq!(source_names(&tree.glob(Path::new("out/[ab]")).unwrap()), ["out/a", "out/b"]);
    }
}
