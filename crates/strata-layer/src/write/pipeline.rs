//! tar bytes -> sha256 (diffID) -> compressor -> sha256 (digest) -> caller's writer, in one
//! streaming pass: no uncompressed copy is ever stored.

use std::io::{self, Write};

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
pub(crate) type Pipeline<W> = DigestWriter<Encoder<DigestWriter<W>>>;

pub(crate) fn pipeline<W: Write>(
    compression: Compression,
    level: Option<i32>,
    threads: usize,
    out: W,
) -> io::Result<Pipeline<W>> {
    Ok(DigestWriter::new(Encoder::new(compression, level, threads, DigestWriter::new(out))?))
}

/// Both digests and sizes once the tar is complete.
pub(crate) struct Finished {
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub digest: Digest,
    pub size: u64,
}

pub(crate) fn finish<W: Write>(p: Pipeline<W>) -> io::Result<Finished> {
    let (encoder, diff_id, uncompressed_size) = p.finish();
    let blob = encoder.finish()?;
    let (mut out, digest, size) = blob.finish();
    out.flush()?;
    Ok(Finished { diff_id, uncompressed_size, digest, size })
}
