//! Sandbox benchmark (not a test): the engine's cost per page over the
//! corpus (`tests/corpus/`), p50/p99, and the process's peak RSS with the
//! engine in use. Each run is what the resolver does for one page after
//! fetching it: scan the HTML, then run its scripts on a thread with the
//! sandbox's stack (the same `run` the resolver calls; the thread start is
//! included).
//!
//! Run: `cargo bench -p link-peeler-resolver --bench sandbox` (release
//! profile). Under `cargo test --all-targets` it only runs one round.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failure report

use std::path::Path;
use std::time::{Duration, Instant};

use link_peeler_resolver::html::scan;
use link_peeler_resolver::sandbox::{Budget, MeteredAlloc, PageEnv, run};
use url::Url;

#[global_allocator]
static ALLOC: MeteredAlloc = MeteredAlloc;

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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(label: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{label}: {} runs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v.last().unwrap().as_secs_f64() * 1e3
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 20 } else { 1 };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut pages: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    pages.sort();
    let rss_before = peak_rss_mib();
    let (mut interstitial, mut adversarial) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (name, html) in &pages {
            let url = Url::parse(&format!("http://127.0.0.1:8080/p/{name}")).unwrap();
            let started = Instant::now();
            let doc = scan(html, &url).doc;
            if !doc.has_scripts() {
                continue;
            }
            let env = PageEnv {
                url,
                user_agent: "Mozilla/5.0 bench".into(),
                cookie: "tok=abc".into(),
            };
            let outcome = std::thread::Builder::new()
                .stack_size(256 * 1024 * 1024)
                .spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    run(&env, &doc, Budget::default(), deadline)
                })
                .unwrap()
                .join()
                .unwrap();
            std::hint::black_box(outcome);
            let took = started.elapsed();
            if name.starts_with("adv-") {
                adversarial.push(took);
            } else {
                interstitial.push(took);
            }
        }
    }
    println!(
        "sandbox bench: {} corpus pages, {rounds} rounds",
        pages.len()
    );
    report("interstitial pages (scan + engine)", interstitial);
    report(
        "adversarial pages (scan + engine, most run a budget out)",
        adversarial,
    );
    println!(
        "peak RSS {:.1} MiB (before the first page {:.1} MiB)",
        peak_rss_mib(),
        rss_before
    );
}
