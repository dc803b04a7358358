//! tar bytes -> sha256 (diffID) -> compressor -> sha256 (digest) -> caller's writer, in one
//! streaming pass: no uncompressed copy is ever stored.
//!
//! The compressed side (its sha256 and the caller's writer) runs on a thread of its own
//! ([`SinkThread`]): for data that does not compress, hashing and writing the output cost
//! as much as reading and hashing the tar, and the thread making the tar has enough to do.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use strata_oci::{Digest, DigestWriter};

use super::parallel_gzip::ParallelGzEncoder;
use crate::compression::Compression;

/// The compressor stage.
pub(crate) enum Encoder<W: Write> {
    None(W),
    Gzip(ParallelGzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// `level`: gzip 0-9 (default 6), zstd 1-22 (default 3). `threads`: compression
    /// threads (at least 1); the output bytes do not depend on it.
    pub(crate) fn new(
        compression: Compression,
        level: Option<i32>,
        threads: usize,
        out: W,
    ) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Encoder::None(out),
            Compression::Gzip => {
                let level = level.unwrap_or(6).clamp(0, 9) as u32;
                Encoder::Gzip(ParallelGzEncoder::new(out, level, threads))
            }
            Compression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(out, level.unwrap_or(3))?;
                // Always at least one worker: zstd's output is the same for any nbWorkers >= 1
                // but differs from single-threaded mode (0), so 0 would make layers depend on
                // the machine.
                z.multithread(threads.max(1) as u32)?;
                Encoder::Zstd(z)
            }
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

/// What the tar builder writes into.
pub(crate) type Pipeline<'s, W> = DigestWriter<Encoder<SinkThread<'s, W>>>;

pub(crate) fn pipeline<'s, 'e, W: Write + Send + 's>(
    scope: &'s Scope<'s, 'e>,
    compression: Compression,
    level: Option<i32>,
    threads: usize,
    out: W,
) -> io::Result<Pipeline<'s, W>> {
    let sink = SinkThread::start(scope, out);
    Ok(DigestWriter::new(Encoder::new(compression, level, threads, sink)?))
}

/// How much output [`SinkThread`] gathers before handing it over, and how many such
/// pieces may wait: a few MiB in flight at most.
const SINK_PIECE: usize = 1 << 20;
const SINK_QUEUE: usize = 4;

/// The caller's writer, behind a sha256, on a scoped thread fed through a bounded channel.
pub(crate) struct SinkThread<'s, W: Send> {
    tx: Option<SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    thread: Option<ScopedJoinHandle<'s, io::Result<(W, Digest, u64)>>>,
}

impl<'s, W: Write + Send + 's> SinkThread<'s, W> {
    fn start<'e>(scope: &'s Scope<'s, 'e>, out: W) -> Self {
        let (tx, rx) = sync_channel::<Vec<u8>>(SINK_QUEUE);
        let thread = scope.spawn(move || drain(rx, out));
        SinkThread { tx: Some(tx), buf: Vec::with_capacity(SINK_PIECE), thread: Some(thread) }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(SINK_PIECE));
        match self.tx.as_ref().map(|tx| tx.send(piece)) {
            Some(Ok(())) => Ok(()),
            // The thread stopped on an error: that error is the one to report.
            _ => Err(self.thread_error()),
        }
    }

    /// Why the thread stopped early (it has, or the channel would be open).
    fn thread_error(&mut self) -> io::Error {
        self.tx.take();
        let broken = || io::Error::new(io::ErrorKind::BrokenPipe, "the layer output stopped");
        match self.thread.take().map(ScopedJoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("the layer output thread panicked"),
            _ => broken(),
        }
    }

    /// Sends what is left, waits for the thread, and returns the writer, the digest of
    /// everything written and its size.
    pub(crate) fn finish(mut self) -> io::Result<(W, Digest, u64)> {
        self.send()?;
        self.tx.take();
        match self.thread.take().map(ScopedJoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(io::Error::other("the layer output thread panicked")),
        }
    }
}

fn drain<W: Write>(rx: Receiver<Vec<u8>>, out: W) -> io::Result<(W, Digest, u64)> {
    let mut out = DigestWriter::new(out);
    for piece in rx {
        out.write_all(&piece)?;
    }
    let (mut w, digest, size) = out.finish();
    w.flush()?;
    Ok((w, digest, size))
}

impl<'s, W: Write + Send + 's> Write for SinkThread<'s, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SINK_PIECE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Send> Drop for SinkThread<'_, W> {
    fn drop(&mut self) {
        // Closing the channel ends the thread; the scope joins it.
        self.tx.take();
    }
}

/// Both digests and sizes once the tar is complete.
pub(crate) struct Finished {
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub digest: Digest,
    pub size: u64,
}

pub(crate) fn finish<'s, W: Write + Send + 's>(p: Pipeline<'s, W>) -> io::Result<Finished> {
    let (encoder, diff_id, uncompressed_size) = p.finish();
    let sink = encoder.finish()?;
    let (_out, digest, size) = sink.finish()?;
    Ok(Finished { diff_id, uncompressed_size, digest, size })
}
