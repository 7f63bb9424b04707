//! One request of a chain and what its response says about the next URL.
//!
//! Precedence, as a browser applies it:
//! 1. a 301/302/303/307/308 with a usable `Location` — the body is not read;
//! 2. a literal load-time script redirect in the page (scripts run while the
//!    page is parsed, before any refresh timer);
//! 3. the `Refresh` header — which, when valid, also silences every
//!    `<meta refresh>` (the standard's "will declaratively refresh" flag);
//! 4. the page's first valid `<meta refresh>`;
//! 5. where the page's inline scripts and load handlers navigate when run in
//!    the sandbox ([`sandbox`]), only if the page has some: a `javascript`
//!    or `form` hop (a POST form carries its fields);
//! 6. a `<meta refresh>` inside `<noscript>` (what a browser without
//!    scripts would do: t.co's pages rely on it).
//!
//! [`sandbox`]: crate::sandbox
//!
//! Refreshes that wait longer than [`MAX_REFRESH_DELAY`] seconds are not
//! followed (the page is where a person would stay); shorter ones are
//! followed at once, without sleeping.

use http::{HeaderValue, StatusCode, header};
use url::Url;

use link_peeler_wire::protocol::RedirectKind;

use super::body::{BODY_CAP, is_html, read_capped};
use super::html::{self, PageRedirects};
use super::location::{LocationHeader, location_header, resolve_location, resolve_reference};
use super::refresh::parse_refresh;
use super::sandbox;

/// Refreshes with a longer delay are not redirects.
pub const MAX_REFRESH_DELAY: u64 = 10;

/// The next request a response asks for.
#[derive(Debug)]
pub struct Onward {
    pub kind: RedirectKind,
    /// An absolute URL of any scheme (the chain checks it).
    pub target: Url,
    /// The urlencoded fields of a submitted POST form; `None` for a GET.
    pub post_body: Option<String>,
}

/// Where a response points.
#[derive(Debug)]
pub enum Next {
    /// Nowhere: the chain ends on this response.
    End,
    Follow(Onward),
    /// A `Location` that is not a URL at all.
    BadLocation {
        raw: String,
        error: url::ParseError,
    },
    /// Several different `Location` headers: ambiguous, not followed.
    ConflictingLocations,
}

/// What reading a response came to: where it points, and a note for the
/// hop (e.g. the page's scripts ran out of budget).
#[derive(Debug)]
pub struct Read {
    pub next: Next,
    pub note: Option<String>,
}

impl From<Next> for Read {
    fn from(next: Next) -> Self {
        Read { next, note: None }
    }
}

fn follow(kind: RedirectKind, target: Url) -> Next {
    Next::Follow(Onward {
        kind,
        target,
        post_body: None,
    })
}

/// Sends one GET, or a POST with urlencoded fields. The fragment is never
/// sent; cookies are given explicitly so that the loop check knows exactly
/// what was sent.
pub async fn send(
    client: &reqwest::Client,
    url: &Url,
    cookies: Option<HeaderValue>,
    post_body: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut target = url.clone();
    target.set_fragment(None);
    let mut req = match post_body {
        None => client.get(target),
        Some(body) => client
            .post(target)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.to_string()),
    };
    if let Some(c) = cookies {
        req = req.header(header::COOKIE, c);
    }
    req.send().await
}

fn is_redirect_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// A `Refresh` header, per the standard.
enum HeaderRefresh {
    Absent,
    /// A valid refresh without a URL (reload): silences meta refreshes.
    Reload,
    To(u64, Url),
}

fn header_refresh(resp: &reqwest::Response, url: &Url) -> HeaderRefresh {
    let Some(value) = resp.headers().get("refresh") else {
        return HeaderRefresh::Absent;
    };
    match parse_refresh(&String::from_utf8_lossy(value.as_bytes())) {
        None => HeaderRefresh::Absent,
        Some(r) => match r.url {
            None => HeaderRefresh::Reload,
            // An unparsable URL makes the whole header void (step 11).
            Some(u) => match resolve_reference(&u, url) {
                Ok(target) => HeaderRefresh::To(r.delay, target),
                Err(_) => HeaderRefresh::Absent,
            },
        },
    }
}

/// What a page's scripts may know: the User-Agent and the cookies the
/// resolution holds for the page's URL.
pub struct PageContext {
    pub user_agent: String,
    pub cookie: Option<HeaderValue>,
    /// The sandbox must be done by then (the hop's deadline).
    pub deadline: tokio::time::Instant,
}

/// Decides where a response points, reading (a capped part of) the body
/// only when it matters. The caller bounds the time this takes.
pub async fn next_step(
    resp: &mut reqwest::Response,
    url: &Url,
    page_context: PageContext,
) -> Result<Read, reqwest::Error> {
    let status = resp.status();
    if is_redirect_status(status) {
        match location_header(resp.headers()) {
            LocationHeader::One(raw) => {
                return Ok(match resolve_location(raw, url) {
                    Ok(target) => follow(RedirectKind::Location, target),
                    Err(error) => Next::BadLocation {
                        raw: String::from_utf8_lossy(raw).into_owned(),
                        error,
                    },
                }
                .into());
            }
            LocationHeader::Conflicting => return Ok(Next::ConflictingLocations.into()),
            LocationHeader::Missing => {}
        }
    }
    let refresh = header_refresh(resp, url);
    let has_body = !matches!(status.as_u16(), 204 | 205 | 304);
    let page = if has_body && is_html(resp.headers()) {
        let (bytes, _truncated) = read_capped(resp, BODY_CAP).await?;
        html::scan(&String::from_utf8_lossy(&bytes), url)
    } else {
        PageRedirects::default()
    };
    if let Some(nav) = page.script {
        return Ok(follow(RedirectKind::Javascript, nav.target).into());
    }
    let (refresh, noscript) = match refresh {
        HeaderRefresh::To(delay, target) => {
            (Some((RedirectKind::RefreshHeader, delay, target)), None)
        }
        HeaderRefresh::Reload => (None, None),
        // A `<meta refresh>` outside `<noscript>`, followed or not (too
        // long), keeps the one inside from counting.
        HeaderRefresh::Absent => match page.meta {
            Some(n) => (Some((RedirectKind::MetaRefresh, n.delay, n.target)), None),
            None => (None, page.noscript_meta),
        },
    };
    if let Some((kind, delay, target)) = refresh
        && delay <= MAX_REFRESH_DELAY
    {
        return Ok(follow(kind, target).into());
    }
    let mut note = None;
    if page.doc.has_scripts() {
        let env = sandbox::PageEnv {
            url: url.clone(),
            user_agent: page_context.user_agent,
            cookie: page_context
                .cookie
                .map(|c| String::from_utf8_lossy(c.as_bytes()).into_owned())
                .unwrap_or_default(),
        };
        let outcome = sandbox::run_isolated(env, page.doc, page_context.deadline).await;
        if let Some(nav) = outcome.navigation {
            let next = Next::Follow(Onward {
                kind: nav.kind,
                target: nav.target,
                post_body: nav.post_body,
            });
            return Ok(Read {
                next,
                note: outcome.note,
            });
        }
        note = outcome.note;
    }
    let next = match noscript {
        Some(n) if n.delay <= MAX_REFRESH_DELAY => follow(RedirectKind::MetaRefresh, n.target),
        _ => Next::End,
    };
    Ok(Read { next, note })
}
