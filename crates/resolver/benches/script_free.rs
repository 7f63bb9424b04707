//! Resolver throughput on pages without scripts (not a test): the cost the
//! sandbox must not add. 10-hop chains on loopback — eight 302s, a page with
//! a `<meta refresh>`, and a landing page with text, links, a form and an
//! external script but no inline script — at concurrency 16.
//!
//! Self-contained (its own tiny HTTP server on 127.0.0.1), so that the same
//! file can be built against an older resolver to compare before and after.
//! Run: `cargo bench -p link-peeler-resolver --bench script_free`. Under
//! `cargo test --all-targets` it only runs a few chains.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use link_peeler_resolver::{Resolver, ResolverConfig};
use link_peeler_wire::protocol::Conclusion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOPS: usize = 10;

fn landing() -> String {
    let mut page = String::from(
        "<!doctype html><html><head><title>Spring sale</title><meta charset=utf-8><link rel=stylesheet href=/s.css><script src=/app.js></script></head><body>",
    );
    for i in 0..60 {
        page.push_str(&format!(
            "<p>Product {i}: a fine thing at a fine price. <a href=\"/p/{i}\" class=item>details</a></p>"
        ));
    }
    page.push_str(
        "<form action=/search><input name=q><button>Search</button></form></body></html>",
    );
    page
}

async fn handle(mut stream: TcpStream, landing: Arc<String>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut have = 0;
    loop {
        let end = loop {
            if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut buf[have..]).await?;
            if n == 0 {
                return Ok(());
            }
            have += n;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.copy_within(end..have, 0);
        have -= end;
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let n: usize = path
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let response = if n > 2 {
            format!(
                "HTTP/1.1 302 Found\r\nLocation: /c/{}\r\nContent-Length: 0\r\n\r\n",
                n - 1
            )
        } else if n == 2 {
            let body =
                "<!doctype html><meta http-equiv=refresh content=\"0;url=/c/1\"><p>One moment";
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else if n == 1 {
            "HTTP/1.1 302 Found\r\nLocation: /c/0\r\nContent-Length: 0\r\n\r\n".to_string()
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{}",
                landing.len(),
                landing
            )
        };
        stream.write_all(response.as_bytes()).await?;
    }
}

async fn level(resolver: &Resolver, url: &str, concurrency: usize, chains: usize) -> f64 {
    let left = Arc::new(AtomicUsize::new(chains));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (resolver, url, left) = (resolver.clone(), url.to_string(), left.clone());
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let r = resolver.resolve(&url).await;
                    assert!(
                        r.conclusion == Conclusion::Resolved && r.hops.len() == HOPS,
                        "{:?} {:?} {}",
                        r.conclusion,
                        r.error,
                        r.hops.len()
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (chains * HOPS) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let landing = Arc::new(landing());
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(handle(s, landing.clone()));
        }
    });
    let resolver = Resolver::new(ResolverConfig {
        allow_networks: vec!["127.0.0.1/32".parse().unwrap()],
        ..ResolverConfig::default()
    })
    .unwrap();
    let url = format!("http://{addr}/c/{}", HOPS - 1);
    let (rounds, chains) = if full { (5, 1500) } else { (1, 16) };
    runtime.block_on(level(&resolver, &url, 4, 40));
    let mut rates = Vec::new();
    for _ in 0..rounds {
        rates.push(runtime.block_on(level(&resolver, &url, 16, chains)));
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "script-free chains ({HOPS} hops: 302s, a meta refresh, a 6 KB landing page), concurrency 16, {rounds} rounds of {chains} chains: median {:.0} hops/s (min {:.0}, max {:.0})",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
}
