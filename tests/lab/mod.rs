//! The redirect lab: a deliberately small HTTP/1.1 server on loopback that
//! can misbehave on purpose (raw bytes in headers, duplicate headers, bodies
//! that never end or dribble, gzip bombs, silence), and counts every
//! connection it accepts so tests can prove that nothing reached it.
//!
//! It is hand-rolled on a tokio `TcpListener` rather than axum because the
//! interesting responses are exactly the ones a well-behaved framework
//! refuses to produce. Only loopback addresses are ever bound.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request as the lab saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    /// A query parameter, percent-decoded to raw bytes.
    pub fn param_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
    }
    pub fn param(&self, name: &str) -> Option<String> {
        self.param_bytes(name)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.header("cookie")?.split(';').find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |c: u8| char::from(c).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    out
}

/// Percent-encodes every byte except unreserved ones (for `?to=` values).
pub fn enc(s: &[u8]) -> String {
    let mut out = String::new();
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the lab answers.
pub enum Reply {
    /// A complete response with Content-Length, kept alive.
    Full {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    },
    /// Headers, then one byte every `every`, forever.
    Dribble { head: Vec<u8>, every: Duration },
    /// Headers, then `chunk` repeated until `total` bytes or the client goes.
    Endless {
        head: Vec<u8>,
        chunk: Vec<u8>,
        total: u64,
    },
    /// Accept, read the request, never answer.
    Silent,
    /// These exact bytes, then close.
    Raw(Vec<u8>),
}

impl Reply {
    pub fn html(status: u16, body: impl Into<String>) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type".into(), b"text/html; charset=utf-8".to_vec())],
            body: body.into().into_bytes(),
        }
    }
    pub fn redirect(status: u16, location: impl AsRef<[u8]>) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Location".into(), location.as_ref().to_vec())],
            body: Vec::new(),
        }
    }
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((name.to_string(), value.as_ref().to_vec()));
        }
        self
    }
}

pub type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

#[derive(Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub body_bytes_sent: AtomicU64,
    pub requests: Mutex<Vec<Req>>,
    /// Set by the benchmark: count, but do not keep every request.
    pub forget_requests: std::sync::atomic::AtomicBool,
}

/// A running lab server. Dropping it stops accepting.
pub struct Lab {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Lab {
    /// The standard lab (see [`standard`]) on `ip` (a loopback address).
    pub async fn start(ip: &str) -> Lab {
        Lab::with(ip, Arc::new(standard)).await
    }

    pub async fn with(ip: &str, handler: Handler) -> Lab {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind loopback");
        assert!(
            listener.local_addr().expect("addr").ip().is_loopback(),
            "the lab only listens on loopback"
        );
        Lab::on(listener, handler)
    }

    pub fn on(listener: TcpListener, handler: Handler) -> Lab {
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(sock, handler.clone(), s.clone()));
            }
        });
        Lab { addr, stats, task }
    }

    pub fn url(&self, path: &str) -> String {
        match self.addr {
            SocketAddr::V4(a) => format!("http://{a}{path}"),
            SocketAddr::V6(a) => format!("http://[{}]:{}{path}", a.ip(), a.port()),
        }
    }

    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Req> {
        self.stats.requests.lock().expect("lock").clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.target).collect()
    }
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Req> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let method = first.next()?.to_string();
            let target = first.next()?.to_string();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            return Some(Req {
                method,
                target,
                headers,
            });
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Lab",
    }
}

