//! Parallel gzip, pigz-style: one gzip member whose deflate stream is cut into fixed-size
//! chunks compressed on worker threads.
//!
//! Each chunk is raw deflate primed with the previous chunk's last 32 KiB as dictionary, and
//! ends in a sync flush (byte aligned, not final) except the last one, so the concatenation
//! is a single valid deflate stream. CRC32s are combined in order; plain single-member
//! decoders (flate2's `GzDecoder`, `gzip -d`, Go's as in podman) read the result.
//!
//! Inside a chunk, each 64 KiB block that looks incompressible (near-uniform byte
//! histogram) is written as stored deflate blocks: random data costs a memcpy instead of a
//! doomed deflate pass. A block that is random apart from zero bytes (a tar of compressed
//! or random files: their data plus the headers' zero padding) is deflated at level 2:
//! only the zero runs and repeated header fields can shrink, and level 2 finds those too,
//! at a fraction of level 6's match search (level 1 would not do: zlib-rs codes it with
//! the static Huffman table, 5% more than storing random bytes). Inside such a block, the
//! random stretches between zero runs (the file bodies) are stored too, so only the
//! headers are deflated. When the coding changes,
//! a fresh compressor is primed with the preceding 32 KiB, so later back-references stay
//! valid.
//!
//! Determinism: chunk boundaries and every decision depend only on the input bytes and the
//! level (integer arithmetic only), so the output never depends on the number of threads,
//! on timing, or on when `flush` is called.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};

use flate2::{Compress, Crc, FlushCompress, Status};

mod spans;

/// Input per job. Each chunk pays ~85 µs for a fresh compressor and its dictionary: 0.4% of
/// its deflate time at level 6 (3.4% for 128 KiB chunks), while 128 KiB chunks gain only
/// 0.1% in ratio on a Debian rootfs. Layers of a few MB still keep two workers busy.
const CHUNK_SIZE: usize = 1 << 20;
/// Granularity of the stored-or-compressed decision. At least `WINDOW`, so the history
/// for re-priming after a stored block always lies inside the chunk.
const BLOCK_SIZE: usize = 64 << 10;
/// Deflate's window: how much history a dictionary can use.
const WINDOW: usize = 32 << 10;
/// Blocks shorter than this are always compressed: a histogram says little about them.
const MIN_ESTIMATE: usize = 4 << 10;
/// A block is stored when 256·Σp² < 1 + 1/8, i.e. its Rényi-2 entropy is above ≈ 7.83
/// bits per byte (random data scores ≈ 1.02 on the 16 KiB sampled). Huffman coding gains
/// at most ~2% on such blocks; on a Debian rootfs tar storing them costs 0.03% of ratio.
const UNIFORMITY_NUM: u64 = 9;
const UNIFORMITY_DEN: u64 = 8;
/// A block is deflated at level 2 when its non-zero bytes score 256·Σp² < 3/2 (Rényi-2
/// entropy above ≈ 7.4 bits per byte): random or compressed file data, with the ASCII
/// octal fields of tar headers between (≈ 1.2 for 64 B-4 KB random files). Text scores
/// ≈ 16, x86 code 3-5.
const FAST_NUM: u64 = 3;
const FAST_DEN: u64 = 2;
/// The largest stored deflate block.
const MAX_STORED: usize = 65_535;
const _: () = assert!(BLOCK_SIZE >= WINDOW);

/// A gzip writer that compresses on `threads` worker threads. `finish` must be called;
/// dropping without it stops the workers and leaves a truncated stream.
pub(crate) struct ParallelGzEncoder<W: Write> {
    inner: Option<W>,
    level: u32,
    threads: usize,
    chunk_size: usize,
    /// Input not yet handed to a job.
    chunk: Vec<u8>,
    /// The last `WINDOW` bytes before `chunk`: its dictionary.
    history: Vec<u8>,
    crc: Crc,
    header_written: bool,
    /// Set once a write to `inner` or a worker failed: the stream is unusable from then on.
    failed: bool,
    /// Started with the first full chunk when `threads > 1`; small layers never spawn.
    pool: Option<Pool>,
    /// Jobs in submission order; their results are written in that order.
    pending: VecDeque<mpsc::Receiver<Done>>,
    /// Recycled buffers, so steady state does not allocate (or page-fault) per chunk.
    spare: Vec<Vec<u8>>,
}

