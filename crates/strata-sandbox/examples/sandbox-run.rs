//! Runs one command in a sandbox; used to measure per-run overhead against crun/runc.
//!
//! sandbox-run [--net none] [--user U] [--spec OUT.json] ROOT CMD [ARGS...]
//! ROOT is a directory, or `lower1:lower2:...@upper@work` for an overlay (lowers bottom first).

use std::path::PathBuf;
use std::process::ExitCode;

use strata_sandbox::{Config, Network, Process, Rootfs, RunOptions, Sandbox};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut net = Network::Host;
    let mut user = String::new();
    let mut spec_out = None;
    let mut repeat = 0usize;
    let mut volatile = false;
    while args.first().is_some_and(|a| a.starts_with("--")) {
        let flag = args.remove(0);
        if args.is_empty() {
            eprintln!("{flag} needs a value");
            return ExitCode::from(2);
        }
        let v = args.remove(0);
        match flag.as_str() {
            "--net" if v == "none" => net = Network::None,
            "--user" => user = v,
            "--volatile" => volatile = v == "1",
            "--spec" => spec_out = Some(PathBuf::from(v)),
            "--repeat" => repeat = v.parse().unwrap_or(0),
            _ => {
                eprintln!("unknown flag {flag} {v}");
                return ExitCode::from(2);
            }
        }
    }
    if args.len() < 2 {
        eprintln!("usage: sandbox-run [--net none] [--user U] [--spec OUT] ROOT CMD [ARGS...]");
        return ExitCode::from(2);
    }
    let root = args.remove(0);
    let rootfs = match root.split('@').collect::<Vec<_>>()[..] {
        [lowers, upper, work] => Rootfs::Overlay {
            lowers: lowers.split(':').map(PathBuf::from).collect(),
            upper: upper.into(),
            work: work.into(),
        },
        _ => Rootfs::Dir(root.into()),
    };
    let mut process = Process::new(args);
    process.user = user;
    let mut config = Config::new(rootfs, process);
    config.network = net;
    config.volatile = volatile;
    let sandbox = match Sandbox::new(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(125);
        }
    };
    if let Some(out) = spec_out {
        let r = sandbox
            .spec(&PathBuf::from("rootfs"))
            .map_err(|e| e.to_string())
            .and_then(|s| s.save(&out).map_err(|e| e.to_string()));
        if let Err(e) = r {
            eprintln!("error: {e}");
            return ExitCode::from(125);
        }
        return ExitCode::SUCCESS;
    }
    if repeat > 0 {
        // In-process timing: what a build pays per RUN, without this binary's own startup.
        let cpu = || {
            let mut total = 0.0;
            for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
                // SAFETY: getrusage fills the zeroed struct we pass.
                let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
                unsafe { libc::getrusage(who, &mut ru) };
                for tv in [ru.ru_utime, ru.ru_stime] {
                    total += tv.tv_sec as f64 * 1000.0 + tv.tv_usec as f64 / 1000.0;
                }
            }
            total
        };
        let cpu_start = cpu();
        let mut times = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let t = std::time::Instant::now();
            if let Err(e) =
                sandbox.run(&mut std::io::sink(), &mut std::io::sink(), &RunOptions::default())
            {
                eprintln!("error: {e}");
                return ExitCode::from(125);
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
        println!(
            "runs={repeat} cpu/run={:.2}ms mean={mean:.2}ms min={:.2}ms p50={:.2}ms p95={:.2}ms max={:.2}ms",
            (cpu() - cpu_start) / repeat as f64,
            times[0],
            pct(0.5),
            pct(0.95),
            times[times.len() - 1]
        );
        return ExitCode::SUCCESS;
    }
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    match sandbox.run(&mut out, &mut err, &RunOptions::default()) {
        Ok(status) => ExitCode::from(status.code().clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(125)
        }
    }
}
