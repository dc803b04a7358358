//! Throughput of writing and unpacking a ~100 MB tree, per codec.
//!
//! `cargo bench -p strata-layer` (set `STRATA_BENCH_MB` to change the tree size). A plain
//! harness rather than criterion: each run takes seconds and touches the disk, so a few
//! timed repetitions with min/median say what is needed without the extra dependencies.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_layer::{diff_id, unpack, write_layer, Compression, UnpackOptions, WriteOptions};

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

/// Best and median of RUNS timings of `f`, which returns the time to count.
fn measure(mut f: impl FnMut(usize) -> Duration) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..RUNS).map(&mut f).collect();
    times.sort();
    (times[0], times[RUNS / 2])
}

fn report(name: &str, bytes: u64, (best, median): (Duration, Duration), blob: Option<usize>) {
    let mbps = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    let blob = blob.map(|b| format!("{:>12.1}", b as f64 / 1e6)).unwrap_or_default();
    println!("{name:<20} {:>10.1} {:>10.1} {blob}", mbps(best), mbps(median));
}

fn main() {
    // `cargo test --benches` runs this without --bench: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mb: u64 = std::env::var("STRATA_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let (bytes, files) = make_tree(&tree, mb * 1_000_000);
    println!("tree: {files} files, {:.1} MB of content (MB = 10^6 bytes)", bytes as f64 / 1e6);
    println!("{:<20} {:>10} {:>10} {:>12}", "operation", "best MB/s", "median", "blob MB");

    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let opts = WriteOptions { compression, ..Default::default() };
        let mut blob = Vec::new();
        let t = measure(|_| {
            blob = Vec::with_capacity(bytes as usize + (1 << 20));
            let start = Instant::now();
            write_layer(&tree, &mut blob, &opts).unwrap();
            start.elapsed()
        });
        report(&format!("write ({compression})"), bytes, t, Some(blob.len()));

        let t = measure(|_| {
            let start = Instant::now();
            diff_id(&blob[..], &Default::default()).unwrap();
            start.elapsed()
        });
        report(&format!("diff_id ({compression})"), bytes, t, None);

        // A fresh directory per run; removing it afterwards is not timed.
        let t = measure(|n| {
            let dst = work.path().join(format!("unpacked-{compression}-{n}"));
            fs::create_dir(&dst).unwrap();
            let start = Instant::now();
            let stats = unpack(&blob[..], &dst, &UnpackOptions::default()).unwrap();
            let elapsed = start.elapsed();
            assert_eq!(stats.bytes, bytes);
            fs::remove_dir_all(&dst).unwrap();
            elapsed
        });
        report(&format!("unpack ({compression})"), bytes, t, None);
    }
}
