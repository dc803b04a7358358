//! Eight processes loading, tagging, saving, removing and pruning on one store at once
//! lose no tag and corrupt no blob. Runs STRATA_STRESS_SECONDS (default 30).

mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};

#[test]
fn eight_processes_of_mixed_commands_share_one_store() {
    let Some(busybox) = fixture("busybox.docker.tar") else { return };
    let busybox = busybox.to_str().unwrap().to_string();
    let seconds: u64 =
        std::env::var("STRATA_STRESS_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let env = Env::new();
    env.ok(&["load", "-q", "-i", &busybox]);

    // A second image that workers load and delete under each other's feet, so blob
    // deletion races with loads that need the same blobs.
    let rootfs = env.path("rootfs.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&rootfs).unwrap());
        let data: Vec<u8> =
            (0..4_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "data.bin", &data[..]).unwrap();
        b.finish().unwrap();
    }
    env.ok(&["import", rootfs.to_str().unwrap(), "shared:latest"]);
    let shared = env.path("shared.tar");
    env.ok(&["save", "-o", shared.to_str().unwrap(), "shared:latest"]);
    env.ok(&["rmi", "shared:latest"]);

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let busybox = busybox.clone();
            let shared = shared.to_str().unwrap().to_string();
            let root = env.root();
            let out_file = env.path(&format!("save-{w}.tar"));
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64 * 7919 + 1);
                let run = |args: &[&str]| -> Output {
                    std::process::Command::new(STRATA)
                        .env("STRATA_ROOT", &root)
                        .args(args)
                        .output()
                        .unwrap()
                };
                let must = |args: &[&str]| {
                    let o = run(args);
                    assert!(
                        o.status.success(),
                        "worker {w}: strata {args:?}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                    o
                };
                let mut mine: BTreeSet<String> = BTreeSet::new();
                let mut next = 0;
                let mut ops = 0;
                while Instant::now() < deadline {
                    ops += 1;
                    match rng.gen_range(0..10) {
                        0 => {
                            must(&["load", "-q", "-i", &busybox]);
                        }
                        1 | 2 => {
                            let t = format!("w{w}/img:{next}");
                            next += 1;
                            must(&["tag", "busybox:latest", &t]);
                            mine.insert(t);
                        }
                        3 => {
                            if let Some(t) = mine.iter().next().cloned() {
                                let o = must(&["rmi", &t]);
                                assert!(String::from_utf8_lossy(&o.stdout)
                                    .contains(&format!("Untagged: {t}")));
                                mine.remove(&t);
                            }
                        }
                        4 => {
                            must(&["load", "-q", "-i", &shared]);
                        }
                        5 => {
                            // Another worker may have removed it already: that is fine.
                            let o = run(&["rmi", "shared:latest"]);
                            let err = String::from_utf8_lossy(&o.stderr);
                            assert!(
                                o.status.success() || err.contains("No such image"),
                                "worker {w}: rmi shared: {err}"
                            );
                        }
                        6 => {
                            must(&["image", "prune", "-f"]);
                        }
                        7 => {
                            must(&["save", "-o", out_file.to_str().unwrap(), "busybox:latest"]);
                        }
                        8 => {
                            if let Some(t) = mine.iter().last() {
                                let o = must(&["inspect", "--format", "{{.Id}}", t]);
                                assert!(String::from_utf8_lossy(&o.stdout).starts_with("sha256:"));
                            }
                        }
                        _ => {
                            must(&["images", "-q"]);
                            must(&["system", "df"]);
                        }
                    }
                }
                (mine, ops)
            })
        })
        .collect();
    let mut total_ops = 0;
    let mut expected = BTreeSet::new();
    for w in workers {
        let (mine, ops) = w.join().expect("a worker failed");
        total_ops += ops;
        expected.extend(mine);
    }
    // Every tag a worker created and did not remove is still there.
    let listed: BTreeSet<String> = env
        .ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .lines()
        .map(str::to_string)
        .collect();
    for t in &expected {
        assert!(listed.contains(t), "tag {t} was lost");
    }
    let fsck = env.ok(&["fsck"]);
    assert!(fsck.contains("is consistent"), "{fsck}");
    println!(
        "8 workers, {seconds} s: {total_ops} commands, {} tags kept, fsck: {}",
        expected.len(),
        fsck.lines().next().unwrap_or("")
    );
}
