//! Throughput of writing layers per codec, level and thread count, on (a) a ~100 MB mixed
//! tree, (b) 100 MB of random data, (c) a real rootfs tar when one is at hand, (d) 20,000
//! small random files; then reading the mixed tree's layer back.
//!
//! `cargo bench -p strata-layer` (`STRATA_BENCH_MB` sets the size of (a) and (b),
//! `STRATA_BENCH_TAR` the rootfs tar, default `/tmp/debian.tar`, `STRATA_BENCH_ONLY` a
//! filter on the write variants' names). A plain harness rather than criterion: each run
//! takes seconds and touches the disk, so a few timed repetitions with min/median say what
//! is needed without the extra dependencies.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use strata_layer::{diff_id, unpack, write_layer, Compression, UnpackOptions, WriteOptions};
use strata_oci::DigestWriter;

const RUNS: usize = 3;

/// Deterministic xorshift, so every run benchmarks the same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Files of 1 KiB..256 KiB in nested dirs; content mixes word-like text (compresses a few
/// times, like binaries and libraries) with random runs (incompressible, like media).
fn make_tree(root: &Path, total: u64) -> (u64, usize) {
    const WORDS: &[&str] = &[
        "libc", "so", "usr", "share", "locale", "the", "of", "and", "0x0040", "ELF", "main",
        "static", "const", "return", "error", "config", "python3", "module", "__init__", "def",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut written, mut files) = (0u64, 0usize);
    while written < total {
        let dir = root.join(format!("d{:02}/s{:02}", rng.next() % 40, rng.next() % 10));
        fs::create_dir_all(&dir).unwrap();
        let size = 1024 + (rng.next() % (255 * 1024)) as usize;
        let mut data = Vec::with_capacity(size + 16);
        while data.len() < size {
            if rng.next() & 3 == 0 {
                data.extend_from_slice(&rng.next().to_le_bytes());
            } else {
                data.extend_from_slice(
                    WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes(),
                );
                data.push(b' ');
            }
        }
        data.truncate(size);
        fs::write(dir.join(format!("f{files:05}")), &data).unwrap();
        written += size as u64;
        files += 1;
    }
    (written, files)
}

/// `total` bytes of random data in 10 MB files: media, archives, already compressed blobs.
fn make_random_tree(root: &Path, total: u64) -> (u64, usize) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut written, mut files) = (0u64, 0usize);
    while written < total {
        let size = (total - written).min(10_000_000) as usize;
        let data: Vec<u8> = (0..size.div_ceil(8)).flat_map(|_| rng.next().to_le_bytes()).collect();
        fs::write(root.join(format!("r{files:03}.bin")), &data[..size]).unwrap();
        written += size as u64;
        files += 1;
    }
    (written, files)
}

/// 20,000 random files of 64 B-4 KB in 200 dirs, as the build benchmark's scenario b:
/// compressed files between tar headers, the fast tier's case.
fn make_small_random_tree(root: &Path) -> (u64, usize) {
    let mut rng = Rng(0x6a09_e667_f3bc_c909);
    let mut written = 0u64;
    for n in 0..20_000 {
        let dir = root.join(format!("d{:03}", n / 100));
        fs::create_dir_all(&dir).unwrap();
        let size = 64 + (rng.next() % 4033) as usize;
        let data: Vec<u8> = (0..size.div_ceil(8)).flat_map(|_| rng.next().to_le_bytes()).collect();
        fs::write(dir.join(format!("f{n:05}.txt")), &data[..size]).unwrap();
        written += size as u64;
    }
    (written, 20_000)
}

/// Best and median of RUNS timings of `f`, which returns the time to count.
fn measure(mut f: impl FnMut(usize) -> Duration) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..RUNS).map(&mut f).collect();
    times.sort();
    (times[0], times[RUNS / 2])
}

/// User + system CPU time of the whole process (all threads), in seconds.
fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn report(name: &str, bytes: u64, (best, median): (Duration, Duration), tail: &str) {
    let mbps = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!("{name:<28} {:>10.1} {:>10.1} {tail}", mbps(best), mbps(median));
}

/// The compressor variants compared on every input.
enum Variant {
    /// flate2's single-stream `GzEncoder` behind an uncompressed `write_layer`: what the
    /// pipeline did before the parallel encoder (same hashing on both sides).
    OldGzip(u32),
    Layer {
        compression: Compression,
        level: Option<i32>,
        threads: usize,
    },
}

impl Variant {
    fn name(&self) -> String {
        match self {
            Variant::OldGzip(level) => format!("gzip -{level} old (flate2)"),
            Variant::Layer { compression: Compression::None, .. } => "none".into(),
            Variant::Layer { compression, level, threads } => {
                let level = level.map_or_else(String::new, |l| format!(" -{l}"));
                format!("{compression}{level} x{threads}")
            }
        }
    }

    /// Writes the tree's layer into `blob`; returns the tar size.
    fn write(&self, tree: &Path, blob: &mut Vec<u8>) -> u64 {
        match *self {
            Variant::OldGzip(level) => {
                let level = flate2::Compression::new(level);
                let mut gz = GzEncoder::new(DigestWriter::new(&mut *blob), level);
                let opts = WriteOptions { compression: Compression::None, ..Default::default() };
                let desc = write_layer(tree, &mut gz, &opts).unwrap();
                gz.finish().unwrap().finish();
                desc.uncompressed_size
            }
            Variant::Layer { compression, level, threads } => {
                let opts = WriteOptions {
                    compression,
                    level,
                    threads: Some(threads),
                    ..Default::default()
                };
                write_layer(tree, &mut *blob, &opts).unwrap().uncompressed_size
            }
        }
    }
}