struct Job {
    input: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
    output: Vec<u8>,
    reply: mpsc::SyncSender<Done>,
}

struct Done {
    input: Vec<u8>,
    dict: Vec<u8>,
    output: Vec<u8>,
    crc: Crc,
    error: Option<io::Error>,
}

struct Pool {
    jobs: mpsc::SyncSender<Job>,
    workers: Vec<JoinHandle<()>>,
}

impl<W: Write> ParallelGzEncoder<W> {
    /// `level` 0-9; `threads` 0 or 1 compress on the caller's thread.
    pub(crate) fn new(out: W, level: u32, threads: usize) -> Self {
        Self::with_chunk_size(out, level, threads, CHUNK_SIZE)
    }

    pub(crate) fn with_chunk_size(out: W, level: u32, threads: usize, chunk_size: usize) -> Self {
        assert!(chunk_size >= BLOCK_SIZE, "chunks hold at least one decision block");
        ParallelGzEncoder {
            inner: Some(out),
            level: level.min(9),
            threads: threads.max(1),
            chunk_size,
            chunk: Vec::with_capacity(chunk_size),
            history: Vec::with_capacity(WINDOW),
            crc: Crc::new(),
            header_written: false,
            failed: false,
            pool: None,
            pending: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// Writes the rest of the stream and the trailer, and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.check()?;
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        // ISIZE is the length modulo 2^32, which is what `amount` keeps.
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.emit(&trailer)?;
        self.stop_pool();
        Ok(self.inner.take().expect("inner writer present until finish"))
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("gzip stream unusable after an earlier error"));
        }
        Ok(())
    }

    /// Hands the current chunk to a worker (or compresses it here).
    fn submit(&mut self, last: bool) -> io::Result<()> {
        // Bounded memory: at most two jobs per worker in flight.
        while self.pending.len() >= 2 * self.threads {
            self.write_oldest()?;
        }
        let next = if last { Vec::new() } else { self.buffer(self.chunk_size) };
        let input = std::mem::replace(&mut self.chunk, next);
        let mut dict = self.buffer(WINDOW);
        dict.extend_from_slice(&self.history);
        // The next chunk's dictionary. Only the last chunk is shorter than a window.
        self.history.clear();
        self.history.extend_from_slice(&input[input.len().saturating_sub(WINDOW)..]);
        let output = self.buffer(stored_len(input.len(), last) + 1024);

        if self.pool.is_none() && self.threads > 1 && !last {
            // The bytes do not depend on the thread count: without threads, work here.
            match Pool::start(self.threads, self.level) {
                Ok(pool) => self.pool = Some(pool),
                Err(_) => self.threads = 1,
            }
        }
        let Some(pool) = &self.pool else {
            let done = run_job(self.level, input, dict, last, output);
            return self.finish_job(done);
        };
        let (reply, receiver) = mpsc::sync_channel(1);
        let job = Job { input, dict, last, output, reply };
        if pool.jobs.send(job).is_err() {
            return Err(self.fail(worker_lost()));
        }
        self.pending.push_back(receiver);
        // Write whatever is already done, without waiting.
        while let Some(Ok(done)) = self.pending.front().map(|r| r.try_recv()) {
            self.pending.pop_front();
            self.finish_job(done)?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let receiver = self.pending.pop_front().expect("a pending job");
        match receiver.recv() {
            Ok(done) => self.finish_job(done),
            // The worker dropped the reply without sending: it panicked.
            Err(_) => Err(self.fail(worker_lost())),
        }
    }

    fn finish_job(&mut self, done: Done) -> io::Result<()> {
        if let Some(e) = done.error {
            return Err(self.fail(e));
        }
        self.emit(&done.output)?;
        self.crc.combine(&done.crc);
        self.spare.extend([done.input, done.dict, done.output]);
        Ok(())
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        let inner = self.inner.as_mut().expect("inner writer present until finish");
        let mut result = Ok(());
        if !self.header_written {
            result = inner.write_all(&gzip_header(self.level));
            self.header_written = true;
        }
        if let Err(e) = result.and_then(|()| inner.write_all(bytes)) {
            return Err(self.fail(e));
        }
        Ok(())
    }

    fn fail(&mut self, e: io::Error) -> io::Error {
        self.failed = true;
        e
    }

    /// The smallest spare buffer that fits `capacity` without growing, else a new one.
    fn buffer(&mut self, capacity: usize) -> Vec<u8> {
        let best = (0..self.spare.len())
            .filter(|&i| self.spare[i].capacity() >= capacity)
            .min_by_key(|&i| self.spare[i].capacity());
        let mut b =
            best.map_or_else(|| Vec::with_capacity(capacity), |i| self.spare.swap_remove(i));
        b.clear();
        b
    }

    fn stop_pool(&mut self) {
        self.pending.clear();
        if let Some(pool) = self.pool.take() {
            pool.stop();
        }
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let len = buf.len();
        while !buf.is_empty() {
            let n = (self.chunk_size - self.chunk.len()).min(buf.len());
            self.chunk.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.chunk.len() == self.chunk_size {
                self.submit(false)?;
            }
        }
        Ok(len)
    }

    /// Writes out the chunks already handed to workers and flushes the inner writer. The
    /// partly filled chunk stays buffered: ending it early would make the bytes depend on
    /// when flush was called.
    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let inner = self.inner.as_mut().expect("inner writer present until finish");
        inner.flush().map_err(|e| self.fail(e))
    }
}

