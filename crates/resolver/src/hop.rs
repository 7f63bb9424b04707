//! One request of a chain and what its response says about the next URL.
//!
//! Precedence, as a browser applies it:
//! 1. a 301/302/303/307/308 with a usable `Location` — the body is not read;
//! 2. a literal load-time script redirect in the page (scripts run while the
//!    page is parsed, before any refresh timer);
//! 3. the `Refresh` header — which, when valid, also silences every
//!    `<meta refresh>` (the standard's "will declaratively refresh" flag);
//! 4. the page's first valid `<meta refresh>`, then one inside `<noscript>`.
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

/// Refreshes with a longer delay are not redirects.
pub const MAX_REFRESH_DELAY: u64 = 10;

/// Where a response points.
#[derive(Debug)]
pub enum Next {
    /// Nowhere: the chain ends on this response.
    End,
    /// To this absolute URL (of any scheme; the chain checks it).
    Follow(RedirectKind, Url),
    /// A `Location` that is not a URL at all.
    BadLocation { raw: String, error: url::ParseError },
    /// Several different `Location` headers: ambiguous, not followed.
    ConflictingLocations,
}

/// Sends one GET. The fragment is never sent; cookies are given explicitly
/// so that the loop check knows exactly what was sent.
pub async fn send(
    client: &reqwest::Client,
    url: &Url,
    cookies: Option<HeaderValue>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut target = url.clone();
    target.set_fragment(None);
    let mut req = client.get(target);
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

/// Decides where a response points, reading (a capped part of) the body
/// only when it matters. The caller bounds the time this takes.
pub async fn next_step(resp: &mut reqwest::Response, url: &Url) -> Result<Next, reqwest::Error> {
    let status = resp.status();
    if is_redirect_status(status) {
        match location_header(resp.headers()) {
            LocationHeader::One(raw) => {
                return Ok(match resolve_location(raw, url) {
                    Ok(target) => Next::Follow(RedirectKind::Location, target),
                    Err(error) => Next::BadLocation {
                        raw: String::from_utf8_lossy(raw).into_owned(),
                        error,
                    },
                });
            }
            LocationHeader::Conflicting => return Ok(Next::ConflictingLocations),
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
        return Ok(Next::Follow(RedirectKind::Javascript, nav.target));
    }
    let refresh = match refresh {
        HeaderRefresh::To(delay, target) => Some((RedirectKind::RefreshHeader, delay, target)),
        HeaderRefresh::Reload => None,
        HeaderRefresh::Absent => page
            .meta
            .or(page.noscript_meta)
            .map(|n| (RedirectKind::MetaRefresh, n.delay, n.target)),
    };
    Ok(match refresh {
        Some((kind, delay, target)) if delay <= MAX_REFRESH_DELAY => Next::Follow(kind, target),
        _ => Next::End,
    })
}
