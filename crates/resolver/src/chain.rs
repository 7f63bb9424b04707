//! The manual redirect loop: one request per hop, every hop recorded.
//!
//! The HTTP client never follows anything itself; this loop does, so that
//! each hop is checked by the guard before it is sent, its cookies are known
//! for loop detection, and its status, kind, target, timing and peer address
//! are recorded. Every way out of the loop is a [`Conclusion`]: nothing here
//! returns an error or panics on what a server sends.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderValue, header};
use reqwest::cookie::{CookieStore, Jar};
use tokio::time::{Instant, timeout_at};
use url::Url;

use link_peeler_wire::protocol::{Conclusion, Hop, RedirectKind, ResolutionResult};

use super::error::classify;
use super::guard::Guard;
use super::hop::{self, Next, Onward, PageContext};
use super::location::is_fetchable;
use super::visited::Visited;

/// Limits of one resolution.
pub struct Limits {
    pub max_hops: u32,
    pub per_hop: Duration,
    pub whole_chain: Duration,
}

/// The hops so far and how to turn them into the final result.
struct Record {
    input: String,
    started: std::time::Instant,
    hops: Vec<Hop>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Record {
    fn finish(self, conclusion: Conclusion, error: Option<String>) -> ResolutionResult {
        let last = self.hops.last();
        ResolutionResult {
            final_url: last.map_or_else(|| self.input.clone(), |h| h.url.clone()),
            final_status: last.and_then(|h| h.status),
            redirect_count: u32::try_from(self.hops.len().saturating_sub(1)).unwrap_or(u32::MAX),
            elapsed_ms: millis(self.started.elapsed()),
            conclusion,
            error,
            hops: self.hops,
            input_url: self.input,
        }
    }
}

/// How a chain ends: its conclusion and, unless it simply resolved, why.
struct Stop {
    conclusion: Conclusion,
    error: Option<String>,
}

impl Stop {
    fn because(conclusion: Conclusion, why: String) -> Self {
        Stop {
            conclusion,
            error: Some(why),
        }
    }

    fn classified(e: &reqwest::Error) -> Self {
        let (conclusion, why) = classify(e);
        Stop::because(conclusion, why)
    }
}

/// The conclusion for a chain that ends on a response.
fn ending(status: u16) -> Stop {
    match status {
        200..=299 => Stop {
            conclusion: Conclusion::Resolved,
            error: None,
        },
        300..=399 => Stop::because(
            Conclusion::HttpError,
            format!("the chain ended on a {status} that does not redirect (no usable Location)"),
        ),
        _ => Stop {
            conclusion: Conclusion::HttpError,
            error: None,
        },
    }
}

/// One request to make: a GET, or a POST carrying a form's fields.
#[derive(Debug, Clone)]
struct Request {
    url: Url,
    post_body: Option<String>,
}

/// Writes where `next` leads into `hop` (a `status` response), or says how
/// the chain ends on it.
fn redirect(hop: &mut Hop, status: u16, next: Next) -> Result<Onward, Stop> {
    match next {
        Next::End => Err(ending(status)),
        Next::ConflictingLocations => Err(Stop::because(
            Conclusion::ProtocolError,
            format!("{status} with several different Location headers"),
        )),
        Next::BadLocation { raw, error } => {
            hop.redirect_kind = Some(RedirectKind::Location);
            Err(Stop::because(
                Conclusion::InvalidUrl,
                format!("{status} redirects to {raw:?}, which is not a valid URL: {error}"),
            ))
        }
        Next::Follow(onward) => {
            hop.redirect_kind = Some(onward.kind);
            hop.location = Some(onward.target.to_string());
            Ok(onward)
        }
    }
}

fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Resolves `input` with an already built client.
pub async fn run(
    client: &reqwest::Client,
    guard: &Guard,
    limits: &Limits,
    user_agent: &str,
    input: &str,
) -> ResolutionResult {
    let record = Record {
        input: input.to_string(),
        started: std::time::Instant::now(),
        hops: Vec::new(),
    };
    let url = match Url::parse(input) {
        Ok(u) => u,
        Err(e) => {
            let hint = if e == url::ParseError::RelativeUrlWithoutBase {
                " (it needs a scheme, e.g. https://)"
            } else {
                ""
            };
            return record.finish(
                Conclusion::InvalidUrl,
                Some(format!("{input:?} is not a valid URL: {e}{hint}")),
            );
        }
    };
    if !is_fetchable(&url) {
        return record.finish(
            Conclusion::UnsupportedScheme,
            Some(format!(
                "only http and https URLs are fetched, not {}:",
                url.scheme()
            )),
        );
    }
    Chain {
        client,
        guard,
        limits,
        chain_deadline: deadline_after(limits.whole_chain),
        jar: Jar::default(),
        visited: Visited::default(),
        record,
        user_agent: user_agent.to_string(),
    }
    .follow(Request {
        url,
        post_body: None,
    })
    .await
}

struct Chain<'a> {
    client: &'a reqwest::Client,
    guard: &'a Guard,
    limits: &'a Limits,
    chain_deadline: Instant,
    jar: Jar,
    visited: Visited,
    record: Record,
    /// What a page's scripts see as `navigator.userAgent`.
    user_agent: String,
}

