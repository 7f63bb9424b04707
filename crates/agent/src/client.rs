//! The agent's HTTP client for the relay: signed requests, one clock fix.
//!
//! Why a dedicated client: every agent request is signed (protocol.md §2), the
//! relay's answers must be turned into the verdicts of [`super::policy`],
//! and a wrong local clock must be corrected from the relay's `serverTime`
//! (or its `Date` header) and the request repeated once — not left to fail
//! forever. Transport matters too: a non-loopback relay is `https://` only
//! (checked in [`super::config::relay_url`]), certificates are checked
//! against the OS trust store (reqwest's rustls + rustls-platform-verifier),
//! and the system proxy is honoured for the relay — but never for a loopback
//! relay, and never by the resolver, which builds its own client.
//!
//! The agent only ever connects out; nothing here listens.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use url::Url;

use super::backoff::parse_retry_after;
use super::policy::{Op, Verdict, decide};
use link_peeler_wire::protocol::{
    EnrollRequest, EnrollResponse, ErrorBody, ErrorCode, PollRequest, PollResponse, ResultPost,
    Task, paths,
};
use link_peeler_wire::signing::{Signer, unix_now};

/// Largest relay answer we read (a poll of 64 tasks with 8 KiB URLs is far below).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Time to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for any request that is not a long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack on top of `waitSeconds` before a long poll counts as hung.
const POLL_SLACK: Duration = Duration::from_secs(20);

/// A failed relay request. Messages are one line and never contain a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RelayError {
    /// No HTTP answer: refused, reset, timed out, DNS or TLS failure.
    #[error("cannot reach the relay at {url}: {detail}")]
    Unreachable {
        url: String,
        detail: String,
        /// The failure was in the TLS handshake (certificate, protocol).
        tls: bool,
    },
    /// An HTTP answer other than success.
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

    /// What the policy table says about this failure.
    pub fn verdict(&self, op: Op) -> Verdict {
        decide(op, self.status(), self.code())
    }
}

/// What `GET /healthz` told us.
#[derive(Debug, Clone)]
pub struct Health {
    pub status: u16,
    pub elapsed: Duration,
    /// The relay's clock from its `Date` header, in unix seconds.
    pub server_time: Option<i64>,
}

/// A client for one relay, optionally holding device credentials.
pub struct RelayClient {
    http: reqwest::Client,
    base: Url,
    signer: Option<Mutex<Signer>>,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient")
            .field("base", &self.base.as_str())
            .field("device", &self.device_id())
            .finish()
    }
}

