//! The sandbox's corpus: interstitial pages written the way trackers,
//! cloakers and link-protection pages write them, and adversarial pages,
//! each resolved through a real loopback HTTP server. Each page's first line
//! says what must happen:
//!
//! `<!-- expect: /land/x | kinds: javascript,form | method: POST | note: yes | conclusion: … | query: ?a=1 -->`
//!
//! - `expect`: the final URL's path and query; `self` for the page itself,
//!   `blocked` when the last hop was refused by the guard;
//! - `kinds`: the hops' redirect kinds in order (the last hop has none);
//! - `method: POST`: the hop after the `form` hop is a POST;
//! - `note: yes`: the page's hop carries a note (a budget ran out);
//! - `conclusion` (default `resolved`), `query` (appended to the page's URL).
//!
//! Tests talk to 127.0.0.1 only; nothing asserts on timing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failure report

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use link_peeler_resolver::sandbox::MeteredAlloc;
use link_peeler_resolver::{Resolver, ResolverConfig};
use link_peeler_wire::protocol::RedirectKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOC: MeteredAlloc = MeteredAlloc;

struct Expect {
    name: String,
    path: String,
    kinds: Vec<String>,
    post: bool,
    note: bool,
    conclusion: String,
    query: String,
}

fn load_corpus() -> (HashMap<String, String>, Vec<Expect>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut pages = HashMap::new();
    let mut expects = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap();
        let spec = first
            .trim()
            .strip_prefix("<!--")
            .and_then(|s| s.strip_suffix("-->"))
            .unwrap_or_else(|| panic!("{name}: no expectation line"));
        let mut e = Expect {
            name: name.clone(),
            path: String::new(),
            kinds: Vec::new(),
            post: false,
            note: false,
            conclusion: "resolved".into(),
            query: String::new(),
        };
        for part in spec.split(" | ") {
            let (k, v) = part.trim().split_once(':').unwrap();
            let v = v.trim();
            match k.trim() {
                "expect" => e.path = v.to_string(),
                "kinds" => {
                    e.kinds = v
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                "method" => e.post = v == "POST",
                "note" => e.note = v == "yes",
                "conclusion" => e.conclusion = v.to_string(),
                "query" => e.query = v.to_string(),
                other => panic!("{name}: unknown key {other}"),
            }
        }
        pages.insert(name, text);
        expects.push(e);
    }
    (pages, expects)
}

const STEP2: &str = "<body><form method=post action=\"/echo/step\"><input type=hidden name=s value=2></form><script>var f = document.forms[0]; setTimeout(function () { f.submit(); }, 1);</script></body>";

/// A tiny HTTP/1.1 server: `/p/NAME` serves a corpus page (with a cookie),
/// `/p2/post-step` a second interstitial, `/land/…` a script-free landing
/// page, and a POST to `/echo/…` answers 303 to `/land/posted?<body>`.
async fn serve(listener: TcpListener, pages: Arc<HashMap<String, String>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let pages = pages.clone();
        tokio::spawn(async move {
            let _ = handle(stream, &pages).await;
        });
    }
}

async fn handle(mut stream: TcpStream, pages: &HashMap<String, String>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("/").to_string();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let path = target.split('?').next().unwrap_or("").to_string();
    let (status, extra, content) = if method == "POST" && path.starts_with("/echo/") {
        (
            "303 See Other",
            format!("Location: /land/posted?{body}\r\n"),
            String::new(),
        )
    } else if let Some(name) = path.strip_prefix("/p/") {
        match pages.get(name) {
            Some(page) => (
                "200 OK",
                "Set-Cookie: tok=abc; Path=/\r\n".to_string(),
                page.clone(),
            ),
            None => ("404 Not Found", String::new(), String::new()),
        }
    } else if path == "/p2/post-step" {
        ("200 OK", String::new(), STEP2.to_string())
    } else if path.starts_with("/land/") {
        (
            "200 OK",
            String::new(),
            "<!doctype html><title>landed</title><p>landed".to_string(),
        )
    } else {
        ("404 Not Found", String::new(), String::new())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{content}",
        content.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn kind_name(k: Option<RedirectKind>) -> String {
    k.map(|k| k.as_str().to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_page_ends_where_a_browser_would() {
    let (pages, expects) = load_corpus();
    assert!(
        expects.len() >= 40,
        "the corpus has {} pages",
        expects.len()
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(listener, Arc::new(pages)));
    let resolver = Resolver::new(ResolverConfig {
        allow_networks: vec!["127.0.0.1/32".parse().unwrap()],
        ..ResolverConfig::default()
    })
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut failures = Vec::new();
    for e in &expects {
        let start = format!("{base}/p/{}{}", e.name, e.query);
        let r = resolver.resolve(&start).await;
        let kinds: Vec<String> = r
            .hops
            .iter()
            .filter(|h| h.redirect_kind.is_some())
            .map(|h| kind_name(h.redirect_kind))
            .collect();
        let want_final = match e.path.as_str() {
            "self" => start.clone(),
            "blocked" => r.final_url.clone(),
            p => format!("{base}{p}"),
        };
        let mut wrong = Vec::new();
        if r.final_url != want_final {
            wrong.push(format!("final {} (want {want_final})", r.final_url));
        }
        if kinds != e.kinds {
            wrong.push(format!("kinds {kinds:?} (want {:?})", e.kinds));
        }
        if r.conclusion.as_str() != e.conclusion {
            wrong.push(format!(
                "conclusion {} (want {}; error {:?})",
                r.conclusion, e.conclusion, r.error
            ));
        }
        if e.path == "blocked" && r.hops.last().is_some_and(|h| h.status.is_some()) {
            wrong.push("the blocked hop got a response".into());
        }
        let noted = r.hops.first().is_some_and(|h| h.note.is_some());
        if noted != e.note {
            wrong.push(format!(
                "note {:?}",
                r.hops.first().and_then(|h| h.note.clone())
            ));
        }
        if e.post {
            let after_form = r
                .hops
                .iter()
                .position(|h| h.redirect_kind == Some(RedirectKind::Form))
                .map(|i| i + 1);
            let method = after_form
                .and_then(|i| r.hops.get(i))
                .and_then(|h| h.method.clone());
            if method.as_deref() != Some("POST") {
                wrong.push(format!("method after the form hop {method:?}"));
            }
        } else if r.hops.iter().any(|h| h.method.is_some()) {
            wrong.push("a hop has a method".into());
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}", e.name, wrong.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} pages wrong:\n{}",
        failures.len(),
        expects.len(),
        failures.join("\n")
    );
}
