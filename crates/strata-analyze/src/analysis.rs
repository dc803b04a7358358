//! The analysis proper: per-layer changes, and dive's efficiency score and wasted bytes.
//!
//! dive's definitions (`filetree/efficiency.go`, `image/image.go`), reproduced exactly:
//! - Each layer is a tree of the paths its tar names; parents it does not name are implicit
//!   nodes with an empty payload (size 0, not a directory). `.wh..wh.*` markers add nothing.
//! - Every *leaf* of every layer's tree (a node with no children in that layer) is one
//!   occurrence of its path. Its size is the tar header size, except for a whiteout
//!   (`.wh.x`, counted under `x`): the summed payload sizes of the whole subtree `x` had in
//!   the stack of the layers below if `x` was a directory there, else 0.
//! - Per path: the cumulative size of its occurrences and the smallest one.
//!   efficiency = sum(smallest) / sum(cumulative) (1 when the sum is 0).
//! - A path with two or more occurrences is inefficient; wasted bytes = the sum of the
//!   cumulative sizes of the inefficient paths (every copy, the first one included).
//! - Layer size = sum of the header sizes of the layer's entries; user size = all layers
//!   but the first; user wasted percent = wasted / user size.
//!
//! One deliberate difference: dive aborts the rest of a layer's walk when a whiteout names
//! a path absent from the layers below (and counts that path with a size of -1). Here such
//! a whiteout is skipped and the walk continues.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use serde::Serialize;
use serde_json::Value;

use crate::scan::{split_parent, Entry, Kind, LayerScan};
use crate::source::ImageMeta;

/// One layer of the report.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub index: usize,
    /// Blob digest when known, else the diffID from the config, else empty.
    pub digest: String,
    pub diff_id: Option<String>,
    /// dive's layer size: the sum of the sizes of the files in it.
    pub size: u64,
    pub blob_size: Option<u64>,
    /// The `created_by` of its history entry, `(missing)` when the config has none.
    pub command: String,
    pub entries: usize,
    /// Paths this layer creates, rewrites, and deletes (directories whose metadata did not
    /// change are not counted as rewritten).
    pub added: usize,
    pub modified: usize,
    pub removed: usize,
}

/// A path stored more than once (in several layers, or deleted by a later one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WastedPath {
    /// `/`-rooted, as dive prints it.
    pub path: String,
    /// Occurrences (dive's "Count").
    pub count: usize,
    /// Cumulative size of every occurrence (dive's "Wasted Space").
    pub wasted_bytes: u64,
    /// The layers it occurs in, bottom first.
    pub layers: Vec<usize>,
}

/// The result of analysing one image.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub image: String,
    pub id: Option<String>,
    pub layers: Vec<LayerReport>,
    pub size_bytes: u64,
    pub user_size_bytes: u64,
    pub wasted_bytes: u64,
    /// wasted / user size; NaN or infinite when the user layers are empty (as in dive).
    pub user_wasted_percent: f64,
    pub efficiency: f64,
    /// Largest first; ties by path.
    pub inefficiencies: Vec<WastedPath>,
    /// Other images in the same archive that were not analysed.
    pub other_images: usize,
}

/// dive's payload of a node in a stacked tree.
#[derive(Debug, Clone, Copy, Default)]
struct Payload {
    size: u64,
    is_dir: bool,
}

#[derive(Default)]
struct PathStat {
    cumulative: u64,
    min: u64,
    count: usize,
    /// The layers of its occurrences (a `Vec` only allocates from the second one on).
    first: usize,
    more: Vec<usize>,
}

/// Paths of `map` strictly under `dir`.
fn descendants<'m, K: Borrow<str> + Ord, V>(
    map: &'m BTreeMap<K, V>,
    dir: &str,
) -> impl Iterator<Item = (&'m K, &'m V)> + 'm {
    let prefix = format!("{dir}/");
    map.range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
        .take_while(move |(k, _)| (*k).borrow().starts_with(&prefix))
}

