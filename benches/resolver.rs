//! Resolver benchmark (not a test): many 10-hop loopback chains in one
//! process at concurrency 1, 16 and 256, peak RSS, and one chain through the
//! `link-peeler resolve` binary versus `curl -L`.
//!
//! Run: `cargo bench --bench resolver` (release profile). Under
//! `cargo test --all-targets` (no `--bench` argument) it only runs a small
//! smoke pass so that the test suite stays fast.
//!
//! Only loopback is used: the lab server from `tests/lab` runs in this
//! process on 127.0.0.1, and the resolver is opened to 127.0.0.1/32 only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use link_peeler_resolver::Resolver;
use link_peeler_wire::protocol::Conclusion;

/// `/chain/9`: nine 302s and a 200 — ten hops, ten requests.
const CHAIN: &str = "/chain/9";
const HOPS_PER_CHAIN: usize = 10;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU seconds used by this process so far (user + system; /proc reports
/// them in USER_HZ = 100 ticks per second on Linux).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the ")" that closes the command name; utime and
            // stime are fields 14 and 15 of the line, 12 and 13 after it.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// Resolves `chains` chains with `concurrency` tasks; returns the wall time.
async fn run_level(resolver: &Resolver, url: &str, concurrency: usize, chains: usize) -> Duration {
    let left = Arc::new(AtomicUsize::new(chains));
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (resolver, url, left, failures) = (
                resolver.clone(),
                url.to_string(),
                left.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let r = resolver.resolve(&url).await;
                    let expected =
                        r.conclusion == Conclusion::Resolved && r.hops.len() == HOPS_PER_CHAIN;
                    if !expected && failures.fetch_add(1, Ordering::SeqCst) == 0 {
                        eprintln!("unexpected result: {:?} {:?}", r.conclusion, r.error);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    let failed = failures.load(Ordering::SeqCst);
    assert_eq!(failed, 0, "{failed} chains did not resolve as expected");
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Wall time of one whole process, or `None` when it failed.
fn time_process(mut cmd: Command) -> Option<Duration> {
    let started = Instant::now();
    let out = cmd.output().ok()?;
    let took = started.elapsed();
    if !out.status.success() {
        eprintln!("process failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(took)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let lab = runtime.block_on(lab::Lab::start("127.0.0.1"));
    lab.stats.forget_requests.store(true, Ordering::Relaxed);
    let url = lab.url(CHAIN);
    let resolver = lab::lab_resolver();

    let levels: &[(usize, usize)] = if full {
        &[(1, 300), (16, 1600), (256, 2560)]
    } else {
        &[(1, 2), (16, 16), (256, 256)]
    };
    println!(
        "resolver bench: {HOPS_PER_CHAIN}-hop chains ({CHAIN}) on {}",
        lab.addr
    );
    runtime.block_on(run_level(&resolver, &url, 4, 40)); // warm-up
    for &(concurrency, chains) in levels {
        let cpu_before = cpu_seconds();
        let t = runtime.block_on(run_level(&resolver, &url, concurrency, chains));
        let cpu = cpu_seconds() - cpu_before;
        let secs = t.as_secs_f64();
        let hops = (chains * HOPS_PER_CHAIN) as f64;
        println!(
            "concurrency {concurrency:>3}: {chains:>5} chains in {secs:>6.2} s = {:>6.0} hops/s, {:>5.0} chains/s | {:>6.0} hops per CPU-second (client + lab) | peak RSS so far {:.1} MiB",
            hops / secs,
            chains as f64 / secs,
            hops / cpu,
            peak_rss_mib()
        );
    }
    let total_chains: usize = 40 + levels.iter().map(|l| l.1).sum::<usize>();
    println!(
        "lab connections: {} for {total_chains} chains (one per chain: hops reuse it, chains never share)",
        lab.connections()
    );
    let budget = 64.0 + 256.0 * 300.0 / 1024.0;
    println!(
        "peak RSS {:.1} MiB (budget at concurrency 256: {budget:.0} MiB; includes the in-process lab server)",
        peak_rss_mib()
    );

    // One chain, whole process: link-peeler resolve vs curl -L.
    let runs = if full { 30 } else { 2 };
    let bin = env!("CARGO_BIN_EXE_link-peeler");
    // Interleaved, so that both see the same machine load.
    let (mut ours, mut curl) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut c = Command::new(bin);
        c.args(["resolve", "--allow-network", "127.0.0.1/32", &url]);
        ours.extend(time_process(c));
        let mut c = Command::new("curl");
        c.args(["-sS", "-L", "-o", "/dev/null", &url]);
        curl.extend(time_process(c));
    }
    let ours = (ours.len() == runs).then(|| median(ours));
    let curl = (curl.len() == runs).then(|| median(curl));
    match (ours, curl) {
        (Some(o), Some(c)) => println!(
            "single chain, median of {runs} interleaved processes each: link-peeler resolve {:.2} ms, curl -L {:.2} ms, ratio {:.2}x",
            o.as_secs_f64() * 1e3,
            c.as_secs_f64() * 1e3,
            o.as_secs_f64() / c.as_secs_f64()
        ),
        _ => println!("single chain comparison skipped (binary or curl failed)"),
    }
    drop(lab);
}
