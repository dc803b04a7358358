//! Layers written in the background. A step that changes files leaves a directory in
//! overlay form (a RUN's upper dir, a COPY's tree); the next step can stack it as a lower
//! dir at once, so turning it into a blob (tar, diffID, compression, digest, fsync) runs
//! on the layer-writer thread while the build goes on. The stage records a
//! [`LayerSlot::Pending`] that resolves to the layer's record when the blob is published;
//! the step's cache entry is stored then, never before its blob exists. Whoever needs a
//! diffID (a cached step's snapshot above it, the final commit) waits for it.
//!
//! One writer thread for the whole build, fed in step order: each write already uses
//! every core (parallel gzip), and a FIFO queue means a job's lower layers are all written
//! before it runs, so its chain ID is known. The directories move into the store's
//! snapshots only when the build's steps are over: a rename under a running step's
//! overlay mount could race with the mount.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};

use strata_layer::{write_layer, WriteOptions};
use strata_oci::Digest;
use strata_store::{CacheEntry, LayerRecord};

use crate::{lock, BuildError, Builder, Result};

/// The layer writer's nice value (0 is normal, 19 the lowest).
const WRITER_NICE: libc::c_int = 10;

/// A layer of a stage: known (a base image's, a cached step's, or written), or being
/// written.
#[derive(Clone)]
pub(crate) enum LayerSlot {
    Ready(LayerRecord),
    Pending(Arc<Pending>),
}

impl LayerSlot {
    /// The layer's record, waiting for its write to finish.
    pub(crate) fn resolve(&self) -> Result<LayerRecord> {
        match self {
            LayerSlot::Ready(r) => Ok(r.clone()),
            LayerSlot::Pending(p) => p.wait(),
        }
    }
}

/// The outcome of a background write; set once.
#[derive(Default)]
pub(crate) struct Pending {
    outcome: Mutex<Option<Result<LayerRecord, String>>>,
    cv: Condvar,
}

impl Pending {
    fn wait(&self) -> Result<LayerRecord> {
        let mut o = lock(&self.outcome);
        loop {
            match &*o {
                Some(Ok(r)) => return Ok(r.clone()),
                Some(Err(e)) => return Err(BuildError::Other(e.clone())),
                None => o = self.cv.wait(o).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    fn set(&self, outcome: Result<LayerRecord, String>) {
        *lock(&self.outcome) = Some(outcome);
        self.cv.notify_all();
    }
}

/// A directory a step produced, not yet queued: the solver adds the step's cache key.
#[derive(Clone)]
pub(crate) struct NewLayer {
    pub(crate) dir: PathBuf,
    pub(crate) pending: Arc<Pending>,
}

/// One write for the writer thread.
pub(crate) struct LayerJob {
    pub(crate) layer: NewLayer,
    /// The stack below, bottom first: all resolved by the time the job runs (FIFO).
    pub(crate) below: Vec<LayerSlot>,
    /// The step's cache key and `created`, stored once the blob is published.
    pub(crate) cache: (String, String),
}

/// The queue into the writer thread, and what it wrote (for the snapshots).
#[derive(Default)]
pub(crate) struct LayerQueue {
    tx: Mutex<Option<Sender<LayerJob>>>,
    /// (chain ID, directory) of every layer written, to adopt as snapshots at the end.
    written: Mutex<Vec<(Digest, PathBuf)>>,
}

impl LayerQueue {
    pub(crate) fn open(&self, tx: Sender<LayerJob>) {
        *lock(&self.tx) = Some(tx);
    }

    /// No more jobs: the writer thread ends after the queued ones.
    pub(crate) fn close(&self) {
        lock(&self.tx).take();
    }

    pub(crate) fn written(&self) -> Vec<(Digest, PathBuf)> {
        std::mem::take(&mut *lock(&self.written))
    }
}

impl Builder<'_> {
    /// Hands a step's directory to the writer thread. Without a writer (none started),
    /// writes it here and now.
    pub(crate) fn queue_layer(&self, job: LayerJob) {
        let job = {
            let tx = lock(&self.layers.tx);
            match tx.as_ref() {
                Some(tx) => match tx.send(job) {
                    Ok(()) => return,
                    Err(e) => e.0,
                },
                None => job,
            }
        };
        self.write_job(job);
    }

    /// The writer thread's loop. It runs niced (and so do the compression threads it
    /// starts, which inherit it): a RUN going on meanwhile gets the CPU first, and the
    /// writer takes what is left, all of it once the steps are over.
    pub(crate) fn write_layers(&self, rx: Receiver<LayerJob>) {
        // SAFETY: plain syscalls on this thread's own id; a failure leaves the priority.
        unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WRITER_NICE);
        }
        for job in rx {
            self.write_job(job);
        }
    }

    fn write_job(&self, job: LayerJob) {
        let LayerJob { layer, below, cache } = job;
        let outcome = self.write_one(&layer.dir, &below, cache);
        match outcome {
            Ok((record, chain)) => {
                lock(&self.layers.written).push((chain, layer.dir));
                layer.pending.set(Ok(record));
            }
            Err(e) => {
                let msg = format!("writing the layer from {}: {e}", layer.dir.display());
                layer.pending.set(Err(msg.clone()));
                self.fail(BuildError::Other(msg));
            }
        }
    }

    fn write_one(
        &self,
        dir: &std::path::Path,
        below: &[LayerSlot],
        (key, created): (String, String),
    ) -> Result<(LayerRecord, Digest)> {
        let mut diff_ids = Vec::with_capacity(below.len() + 1);
        for slot in below {
            diff_ids.push(slot.resolve()?.diff_id);
        }
        // write_layer hashes the compressed bytes on their way into the ingest.
        let mut ingest = self.store.blobs().ingest_hashed_by_writer()?;
        let wopts = WriteOptions {
            compression: self.opts.compression,
            source_date_epoch: self.epoch,
            overlay_whiteouts: true,
            ..WriteOptions::default()
        };
        // write_job names the directory.
        let desc =
            write_layer(dir, &mut ingest, &wopts).map_err(|e| BuildError::Other(e.to_string()))?;
        let staged = ingest.stage(Some(&desc.digest))?;
        self.lease.add([&desc.digest])?;
        staged.publish()?;
        let record = LayerRecord {
            digest: desc.digest.clone(),
            diff_id: desc.diff_id.clone(),
            media_type: desc.media_type.clone(),
            size: desc.size,
            content_size: desc.content_size,
        };
        diff_ids.push(desc.diff_id);
        let chain = strata_oci::config::chain_ids(&diff_ids)
            .pop()
            .ok_or_else(|| BuildError::Other("no chain ID".into()))?;
        let entry =
            CacheEntry { layer: Some(record.clone()), chain_id: Some(chain.clone()), created };
        self.store.cache_put(&key, &entry)?;
        Ok((record, chain))
    }

    /// Moves the build's layer directories into the store's snapshots, so later builds
    /// stack them without unpacking. Only once no step runs (see the module comment).
    pub(crate) fn adopt_written(&self) -> Result<()> {
        let records = std::mem::take(&mut *lock(&self.copy_records));
        let root = self.context_root();
        for (chain, dir) in self.layers.written() {
            self.store.adopt_snapshot(&chain, &dir, self.lease)?;
            if let (Some(sources), Some(root)) = (records.get(&dir), &root) {
                // Only a shortcut for later builds: failing to record costs them a copy.
                let _ = self.store.record_copy_sources(root, &chain, sources);
            }
        }
        Ok(())
    }
}