fn is_leaf<K: Borrow<str> + Ord, V>(map: &BTreeMap<K, V>, path: &str) -> bool {
    descendants(map, path).next().is_none()
}

/// Adds the implicit parents of `path` (empty payload) to a layer tree; keys borrow `path`.
fn add_parents<'a, V: Default>(tree: &mut BTreeMap<&'a str, V>, path: &'a str) {
    let mut p = path;
    while let Some(i) = p.rfind('/') {
        p = &p[..i];
        if tree.contains_key(p) {
            break;
        }
        tree.insert(p, V::default());
    }
}

/// A layer as dive's tree: every node it names or implies, whiteouts under their own
/// `.wh.` names. Keys borrow the scan: no path is copied.
fn dive_tree(scan: &LayerScan) -> BTreeMap<&str, (Payload, bool)> {
    let mut tree: BTreeMap<&str, (Payload, bool)> = BTreeMap::new();
    for e in &scan.entries {
        add_parents(&mut tree, &e.path);
        let payload = Payload { size: e.size, is_dir: e.kind == Kind::Dir };
        tree.insert(&e.path, (payload, e.kind == Kind::Whiteout));
    }
    for (dir, _) in &scan.markers {
        if !dir.is_empty() && !tree.contains_key(dir.as_str()) {
            add_parents(&mut tree, dir);
            tree.insert(dir, (Payload::default(), false));
        }
    }
    tree
}

/// `dir/.wh.name` -> `dir/name`.
fn whiteout_target(path: &str) -> String {
    let (parent, name) = split_parent(path);
    crate::scan::join(parent, name.strip_prefix(crate::scan::WHITEOUT_PREFIX).unwrap_or(name))
}

/// The efficiency score, per-path statistics and wasted bytes, exactly as dive computes them.
pub(crate) fn efficiency(scans: &[LayerScan]) -> (f64, Vec<WastedPath>, u64) {
    // Every key borrows a path of `scans`, which outlive this function.
    let mut stacked: BTreeMap<&str, Payload> = BTreeMap::new();
    let mut stats: HashMap<&str, PathStat> = HashMap::new();
    for (index, scan) in scans.iter().enumerate() {
        let tree = dive_tree(scan);
        for (&path, &(payload, whiteout)) in &tree {
            if !is_leaf(&tree, path) {
                continue;
            }
            let (key, size) = if whiteout {
                let target = whiteout_target(path);
                let Some((&key, below)) = stacked.get_key_value(target.as_str()) else {
                    continue;
                };
                let size = if below.is_dir {
                    below.size + descendants(&stacked, key).map(|(_, p)| p.size).sum::<u64>()
                } else {
                    0
                };
                (key, size)
            } else {
                (path, payload.size)
            };
            let stat = stats.entry(key).or_default();
            stat.cumulative += size;
            stat.min = if stat.count == 0 { size } else { stat.min.min(size) };
            if stat.count == 0 {
                stat.first = index;
            } else {
                stat.more.push(index);
            }
            stat.count += 1;
        }
        // Stack this layer (dive's FileTree.Stack): whiteouts remove, everything else
        // (implicit parents included) sets its payload.
        for (&path, &(_, whiteout)) in &tree {
            if whiteout {
                let target = whiteout_target(path);
                let doomed: Vec<&str> = descendants(&stacked, &target).map(|(k, _)| *k).collect();
                for k in doomed {
                    stacked.remove(k);
                }
                stacked.remove(target.as_str());
            }
        }
        for (path, (payload, whiteout)) in tree {
            if !whiteout {
                stacked.insert(path, payload);
            }
        }
    }
    drop(stacked);
    let (mut min_sum, mut total) = (0u64, 0u64);
    for s in stats.values() {
        min_sum += s.min;
        total += s.cumulative;
    }
    let score = if total == 0 { 1.0 } else { min_sum as f64 / total as f64 };
    let mut wasted = 0u64;
    let mut paths: Vec<WastedPath> = stats
        .into_iter()
        .filter(|(_, s)| s.count >= 2)
        .map(|(path, s)| {
            wasted += s.cumulative;
            let mut layers = vec![s.first];
            layers.extend(s.more);
            WastedPath {
                path: format!("/{path}"),
                count: s.count,
                wasted_bytes: s.cumulative,
                layers,
            }
        })
        .collect();
    paths.sort_by(|a, b| b.wasted_bytes.cmp(&a.wasted_bytes).then_with(|| a.path.cmp(&b.path)));
    (score, paths, wasted)
}

