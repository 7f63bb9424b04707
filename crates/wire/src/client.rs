//! The one signed HTTP client for the relay's API, used by every caller: the
//! agent, `link-peeler submit`, the demo, the relay's bench and the tests.
//!
//! Why one: signing, the one clock correction the protocol allows, bounded
//! answers, the error envelope and the classification of transport failures
//! (is it TLS?) are the same for every caller, and five copies had drifted
//! apart. Callers add only what is theirs: typed endpoints and what to do
//! about a failure (the agent's retry table lives in the agent).
//!
//! Clock: on `401 stale_timestamp` the client adopts the relay's clock (the
//! error's `serverTime`, else the `Date` header) for this and every later
//! request and repeats the request once with a fresh nonce (docs/protocol.md
//! §2.6). Proxy: the system proxy is honoured, but never for a loopback relay.
//! Nothing here listens; every connection goes out.
//!
//! Trust: certificates are checked by the platform verifier (the OS trust
//! store). A caller whose relay has a certificate from a private CA passes
//! [`ExtraRoots`] to [`SignedClient::with_roots`]: those CAs are trusted *in
//! addition to* the platform's, for this client only.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use url::Url;

use crate::protocol::{ErrorBody, ErrorCode, MAX_BATCH_JOBS, MAX_BODY_BYTES};
use crate::signing::{Signer, unix_now};

/// Largest answer read. The largest answers list up to [`MAX_BATCH_JOBS`]
/// jobs (a batch, a feed page, a listing page), each carrying a result posted
/// in at most [`MAX_BODY_BYTES`] plus its URL, labels and state; a poll of 64
/// tasks is far below. Anything longer is not a relay's answer.
const MAX_RESPONSE_BYTES: usize = MAX_BATCH_JOBS * (MAX_BODY_BYTES + 32 * 1024);
/// Time to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a request unless the caller says otherwise.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed request. Messages are one line and never contain a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RelayError {
    /// No HTTP answer: refused, reset, timed out, DNS or TLS failure — or the
    /// request could not even be built.
    #[error("cannot reach the relay at {url}: {detail}")]
    Unreachable {
        url: String,
        detail: String,
        /// The failure was in the TLS handshake (certificate, protocol).
        tls: bool,
    },
    /// An HTTP answer other than success, or a success we could not read.
    #[error("relay answered {status}: {message}")]
    Api {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
        retry_after: Option<Duration>,
        server_time: Option<i64>,
    },
}

impl RelayError {
    pub fn status(&self) -> Option<u16> {
        match self {
            RelayError::Api { status, .. } => Some(*status),
            RelayError::Unreachable { .. } => None,
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            RelayError::Api { code, .. } => *code,
            RelayError::Unreachable { .. } => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RelayError::Api { retry_after, .. } => *retry_after,
            RelayError::Unreachable { .. } => None,
        }
    }

    /// A 2xx answer whose body was not what the endpoint returns.
    pub fn unreadable(status: u16, what: impl std::fmt::Display) -> RelayError {
        RelayError::Api {
            status,
            code: None,
            message: one_line(&what.to_string()),
            retry_after: None,
            server_time: None,
        }
    }

    fn local(url: &Url, detail: impl std::fmt::Display) -> RelayError {
        RelayError::Unreachable {
            url: url.to_string(),
            detail: one_line(&detail.to_string()),
            tls: false,
        }
    }
}

/// Certificate authorities trusted for one client on top of the platform's
/// (an organisation's internal CA for its relay), parsed from PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ExtraRoots {
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl std::fmt::Debug for ExtraRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtraRoots({} certificates)", self.certs.len())
    }
}

impl ExtraRoots {
    /// Every `CERTIFICATE` section of a PEM file. Other sections (a key that
    /// came along) are skipped; a file with no section at all, a broken
    /// section or no certificate is an error (one line, no file content).
    /// Each certificate must parse as an X.509 trust anchor.
    pub fn from_pem(pem: &[u8]) -> Result<ExtraRoots, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::{PemObject, SectionKind};
        let mut certs = vec![];
        let mut others = vec![];
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) =
                section.map_err(|e| format!("not valid PEM: {}", one_line(&e.to_string())))?;
            if kind == SectionKind::Certificate {
                certs.push(CertificateDer::from(der));
            } else {
                others.push(format!("{kind:?}"));
            }
        }
        if certs.is_empty() {
            return Err(if !others.is_empty() {
                format!(
                    "contains no certificate (no \"BEGIN CERTIFICATE\" section; found {})",
                    others.join(", ")
                )
            } else if pem.windows(11).any(|w| w == b"-----BEGIN ") {
                "contains no certificate (no \"BEGIN CERTIFICATE\" section)".to_owned()
            } else {
                "not a PEM file (expected \"-----BEGIN CERTIFICATE-----\" sections)".to_owned()
            });
        }
        let mut store = rustls::RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            store.add(cert.clone()).map_err(|e| {
                format!(
                    "certificate {} of {} is not a valid X.509 certificate: {}",
                    i + 1,
                    certs.len(),
                    one_line(&e.to_string())
                )
            })?;
        }
        Ok(ExtraRoots { certs })
    }

    /// How many certificates.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// A successful (2xx) answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as `T`, or an error naming `what` the body should have been.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, RelayError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            RelayError::unreadable(self.status.as_u16(), format!("unreadable {what}: {e}"))
        })
    }
}

