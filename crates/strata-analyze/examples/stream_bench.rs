//! Memory benchmark: analyses a synthetic image whose single layer is a multi-GB tar that
//! never touches the disk: the layer blob of an OCI layout is a FIFO fed by a thread.
//! Prints the wall time and the peak RSS of the process (VmHWM).
//!
//! `cargo run -p strata-analyze --example stream_bench -- [FILES] [FILE_SIZE]`
//! (default 250000 files of 20 KiB: 5.1 GB).

use std::io::Write;
use std::time::Instant;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let files: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(250_000);
    let file_size: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20 * 1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let layer_hex = "0".repeat(64);
    let fifo = blobs.join(&layer_hex);
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "mkfifo failed");
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]},
        "history": [{"created_by": "/bin/sh -c generate"}],
    });
    let config = serde_json::to_vec(&config).expect("json");
    let put = |bytes: &[u8]| {
        let d = strata_oci::Digest::sha256_of(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).expect("write");
        (d.to_string(), bytes.len())
    };
    let (cd, cn) = put(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_hex}"), "size": 0}],
    });
    let (md, mn) = put(&serde_json::to_vec(&manifest).expect("json"));
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn}]});
    std::fs::write(dir.path().join("index.json"), serde_json::to_vec(&index).expect("json"))
        .expect("write");

    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        let f = std::fs::OpenOptions::new().write(true).open(&writer_path).expect("open fifo");
        let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, f));
        let data = vec![7u8; file_size as usize];
        for i in 0..files {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(file_size);
            let path = format!("data/d{:03}/file-{i:08}.bin", i % 1000);
            b.append_data(&mut h, path, data.as_slice()).expect("write tar");
        }
        b.into_inner().expect("finish").flush().expect("flush");
    });
    let start = Instant::now();
    let (_, analysis) =
        strata_analyze::analyze_image(None, dir.path().to_str().expect("utf-8")).expect("analyze");
    let elapsed = start.elapsed();
    writer.join().expect("writer");
    let total = files * file_size;
    println!(
        "layer: {files} files, {:.2} GB of content; analysed in {:.1} s; peak RSS {} MiB; efficiency {}",
        total as f64 / 1e9,
        elapsed.as_secs_f64(),
        peak_rss_kib() / 1024,
        analysis.efficiency
    );
}