/// What a path looks like in the real (OCI-applied) filesystem of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMeta {
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub link: Option<String>,
    /// The layer that last wrote it.
    pub layer: usize,
}

impl NodeMeta {
    fn from_entry(e: &Entry, layer: usize) -> Self {
        NodeMeta {
            kind: e.kind,
            size: e.size,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            link: e.link.clone(),
            layer,
        }
    }
    fn implicit_dir(layer: usize) -> Self {
        NodeMeta { kind: Kind::Dir, size: 0, mode: 0o755, uid: 0, gid: 0, link: None, layer }
    }
}

/// A path's current version: the entry of the layer that last wrote it, or `None` for a
/// directory that layer only implied (a parent it did not list). Borrows the scans, so
/// the filesystem of a large image costs a few words per path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node<'a> {
    pub layer: usize,
    pub entry: Option<&'a Entry>,
}

impl Node<'_> {
    pub fn meta(&self) -> NodeMeta {
        match self.entry {
            Some(e) => NodeMeta::from_entry(e, self.layer),
            None => NodeMeta::implicit_dir(self.layer),
        }
    }

    /// Type, mode and owner: what makes a rewritten directory "modified".
    fn attrs(&self) -> (Kind, u32, u64, u64) {
        match self.entry {
            Some(e) => (e.kind, e.mode, e.uid, e.gid),
            None => (Kind::Dir, 0o755, 0, 0),
        }
    }
}

/// How a layer changed a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Unchanged,
    Added,
    Modified,
    Removed,
}

/// How one layer changed the filesystem.
#[derive(Debug, Default)]
pub struct LayerChanges<'a> {
    /// Every path the layer touched, with its change (`Removed` ones too).
    pub changes: BTreeMap<&'a str, Change>,
    /// What removed paths were before.
    pub removed: BTreeMap<&'a str, Node<'a>>,
}

impl LayerChanges<'_> {
    pub fn count(&self, c: Change) -> usize {
        self.changes.values().filter(|x| **x == c).count()
    }
}

/// The filesystem as layers are applied with OCI rules (whiteouts, opaque directories).
/// Paths borrow the layer scans.
#[derive(Debug, Default, Clone)]
pub struct Filesystem<'a> {
    pub nodes: BTreeMap<&'a str, Node<'a>>,
}

impl<'a> Filesystem<'a> {
    fn remove_tree(&mut self, out: &mut LayerChanges<'a>, path: &str, with_self: bool) {
        let mut doomed: Vec<&'a str> = descendants(&self.nodes, path).map(|(k, _)| *k).collect();
        if with_self {
            if let Some((&k, _)) = self.nodes.get_key_value(path) {
                doomed.push(k);
            }
        }
        for k in doomed {
            if let Some(meta) = self.nodes.remove(k) {
                out.changes.insert(k, Change::Removed);
                out.removed.insert(k, meta);
            }
        }
    }