/// A client for one relay, optionally holding a key or device credentials.
pub struct SignedClient {
    http: reqwest::Client,
    base: Url,
    signer: Option<Mutex<Signer>>,
}

impl std::fmt::Debug for SignedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedClient")
            .field("base", &self.base.as_str())
            .field("key", &self.key_id())
            .finish()
    }
}

impl SignedClient {
    /// A client for `base`, signing with `signer` if given. `user_agent`
    /// names the caller (`link-peeler-agent/0.1.0`, `link-peeler-submit/…`).
    pub fn new(
        base: Url,
        signer: Option<Signer>,
        user_agent: &str,
    ) -> Result<SignedClient, RelayError> {
        SignedClient::with_roots(base, signer, user_agent, None)
    }

    /// [`SignedClient::new`], trusting `roots` (a private CA) for the relay's
    /// certificate in addition to the platform's trust store.
    pub fn with_roots(
        base: Url,
        signer: Option<Signer>,
        user_agent: &str,
        roots: Option<&ExtraRoots>,
    ) -> Result<SignedClient, RelayError> {
        crate::tls::init();
        let mut builder = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(roots) = roots.filter(|r| !r.is_empty()) {
            let mut certs = Vec::with_capacity(roots.len());
            for der in &roots.certs {
                certs.push(reqwest::Certificate::from_der(der).map_err(|e| {
                    RelayError::local(&base, format!("cannot use the relay CA: {}", chain(&e)))
                })?);
            }
            // Merged into the platform verifier: the OS trust store still counts.
            builder = builder.tls_certs_merge(certs);
        }
        if is_loopback_url(&base) {
            // A proxy has no business relaying traffic to this machine.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| {
            RelayError::local(
                &base,
                format!("cannot build the HTTP client: {}", chain(&e)),
            )
        })?;
        Ok(SignedClient {
            http,
            base,
            signer: signer.map(Mutex::new),
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The key or device id requests are signed with.
    pub fn key_id(&self) -> Option<String> {
        self.signer
            .as_ref()
            .and_then(|s| s.lock().ok().map(|s| s.key_id().to_owned()))
    }

    /// Seconds added to the local clock when signing.
    pub fn clock_offset(&self) -> i64 {
        self.signer
            .as_ref()
            .and_then(|s| s.lock().ok().map(|s| s.clock_offset()))
            .unwrap_or(0)
    }

    /// Start from a known clock offset (a test clock, or a remembered one).
    pub fn set_clock_offset(&self, offset: i64) {
        if let Some(s) = &self.signer
            && let Ok(mut s) = s.lock()
        {
            s.set_clock_offset(offset);
        }
    }

    /// `path` (like `/api/agent/poll`) under the base URL; a path prefix in
    /// the base (`https://host/lp/`) is kept.
    pub fn url(&self, path: &str) -> Url {
        let mut base = self.base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(path.trim_start_matches('/'))
            .unwrap_or_else(|_| self.base.clone())
    }

    /// The base URL with `segments` appended, each one percent-encoded as a
    /// single path segment (for ids taken from answers).
    pub fn url_with_segments(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.pop_if_empty().extend(segments);
        }
        u
    }

    /// An unsigned request (enrollment, `/healthz`).
    pub async fn send_unsigned(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Answer, RelayError> {
        let mut req = self.http.request(method, url.clone()).timeout(timeout);
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let resp = req.send().await.map_err(|e| transport(&url, &e))?;
        read(resp, &url).await
    }

    /// A signed request; on `401 stale_timestamp` adopts the relay's clock
    /// and repeats it once. A `GET` sends an empty body (and signs it).
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Answer, RelayError> {
        let mut fixed_clock = false;
        loop {
            let headers = self
                .headers(&body)
                .ok_or_else(|| RelayError::local(&url, "no credentials to sign with"))?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .timeout(timeout);
            if method != Method::GET {
                req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
            }
            for (name, value) in headers {
                req = req.header(name, value);
            }
            let resp = req
                .body(body.clone())
                .send()
                .await
                .map_err(|e| transport(&url, &e))?;
            let date = date_header(resp.headers());
            match read(resp, &url).await {
                Err(RelayError::Api {
                    status: 401,
                    code: Some(ErrorCode::StaleTimestamp),
                    server_time,
                    ..
                }) if !fixed_clock && server_time.or(date).is_some() => {
                    let offset = server_time.or(date).unwrap_or_default() - unix_now();
                    tracing::warn!(
                        offset_seconds = offset,
                        "the relay says our clock is off; signing with its time from now on"
                    );
                    self.set_clock_offset(offset);
                    fixed_clock = true;
                }
                other => return other,
            }
        }
    }

    fn headers(&self, body: &[u8]) -> Option<[(&'static str, String); 4]> {
        let s = self.signer.as_ref()?;
        let s = s.lock().ok()?;
        Some(s.headers(body))
    }
}

/// True for `127.0.0.0/8`, `::1` and the name `localhost` (resolved by no one but us).
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
    }
}

/// True when `url`'s host is loopback, decided on the URL alone (no DNS).
pub fn is_loopback_url(url: &Url) -> bool {
    url.host().is_some_and(|h| is_loopback_host(&h))
}

/// Reads an answer: `Ok` for 2xx, otherwise the error envelope as a [`RelayError`].
async fn read(mut resp: reqwest::Response, url: &Url) -> Result<Answer, RelayError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(RelayError::unreadable(status.as_u16(), "answer too large"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(transport(url, &e)),
        }
    }
    if status.is_success() {
        return Ok(Answer {
            status,
            headers,
            body,
        });
    }
    Err(error_answer(status, &headers, &body))
}

