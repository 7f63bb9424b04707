//! Mapping failures to protocol.md §5 conclusions with a readable message.
//!
//! reqwest wraps hyper, hyper-util, rustls and io errors several layers deep;
//! its own predicates (`is_connect`, `is_dns`) see only some layers, and a
//! rustls alert hides inside an `io::Error` whose `source()` skips it. So the
//! whole source chain is walked, including into `io::Error::get_ref`.

use std::error::Error as StdError;

use link_peeler_wire::protocol::Conclusion;

use super::guard::Blocked;

/// Why a [`Resolver`](super::Resolver) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("could not set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the user agent {0:?} is not a valid HTTP header value")]
    InvalidUserAgent(String),
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Every error in the chain, outermost first, looking inside `io::Error`s.
fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        out.push(e);
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
        if out.len() > 32 {
            break;
        }
    }
    out
}

/// Classifies a request failure into a conclusion and a message.
pub fn classify(err: &reqwest::Error) -> (Conclusion, String) {
    let errs = chain(err);
    if let Some(b) = errs.iter().find_map(|e| e.downcast_ref::<Blocked>()) {
        return (Conclusion::BlockedAddress, b.to_string());
    }
    let detail = detail(&errs);
    if err.is_dns() {
        return (Conclusion::DnsError, format!("DNS lookup failed: {detail}"));
    }
    let tls = errs.iter().any(|e| e.is::<rustls::Error>());
    if tls {
        return (Conclusion::TlsError, format!("TLS failed: {detail}"));
    }
    if err.is_timeout() {
        return (Conclusion::Timeout, format!("timed out: {detail}"));
    }
    if err.is_connect() {
        return (
            Conclusion::ConnectError,
            format!("could not connect: {detail}"),
        );
    }
    (
        Conclusion::ProtocolError,
        format!("HTTP protocol error: {detail}"),
    )
}

/// The messages below reqwest's own "error sending request for url (…)",
/// without repeats or hyper-util's "client error (Connect)" wrappers,
/// joined with ": ".
fn detail(errs: &[&(dyn StdError + 'static)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in errs.iter().skip(1) {
        let msg = e.to_string();
        let wrapper = msg.starts_with("client error (") && msg.ends_with(')');
        if msg.is_empty() || wrapper || parts.iter().any(|p| p.contains(&msg)) {
            continue;
        }
        parts.push(msg);
    }
    if parts.is_empty() {
        errs.first().map(|e| e.to_string()).unwrap_or_default()
    } else {
        parts.join(": ")
    }
}
