//! Crash safety: `strata load` (and `rmi`) killed with SIGKILL at random instants leave a
//! store that `strata fsck` passes and where the interrupted command simply runs again.
//!
//! The number of kills comes from STRATA_CRASH_ITERATIONS (default 12 for the test suite;
//! `scripts/crash-test.sh` runs 100 on the ~350 MB fixture, as documented in README).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};

fn kill_after(mut cmd: Command, after: Duration) -> bool {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while start.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // SIGKILL: no destructor, no clean-up runs in the victim.
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

#[test]
fn sigkill_during_load_and_rmi_never_corrupts_the_store() {
    let archive_name =
        std::env::var("STRATA_CRASH_ARCHIVE").unwrap_or_else(|_| "big.docker.tar".into());
    let Some(archive) = fixture(&archive_name) else { return };
    let archive = archive.to_str().unwrap().to_string();
    let iterations: usize =
        std::env::var("STRATA_CRASH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let seed: u64 =
        std::env::var("STRATA_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
        });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let env = Env::new();

    // Measure one whole load so kills land anywhere inside it.
    let t = Instant::now();
    env.ok(&["load", "-q", "-i", &archive]);
    let full = t.elapsed();
    let tag = env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).trim().to_string();
    env.ok(&["rmi", &tag]);
    println!("crash test: {archive_name}, full load {full:?}, {iterations} kills, seed {seed}");

    let mut killed = 0;
    for i in 0..iterations {
        let at =
            Duration::from_micros(rng.gen_range(0..(full.as_micros() as u64 * 11 / 10).max(1)));
        let mut load = env.cmd();
        load.args(["load", "-q", "-i", &archive]);
        let was_killed = kill_after(load, at);
        killed += was_killed as usize;
        let fsck = env.cmd().arg("fsck").output().unwrap();
        let report = String::from_utf8_lossy(&fsck.stdout).into_owned();
        assert!(
            fsck.status.success(),
            "iteration {i} (seed {seed}): fsck failed after a kill at {at:?}:\n{report}"
        );
        env.ok(&["load", "-q", "-i", &archive]);
        assert_eq!(env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).trim(), tag);

        // Then kill an rmi part-way, and check again.
        let at_rmi = Duration::from_micros(rng.gen_range(0..20_000));
        let mut rmi = env.cmd();
        rmi.args(["rmi", &tag]);
        kill_after(rmi, at_rmi);
        let fsck = env.cmd().arg("fsck").output().unwrap();
        assert!(
            fsck.status.success(),
            "iteration {i}: fsck failed after killing rmi at {at_rmi:?}"
        );
        // Re-running rmi finishes the job (or finds it already done).
        let _ = env.cmd().args(["rmi", &tag]).output().unwrap();
        env.ok(&["image", "prune", "-f"]);
        assert_eq!(env.ok(&["images", "-q"]), "");
        println!(
            "kill {i:3}: load {} at {:>6} ms, rmi at {:>3} ms: fsck ok, re-run ok ({})",
            if was_killed { "killed" } else { "finished" },
            at.as_millis(),
            at_rmi.as_millis(),
            report.lines().last().unwrap_or_default()
        );
    }
    // Whatever the kills left behind is reclaimable: a prune leaves nothing at all.
    env.ok(&["image", "prune", "-a", "-f"]);
    let fsck = env.ok(&["fsck"]);
    assert!(fsck.contains("0 unreferenced blobs, 0 interrupted writes"), "{fsck}");
    println!(
        "crash test passed: {iterations} iterations, {killed} loads killed mid-way, seed {seed}"
    );
}