fn bench_writes(label: &str, tree: &Path, only: Option<&str>) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let layer = |compression, level, threads| Variant::Layer { compression, level, threads };
    let mut variants = vec![
        layer(Compression::None, None, 1),
        Variant::OldGzip(6),
        layer(Compression::Gzip, Some(6), 1),
        layer(Compression::Gzip, Some(6), n),
        Variant::OldGzip(1),
        layer(Compression::Gzip, Some(1), 1),
        layer(Compression::Gzip, Some(1), n),
        layer(Compression::Zstd, Some(3), 1),
        layer(Compression::Zstd, Some(3), n),
    ];
    variants.dedup_by_key(|v| v.name());
    println!("\n{label}");
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>7} {:>10}",
        "write", "best MB/s", "median", "blob MB", "ratio", "MB/cpu-s"
    );
    for v in variants {
        if only.is_some_and(|o| !v.name().contains(o)) {
            continue;
        }
        let mut blob = Vec::new();
        let mut tar_size = 0;
        let cpu = cpu_seconds();
        let t = measure(|_| {
            blob = Vec::with_capacity(blob.capacity());
            let start = Instant::now();
            tar_size = v.write(tree, &mut blob);
            start.elapsed()
        });
        // CPU cost per byte, which other load on the machine disturbs less than wall time.
        let cpu = (cpu_seconds() - cpu) / RUNS as f64;
        let (mb, blob_mb) = (tar_size as f64 / 1e6, blob.len() as f64 / 1e6);
        let tail = format!("{blob_mb:>10.1} {:>7.3} {:>10.1}", mb / blob_mb, mb / cpu);
        report(&v.name(), tar_size, t, &tail);
    }
}

fn main() {
    // `cargo test --benches` runs this without --bench: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let env = |k: &str| std::env::var(k).ok();
    let mb: u64 = env("STRATA_BENCH_MB").and_then(|v| v.parse().ok()).unwrap_or(100);
    // Runs only the write variants whose name contains this (e.g. "gzip -6").
    let only = env("STRATA_BENCH_ONLY");
    let work = tempfile::tempdir().unwrap();
    println!(
        "MB = 10^6 bytes of tar; ratio = tar size / blob size; xN = compression threads; \
         MB/cpu-s = MB per second of process CPU time"
    );

    let tree = work.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let (bytes, files) = make_tree(&tree, mb * 1_000_000);
    bench_writes(
        &format!("(a) mixed tree: {files} files, {:.1} MB of content", bytes as f64 / 1e6),
        &tree,
        only.as_deref(),
    );

    let random = work.path().join("random");
    fs::create_dir(&random).unwrap();
    let (bytes, files) = make_random_tree(&random, mb * 1_000_000);
    bench_writes(
        &format!("(b) random data: {files} files, {:.1} MB", bytes as f64 / 1e6),
        &random,
        only.as_deref(),
    );
    fs::remove_dir_all(&random).unwrap();

    // A real rootfs, when the machine has one (STRATA_BENCH_TAR, else /tmp/debian.tar).
    let rootfs_tar = env("STRATA_BENCH_TAR").unwrap_or_else(|| "/tmp/debian.tar".into());
    if let Ok(file) = fs::File::open(&rootfs_tar) {
        let rootfs = work.path().join("rootfs");
        fs::create_dir(&rootfs).unwrap();
        let opts = UnpackOptions { skip_unsupported_xattrs: true, ..Default::default() };
        let stats = unpack(io::BufReader::new(file), &rootfs, &opts).unwrap();
        bench_writes(
            &format!("(c) {rootfs_tar} unpacked: {} entries", stats.entries),
            &rootfs,
            only.as_deref(),
        );
        fs::remove_dir_all(&rootfs).unwrap();
    } else {
        println!("\n(c) skipped: no {rootfs_tar}");
    }

    let small = work.path().join("small");
    fs::create_dir(&small).unwrap();
    let (bytes, files) = make_small_random_tree(&small);
    bench_writes(
        &format!("(d) small random files: {files} files, {:.1} MB", bytes as f64 / 1e6),
        &small,
        only.as_deref(),
    );
    fs::remove_dir_all(&small).unwrap();

    // Reading back the mixed tree's layer, per codec.
    println!("\n(a) read back");
    println!("{:<28} {:>10} {:>10}", "operation", "best MB/s", "median");
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let mut blob = Vec::new();
        let desc =
            write_layer(&tree, &mut blob, &WriteOptions { compression, ..Default::default() })
                .unwrap();
        let tar_size = desc.uncompressed_size;
        let t = measure(|_| {
            let start = Instant::now();
            diff_id(&blob[..], &Default::default()).unwrap();
            start.elapsed()
        });
        report(&format!("diff_id ({compression})"), tar_size, t, "");

        // A fresh directory per run; removing it afterwards is not timed.
        let t = measure(|n| {
            let dst = work.path().join(format!("unpacked-{compression}-{n}"));
            fs::create_dir(&dst).unwrap();
            let start = Instant::now();
            let stats = unpack(&blob[..], &dst, &UnpackOptions::default()).unwrap();
            let elapsed = start.elapsed();
            assert_eq!(stats.diff_id, desc.diff_id);
            fs::remove_dir_all(&dst).unwrap();
            elapsed
        });
        report(&format!("unpack ({compression})"), tar_size, t, "");
    }
}