impl RelayClient {
    /// A client for `base` (already checked by `config::relay_url`), signing with `signer` if given.
    pub fn new(base: Url, signer: Option<Signer>) -> anyhow::Result<RelayClient> {
        link_peeler_wire::tls::init();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("link-peeler-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none());
        if super::config::is_loopback_url(&base) {
            // A proxy has no business relaying traffic to this machine.
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {}", chain(&e)))?;
        Ok(RelayClient {
            http,
            base,
            signer: signer.map(Mutex::new),
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The device id requests are signed with.
    pub fn device_id(&self) -> Option<String> {
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

    /// Start from a known clock offset (the hidden test clock, or a remembered one).
    pub fn set_clock_offset(&self, offset: i64) {
        if let Some(s) = &self.signer
            && let Ok(mut s) = s.lock()
        {
            s.set_clock_offset(offset);
        }
    }

    fn url(&self, path: &str) -> Url {
        // `base` ends with '/', so a relative join keeps any path prefix.
        self.base
            .join(path.trim_start_matches('/'))
            .unwrap_or_else(|_| self.base.clone())
    }

    fn task_result_url(&self, task_id: &str) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.pop_if_empty()
                .extend(["api", "agent", "tasks", task_id, "result"]);
        }
        u
    }

    /// `POST /api/agent/enroll`: exchanges a one-time code for device credentials (unsigned).
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, RelayError> {
        let url = self.url(paths::AGENT_ENROLL);
        let body = serde_json::to_vec(req).map_err(|e| self.local_error(&url, e))?;
        let resp = self
            .http
            .post(url.clone())
            .header("content-type", "application/json")
            .timeout(REQUEST_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(|e| transport(&url, &e))?;
        let (status, _, bytes) = read(resp, &url).await?;
        serde_json::from_slice::<EnrollResponse>(&bytes).map_err(|_| RelayError::Api {
            status: status.as_u16(),
            code: None,
            message:
                "the answer to enrollment was not device credentials (is this a Link Peeler relay?)"
                    .into(),
            retry_after: None,
            server_time: None,
        })
    }

    /// `POST /api/agent/poll`: waits up to `wait_seconds` for up to `capacity` tasks.
    pub async fn poll(&self, capacity: u32, wait_seconds: u32) -> Result<Vec<Task>, RelayError> {
        let body = serde_json::to_vec(&PollRequest {
            capacity,
            wait_seconds,
        })
        .unwrap_or_default();
        let timeout = Duration::from_secs(wait_seconds.into()) + POLL_SLACK;
        let (_, bytes) = self
            .signed_post(self.url(paths::AGENT_POLL), body, timeout)
            .await?;
        serde_json::from_slice::<PollResponse>(&bytes)
            .map(|p| p.tasks)
            .map_err(|e| RelayError::Api {
                status: 200,
                code: None,
                message: format!("unreadable poll answer: {e}"),
                retry_after: None,
                server_time: None,
            })
    }

    /// `POST /api/agent/tasks/{taskId}/result`.
    pub async fn post_result(&self, task_id: &str, post: &ResultPost) -> Result<(), RelayError> {
        let url = self.task_result_url(task_id);
        let body = serde_json::to_vec(post).map_err(|e| self.local_error(&url, e))?;
        self.signed_post(url, body, REQUEST_TIMEOUT).await?;
        Ok(())
    }

    /// `GET /healthz` (unsigned): reachability, round trip and the relay's clock.
    pub async fn health(&self) -> Result<Health, RelayError> {
        let url = self.url(paths::HEALTHZ);
        let started = Instant::now();
        let resp = self
            .http
            .get(url.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| transport(&url, &e))?;
        let elapsed = started.elapsed();
        let server_time = date_header(resp.headers());
        let (status, _, _) = read(resp, &url).await?;
        Ok(Health {
            status: status.as_u16(),
            elapsed,
            server_time,
        })
    }

    /// Proves the relay accepts these credentials without leasing anything:
    /// a signed poll asking for zero tasks is authenticated first and then
    /// refused as `invalid_request`. `Ok` means the signature was accepted.
    pub async fn check_credentials(&self) -> Result<(), RelayError> {
        let body = br#"{"capacity":0,"waitSeconds":0}"#.to_vec();
        match self
            .signed_post(self.url(paths::AGENT_POLL), body, REQUEST_TIMEOUT)
            .await
        {
            Err(RelayError::Api {
                status: 400,
                code: Some(ErrorCode::InvalidRequest | ErrorCode::InvalidJson),
                ..
            }) => Ok(()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn local_error(&self, url: &Url, e: impl std::fmt::Display) -> RelayError {
        RelayError::Unreachable {
            url: url.to_string(),
            detail: format!("cannot encode the request: {e}"),
            tls: false,
        }
    }

    fn headers(&self, body: &[u8]) -> Option<[(&'static str, String); 4]> {
        let s = self.signer.as_ref()?;
        let s = s.lock().ok()?;
        Some(s.headers(body))
    }

    /// Sends a signed POST; on 401 `stale_timestamp` adopts the relay's clock and tries once more.
    async fn signed_post(
        &self,
        url: Url,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), RelayError> {
        let mut fixed_clock = false;
        loop {
            let headers = self.headers(&body).ok_or_else(|| RelayError::Unreachable {
                url: url.to_string(),
                detail: "no device credentials to sign with".into(),
                tls: false,
            })?;
            let mut req = self
                .http
                .post(url.clone())
                .header("content-type", "application/json")
                .timeout(timeout)
                .body(body.clone());
            for (name, value) in headers {
                req = req.header(name, value);
            }
            let resp = req.send().await.map_err(|e| transport(&url, &e))?;
            let date = date_header(resp.headers());
            match read(resp, &url).await {
                Ok((status, _, bytes)) => return Ok((status, bytes)),
                Err(e @ RelayError::Api { .. })
                    if !fixed_clock && e.verdict(Op::Poll) == Verdict::FixClockAndRetryOnce =>
                {
                    let server_time = match &e {
                        RelayError::Api { server_time, .. } => server_time.or(date),
                        RelayError::Unreachable { .. } => date,
                    };
                    let Some(server_time) = server_time else {
                        return Err(e);
                    };
                    let offset = server_time - unix_now();
                    tracing::warn!(
                        offset_seconds = offset,
                        "the relay says our clock is off; signing with its time from now on"
                    );
                    self.set_clock_offset(offset);
                    fixed_clock = true;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reads an answer: `Ok` for 2xx, otherwise the error envelope as a [`RelayError`].
async fn read(
    mut resp: reqwest::Response,
    url: &Url,
) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>), RelayError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(RelayError::Api {
                        status: status.as_u16(),
                        code: None,
                        message: "answer too large".into(),
                        retry_after: None,
                        server_time: None,
                    });
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(transport(url, &e)),
        }
    }
    let bytes = buf;
    if status.is_success() {
        return Ok((status, headers, bytes));
    }
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => RelayError::Api {
            status: status.as_u16(),
            code: Some(body.error.code),
            message: one_line(&format!("{}: {}", body.error.code, body.error.message)),
            retry_after,
            server_time: body.error.server_time,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(&bytes);
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
    })
}

fn date_header(h: &reqwest::header::HeaderMap) -> Option<i64> {
    let v = h.get(reqwest::header::DATE)?.to_str().ok()?;
    let t = httpdate::parse_http_date(v).ok()?;
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs() as i64)
}

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
    fn task_ids_are_one_path_segment() {
        let c = RelayClient::new(Url::parse("http://127.0.0.1:9/lp/").unwrap(), None).unwrap();
        assert_eq!(
            c.task_result_url("job_1").as_str(),
            "http://127.0.0.1:9/lp/api/agent/tasks/job_1/result"
        );
        assert_eq!(
            c.task_result_url("a/../b?c").as_str(),
            "http://127.0.0.1:9/lp/api/agent/tasks/a%2F..%2Fb%3Fc/result"
        );
        assert_eq!(
            c.url(paths::AGENT_POLL).as_str(),
            "http://127.0.0.1:9/lp/api/agent/poll"
        );
    }

    #[test]
    fn verdicts_follow_the_table() {
        let e = RelayError::Api {
            status: 401,
            code: Some(ErrorCode::RevokedKey),
            message: "revoked".into(),
            retry_after: None,
            server_time: None,
        };
        assert_eq!(e.verdict(Op::Poll), Verdict::SignIn);
        let e = RelayError::Unreachable {
            url: "u".into(),
            detail: "refused".into(),
            tls: false,
        };
        assert_eq!(e.verdict(Op::PostResult), Verdict::Retry);
    }

    #[tokio::test]
    async fn unreachable_relay_is_a_transport_error() {
        // Bind then drop a listener so the port is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let c = RelayClient::new(url, Some(Signer::new("dev_x", "s"))).unwrap();
        let e = c.poll(1, 0).await.unwrap_err();
        assert!(matches!(e, RelayError::Unreachable { .. }), "{e}");
        assert!(!e.to_string().contains('\n'));
    }
}
