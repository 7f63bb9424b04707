//! The manual redirect loop: one request per hop, every hop recorded.
//!
//! The HTTP client never follows anything itself; this loop does, so that
//! each hop is checked by the guard before it is sent, its cookies are known
//! for loop detection, and its status, kind, target, timing and peer address
//! are recorded. Every way out of the loop is a [`Conclusion`]: nothing here
//! returns an error or panics on what a server sends.

use std::net::SocketAddr;
use std::time::Duration;

use http::header;
use reqwest::cookie::{CookieStore, Jar};
use tokio::time::{Instant, timeout_at};
use url::Url;

use link_peeler_wire::protocol::{Conclusion, Hop, ResolutionResult};

use super::error::classify;
use super::guard::Guard;
use super::hop::{self, Next};
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

    fn fail(mut self, hop: Hop, conclusion: Conclusion, error: String) -> ResolutionResult {
        self.hops.push(hop);
        self.finish(conclusion, Some(error))
    }
}

/// The conclusion for a chain that ends on a response.
fn ending(status: u16) -> (Conclusion, Option<String>) {
    match status {
        200..=299 => (Conclusion::Resolved, None),
        300..=399 => (
            Conclusion::HttpError,
            Some(format!(
                "the chain ended on a {status} that does not redirect (no usable Location)"
            )),
        ),
        _ => (Conclusion::HttpError, None),
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
    }
    .follow(url)
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

    async fn follow(mut self, mut url: Url) -> ResolutionResult {
        loop {
            let started = std::time::Instant::now();
            let mut hop = Hop {
                url: url.to_string(),
                status: None,
                redirect_kind: None,
                location: None,
                elapsed_ms: 0,
                remote_addr: None,
            };
            // Layer 1 of the guard: the parsed host, before anything is sent.
            let checked = match url.host() {
                Some(host) => self.guard.check_host(&host).map_err(|b| b.to_string()),
                None => Err("the URL has no host".to_string()),
            };
            if let Err(why) = checked {
                return self.record.fail(hop, Conclusion::BlockedAddress, why);
            }
            let cookies = self.jar.cookies(&url);
            self.visited.insert(&url, cookies.as_ref());
            let hop_deadline = self.chain_deadline.min(deadline_after(self.limits.per_hop));

            let sent = timeout_at(hop_deadline, hop::send(self.client, &url, cookies)).await;
            let mut resp = match sent {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    hop.elapsed_ms = millis(started.elapsed());
                    let (conclusion, why) = classify(&e);
                    return self.record.fail(hop, conclusion, why);
                }
                Err(_) => {
                    hop.elapsed_ms = millis(started.elapsed());
                    let why = self.timeout_message(hop_deadline, "waiting for the response");
                    return self.record.fail(hop, Conclusion::Timeout, why);
                }
            };
            let status = resp.status().as_u16();
            hop.status = Some(status);
            let peer: Option<SocketAddr> = resp.remote_addr();
            hop.remote_addr = peer.map(|a| a.to_string());
            // Layer 3: whatever connected must be allowed too.
            if let Some(Err(b)) = peer.map(|a| self.guard.check_ip(a.ip())) {
                hop.elapsed_ms = millis(started.elapsed());
                return self
                    .record
                    .fail(hop, Conclusion::BlockedAddress, b.to_string());
            }
            self.jar
                .set_cookies(&mut resp.headers().get_all(header::SET_COOKIE).iter(), &url);

            let next = timeout_at(hop_deadline, hop::next_step(&mut resp, &url)).await;
            drop(resp);
            hop.elapsed_ms = millis(started.elapsed());
            let next = match next {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    let (conclusion, why) = classify(&e);
                    return self.record.fail(hop, conclusion, why);
                }
                Err(_) => {
                    let why = self.timeout_message(hop_deadline, "reading the page");
                    return self.record.fail(hop, Conclusion::Timeout, why);
                }
            };
            let (kind, target) = match next {
                Next::End => {
                    self.record.hops.push(hop);
                    let (conclusion, why) = ending(status);
                    return self.record.finish(conclusion, why);
                }
                Next::ConflictingLocations => {
                    let why = format!("{status} with several different Location headers");
                    return self.record.fail(hop, Conclusion::ProtocolError, why);
                }
                Next::BadLocation { raw, error } => {
                    hop.redirect_kind = Some(link_peeler_wire::protocol::RedirectKind::Location);
                    let why =
                        format!("{status} redirects to {raw:?}, which is not a valid URL: {error}");
                    return self.record.fail(hop, Conclusion::InvalidUrl, why);
                }
                Next::Follow(kind, target) => (kind, target),
            };
            hop.redirect_kind = Some(kind);
            hop.location = Some(target.to_string());
            self.record.hops.push(hop);

            if !is_fetchable(&target) {
                let why = format!(
                    "redirects ({}) to a {}: URL, which is not fetched",
                    kind.as_str(),
                    target.scheme()
                );
                return self.record.finish(Conclusion::UnsupportedScheme, Some(why));
            }
            if self
                .visited
                .contains(&target, self.jar.cookies(&target).as_ref())
            {
                let why = format!("{target} was already requested with the same cookies");
                return self.record.finish(Conclusion::RedirectLoop, Some(why));
            }
            let followed = self.record.hops.len();
            if followed > usize::try_from(self.limits.max_hops).unwrap_or(usize::MAX) {
                let why = format!(
                    "more than {} redirects (the next one was not followed)",
                    self.limits.max_hops
                );
                return self.record.finish(Conclusion::TooManyRedirects, Some(why));
            }
            url = target;
        }
    }
}
