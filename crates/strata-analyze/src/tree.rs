//! The file tree of an image as seen at one layer: everything present after it, plus what it
//! removed, each path marked with how that layer changed it.

use std::collections::HashMap;

use crate::analysis::{Change, Filesystem, NodeMeta};
use crate::scan::{Kind, LayerScan};

/// One row of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Path without a leading `/`.
    pub path: String,
    pub depth: usize,
    pub meta: NodeMeta,
    pub change: Change,
    /// Files: their size; directories: the sum of what is under them (removed files only
    /// count under removed directories).
    pub size: u64,
    pub has_children: bool,
}

impl Row {
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Sort key putting a directory's children right after it: `/` sorts before every byte.
fn tree_key(path: &str) -> Vec<u8> {
    path.bytes().map(|b| if b == b'/' { 0 } else { b }).collect()
}

/// The tree at layer `index` (bottom = 0), in display order.
pub fn tree_at(scans: &[LayerScan], index: usize) -> Vec<Row> {
    let mut fs = Filesystem::default();
    for (i, scan) in scans.iter().enumerate().take(index) {
        fs.apply(scan, i);
    }
    let changes = match scans.get(index) {
        Some(scan) => fs.apply(scan, index),
        None => Default::default(),
    };
    let mut rows: Vec<Row> = Vec::with_capacity(fs.nodes.len() + changes.removed.len());
    for (path, meta) in &fs.nodes {
        let change = changes.changes.get(path).copied().unwrap_or(Change::Unchanged);
        rows.push(Row {
            path: path.to_string(),
            depth: 0,
            meta: meta.meta(),
            change,
            size: 0,
            has_children: false,
        });
    }
    for (path, meta) in &changes.removed {
        if fs.nodes.contains_key(path) {
            continue; // removed, then written again by the same layer
        }
        rows.push(Row {
            path: path.to_string(),
            depth: 0,
            meta: meta.meta(),
            change: Change::Removed,
            size: 0,
            has_children: false,
        });
    }
    rows.sort_by_cached_key(|r| tree_key(&r.path));
    // Sizes: a file counts toward each ancestor shown in the same state.
    let mut dir_sizes: HashMap<&str, u64> = HashMap::new();
    let removed: HashMap<&str, bool> =
        rows.iter().map(|r| (r.path.as_str(), r.change == Change::Removed)).collect();
    for r in &rows {
        if r.meta.kind == Kind::Dir {
            continue;
        }
        let mut p = r.path.as_str();
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            let parent_removed = removed.get(p).copied().unwrap_or(false);
            if parent_removed || r.change != Change::Removed {
                *dir_sizes.entry(p).or_default() += r.meta.size;
            }
        }
    }
    let sizes: Vec<u64> = rows
        .iter()
        .map(|r| {
            if r.meta.kind == Kind::Dir {
                dir_sizes.get(r.path.as_str()).copied().unwrap_or(0)
            } else {
                r.meta.size
            }
        })
        .collect();
    let n = rows.len();
    for i in 0..n {
        rows[i].size = sizes[i];
        rows[i].depth = rows[i].path.matches('/').count();
        let prefix = format!("{}/", rows[i].path);
        rows[i].has_children = i + 1 < n && rows[i + 1].path.starts_with(&prefix);
    }
    rows
}

/// Which rows to show: collapsed directories hide their subtree; a filter keeps rows whose
/// path contains it (and their ancestors); `changes_only` keeps changed rows (and ancestors).
pub fn visible(
    rows: &[Row],
    collapsed: &std::collections::HashSet<String>,
    filter: &str,
    changes_only: bool,
) -> Vec<usize> {
    let filtering = !filter.is_empty() || changes_only;
    let mut keep = vec![!filtering; rows.len()];
    if filtering {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            index.insert(r.path.as_str(), i);
        }
        for (i, r) in rows.iter().enumerate() {
            let matches = (filter.is_empty() || r.path.contains(filter))
                && (!changes_only || r.change != Change::Unchanged);
            if !matches {
                continue;
            }
            keep[i] = true;
            let mut p = r.path.as_str();
            while let Some(j) = p.rfind('/') {
                p = &p[..j];
                match index.get(p) {
                    Some(&k) if !keep[k] => keep[k] = true,
                    Some(_) => break,
                    None => {}
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut skip_prefix: Option<String> = None;
    for (i, r) in rows.iter().enumerate() {
        if let Some(p) = &skip_prefix {
            if r.path.starts_with(p.as_str()) {
                continue;
            }
            skip_prefix = None;
        }
        if !keep[i] {
            continue;
        }
        out.push(i);
        if r.has_children && collapsed.contains(&r.path) {
            skip_prefix = Some(format!("{}/", r.path));
        }
    }
    out
}
