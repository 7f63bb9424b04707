//! Memory bound, in its own test binary so that no other test shares the
//! process: resolving a gzip bomb that inflates to 512 MiB must not make the
//! process grow anywhere near that (the body cap is 256 KiB decompressed).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod lab;

use lab::{Lab, assert_conclusion, lab_resolver, resolve};
use link_peeler_wire::protocol::Conclusion;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_gzip_bomb_costs_no_memory() {
    let lab = Lab::start("127.0.0.1").await;
    // Build the bomb before measuring.
    let bomb = lab::gzip_bomb(512 << 20);
    assert!(bomb.len() < 4 << 20, "the bomb is small on the wire");
    let before = peak_rss_kib();
    let r = resolve(&lab_resolver(), &lab.url("/bomb?mb=512")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    let (Some(before), Some(after)) = (before, peak_rss_kib()) else {
        eprintln!("no /proc/self/status here; memory not measured");
        return;
    };
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB");
}