/// A non-2xx answer as a [`RelayError`]: the envelope's code and message, or
/// a snippet of whatever else came back.
fn error_answer(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> RelayError {
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(envelope) => RelayError::Api {
            status: status.as_u16(),
            code: Some(envelope.error.code),
            message: one_line(&format!(
                "{}: {}",
                envelope.error.code, envelope.error.message
            )),
            retry_after,
            server_time: envelope.error.server_time,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let snippet: String = text.chars().take(120).collect();
            RelayError::Api {
                status: status.as_u16(),
                code: None,
                message: if snippet.trim().is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("no error body")
                        .to_owned()
                } else {
                    one_line(&snippet)
                },
                retry_after,
                server_time: None,
            }
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `Date` header in unix seconds.
pub fn date_header(h: &HeaderMap) -> Option<i64> {
    let v = h.get(reqwest::header::DATE)?.to_str().ok()?;
    let t = httpdate::parse_http_date(v).ok()?;
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

/// A transport failure, with TLS failures told apart (certificate problems
/// need a different hint than a refused connection).
fn transport(url: &Url, e: &reqwest::Error) -> RelayError {
    let detail = chain(e);
    let lower = detail.to_ascii_lowercase();
    let tls = lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("unknownissuer");
    let detail = if e.is_timeout() {
        format!("timed out ({detail})")
    } else {
        detail
    };
    RelayError::Unreachable {
        url: url.to_string(),
        detail,
        tls,
    }
}

/// An error and its sources on one line, without repeats.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![];
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = one_line(&err.to_string());
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_path_segment_and_prefixes_are_kept() {
        let c =
            SignedClient::new(Url::parse("http://127.0.0.1:9/lp/").unwrap(), None, "t").unwrap();
        assert_eq!(
            c.url_with_segments(&crate::protocol::paths::task_result_segments("a/../b?c"))
                .as_str(),
            "http://127.0.0.1:9/lp/api/agent/tasks/a%2F..%2Fb%3Fc/result"
        );
        assert_eq!(
            c.url("/api/agent/poll").as_str(),
            "http://127.0.0.1:9/lp/api/agent/poll"
        );
        let c = SignedClient::new(Url::parse("http://127.0.0.1:9/lp").unwrap(), None, "t").unwrap();
        assert_eq!(
            c.url("/api/agent/poll").as_str(),
            "http://127.0.0.1:9/lp/api/agent/poll"
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:27 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn error_envelopes_and_other_bodies_become_one_line_errors() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        let e = error_answer(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"error":{"code":"quota_exceeded","message":"slow\ndown"}}"#,
        );
        assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(!e.to_string().contains('\n'), "{e}");
        let e = error_answer(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>\nbad</html>",
        );
        assert_eq!((e.status(), e.code()), (Some(502), None));
        assert!(e.to_string().contains("<html> bad</html>"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_relay_is_a_transport_error() {
        // Bind then drop a listener so the port is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let c = SignedClient::new(url, Some(Signer::new("dev_x", "s")), "t").unwrap();
        let e = c
            .send(Method::POST, c.url("/x"), b"{}".to_vec(), REQUEST_TIMEOUT)
            .await
            .unwrap_err();
        assert!(
            matches!(e, RelayError::Unreachable { tls: false, .. }),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'));
    }

    /// Serves one `200` answer of `len` bytes on a loopback port.
    async fn answer_of(len: usize) -> Url {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
            );
            conn.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b' '; 1024 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len());
                if conn.write_all(&chunk[..n]).await.is_err() {
                    return; // the client stopped reading
                }
                left -= n;
            }
        });
        url
    }

    #[tokio::test]
    async fn answers_are_read_up_to_a_full_batch_of_the_largest_jobs_and_no_further() {
        // 500 jobs whose results are each as large as a result post may be.
        let full_batch = MAX_BATCH_JOBS * (MAX_BODY_BYTES + 10 * 1024);
        assert!(full_batch < MAX_RESPONSE_BYTES);
        for (len, ok) in [(full_batch, true), (MAX_RESPONSE_BYTES + 1, false)] {
            let url = answer_of(len).await;
            let c = SignedClient::new(url, None, "t").unwrap();
            let got = c
                .send_unsigned(Method::GET, c.url("/x"), None, REQUEST_TIMEOUT)
                .await;
            match got {
                Ok(answer) => assert!(ok, "{len} bytes read: {}", answer.body.len()),
                Err(e) => {
                    assert!(!ok, "{len} bytes refused: {e}");
                    assert!(e.to_string().contains("answer too large"), "{e}");
                }
            }
        }
    }

    fn test_ca(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn extra_roots_read_every_certificate_of_a_pem_bundle() {
        let (a, a_key) = test_ca("CA one");
        let (b, _) = test_ca("CA two");
        assert_eq!(ExtraRoots::from_pem(a.as_bytes()).unwrap().len(), 1);
        // A bundle, with a key and comments between the certificates.
        let bundle = format!("# internal CAs\n{a}\n{a_key}\nsome text\n{b}");
        let roots = ExtraRoots::from_pem(bundle.as_bytes()).unwrap();
        assert_eq!(roots.len(), 2);
        assert_eq!(format!("{roots:?}"), "ExtraRoots(2 certificates)");
        let client = SignedClient::with_roots(
            Url::parse("https://relay.example/").unwrap(),
            None,
            "t",
            Some(&roots),
        );
        assert!(client.is_ok(), "{client:?}");
    }

    #[test]
    fn extra_roots_refuse_what_is_not_a_pem_certificate_in_one_line() {
        let (_, key) = test_ca("CA");
        let broken_base64 =
            "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
        let not_x509 = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        for (bytes, needle) in [
            (&b""[..], "not a PEM file"),
            (&b"hello, I am not PEM"[..], "not a PEM file"),
            (&[0x30, 0x82, 0x01, 0x0a, 0x02][..], "not a PEM file"),
            (key.as_bytes(), "contains no certificate"),
            (
                &b"-----BEGIN SOMETHING ELSE-----\nAAAA\n-----END SOMETHING ELSE-----\n"[..],
                "contains no certificate",
            ),
            (broken_base64.as_bytes(), "not valid PEM"),
            (not_x509.as_bytes(), "not a valid X.509 certificate"),
        ] {
            let e = ExtraRoots::from_pem(bytes).unwrap_err();
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(!e.contains('\n'), "{e}");
            assert!(
                !e.contains("PRIVATE KEY-----"),
                "no file content in errors: {e}"
            );
        }
    }

    #[test]
    fn loopback_is_decided_on_the_url() {
        for u in [
            "http://localhost:1/",
            "http://127.0.0.2/",
            "http://[::1]/",
            "http://LOCALHOST/",
        ] {
            assert!(is_loopback_url(&Url::parse(u).unwrap()), "{u}");
        }
        for u in [
            "http://example.com/",
            "http://10.0.0.1/",
            "http://a.localhost/",
        ] {
            assert!(!is_loopback_url(&Url::parse(u).unwrap()), "{u}");
        }
    }
}