pub fn head(status: u16, headers: &[(String, Vec<u8>)], content_length: Option<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = content_length {
        let _ = write!(out, "Content-Length: {n}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

async fn serve(mut sock: TcpStream, handler: Handler, stats: Arc<Stats>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        if !stats.forget_requests.load(Ordering::Relaxed) {
            stats.requests.lock().expect("lock").push(req.clone());
        }
        match handler(&req) {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut out = head(status, &headers, Some(body.len() as u64));
                if req.method != "HEAD" {
                    out.extend_from_slice(&body);
                }
                if sock.write_all(&out).await.is_err() {
                    return;
                }
                stats
                    .body_bytes_sent
                    .fetch_add(body.len() as u64, Ordering::SeqCst);
            }
            Reply::Raw(bytes) => {
                let _ = sock.write_all(&bytes).await;
                let _ = sock.shutdown().await;
                return;
            }
            Reply::Silent => {
                // Hold the connection open without a word until the client goes.
                let mut sink = [0u8; 1024];
                while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Reply::Dribble { head, every } => {
                if sock.write_all(&head).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(every).await;
                    if sock.write_all(b" ").await.is_err() {
                        return;
                    }
                    stats.body_bytes_sent.fetch_add(1, Ordering::SeqCst);
                }
            }
            Reply::Endless { head, chunk, total } => {
                if sock.write_all(&head).await.is_err() {
                    return;
                }
                let mut sent = 0u64;
                while sent < total {
                    let n = chunk.len().min((total - sent) as usize);
                    if sock.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n as u64;
                    stats.body_bytes_sent.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
    }
}

/// `<html>` with a meta refresh.
pub fn meta_page(content: &str) -> String {
    format!(
        "<!doctype html><html><head><meta http-equiv=\"refresh\" content=\"{content}\"></head><body>moving</body></html>"
    )
}

/// A gzip stream that inflates to `size` zero bytes followed by a meta
/// refresh to `/ok` (which only a reader ignoring the cap would see). Built
/// once per size.
pub fn gzip_bomb(size: usize) -> Vec<u8> {
    static CACHE: OnceLock<Mutex<HashMap<usize, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().expect("lock");
    map.entry(size)
        .or_insert_with(|| {
            let zeros = vec![0u8; 1 << 20];
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let mut left = size;
            while left > 0 {
                let n = left.min(zeros.len());
                enc.write_all(&zeros[..n]).expect("compress");
                left -= n;
            }
            enc.write_all(meta_page("0;url=/ok").as_bytes())
                .expect("compress");
            enc.finish().expect("finish gzip")
        })
        .clone()
}

fn num(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// The standard routes. Query values are percent-decoded raw bytes, so a
/// test can put any byte into a `Location`.
///
/// | path | answer |
/// | --- | --- |
/// | `/ok` | 200 HTML |
/// | `/status/{code}?to=X` | that status, `Location: X` when given |
/// | `/chain/{n}` | 302 to `/chain/{n-1}`; `/chain/0` is 200 |
/// | `/self` | 302 to itself |
/// | `/a`, `/b` | 302 to each other |
/// | `/soft?n=K` | 302 to `/soft?n=K+1` (a query-varying loop) |
/// | `/gate` | 302 to itself with `Set-Cookie: gate=1`; 200 with the cookie |
/// | `/meta?c=CONTENT` | 200 HTML with `<meta refresh content=CONTENT>` |
/// | `/refresh?v=VALUE` | 200 with `Refresh: VALUE` |
/// | `/js?to=X` | 200 HTML with `location.replace("X")` |
/// | `/huge?at=N&to=X` | 200 MB HTML page, meta refresh to X at byte N |
/// | `/slow` | 200 HTML dribbling a byte per second |
/// | `/bomb?mb=N` | gzip body inflating to N MiB |
/// | `/never` | accepts and never answers |
/// | `/ua` | 200 for browser-like User-Agents, 403 otherwise |
/// | `/head405` | 405 to HEAD, 200 to GET |
pub fn standard(req: &Req) -> Reply {
    let path = req.path();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["ok"] => Reply::html(200, "<!doctype html><title>ok</title><p>landed</p>"),
        ["status", code] => {
            let status = num(code).and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
            let mut r = Reply::html(status, format!("<p>status {status}</p>"));
            if let Some(to) = req.param_bytes("to") {
                r = r.with_header("Location", to);
            }
            r
        }
        ["chain", n] => match num(n) {
            Some(0) | None => Reply::html(200, "<p>end of chain</p>"),
            Some(n) => Reply::redirect(302, format!("/chain/{}", n - 1)),
        },
        ["self"] => Reply::redirect(302, "/self"),
        ["a"] => Reply::redirect(302, "/b"),
        ["b"] => Reply::redirect(302, "/a"),
        ["soft"] => {
            let n = req.param("n").and_then(|n| num(&n)).unwrap_or(0);
            Reply::redirect(302, format!("/soft?n={}", n + 1))
        }
        ["gate"] => {
            if req.cookie("gate").as_deref() == Some("1") {
                Reply::html(200, "<p>welcome</p>")
            } else {
                Reply::redirect(302, "/gate").with_header("Set-Cookie", "gate=1; Path=/")
            }
        }
        ["meta"] => Reply::html(200, meta_page(&req.param("c").unwrap_or_default())),
        ["refresh"] => Reply::html(200, "<p>refreshing</p>")
            .with_header("Refresh", req.param_bytes("v").unwrap_or_default()),
        ["js"] => Reply::html(
            200,
            format!(
                "<html><script>window.location.replace({:?})</script></html>",
                req.param("to").unwrap_or_default()
            ),
        ),
        ["huge"] => {
            // 200 MB of HTML; with `at` and `to`, a meta refresh at byte `at`.
            let total: u64 = 200 << 20;
            let mut prefix = Vec::new();
            if let (Some(at), Some(to)) = (req.param("at").and_then(|n| num(&n)), req.param("to")) {
                prefix = vec![b' '; at as usize];
                prefix.extend_from_slice(meta_page(&format!("0; url={to}")).as_bytes());
            }
            let mut h = head(
                200,
                &[("Content-Type".into(), b"text/html".to_vec())],
                Some(total),
            );
            let sent = prefix.len() as u64;
            h.extend_from_slice(&prefix);
            Reply::Endless {
                head: h,
                chunk: vec![b' '; 64 * 1024],
                total: total - sent,
            }
        }
        ["slow"] => Reply::Dribble {
            head: head(
                200,
                &[("Content-Type".into(), b"text/html".to_vec())],
                Some(1 << 20),
            ),
            every: Duration::from_secs(1),
        },
        ["bomb"] => {
            let mb = req.param("mb").and_then(|n| num(&n)).unwrap_or(64) as usize;
            Reply::Full {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), b"text/html".to_vec()),
                    ("Content-Encoding".into(), b"gzip".to_vec()),
                ],
                body: gzip_bomb(mb << 20),
            }
        }
        ["never"] => Reply::Silent,
        ["ua"] => match req.header("user-agent") {
            Some(ua) if ua.starts_with("Mozilla/5.0") => Reply::html(200, "<p>hello browser</p>"),
            _ => Reply::html(403, "<p>bots go away</p>"),
        },
        ["head405"] if req.method == "HEAD" => Reply::html(405, ""),
        ["head405"] => Reply::html(200, "<p>GET works</p>"),
        _ => Reply::html(404, "<p>not found</p>"),
    }
}

// ---- helpers for the resolver tests -------------------------------------

use link_peeler_resolver::{Resolver, ResolverConfig};
use link_peeler_wire::protocol::{Conclusion, RedirectKind, ResolutionResult};

/// A resolver that may reach the lab on 127.0.0.1 (and nothing else the
/// default guard refuses).
pub fn lab_resolver() -> Resolver {
    resolver_with(|_| {})
}

pub fn resolver_with(tweak: impl FnOnce(&mut ResolverConfig)) -> Resolver {
    let mut config = ResolverConfig {
        allow_networks: vec!["127.0.0.1/32".parse().expect("cidr")],
        ..ResolverConfig::default()
    };
    tweak(&mut config);
    Resolver::new(config).expect("resolver builds")
}

/// Resolves with a generous bound so that a bug hangs no test forever.
pub async fn resolve(r: &Resolver, url: &str) -> ResolutionResult {
    tokio::time::timeout(Duration::from_secs(60), r.resolve(url))
        .await
        .expect("resolution finished within 60 s")
}

/// The (status, kind) of each hop.
pub fn shape(r: &ResolutionResult) -> Vec<(Option<u16>, Option<RedirectKind>)> {
    r.hops.iter().map(|h| (h.status, h.redirect_kind)).collect()
}

pub fn assert_conclusion(r: &ResolutionResult, want: Conclusion) {
    assert_eq!(
        r.conclusion,
        want,
        "unexpected conclusion; result: {}",
        serde_json::to_string_pretty(r).unwrap_or_default()
    );
}
