//! Layers and the image: a step's directory written as a layer blob and adopted as its
//! snapshot; the final config and manifest committed with the tags.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use strata_oci::config::History;
use strata_oci::media_types::{OCI_CONFIG, OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP, OCI_MANIFEST};
use strata_oci::Digest;
use strata_store::{LayerRecord, NewImage};

use crate::layers::{LayerSlot, NewLayer, Pending};
use crate::{BuildError, BuildResult, Builder, Result, StageState};

impl Builder<'_> {
    /// Records `dir` as the stage's next layer: its files are the next step's top lower
    /// dir at once, and the solver queues the blob write (see `layers`). Returns no digest:
    /// it is not known yet.
    pub(crate) fn add_layer(
        &self,
        st: &mut StageState,
        dir: PathBuf,
        history: History,
    ) -> Result<Option<Digest>> {
        st.config.add_layer_history(history);
        let pending = Arc::new(Pending::default());
        st.push_layer(LayerSlot::Pending(pending.clone()), Some(dir.clone()));
        st.new_layer = Some(NewLayer { dir, pending });
        Ok(None)
    }

    pub(crate) fn commit(&self, st: StageState) -> Result<BuildResult> {
        // Wait for the layers still being written.
        let layers: Vec<LayerRecord> =
            st.layers.iter().map(LayerSlot::resolve).collect::<Result<_>>()?;
        let mut cfgb = st.config;
        cfgb.set_diff_ids(layers.iter().map(|l| &l.diff_id));
        // The latest step's time, so a fully cached rebuild gives the same image ID.
        let created = match (self.epoch, st.created) {
            (None, Some(c)) => c,
            _ => self.created(None),
        };
        cfgb.set_created(&created);
        let config = cfgb.build().map_err(|e| BuildError::Other(format!("image config: {e}")))?;
        let config_bytes = config.raw().to_vec();
        let config_digest = Digest::sha256_of(&config_bytes);
        let descriptors: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| {
                json!({"mediaType": oci_layer_type(&l.media_type), "digest": l.digest.to_string(), "size": l.size})
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len()},
            "layers": descriptors,
        });
        let manifest = strata_oci::canonical_json(&manifest)
            .map_err(|e| BuildError::Other(format!("manifest: {e}")))?;
        let manifest_digest = Digest::sha256_of(&manifest);
        self.lease.add([&config_digest, &manifest_digest])?;
        self.store.blobs().put(&config_bytes)?;
        self.store.blobs().put(&manifest)?;
        self.store.commit_image(
            &NewImage {
                config_digest: config_digest.clone(),
                manifest_digest: manifest_digest.clone(),
                manifest_media_type: OCI_MANIFEST.to_string(),
                created: config.created().map(str::to_string),
                layers,
            },
            &self.opts.tags,
        )?;
        Ok(BuildResult { id: config_digest, manifest_digest, tags: self.opts.tags.clone() })
    }
}

pub(crate) fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => OCI_LAYER_TAR_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar" => OCI_LAYER_TAR,
        other => other,
    }
}
