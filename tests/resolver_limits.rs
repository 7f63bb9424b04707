//! Lab scenarios for bounded cost: huge, slow, compressed-bomb and silent
//! servers. Deadlines in these tests are short on purpose; the only timing
//! bound asserted is the 60 s guard against hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod lab;

use std::sync::atomic::Ordering;
use std::time::Duration;

use lab::{Lab, assert_conclusion, enc, lab_resolver, resolve, resolver_with, shape};
use link_peeler_wire::protocol::{Conclusion, RedirectKind};

#[tokio::test]
async fn a_200_mb_page_is_read_only_up_to_the_cap() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/huge")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(shape(&r), vec![(Some(200), None)]);
    // The connection was dropped long before the end: whatever the socket
    // buffers absorbed, far less than the 200 MB were sent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = lab.stats.body_bytes_sent.load(Ordering::SeqCst);
    assert!(sent < 100 << 20, "server sent {sent} bytes");
}

#[tokio::test]
async fn a_meta_refresh_inside_the_cap_is_seen_and_one_beyond_it_is_not() {
    let lab = Lab::start("127.0.0.1").await;
    let resolver = lab_resolver();
    let inside = lab.url(&format!("/huge?at={}&to={}", 100 * 1024, enc(b"/ok")));
    let r = resolve(&resolver, &inside).await;
    assert_eq!(
        shape(&r),
        vec![
            (Some(200), Some(RedirectKind::MetaRefresh)),
            (Some(200), None)
        ]
    );
    let beyond = lab.url(&format!("/huge?at={}&to={}", 300 * 1024, enc(b"/ok")));
    let r = resolve(&resolver, &beyond).await;
    assert_eq!(shape(&r), vec![(Some(200), None)]);
}

#[tokio::test]
async fn a_gzip_bomb_is_decompressed_only_up_to_the_cap() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/bomb?mb=64")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    // The meta refresh after the 64 MiB of zeros was never reached.
    assert_eq!(shape(&r), vec![(Some(200), None)]);
}

#[tokio::test]
async fn a_gzipped_page_is_decompressed_and_scanned() {
    use std::io::Write as _;
    let page = lab::meta_page("0;url=/ok");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(page.as_bytes()).expect("gzip");
    let body = enc.finish().expect("gzip");
    let lab = Lab::with(
        "127.0.0.1",
        std::sync::Arc::new(move |req: &lab::Req| match req.path() {
            "/gz" => lab::Reply::Full {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), b"text/html".to_vec()),
                    ("Content-Encoding".into(), b"gzip".to_vec()),
                ],
                body: body.clone(),
            },
            _ => lab::standard(req),
        }),
    )
    .await;
    let r = resolve(&lab_resolver(), &lab.url("/gz")).await;
    assert_eq!(
        shape(&r),
        vec![
            (Some(200), Some(RedirectKind::MetaRefresh)),
            (Some(200), None)
        ]
    );
    let accept = lab.requests()[0]
        .header("accept-encoding")
        .unwrap_or("")
        .to_string();
    assert!(accept.contains("gzip"), "{accept}");
}

#[tokio::test]
async fn a_dribbling_body_ends_at_the_deadline_with_the_hops_kept() {
    let lab = Lab::start("127.0.0.1").await;
    let resolver = resolver_with(|c| c.timeout = Duration::from_secs(3));
    let r = resolve(&resolver, &lab.url("/status/302?to=/slow")).await;
    assert_conclusion(&r, Conclusion::Timeout);
    assert_eq!(
        shape(&r),
        vec![(Some(302), Some(RedirectKind::Location)), (Some(200), None)]
    );
    let why = r.error.unwrap_or_default();
    assert!(why.contains("whole resolution"), "{why}");
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_per_hop_deadline() {
    let lab = Lab::start("127.0.0.1").await;
    let resolver = resolver_with(|c| c.per_hop_timeout = Duration::from_secs(2));
    let r = resolve(&resolver, &lab.url("/status/302?to=/never")).await;
    assert_conclusion(&r, Conclusion::Timeout);
    assert_eq!(
        shape(&r),
        vec![(Some(302), Some(RedirectKind::Location)), (None, None)]
    );
    assert_eq!(r.final_url, lab.url("/never"));
    let why = r.error.unwrap_or_default();
    assert!(why.contains("per-hop"), "{why}");
    assert_eq!(lab.connections(), 1);
}

#[tokio::test]
async fn the_whole_chain_deadline_covers_many_slow_hops() {
    let lab = Lab::start("127.0.0.1").await;
    let resolver = resolver_with(|c| {
        c.timeout = Duration::from_millis(800);
        c.per_hop_timeout = Duration::from_secs(15);
    });
    let r = resolve(&resolver, &lab.url("/never")).await;
    assert_conclusion(&r, Conclusion::Timeout);
    assert!(r.error.unwrap_or_default().contains("whole resolution"));
}
