//! One webhook attempt: sign, send through the address guard, judge the answer.
//!
//! The relay's only outbound requests go through here, so the rules of the
//! agent's resolver apply: a proxy is never used (it would reach what the
//! guard refuses on our behalf), names resolve only through the guard's
//! resolver, an IP-literal host is judged before any connection, redirects
//! are never followed, and each attempt has one deadline for everything.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use link_peeler_guard::dns::{GuardedResolve, SystemResolve};
use link_peeler_guard::{Blocked, Guard};
use link_peeler_wire::client::parse_retry_after;
use link_peeler_wire::protocol::{HEADER_WEBHOOK_DELIVERY, HEADER_WEBHOOK_EVENT};
use link_peeler_wire::signing::Signer;

use crate::store::DueDelivery;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver answered 2xx.
    Delivered(u16),
    /// Worth trying again: a network error, a timeout, 408, 429 or 5xx.
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Any other answer: not tried again.
    Rejected { status: u16, error: String },
    /// The guard refused the target; nothing was sent.
    Refused(String),
}

/// Sends webhook attempts; one per relay, its connections shared.
pub struct Sender {
    http: reqwest::Client,
    guard: Arc<Guard>,
}

impl Sender {
    /// A sender whose guard opens `allow` and whose attempts last at most `timeout`.
    pub fn new(allow: Vec<ipnet::IpNet>, timeout: Duration) -> anyhow::Result<Sender> {
        link_peeler_wire::tls::init();
        let guard = Arc::new(Guard::new(allow));
        let dns = Arc::new(GuardedResolve::new(Arc::new(SystemResolve), guard.clone()));
        let http = reqwest::Client::builder()
            .user_agent(concat!("link-peeler-relay/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .referer(false)
            .dns_resolver(dns)
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build()?;
        Ok(Sender { http, guard })
    }

    /// Posts `body` (the job JSON) for `d`, signed with its key's secret.
    pub async fn send(&self, d: &DueDelivery, body: Vec<u8>) -> Verdict {
        let url = match url::Url::parse(&d.url) {
            Ok(u) => u,
            Err(e) => return Verdict::Refused(format!("the webhook URL is not valid: {e}")),
        };
        let Some(host) = url.host() else {
            return Verdict::Refused("the webhook URL has no host".into());
        };
        if let Err(b) = self.guard.check_host(&host) {
            return Verdict::Refused(b.to_string());
        }
        let signer = Signer::new(d.api_key_id.clone(), d.secret.as_bytes());
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_WEBHOOK_EVENT, d.event.as_str())
            .header(HEADER_WEBHOOK_DELIVERY, &d.delivery_id);
        for (name, value) in signer.headers(&body) {
            req = req.header(name, value);
        }
        match req.body(body).send().await {
            Ok(resp) => {
                if let Some(addr) = resp.remote_addr()
                    && let Err(b) = self.guard.check_ip(addr.ip())
                {
                    // Defence in depth: the resolver already filtered the addresses.
                    return Verdict::Refused(b.to_string());
                }
                judge(resp.status().as_u16(), resp.headers())
                // The body is dropped unread: receivers' answers are not kept.
            }
            Err(e) => match blocked(&e) {
                Some(b) => Verdict::Refused(b.to_string()),
                None => Verdict::Retry {
                    status: None,
                    error: if e.is_timeout() {
                        "timed out".to_owned()
                    } else {
                        link_peeler_wire::client::chain(&e)
                    },
                    retry_after: None,
                },
            },
        }
    }
}

/// The guard's refusal, if that is why the request failed.
fn blocked<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Blocked> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<Blocked>() {
            return Some(b);
        }
        source = s.source();
    }
    None
}

/// The verdict on an answer's status (protocol.md §3.12).
pub fn judge(status: u16, headers: &reqwest::header::HeaderMap) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered(status),
        408 | 429 | 500..=599 => Verdict::Retry {
            status: Some(status),
            error: format!("HTTP {status}"),
            retry_after: headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
        },
        300..=399 => Verdict::Rejected {
            status,
            error: format!("HTTP {status}: redirects are not followed"),
        },
        _ => Verdict::Rejected {
            status,
            error: format!("HTTP {status}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn statuses_are_judged_as_documented() {
        let none = HeaderMap::new();
        assert_eq!(judge(200, &none), Verdict::Delivered(200));
        assert_eq!(judge(204, &none), Verdict::Delivered(204));
        for s in [408, 429, 500, 502, 503, 599] {
            assert!(matches!(judge(s, &none), Verdict::Retry { .. }), "{s}");
        }
        for s in [301, 302, 400, 401, 403, 404, 410, 422] {
            assert!(matches!(judge(s, &none), Verdict::Rejected { .. }), "{s}");
        }
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        match judge(503, &h) {
            Verdict::Retry { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(120)))
            }
            other => panic!("{other:?}"),
        }
    }
}
