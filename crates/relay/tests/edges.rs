//! The relay's connection and HTTP edge (protocol.md §1.3, §6–§8), over real
//! sockets on 127.0.0.1: header, idle and body deadlines; the connection cap
//! and load shedding; surviving a flood past the open-file limit; strict
//! framing and the error envelope everywhere; TLS; `/metrics` only on the
//! operations listener; enrollment guessing throttled.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failure report

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestRelay;
use link_peeler_relay::admin;
use link_peeler_wire::protocol::paths;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const RELAY_BIN: &str = env!("CARGO_BIN_EXE_link-peeler-relay");

/// One HTTP response read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    /// The head, lowercased.
    head: String,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// Reads one response (head and `Content-Length` body); `None` if the
/// connection ended first.
async fn read_response<R: AsyncReadExt + Unpin>(s: &mut R) -> Option<Raw> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    Some(Raw { status, head, body })
}

/// Whether the peer closes the connection within `d` (anything it sends is skipped).
async fn closes_within<R: AsyncReadExt + Unpin>(s: &mut R, d: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(d, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn get_raw(s: &mut TcpStream, path: &str) -> Option<Raw> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    read_response(s).await
}

/// The relay's `relay_…` metric lines, from the operations listener.
async fn metrics(relay: &TestRelay) -> String {
    relay.ops_get(paths::METRICS).await.2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_heads_are_closed_within_the_header_timeout_while_others_are_answered() {
    let header = Duration::from_secs(3);
    let relay = TestRelay::start_with(|c| c.header_timeout = header).await;
    let addr = relay.relay.addr;
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..24 {
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let t0 = Instant::now();
            // A partial request line, partial headers, or nothing at all.
            let first: &[u8] = match i % 3 {
                0 => b"GET /hea",
                1 => b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ",
                _ => b"",
            };
            s.write_all(first).await.unwrap();
            // Then one byte every 2 s until the relay hangs up.
            loop {
                if closes_within(&mut s, Duration::from_secs(2)).await {
                    return t0.elapsed();
                }
                assert!(t0.elapsed() < Duration::from_secs(20), "never closed");
                let _ = s.write_all(b"a").await;
            }
        }));
    }
    // Meanwhile everyone else is answered, promptly.
    let mut answered = 0;
    while started.elapsed() < header + Duration::from_secs(2) {
        let t = Instant::now();
        let (status, _, body) = relay.get(paths::HEALTHZ).await;
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        answered += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answered >= 10, "{answered}");
    for h in slow {
        let took = h.await.unwrap();
        assert!(
            took >= header - Duration::from_millis(300) && took <= header + Duration::from_secs(2),
            "closed after {took:?}"
        );
    }
    let m = metrics(&relay).await;
    assert!(
        m.contains(r#"relay_connections_dropped_total{reason="header_timeout"} 24"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_closes_but_a_long_poll_outlasts_both_timeouts() {
    let relay = TestRelay::start_with(|c| {
        c.header_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(3);
    })
    .await;
    let mut s = TcpStream::connect(relay.relay.addr).await.unwrap();
    let a = get_raw(&mut s, paths::HEALTHZ).await.unwrap();
    assert_eq!(a.status, 200);
    let idle = Instant::now();
    assert!(closes_within(&mut s, Duration::from_secs(8)).await);
    // The idle timeout, not the header timeout, governs a kept-alive connection.
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(2700) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    let (_, device) = relay.device().await;
    let t = Instant::now();
    let p = device.poll(1, 5).await;
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.json["tasks"].as_array().unwrap().len(), 0);
    assert!(
        t.elapsed() >= Duration::from_millis(4900),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_without_waiting_for_unfinished_heads() {
    let relay = TestRelay::start_with(|c| c.header_timeout = Duration::from_secs(60)).await;
    let addr = relay.relay.addr;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n")
        .await
        .unwrap();
    let mut kept = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        get_raw(&mut kept, paths::HEALTHZ).await.unwrap().status,
        200
    );
    let (_, device) = relay.device().await;
    let poll = tokio::spawn(async move { device.poll(1, 30).await });
    let mut held = false;
    for _ in 0..500 {
        if metrics(&relay).await.contains("relay_poll_waiters 1\n") {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(held, "the poll was never held");
    let TestRelay { relay: running, .. } = relay;
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shut down")
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let a = poll.await.unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    assert!(closes_within(&mut slow, Duration::from_secs(1)).await);
    assert!(closes_within(&mut kept, Duration::from_secs(1)).await);
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test]
async fn a_body_trickling_past_the_body_deadline_is_408_and_the_connection_closes() {
    let relay = TestRelay::start_with(|c| c.body_timeout = Duration::from_secs(2)).await;
    let s = TcpStream::connect(relay.relay.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    w.write_all(
        b"POST /api/links/fetch HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{",
    )
    .await
    .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..199 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if w.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let t = Instant::now();
    let a = tokio::time::timeout(Duration::from_secs(10), read_response(&mut r))
        .await
        .expect("answered")
        .expect("a response");
    assert_eq!(
        (a.status, a.code().as_str()),
        (408, "request_timeout"),
        "{a:?}"
    );
    assert!(
        a.head.contains("content-type: application/json"),
        "{}",
        a.head
    );
    assert!(a.head.contains("connection: close"), "{}", a.head);
    assert!(
        t.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        t.elapsed()
    );
    assert!(closes_within(&mut r, Duration::from_secs(3)).await);
    trickle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_cap_new_connections_get_503_and_kept_alive_ones_are_still_served() {
    let relay = TestRelay::start_with(|c| {
        c.max_connections = 4;
        c.header_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = relay.relay.addr;
    assert_eq!(relay.relay.max_connections, 4);
    let mut kept = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        get_raw(&mut kept, paths::HEALTHZ).await.unwrap().status,
        200
    );
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut full = false;
    for _ in 0..200 {
        if metrics(&relay).await.contains("relay_connections 4\n") {
            full = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(full, "{}", metrics(&relay).await);

    for _ in 0..3 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let a = tokio::time::timeout(Duration::from_secs(5), get_raw(&mut extra, paths::HEALTHZ))
            .await
            .expect("answered, not left hanging")
            .expect("a response");
        assert_eq!((a.status, a.code().as_str()), (503, "overloaded"), "{a:?}");
        assert!(a.head.contains("retry-after: 1"), "{}", a.head);
        assert!(closes_within(&mut extra, Duration::from_secs(3)).await);
    }
    // The kept-alive connection is still served.
    let a = get_raw(&mut kept, paths::HEALTHZ).await.unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    // A freed slot is usable again.
    drop(idle.pop());
    // Until the relay has seen the close, a new connection is still shed (and counted).
    let (mut ok, mut shed_meanwhile) = (false, 0);
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        match get_raw(&mut s, paths::HEALTHZ).await {
            Some(a) if a.status == 200 => {
                ok = true;
                break;
            }
            Some(a) if a.status == 503 => shed_meanwhile += 1,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "no slot came free");
    let m = metrics(&relay).await;
    let want = format!(
        r#"relay_connections_dropped_total{{reason="overloaded"}} {}"#,
        3 + shed_meanwhile
    );
    assert!(m.contains(&want), "{want} not in {m}");
}

/// Starts the relay binary with `args`, `sh -c` first running `pre` (e.g. `ulimit -n 64`);
/// returns the child and its `--json` start line.
async fn spawn_relay(dir: &Path, pre: &str, args: &[&str]) -> (Child, Value) {
    let stderr = std::fs::File::create(dir.join("relay.stderr")).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{pre} exec \"$0\" \"$@\""))
        .arg(RELAY_BIN)
        .arg("--db")
        .arg(dir.join("relay.db"))
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the relay printed its start line")
        .unwrap();
    let Some(first) = first else {
        let err = std::fs::read_to_string(dir.join("relay.stderr")).unwrap();
        panic!("the relay exited: {err}");
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, serde_json::from_str(&first).unwrap())
}

fn no_proxy() -> reqwest::Client {
    link_peeler_wire::tls::init();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_process_outlives_a_flood_past_its_open_file_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, start) = spawn_relay(
        dir.path(),
        "ulimit -n 64 &&",
        &["serve", "--listen", "127.0.0.1:0"],
    )
    .await;
    let addr: std::net::SocketAddr = start["listen"].as_str().unwrap().parse().unwrap();
    let mut flood = Vec::new();
    for _ in 0..300 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            flood.push(s);
        }
    }
    assert!(flood.len() > 64, "only {} connections", flood.len());
    assert!(child.try_wait().unwrap().is_none(), "the relay died");
    // Not deaf: while the flood holds every slot, a new client gets a clear answer.
    let mut answer = None;
    let until = Instant::now() + Duration::from_secs(15);
    while answer.is_none() && Instant::now() < until {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            continue;
        };
        answer = tokio::time::timeout(Duration::from_secs(3), get_raw(&mut s, paths::HEALTHZ))
            .await
            .ok()
            .flatten();
        if answer.is_none() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let a = answer.expect("no answer during the flood");
    assert_eq!((a.status, a.code().as_str()), (503, "overloaded"), "{a:?}");
    assert!(child.try_wait().unwrap().is_none(), "the relay died");
    drop(flood);
    // After the flood, business as usual.
    let http = no_proxy();
    let mut healthy = false;
    for _ in 0..150 {
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await
            && r.status() == 200
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "no /healthz after the flood");
    assert!(child.try_wait().unwrap().is_none(), "the relay died");
    let log = std::fs::read_to_string(dir.path().join("relay.stderr")).unwrap();
    assert!(log.contains("open-file limit"), "{log}");
    assert!(log.contains("connection cap lowered"), "{log}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn every_error_is_the_json_envelope_even_from_extractors_and_fallbacks() {
    let relay = TestRelay::start().await;
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/api/links/jobs/%FF", 400, "invalid_request"),
        ("GET", "/api/links/jobs/%FF%FE/x", 404, "not_found"),
        (
            "GET",
            "/api/links/jobs?%FF=%FE&idempotencyKey=%FF",
            401,
            "missing_header",
        ),
        (
            "POST",
            "/api/agent/tasks/%C3%28/result",
            400,
            "invalid_request",
        ),
        ("GET", "/metrics", 404, "not_found"),
        ("DELETE", paths::LINKS_FETCH, 404, "not_found"),
        ("GET", "/nowhere", 404, "not_found"),
    ];
    for (method, path, status, code) in cases {
        let r = relay
            .http
            .request(method.parse().unwrap(), relay.url(path))
            .send()
            .await
            .unwrap();
        let got = r.status().as_u16();
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got, body["error"]["code"].as_str().unwrap_or("")),
            (*status, *code),
            "{method} {path}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert_eq!(ct, "application/json", "{method} {path}");
    }
    // /healthz says nothing but that it is alive.
    let (status, _, body) = relay.get(paths::HEALTHZ).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_400_and_the_connection_closes() {
    let relay = TestRelay::start().await;
    for head in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "transfer-encoding: chunked\r\ncontent-length: 5",
    ] {
        let mut s = TcpStream::connect(relay.relay.addr).await.unwrap();
        let req = format!(
            "POST /api/links/fetch HTTP/1.1\r\nHost: relay\r\n{head}\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let a = tokio::time::timeout(Duration::from_secs(5), read_response(&mut s))
            .await
            .unwrap()
            .expect("a response");
        assert_eq!(
            (a.status, a.code().as_str()),
            (400, "invalid_request"),
            "{a:?}"
        );
        assert!(
            a.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Transfer-Encoding")
        );
        assert!(closes_within(&mut s, Duration::from_secs(3)).await);
    }
    // What hyper cannot frame at all is a bare 400 (no JSON body), and the connection closes.
    for head in [
        "Content-Length: 1\r\nContent-Length: 2",
        "Transfer-Encoding: gzip",
        "Bad Header\u{1}: x",
    ] {
        let mut s = TcpStream::connect(relay.relay.addr).await.unwrap();
        let req = format!("POST /api/links/fetch HTTP/1.1\r\nHost: relay\r\n{head}\r\n\r\n{{}}");
        s.write_all(req.as_bytes()).await.unwrap();
        let a = read_response(&mut s).await.expect("a response");
        assert_eq!(a.status, 400, "{head}: {a:?}");
        assert!(
            closes_within(&mut s, Duration::from_secs(3)).await,
            "{head}"
        );
    }
    // Either alone is fine: a chunked body reaches the handler (401: it is not signed).
    let mut s = TcpStream::connect(relay.relay.addr).await.unwrap();
    s.write_all(
        b"POST /api/links/fetch HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let a = read_response(&mut s).await.unwrap();
    assert_eq!(
        (a.status, a.code().as_str()),
        (401, "missing_header"),
        "{a:?}"
    );
}

#[tokio::test]
async fn metrics_live_on_the_operations_listener_only() {
    let relay = TestRelay::start().await;
    let ops = relay.relay.ops_addr.expect("ops listener");
    assert_ne!(ops, relay.relay.addr);
    assert!(ops.ip().is_loopback());
    let (status, headers, body) = relay.ops_get(paths::METRICS).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    for needle in [
        "relay_connections ",
        r#"relay_connections_dropped_total{reason="idle_timeout"} 0"#,
        "relay_enroll_rate_limited_total 0",
        r#"relay_jobs{state="queued"} 0"#,
    ] {
        assert!(body.contains(needle), "missing {needle} in\n{body}");
    }
    assert_eq!(relay.ops_get(paths::HEALTHZ).await.0, 200);
    let (status, _, body) = relay.get(paths::METRICS).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("relay_jobs"), "{body}");
}

#[tokio::test]
async fn failed_enrollments_are_throttled_per_client_before_the_code_is_looked_up() {
    let relay = TestRelay::start_with(|c| {
        c.enroll_failures_per_ip = 3;
        c.enroll_window = Duration::from_secs(3);
    })
    .await;
    let good = admin::create_enrollment_code(&relay.db, "laptop")
        .unwrap()
        .code;
    let enroll = |code: String| {
        let body = format!(r#"{{"code":"{code}"}}"#).into_bytes();
        relay.raw_post(paths::AGENT_ENROLL, &[], body)
    };
    for _ in 0..3 {
        let a = enroll("AAAA-BBBB-CCCC".into()).await;
        assert_eq!((a.status, a.code()), (403, "forbidden"), "{a:?}");
    }
    let a = enroll("AAAA-BBBB-CCCC".into()).await;
    assert_eq!((a.status, a.code()), (429, "rate_limited"), "{a:?}");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    // While throttled, the right code is refused too, and not spent.
    let a = enroll(good.clone()).await;
    assert_eq!((a.status, a.code()), (429, "rate_limited"), "{a:?}");
    tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(100)).await;
    let a = enroll(good).await;
    assert_eq!(a.status, 200, "{a:?}");
    let m = metrics(&relay).await;
    assert!(m.contains("relay_enroll_rate_limited_total 2"), "{m}");
}

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost, as PEM files.
fn test_pki(dir: &Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Link Peeler test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "relay.test");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (dir.join("relay.crt"), dir.join("relay.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_cert.pem(), cert_path, key_path)
}

#[tokio::test]
async fn serve_with_tls_cert_and_key_speaks_https_to_clients_that_trust_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert, key) = test_pki(dir.path());
    let (mut child, start) = spawn_relay(
        dir.path(),
        "",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let url = start["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{start}");
    link_peeler_wire::tls::init();
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let trusting = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let r = trusting.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"status":"ok"}"#);
    let e = no_proxy()
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect_err("a client without the CA must not connect");
    assert!(e.is_connect() || e.is_request(), "{e:?}");
    // Plain HTTP on the TLS port gets no answer worth having.
    let plain = no_proxy()
        .get(url.replace("https://", "http://") + "/healthz")
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn unreadable_tls_files_fail_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = test_pki(dir.path());
    let missing = dir.path().join("missing.pem");
    let db = dir.path().join("relay.db");
    let run = |cert: &Path, key: &Path| {
        std::process::Command::new(RELAY_BIN)
            .arg("--db")
            .arg(&db)
            .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap()
    };
    for (c, k, named) in [
        (&missing, &key, &missing),
        (&cert, &missing, &missing),
        // A certificate where the key should be, and the other way round.
        (&cert, &cert, &cert),
        (&key, &key, &key),
    ] {
        let out = run(c, k);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .find(|l| l.starts_with("link-peeler-relay: error:"))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(line.contains(named.to_str().unwrap()), "{line}");
    }
    // --tls-cert without --tls-key is a usage error.
    let out = std::process::Command::new(RELAY_BIN)
        .arg("--db")
        .arg(&db)
        .args(["serve", "--tls-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
