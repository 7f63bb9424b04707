//! Lab scenarios for the SSRF guard and error classes. The lab listens on
//! 127.0.0.1 (allowed in most tests) and 127.0.0.2 / [::1] (never allowed
//! unless a test says so); names are answered by a test resolver, never by
//! real DNS.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod lab;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use lab::{Lab, Reply, assert_conclusion, enc, lab_resolver, resolve};
use link_peeler_resolver::{Resolver, ResolverConfig};
use link_peeler_wire::protocol::{Conclusion, RedirectKind};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Answers names from a fixed table; everything else is NXDOMAIN.
struct TestDns(HashMap<String, Vec<SocketAddr>>);

impl Resolve for TestDns {
    fn resolve(&self, name: Name) -> Resolving {
        let answer = self.0.get(name.as_str()).cloned();
        Box::pin(async move {
            match answer {
                Some(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                None => Err("no such host (test resolver)".into()),
            }
        })
    }
}

fn test_dns(allow: &[&str]) -> Resolver {
    let table = [
        ("rebind.test", vec!["127.0.0.1:0"]),
        ("mixed.test", vec!["127.0.0.2:0", "127.0.0.1:0"]),
        ("other.test", vec!["127.0.0.2:0"]),
        ("mapped.test", vec!["[::ffff:127.0.0.1]:0"]),
    ]
    .into_iter()
    .map(|(k, v)| {
        let addrs = v.into_iter().map(|a| a.parse().expect("addr")).collect();
        (k.to_string(), addrs)
    })
    .collect();
    let config = ResolverConfig {
        allow_networks: allow.iter().map(|c| c.parse().expect("cidr")).collect(),
        ..ResolverConfig::default()
    };
    Resolver::with_dns(config, Arc::new(TestDns(table))).expect("resolver")
}

fn assert_blocked_without_response(r: &link_peeler_wire::protocol::ResolutionResult) {
    assert_conclusion(r, Conclusion::BlockedAddress);
    let last = r.hops.last().expect("the blocked hop is recorded");
    assert_eq!(last.status, None);
    assert_eq!(last.remote_addr, None);
    assert!(r.error.is_some());
}

#[tokio::test]
async fn every_loopback_encoding_is_refused_before_any_connection() {
    let lab = Lab::start("127.0.0.1").await;
    let port = lab.addr.port();
    let default = Resolver::new(ResolverConfig::default()).expect("resolver");
    for host in [
        "127.0.0.1",
        "2130706433",
        "0x7f.1",
        "0x7f000001",
        "127.1",
        "017700000001",
        "0177.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "localhost",
        "LocalHost.",
        "lab.localhost",
        "0.0.0.0",
        "0",
    ] {
        let r = resolve(&default, &format!("http://{host}:{port}/ok")).await;
        assert_blocked_without_response(&r);
        assert_eq!(r.hops.len(), 1, "{host}");
    }
    assert_eq!(lab.connections(), 0, "nothing may reach the lab");

    // Control: the same spellings do reach the lab once it is allowed.
    let open = lab_resolver();
    for host in [
        "2130706433",
        "0x7f.1",
        "127.1",
        "017700000001",
        "[::ffff:127.0.0.1]",
    ] {
        let r = resolve(&open, &format!("http://{host}:{port}/ok")).await;
        assert_conclusion(&r, Conclusion::Resolved);
    }
    assert!(lab.connections() > 0);
}

#[tokio::test]
async fn the_peer_address_is_checked_again_after_connecting() {
    // 0.0.0.0 reaches the local machine on Linux: that is why it is refused.
    // Opening 0.0.0.0 alone is not enough: the peer turns out to be
    // 127.0.0.1, which the third layer (remote_addr) refuses.
    let lab = Lab::start("127.0.0.1").await;
    let port = lab.addr.port();
    let only_zero =
        lab::resolver_with(|c| c.allow_networks = vec!["0.0.0.0/32".parse().expect("cidr")]);
    let r = resolve(&only_zero, &format!("http://0.0.0.0:{port}/ok")).await;
    assert_conclusion(&r, Conclusion::BlockedAddress);
    assert_eq!(
        r.hops[0].remote_addr.as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert!(r.error.unwrap_or_default().contains("127.0.0.1"));
    assert_eq!(lab.connections(), 1);
    let both = lab::resolver_with(|c| c.allow_networks.push("0.0.0.0/32".parse().expect("cidr")));
    let r = resolve(&both, &format!("http://0.0.0.0:{port}/ok")).await;
    assert_conclusion(&r, Conclusion::Resolved);
}

#[tokio::test]
async fn ipv6_loopback_is_refused_before_any_connection() {
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipping the [::1] listener part");
        return;
    };
    let lab = Lab::on(listener, Arc::new(lab::standard));
    let default = Resolver::new(ResolverConfig::default()).expect("resolver");
    for url in [
        lab.url("/ok"),
        format!("http://[0:0:0:0:0:0:0:1]:{}/ok", lab.addr.port()),
    ] {
        let r = resolve(&default, &url).await;
        assert_blocked_without_response(&r);
    }
    assert_eq!(lab.connections(), 0);
    let open = lab::resolver_with(|c| c.allow_networks = vec!["::1/128".parse().expect("cidr")]);
    let r = resolve(&open, &lab.url("/ok")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(lab.connections(), 1);
}

#[tokio::test]
async fn a_redirect_from_an_allowed_host_to_a_blocked_one_stops_there() {
    let allowed = Lab::start("127.0.0.1").await;
    let blocked = Lab::start("127.0.0.2").await;
    let resolver = lab_resolver();
    // Only loopback targets: even a broken guard must not send a packet
    // anywhere else (private, metadata and LAN names are covered by the
    // guard's unit tests, which connect nowhere).
    let targets = [
        blocked.url("/ok"),
        format!("http://localhost:{}/ok", blocked.addr.port()),
        format!("http://2130706434:{}/ok", blocked.addr.port()),
        format!("http://0x7f.0.0.2:{}/ok", blocked.addr.port()),
        format!("http://[::ffff:127.0.0.2]:{}/ok", blocked.addr.port()),
        format!("http://[::1]:{}/ok", blocked.addr.port()),
    ];
    for target in &targets {
        let url = allowed.url(&format!("/status/302?to={}", enc(target.as_bytes())));
        let r = resolve(&resolver, &url).await;
        assert_blocked_without_response(&r);
        assert_eq!(r.hops.len(), 2, "{target}");
        assert_eq!(r.hops[0].status, Some(302));
        assert_eq!(r.hops[0].redirect_kind, Some(RedirectKind::Location));
        assert_eq!(r.redirect_count, 1);
    }
    assert_eq!(blocked.connections(), 0);
    // A meta refresh or a script into the LAN is refused just the same.
    for page in [
        format!(
            "/meta?c={}",
            enc(format!("0;url={}", blocked.url("/ok")).as_bytes())
        ),
        format!("/js?to={}", enc(blocked.url("/ok").as_bytes())),
    ] {
        let r = resolve(&resolver, &allowed.url(&page)).await;
        assert_blocked_without_response(&r);
    }
    assert_eq!(blocked.connections(), 0);
    // Control: opened, the second lab is reached.
    let wide =
        lab::resolver_with(|c| c.allow_networks = vec!["127.0.0.0/8".parse().expect("cidr")]);
    let url = allowed.url(&format!(
        "/status/302?to={}",
        enc(blocked.url("/ok").as_bytes())
    ));
    let r = resolve(&wide, &url).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(blocked.connections(), 1);
}

#[tokio::test]
async fn names_that_resolve_to_refused_addresses_are_blocked_at_dns() {
    let lab = Lab::start("127.0.0.1").await;
    let other = Lab::start("127.0.0.2").await;
    let port = lab.addr.port();
    let strict = test_dns(&[]);
    for name in ["rebind.test", "other.test", "mapped.test", "mixed.test"] {
        let r = resolve(&strict, &format!("http://{name}:{port}/ok")).await;
        assert_blocked_without_response(&r);
        let why = r.error.unwrap_or_default();
        assert!(why.contains(name), "{why}");
    }
    assert_eq!(lab.connections(), 0);
    // Control: with 127.0.0.1 open, the name leads to the lab — and of the
    // mixed answers only the allowed address is dialled.
    let open = test_dns(&["127.0.0.1/32"]);
    for name in ["rebind.test", "mapped.test"] {
        let r = resolve(&open, &format!("http://{name}:{port}/ok")).await;
        assert_conclusion(&r, Conclusion::Resolved);
    }
    let r = resolve(
        &open,
        &format!("http://mixed.test:{}/ok", other.addr.port()),
    )
    .await;
    // 127.0.0.2 was filtered out, so 127.0.0.1 (nothing listens on that port) is tried.
    assert_ne!(r.conclusion, Conclusion::Resolved);
    assert_eq!(other.connections(), 0);
    let r = resolve(&open, &format!("http://mixed.test:{port}/ok")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(
        r.hops[0].remote_addr.as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_dns_error_with_hops_kept() {
    let lab = Lab::start("127.0.0.1").await;
    let resolver = test_dns(&["127.0.0.1/32"]);
    let url = lab.url(&format!("/status/302?to={}", enc(b"http://nx.test/")));
    let r = resolve(&resolver, &url).await;
    assert_conclusion(&r, Conclusion::DnsError);
    assert_eq!(r.hops.len(), 2);
    assert_eq!(r.hops[1].status, None);
    assert_eq!(r.final_url, "http://nx.test/");
    assert!(r.error.unwrap_or_default().contains("test resolver"));
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let r = resolve(&lab_resolver(), &format!("http://127.0.0.1:{port}/")).await;
    assert_conclusion(&r, Conclusion::ConnectError);
    assert_eq!(r.hops.len(), 1);
    assert_eq!(r.hops[0].status, None);
    assert!(
        r.error
            .unwrap_or_default()
            .to_lowercase()
            .contains("refused")
    );
}

/// A listener that answers every connection's first bytes with fixed bytes
/// and closes.
async fn raw_server(bytes: &'static [u8]) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut first = [0u8; 4096];
            let _ = sock.read(&mut first).await;
            let _ = sock.write_all(bytes).await;
            let _ = sock.shutdown().await;
        }
    });
    addr
}

#[tokio::test]
async fn a_server_that_does_not_speak_tls_is_a_tls_error() {
    let addr = raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
    let r = resolve(&lab_resolver(), &format!("https://{addr}/")).await;
    assert_conclusion(&r, Conclusion::TlsError);
    assert_eq!(r.hops.len(), 1);
    assert_eq!(r.hops[0].status, None);
}

#[tokio::test]
async fn a_server_that_does_not_speak_http_is_a_protocol_error() {
    let addr = raw_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
    let r = resolve(&lab_resolver(), &format!("http://{addr}/")).await;
    assert_conclusion(&r, Conclusion::ProtocolError);
    assert_eq!(r.hops.len(), 1);
}

#[tokio::test]
async fn a_truncated_response_after_redirects_keeps_the_hops() {
    let addr = raw_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1000\r\n\r\n<p>short",
    )
    .await;
    let lab = Lab::start("127.0.0.1").await;
    let url = lab.url(&format!(
        "/status/302?to={}",
        enc(format!("http://{addr}/").as_bytes())
    ));
    let r = resolve(&lab_resolver(), &url).await;
    assert_conclusion(&r, Conclusion::ProtocolError);
    assert_eq!(r.hops.len(), 2);
    assert_eq!(r.hops[1].status, Some(200));
}

#[tokio::test]
async fn garbage_headers_do_not_panic() {
    let lab = Lab::with(
        "127.0.0.1",
        Arc::new(|req: &lab::Req| match req.path() {
            "/bin" => {
                Reply::Raw(b"HTTP/1.1 302 Found\r\nLocation: \xff\xfe\x00\x01\r\n\r\n".to_vec())
            }
            "/ctl" => Reply::Raw(
                b"HTTP/1.1 302 Found\r\nLocation: /a\x7fb\r\nContent-Length: 0\r\n\r\n".to_vec(),
            ),
            "/refresh-junk" => Reply::html(200, "x").with_header("Refresh", b"\xff;url=\xfe"),
            _ => lab::standard(req),
        }),
    )
    .await;
    let resolver = lab_resolver();
    for p in ["/bin", "/ctl", "/refresh-junk"] {
        let r = resolve(&resolver, &lab.url(p)).await;
        assert!(!r.hops.is_empty(), "{p}: {r:?}");
    }
}

/// A TLS server on 127.0.0.1 with a fresh self-signed certificate (made by
/// the `openssl` command line), answering one HTTP request per connection.
fn self_signed_tls_server() -> Option<SocketAddr> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};

    let dir = tempfile::tempdir().ok()?;
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=lab.test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    if !made.success() {
        return None;
    }
    let cert = CertificateDer::from_pem_file(&cert).ok()?;
    let key = PrivateKeyDer::from_pem_file(&key).ok()?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .ok()?;
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    let addr = listener.local_addr().ok()?;
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                break;
            };
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut buf = [0u8; 4096];
            if tls.read(&mut buf).is_ok() {
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        }
    });
    Some(addr)
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let Some(addr) = self_signed_tls_server() else {
        panic!("the openssl command is needed to make a test certificate");
    };
    let lab = Lab::start("127.0.0.1").await;
    let url = lab.url(&format!(
        "/status/302?to={}",
        enc(format!("https://{addr}/").as_bytes())
    ));
    let r = resolve(&lab_resolver(), &url).await;
    assert_conclusion(&r, Conclusion::TlsError);
    assert_eq!(r.hops.len(), 2);
    assert_eq!(r.hops[1].status, None);
    let why = r.error.unwrap_or_default().to_lowercase();
    assert!(why.contains("certificate"), "{why}");
}