    /// Applies layer `index` and says how it changed each path it touched.
    pub fn apply(&mut self, scan: &'a LayerScan, index: usize) -> LayerChanges<'a> {
        let mut out = LayerChanges::default();
        for (dir, opaque) in &scan.markers {
            if *opaque {
                self.remove_tree(&mut out, dir, false);
            }
        }
        for e in &scan.entries {
            if let Some(target) = e.target() {
                self.remove_tree(&mut out, &target, true);
            }
        }
        for e in &scan.entries {
            if e.kind == Kind::Whiteout {
                continue;
            }
            let mut p: &'a str = &e.path;
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                if self.nodes.contains_key(p) {
                    break;
                }
                self.nodes.insert(p, Node { layer: index, entry: None });
                let change = match out.changes.get(p) {
                    Some(Change::Removed) => Change::Modified,
                    _ => Change::Added,
                };
                out.changes.insert(p, change);
            }
            let node = Node { layer: index, entry: Some(e) };
            let compare = |old: &Node| {
                let (kind, ..) = node.attrs();
                if kind == Kind::Dir && old.attrs() == node.attrs() {
                    Change::Unchanged
                } else {
                    Change::Modified
                }
            };
            let change = match out.changes.get(e.path.as_str()) {
                Some(Change::Added) => Change::Added,
                Some(Change::Removed) => {
                    out.removed.get(e.path.as_str()).map_or(Change::Modified, compare)
                }
                _ => self.nodes.get(e.path.as_str()).map_or(Change::Added, compare),
            };
            self.nodes.insert(&e.path, node);
            out.changes.insert(&e.path, change);
        }
        out
    }
}

fn history_commands(config: &Value, layers: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(layers);
    if let Some(history) = config.get("history").and_then(Value::as_array) {
        for h in history {
            if h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false) {
                continue;
            }
            let cmd = h.get("created_by").and_then(Value::as_str).unwrap_or("").trim();
            out.push(clean_command(cmd));
        }
    }
    out.resize(layers.max(out.len()), "(missing)".to_string());
    out.truncate(layers);
    out
}

/// `/bin/sh -c #(nop) COPY ...` -> `COPY ...`, `/bin/sh -c apk add` -> `RUN apk add`.
fn clean_command(cmd: &str) -> String {
    if let Some(rest) = cmd.strip_prefix("/bin/sh -c #(nop) ") {
        rest.trim().to_string()
    } else if let Some(rest) = cmd.strip_prefix("/bin/sh -c ") {
        format!("RUN {}", rest.trim())
    } else if cmd.is_empty() {
        "(missing)".to_string()
    } else {
        cmd.to_string()
    }
}

/// Analyses scanned layers.
pub fn analyze(meta: &ImageMeta, scans: &[LayerScan]) -> Analysis {
    let commands = history_commands(&meta.config, scans.len());
    let diff_ids: Vec<Option<String>> = {
        let ids =
            meta.config.get("rootfs").and_then(|r| r.get("diff_ids")).and_then(Value::as_array);
        (0..scans.len())
            .map(|i| ids.and_then(|a| a.get(i)).and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let mut fs = Filesystem::default();
    let mut layers = Vec::with_capacity(scans.len());
    for (index, scan) in scans.iter().enumerate() {
        let changes = fs.apply(scan, index);
        let count = |c: Change| changes.count(c);
        let loc = meta.layers.get(index);
        layers.push(LayerReport {
            index,
            digest: loc
                .and_then(|l| l.digest.clone())
                .or_else(|| diff_ids[index].clone())
                .unwrap_or_default(),
            diff_id: diff_ids[index].clone(),
            size: scan.size,
            blob_size: loc.and_then(|l| l.blob_size),
            command: commands[index].clone(),
            entries: scan.entries.len(),
            added: count(Change::Added),
            modified: count(Change::Modified),
            removed: count(Change::Removed),
        });
    }
    drop(fs);
    let (efficiency, inefficiencies, wasted_bytes) = efficiency(scans);
    let size_bytes: u64 = scans.iter().map(|s| s.size).sum();
    let user_size_bytes: u64 = scans.iter().skip(1).map(|s| s.size).sum();
    Analysis {
        image: meta.name.clone(),
        id: meta.id.clone(),
        layers,
        size_bytes,
        user_size_bytes,
        wasted_bytes,
        user_wasted_percent: wasted_bytes as f64 / user_size_bytes as f64,
        efficiency,
        inefficiencies,
        other_images: meta.others,
    }
}
