//! `strata build --output type=local|tar`: the built image's filesystem (its layers merged,
//! whiteouts applied) as a directory or a tar, as BuildKit's local and tar exporters.

use std::io::Write;
use std::path::Path;

use strata_layer::{write_layer, Compression, WriteOptions};
use strata_store::{ImageRecord, Store};

use crate::fsview::{self, CopyAttrs};
use crate::{io_ctx, BuildError, Result};

/// Copies the merged filesystem of `image` into the directory `dest` (created if needed).
/// Owners are kept when the caller may set them (root), as BuildKit's local exporter does.
pub fn export_rootfs(store: &Store, image: &ImageRecord, dest: &Path) -> Result<()> {
    let lease = store.lease()?;
    let stack = store.snapshots(image, &lease)?;
    std::fs::create_dir_all(dest).map_err(io_ctx(format!("creating {}", dest.display())))?;
    if stack.is_empty() {
        return Ok(());
    }
    let keep = CopyAttrs { owner: None, chmod: None };
    // Real copies, not links: the user may change the exported files.
    fsview::copy_from_stack(&stack, Path::new(""), dest, keep, false)
        .map_err(io_ctx(format!("exporting the image's files to {}", dest.display())))
}

/// Writes the merged filesystem of `image` to `out` as one uncompressed tar (sorted,
/// numeric owners), staging it in a directory under the store first.
pub fn export_rootfs_tar(store: &Store, image: &ImageRecord, out: impl Write + Send) -> Result<()> {
    let tmp_root = store.root().join("build-tmp");
    std::fs::create_dir_all(&tmp_root).map_err(io_ctx("creating the export directory"))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{}-export-", std::process::id()))
        .tempdir_in(&tmp_root)
        .map_err(io_ctx("creating the export directory"))?;
    export_rootfs(store, image, tmp.path())?;
    let opts = WriteOptions {
        compression: Compression::None,
        overlay_whiteouts: false,
        ..WriteOptions::default()
    };
    write_layer(tmp.path(), out, &opts)
        .map_err(|e| BuildError::Other(format!("writing the exported tar: {e}")))?;
    Ok(())
}