impl Chain<'_> {
    fn timeout_message(&self, hop_deadline: Instant, phase: &str) -> String {
        if hop_deadline >= self.chain_deadline {
            format!(
                "the whole resolution took longer than {} s ({phase})",
                self.limits.whole_chain.as_secs_f64()
            )
        } else {
            format!(
                "no progress within the per-hop limit of {} s ({phase})",
                self.limits.per_hop.as_secs_f64()
            )
        }
    }

    fn timed_out(&self, hop_deadline: Instant, phase: &str) -> Stop {
        Stop::because(
            Conclusion::Timeout,
            self.timeout_message(hop_deadline, phase),
        )
    }

    /// Follows the chain from `url` to its end, one hop at a time.
    async fn follow(mut self, mut request: Request) -> ResolutionResult {
        loop {
            match self.step(request).await {
                Ok(next) => request = next,
                Err(stop) => return self.record.finish(stop.conclusion, stop.error),
            }
        }
    }

    /// Makes and records one hop: the next request, or how the chain ends.
    /// The hop is recorded whatever happens to it.
    async fn step(&mut self, request: Request) -> Result<Request, Stop> {
        let started = std::time::Instant::now();
        let url = &request.url;
        let mut hop = Hop {
            url: url.to_string(),
            status: None,
            redirect_kind: None,
            location: None,
            elapsed_ms: 0,
            remote_addr: None,
            method: request.post_body.as_ref().map(|_| "POST".to_string()),
            note: None,
        };
        let made = self.make_hop(&request, &mut hop, started).await;
        let status = hop.status;
        self.record.hops.push(hop);
        let onward = made?;
        // A POST is repeated only through a 307/308; every other redirect
        // turns it into a GET, as in browsers.
        let post_body = match onward.kind {
            RedirectKind::Location if matches!(status, Some(307 | 308)) => request.post_body,
            _ => onward.post_body,
        };
        let next = Request {
            url: onward.target,
            post_body,
        };
        self.onward(onward.kind, &next)?;
        Ok(next)
    }

    /// Guards, sends and reads one hop, filling in `hop`; its elapsed time is
    /// set once a request was attempted (a host refused by the guard has none).
    async fn make_hop(
        &mut self,
        request: &Request,
        hop: &mut Hop,
        started: std::time::Instant,
    ) -> Result<Onward, Stop> {
        let url = &request.url;
        // Layer 1 of the guard: the parsed host, before anything is sent.
        let checked = match url.host() {
            Some(host) => self.guard.check_host(&host).map_err(|b| b.to_string()),
            None => Err("the URL has no host".to_string()),
        };
        if let Err(why) = checked {
            return Err(Stop::because(Conclusion::BlockedAddress, why));
        }
        // The caller's rules (destinations, quotas), before anything is sent.
        if let Err(why) = super::meter::before_hop(url) {
            return Err(Stop::because(Conclusion::RefusedByPolicy, why));
        }
        let cookies = self.jar.cookies(url);
        let body = request.post_body.as_deref();
        self.visited.insert(url, cookies.as_ref(), body);
        let hop_deadline = self.chain_deadline.min(deadline_after(self.limits.per_hop));

        let exchanged = self.exchange(request, cookies, hop_deadline, hop).await;
        hop.elapsed_ms = millis(started.elapsed());
        let (status, next) = exchanged?;
        redirect(hop, status, next)
    }

    /// Sends the request and reads where its response points, both before
    /// `hop_deadline`; records the status and the peer in `hop` and keeps the
    /// response's cookies. Layer 3 of the guard checks the peer.
    async fn exchange(
        &mut self,
        request: &Request,
        cookies: Option<HeaderValue>,
        hop_deadline: Instant,
        hop: &mut Hop,
    ) -> Result<(u16, Next), Stop> {
        let url = &request.url;
        let body = request.post_body.as_deref();
        let sent = timeout_at(hop_deadline, hop::send(self.client, url, cookies, body)).await;
        let mut resp = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(Stop::classified(&e)),
            Err(_) => return Err(self.timed_out(hop_deadline, "waiting for the response")),
        };
        super::meter::downloaded_with(|| super::meter::head_bytes(&resp));
        let status = resp.status().as_u16();
        hop.status = Some(status);
        let peer: Option<SocketAddr> = resp.remote_addr();
        hop.remote_addr = peer.map(|a| a.to_string());
        // Layer 3: whatever connected must be allowed too.
        if let Some(Err(b)) = peer.map(|a| self.guard.check_ip(a.ip())) {
            return Err(Stop::because(Conclusion::BlockedAddress, b.to_string()));
        }
        self.jar
            .set_cookies(&mut resp.headers().get_all(header::SET_COOKIE).iter(), url);

        let page_context = PageContext {
            user_agent: self.user_agent.clone(),
            cookie: self.jar.cookies(url),
            deadline: hop_deadline,
        };
        let next = timeout_at(hop_deadline, hop::next_step(&mut resp, url, page_context)).await;
        drop(resp);
        match next {
            Ok(Ok(read)) => {
                hop.note = read.note;
                Ok((status, read.next))
            }
            Ok(Err(e)) => Err(Stop::classified(&e)),
            Err(_) => Err(self.timed_out(hop_deadline, "reading the page")),
        }
    }

    /// Whether the chain goes on to `target` (reached by a `kind` redirect on
    /// the hop just recorded): a fetchable scheme, not already requested with
    /// the same cookies, and within the hop limit.
    fn onward(&self, kind: RedirectKind, next: &Request) -> Result<(), Stop> {
        let target = &next.url;
        if !is_fetchable(target) {
            let why = format!(
                "redirects ({}) to a {}: URL, which is not fetched",
                kind.as_str(),
                target.scheme()
            );
            return Err(Stop::because(Conclusion::UnsupportedScheme, why));
        }
        let cookies = self.jar.cookies(target);
        if self
            .visited
            .contains(target, cookies.as_ref(), next.post_body.as_deref())
        {
            let why = format!("{target} was already requested with the same cookies");
            return Err(Stop::because(Conclusion::RedirectLoop, why));
        }
        let followed = self.record.hops.len();
        if followed > usize::try_from(self.limits.max_hops).unwrap_or(usize::MAX) {
            let why = format!(
                "more than {} redirects (the next one was not followed)",
                self.limits.max_hops
            );
            return Err(Stop::because(Conclusion::TooManyRedirects, why));
        }
        Ok(())
    }
}