impl<W: Write> Drop for ParallelGzEncoder<W> {
    fn drop(&mut self) {
        self.stop_pool();
    }
}

impl Pool {
    fn start(threads: usize, level: u32) -> io::Result<Pool> {
        // Never full: the encoder keeps at most 2 * threads jobs in flight.
        let (jobs, queue) = mpsc::sync_channel::<Job>(2 * threads);
        let queue = Arc::new(Mutex::new(queue));
        let mut pool = Pool { jobs, workers: Vec::with_capacity(threads) };
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let worker =
                thread::Builder::new().name(format!("strata-gzip-{i}")).spawn(move || loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(job) = next else { return };
                    let done = run_job(level, job.input, job.dict, job.last, job.output);
                    // The encoder may be gone (its writer failed): nobody to tell.
                    let _ = job.reply.send(done);
                });
            match worker {
                Ok(w) => pool.workers.push(w),
                Err(e) => {
                    pool.stop();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Closing the queue ends each worker after its current job; then they are joined.
    fn stop(self) {
        drop(self.jobs);
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn worker_lost() -> io::Error {
    io::Error::other("a gzip compression thread stopped unexpectedly")
}

/// flate2's header, so the first bytes stay what single-stream gzip wrote: no mtime, no
/// name, XFL from the level, OS 255 (unknown) for reproducibility.
fn gzip_header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        0 | 1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// Size of `len` bytes as stored blocks, plus the empty final block when there is nothing
/// to store.
fn stored_len(len: usize, last: bool) -> usize {
    let blocks = len.div_ceil(MAX_STORED).max(usize::from(last && len == 0));
    len + 5 * blocks
}

/// Compresses one job. CRC and deflate both run here, on the worker.
fn run_job(level: u32, input: Vec<u8>, dict: Vec<u8>, last: bool, mut output: Vec<u8>) -> Done {
    let mut crc = Crc::new();
    crc.update(&input);
    let error = compress_chunk(level, &input, &dict, last, &mut output).err();
    Done { input, dict, output, crc, error }
}

/// Writes `data` to `out` as deflate blocks: final when `last`, else ending in a sync
/// flush. `dict` is the history the decoder has before `data`.
fn compress_chunk(
    level: u32,
    data: &[u8],
    dict: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    if level == 0 {
        write_stored(data, last, out);
        return Ok(());
    }
    if data.is_empty() {
        if last {
            // An empty fixed-Huffman final block, as zlib writes for empty input.
            out.extend_from_slice(&[0x03, 0x00]);
        }
        return Ok(());
    }
    // The compressor of the current run of compressible blocks and its level, if open.
    let mut open: Option<(Compress, u32)> = None;
    // Start of the current run of incompressible blocks, written when it ends.
    let mut stored_from: Option<usize> = None;
    let blocks = data.len().div_ceil(BLOCK_SIZE);
    for (i, block) in data.chunks(BLOCK_SIZE).enumerate() {
        let start = i * BLOCK_SIZE;
        let final_block = last && i + 1 == blocks;
        let coding = classify(block);
        let block_level = match coding {
            Coding::Stored => {
                end_run(&mut open, out)?;
                stored_from.get_or_insert(start);
                continue;
            }
            Coding::Fast => level.min(2),
            Coding::Normal => level,
        };
        if let Some(from) = stored_from.take() {
            write_stored(&data[from..start], false, out);
        }
        if open.as_ref().is_some_and(|(_, l)| *l != block_level) {
            end_run(&mut open, out)?;
        }
        let deflate = match &mut open {
            Some((deflate, _)) => deflate,
            None => {
                // A new compressor rather than `reset()`: zlib-rs 0.6 keeps stale window
                // bytes across a reset, and they can change which of two equal matches is
                // picked (zlib-rs issue 459), so reuse would make the bytes depend on which
                // jobs a thread ran before.
                let mut fresh = Compress::new(flate2::Compression::new(block_level), false);
                let history = if start == 0 { dict } else { &data[start - WINDOW..start] };
                if !history.is_empty() {
                    fresh.set_dictionary(history).map_err(io::Error::other)?;
                }
                &mut open.insert((fresh, block_level)).0
            }
        };
        let flush = match (final_block, i + 1 == blocks) {
            (true, _) => FlushCompress::Finish,
            (false, true) => FlushCompress::Sync,
            (false, false) => FlushCompress::None,
        };
        if coding == Coding::Fast {
            deflate_around_spans(deflate, block, flush, out)?;
        } else {
            run_deflate(deflate, block, flush, out)?;
        }
    }
    if let Some(from) = stored_from {
        write_stored(&data[from..], last, out);
    }
    // Never worse than storing (level 1 expands random data by ~5%).
    if out.len() > stored_len(data.len(), last) {
        out.clear();
        write_stored(data, last, out);
    }
    Ok(())
}

/// Deflates a fast-tier block but writes its incompressible spans ([`spans::raw_spans`]) as
/// stored blocks: a sync flush before each, and the span then given to the compressor as
/// dictionary so its window (and so every later distance) matches the decoder's. On a tar
/// of 20,000 random files of 64 B-4 KB the layer writer goes from 91 to 164 MB/s (two
/// threads), for 0.1% more output.
fn deflate_around_spans(
    deflate: &mut Compress,
    block: &[u8],
    flush: FlushCompress,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut from = 0;
    for span in spans::raw_spans(block) {
        // Empty input after a sync flush is a no-op (zlib's BufError), so no special case.
        run_deflate(deflate, &block[from..span.start], FlushCompress::Sync, out)?;
        write_stored(&block[span.clone()], false, out);
        let history = span.start.max(span.end.saturating_sub(WINDOW));
        deflate.set_dictionary(&block[history..span.end]).map_err(io::Error::other)?;
        from = span.end;
    }
    run_deflate(deflate, &block[from..], flush, out)
}

/// Ends the open compressor's run, if any, with a sync flush (byte aligned, not final).
fn end_run(open: &mut Option<(Compress, u32)>, out: &mut Vec<u8>) -> io::Result<()> {
    match open.take() {
        Some((mut deflate, _)) => run_deflate(&mut deflate, &[], FlushCompress::Sync, out),
        None => Ok(()),
    }
}

/// Feeds all of `input` to `deflate` and completes `flush`, growing `out` as needed.
fn run_deflate(
    deflate: &mut Compress,
    mut input: &[u8],
    flush: FlushCompress,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(input.len().max(64 << 10));
        }
        let before = deflate.total_in();
        let status = deflate.compress_vec(input, out, flush).map_err(io::Error::other)?;
        input = &input[(deflate.total_in() - before) as usize..];
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            // zlib's rule: a flush is complete when it did not fill the output buffer.
            _ => input.is_empty() && out.len() < out.capacity(),
        };
        if done {
            return Ok(());
        }
    }
}

/// Appends stored deflate blocks for `data` (at byte-aligned position).
fn write_stored(data: &[u8], last: bool, out: &mut Vec<u8>) {
    if data.is_empty() {
        if last {
            out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
        }
        return;
    }
    let pieces = data.len().div_ceil(MAX_STORED);
    for (i, piece) in data.chunks(MAX_STORED).enumerate() {
        let len = piece.len() as u16;
        out.push(u8::from(last && i + 1 == pieces));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
}

/// How a block is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    /// Stored blocks: near-uniform bytes.
    Stored,
    /// Level 2 (or the requested level when lower): near-uniform apart from zero bytes.
    Fast,
    /// The requested level.
    Normal,
}

/// The block's coding from its byte histogram: the collision probability Σp² is compared
/// with uniform's 1/256, over all bytes and over the non-zero ones, in integers so the
/// decision is the same on every machine. The first KiB of every 4 KiB is counted: a
/// quarter of the cost, and compressible stretches of 4 KiB or more are still seen.
pub(super) fn classify(block: &[u8]) -> Coding {
    if block.len() < MIN_ESTIMATE {
        return Coding::Normal;
    }
    let mut counts = Histogram::new();
    for piece in block.chunks(4096) {
        counts.add(&piece[..piece.len().min(1024)]);
    }
    let zeros = counts.count(0);
    let (mut n, mut sum_sq) = (zeros, zeros * zeros);
    for i in 1..256 {
        let c = counts.count(i);
        n += c;
        sum_sq += c * c;
    }
    let below = |sum_sq: u64, n: u64, num: u64, den: u64| 256 * sum_sq * den < num * n * n;
    if below(sum_sq, n, UNIFORMITY_NUM, UNIFORMITY_DEN) {
        Coding::Stored
    } else if n > zeros && below(sum_sq - zeros * zeros, n - zeros, FAST_NUM, FAST_DEN) {
        Coding::Fast
    } else {
        Coding::Normal
    }
}

/// Byte counts, in four tables that hide the store-to-load latency of repeated bytes.
struct Histogram([[u32; 256]; 4]);

impl Histogram {
    fn new() -> Self {
        Histogram([[0; 256]; 4])
    }

    fn add(&mut self, bytes: &[u8]) {
        let t = &mut self.0;
        let mut quads = bytes.chunks_exact(4);
        for q in &mut quads {
            t[0][q[0] as usize] += 1;
            t[1][q[1] as usize] += 1;
            t[2][q[2] as usize] += 1;
            t[3][q[3] as usize] += 1;
        }
        for &b in quads.remainder() {
            t[0][b as usize] += 1;
        }
    }

    /// How many times byte `b` was counted.
    fn count(&self, b: usize) -> u64 {
        self.0.iter().map(|t| u64::from(t[b])).sum()
    }
}

#[cfg(test)]
mod tests;
