//! The HTTP client of one resolution.
//!
//! One rustls `ClientConfig` is built per [`Resolver`](super::Resolver) and
//! reused: building it (provider, verifier) is the expensive part, while a
//! reqwest `Client` on top of it is cheap. So every resolution gets a fresh
//! client, which isolates connections and TLS session tickets between
//! resolutions (a ticket identifies a client as well as a cookie does).
//!
//! The client never follows redirects (`Policy::none()`: the chain loop does,
//! recording every hop), never uses a proxy (a proxy would bypass the DNS
//! guard and reach the intranet on our behalf), never sends a Referer, and
//! resolves names only through the guarded resolver.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, header};
use rustls::client::Resumption;

use super::guard::dns::GuardedResolve;
use super::verifier::LazyPlatformVerifier;

/// The TLS configuration shared by all resolutions of a resolver: ring,
/// the platform's certificate verifier (loaded on first use), HTTP/2 and
/// HTTP/1.1 by ALPN.
pub fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    link_peeler_wire::tls::init();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(LazyPlatformVerifier::new(provider.clone()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// What a browser sends besides the User-Agent.
fn browser_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    );
    h.insert(
        header::ACCEPT_LANGUAGE,
        HeaderValue::from_static("en-US,en;q=0.9"),
    );
    h
}

/// A fresh client for one resolution.
pub fn build(
    tls: &rustls::ClientConfig,
    resolver: Arc<GuardedResolve>,
    user_agent: HeaderValue,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut tls = tls.clone();
    // Session tickets stay within this resolution.
    tls.resumption = Resumption::in_memory_sessions(8);
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .referer(false)
        .tls_backend_preconfigured(tls)
        .dns_resolver(resolver)
        .default_headers(browser_headers())
        .user_agent(user_agent)
        // The client lives for one chain (≤ the whole-chain deadline): no
        // background task reaping idle connections is needed.
        .pool_idle_timeout(None)
        .build()
}
