//! A decompressing layer reader with bomb limits, and the diffID of a blob.

use std::io::{self, BufReader, Chain, Cursor, Read};

use flate2::read::MultiGzDecoder;
use strata_oci::{Digest, DigestReader, Hasher};

use crate::compression::{self, Compression, MAGIC_LEN};
use crate::error::LayerError;
use crate::limits::{LimitExceeded, Limits};

/// Counts the compressed bytes the decoder pulls, for the ratio limit.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// The sniffed magic bytes put back in front of the rest of the input.
type Source<R> = Counting<Chain<Cursor<Vec<u8>>, R>>;

enum Decoder<R: Read> {
    Plain(Source<R>),
    // Boxed: the inflate state is several hundred bytes.
    Gzip(Box<MultiGzDecoder<Source<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<Source<R>>>),
}

impl<R: Read> Decoder<R> {
    fn source(&self) -> &Source<R> {
        match self {
            Decoder::Plain(s) => s,
            Decoder::Gzip(d) => d.get_ref(),
            Decoder::Zstd(d) => d.get_ref().get_ref(),
        }
    }
}

/// Reads a layer blob of any supported codec and yields the uncompressed tar, enforcing
/// [`Limits`] and optionally hashing the output (the diffID).
///
/// Once a limit trips, every further read fails with the same [`LimitExceeded`], which
/// [`LayerReader::error`] turns back into [`LayerError::Limit`].
pub struct LayerReader<R: Read> {
    decoder: Decoder<R>,
    compression: Compression,
    limits: Limits,
    decompressed: u64,
    hasher: Option<Hasher>,
    exceeded: Option<LimitExceeded>,
}

impl<R: Read> LayerReader<R> {
    /// Sniffs the codec from the first bytes of `src` and wraps it in the right decoder.
    pub fn new(mut src: R, limits: Limits) -> Result<Self, LayerError> {
        let mut head = vec![0u8; MAGIC_LEN];
        let mut filled = 0;
        // A single read may return fewer bytes than are available (pipes, sockets).
        while filled < head.len() {
            match src.read(&mut head[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(LayerError::Read { compression: Compression::None, source: e })
                }
            }
        }
        head.truncate(filled);
        let compression = compression::detect(&head)?;
        let source = Counting { inner: Cursor::new(head).chain(src), count: 0 };
        let decoder = match compression {
            Compression::None => Decoder::Plain(source),
            Compression::Gzip => Decoder::Gzip(Box::new(MultiGzDecoder::new(source))),
            Compression::Zstd => Decoder::Zstd(
                zstd::stream::read::Decoder::new(source)
                    .map_err(|e| LayerError::Read { compression, source: e })?,
            ),
        };
        Ok(LayerReader {
            decoder,
            compression,
            limits,
            decompressed: 0,
            hasher: None,
            exceeded: None,
        })
    }

    /// Also hash everything read, so [`LayerReader::diff_id`] can report it.
    pub fn with_diff_id(mut self) -> Self {
        self.hasher = Some(Hasher::new());
        self
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Uncompressed bytes produced so far.
    pub fn decompressed_bytes(&self) -> u64 {
        self.decompressed
    }

    /// Compressed bytes pulled from the source so far (the decoder reads ahead a little).
    pub fn compressed_bytes(&self) -> u64 {
        self.decoder.source().count
    }

    /// The limit that stopped this stream, if any.
    pub fn limit_exceeded(&self) -> Option<&LimitExceeded> {
        self.exceeded.as_ref()
    }

    /// sha256 of the uncompressed bytes read so far (the diffID once at EOF); `None` unless
    /// built [`with_diff_id`](LayerReader::with_diff_id).
    pub fn diff_id(&self) -> Option<Digest> {
        self.hasher.clone().map(Hasher::finish)
    }

    /// Turns an I/O error from reading this stream into the most precise [`LayerError`]:
    /// a tripped limit wins over whatever wrapped it on the way up.
    pub fn error(&self, e: io::Error) -> LayerError {
        match &self.exceeded {
            Some(limit) => LayerError::Limit(limit.clone()),
            None => LayerError::Read { compression: self.compression, source: e },
        }
    }
}

impl<R: Read> Read for LayerReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(limit) = &self.exceeded {
            return Err(io::Error::other(limit.clone()));
        }
        let n = match &mut self.decoder {
            Decoder::Plain(r) => r.read(buf)?,
            Decoder::Gzip(r) => r.read(buf)?,
            Decoder::Zstd(r) => r.read(buf)?,
        };
        self.decompressed += n as u64;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        if let Err(limit) = self.limits.check(self.decompressed, self.compressed_bytes()) {
            self.exceeded = Some(limit.clone());
            return Err(io::Error::other(limit));
        }
        Ok(n)
    }
}

/// Sniffs and wraps `src` in the right decompressor, without limits.
pub fn decompressor<'a, R: Read + 'a>(src: R) -> Result<Box<dyn Read + 'a>, LayerError> {
    Ok(Box::new(LayerReader::new(src, Limits::unlimited())?))
}

/// Both digests and sizes of a layer blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the uncompressed tar, as listed in the image config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    /// sha256 of the blob as given (what the manifest descriptor names).
    pub digest: Digest,
    pub size: u64,
    pub compression: Compression,
}

/// Reads a whole (possibly compressed) layer blob and returns its diffID, digest and sizes,
/// stopping with [`LayerError::Limit`] if it expands past `limits`.
pub fn diff_id<R: Read>(blob: R, limits: &Limits) -> Result<LayerDigests, LayerError> {
    let mut blob = DigestReader::new(blob);
    let (diff_id, uncompressed_size, compression) = {
        let mut layer = LayerReader::new(&mut blob, *limits)?.with_diff_id();
        io::copy(&mut layer, &mut io::sink()).map_err(|e| layer.error(e))?;
        (
            layer.diff_id().expect("hashing was enabled"),
            layer.decompressed_bytes(),
            layer.compression,
        )
    };
    // Bytes after the end of the compressed stream still belong to the blob's digest.
    io::copy(&mut blob, &mut io::sink())
        .map_err(|e| LayerError::Read { compression, source: e })?;
    let (_, digest, size) = blob.finish();
    Ok(LayerDigests { diff_id, uncompressed_size, digest, size, compression })
}
