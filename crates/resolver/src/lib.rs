//! The manual redirect resolver: where does a tracking link land, through
//! which hops, and is it healthy? (protocol.md §5–§5.5, docs/resolver.md.)
//!
//! Why by hand: curl, requests and reqwest's own redirect following count
//! hops instead of detecting loops, miss meta-refresh and JavaScript
//! redirects, forget cookies between hops, hide every hop but the last, and
//! check (at best) only the first host against private networks. Here a
//! reqwest client with redirects *off* makes exactly one request per hop and
//! [`chain`] decides, hop by hop, what happens next.
//!
//! The room is small files, one concept each:
//!
//! | file | concept |
//! | --- | --- |
//! | [`chain`] | the loop, limits, deadlines, conclusions |
//! | `hop` | one request and the precedence of redirect kinds |
//! | [`location`] | `Location` resolution as browsers do, fragment inheritance |
//! | [`refresh`] | the WHATWG refresh parser (header and `<meta>`) |
//! | `html` | finding `<meta refresh>`, `<base href>` and inline scripts |
//! | [`javascript`] | literal `location = "…"` / `location.replace("…")` detection (the fast path) |
//! | [`sandbox`] | running a page's scripts in a sandboxed engine when no stronger redirect decided |
//! | `body` | the capped, decompressed body read |
//! | `visited` | loop detection on (URL, cookies sent) |
//! | [`guard`] | the SSRF guard: deny table, name rules, filtering DNS |
//! | `client` | the shared TLS config and the per-resolution client |
//! | `verifier` | the platform certificate verifier, loaded on first use |
//! | [`error`] | error classification into conclusions |
//!
//! Invariants: [`Resolver::resolve`] never fails and never panics (every
//! outcome is a [`Conclusion`], with the hops made so far); nothing is sent to
//! an address the guard refuses; every resolution has its own cookie jar and
//! connections; the cost of one resolution is bounded by the whole-chain
//! deadline and a 256 KiB body cap. This crate knows nothing of relays,
//! agents or the CLI. May depend on: `link-peeler-wire` (the result types and
//! the User-Agent rule) only.

mod body;
pub mod chain;
mod client;
pub mod error;
/// The SSRF guard, its own crate (`link-peeler-guard`) because the relay's
/// webhook deliveries pass the same guard.
pub use link_peeler_guard as guard;
mod hop;
pub mod html;
pub mod javascript;
pub mod location;
pub mod meter;
pub mod refresh;
pub mod sandbox;
mod verifier;
mod visited;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::HeaderValue;
use ipnet::IpNet;

use link_peeler_wire::protocol::{Conclusion, ResolutionResult};

pub use body::BODY_CAP;
pub use error::ResolverError;
pub use hop::MAX_REFRESH_DELAY;

/// The User-Agent sent by default: a current desktop Chrome's. Servers that
/// sniff the User-Agent (t.co, bot walls) answer it as they answer people,
/// which is the chain the customer wants to see. Override per resolver
/// ([`ResolverConfig::user_agent`]), per call ([`Resolver::resolve_with`]) or
/// with `link-peeler resolve --user-agent`.
pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// The highest hop limit accepted (per call or per resolver).
pub const MAX_HOPS_LIMIT: u32 = 100;

/// How a [`Resolver`] behaves. `Default` gives the protocol defaults.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Redirects followed before `too_many_redirects` (default 20, capped at 100).
    pub max_hops: u32,
    /// Deadline for the whole chain (default 30 s).
    pub timeout: Duration,
    /// Deadline for one hop: connect, headers and the capped body (default 15 s).
    pub per_hop_timeout: Duration,
    /// User-Agent header (default [`DEFAULT_USER_AGENT`]).
    pub user_agent: String,
    /// Ranges opened despite the SSRF deny table, e.g. `127.0.0.1/32` for a
    /// local lab. Host names such as `localhost` stay refused.
    pub allow_networks: Vec<IpNet>,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            max_hops: 20,
            timeout: Duration::from_secs(30),
            per_hop_timeout: Duration::from_secs(15),
            user_agent: DEFAULT_USER_AGENT.to_string(),
            allow_networks: Vec::new(),
        }
    }
}

/// Resolves tracking links. Cheap to clone: clones share the TLS
/// configuration and the guard, never cookies or connections.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    config: ResolverConfig,
    user_agent: HeaderValue,
    tls: rustls::ClientConfig,
    guard: Arc<guard::Guard>,
    dns: Arc<guard::dns::GuardedResolve>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver using the operating system's DNS resolver.
    pub fn new(config: ResolverConfig) -> Result<Self, ResolverError> {
        Self::with_dns(config, Arc::new(guard::dns::SystemResolve))
    }

    /// A resolver looking names up with `dns` (for tests and embedders); the
    /// guard filters its answers like any other.
    pub fn with_dns(
        config: ResolverConfig,
        dns: Arc<dyn reqwest::dns::Resolve>,
    ) -> Result<Self, ResolverError> {
        if !link_peeler_wire::protocol::is_valid_user_agent(&config.user_agent) {
            return Err(ResolverError::InvalidUserAgent(config.user_agent.clone()));
        }
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| ResolverError::InvalidUserAgent(config.user_agent.clone()))?;
        let tls = client::tls_config()?;
        let guard = Arc::new(guard::Guard::new(config.allow_networks.clone()));
        let dns = Arc::new(guard::dns::GuardedResolve::new(dns, guard.clone()));
        // Build one client now so that a configuration reqwest rejects fails
        // here, not on every resolution.
        client::build(&tls, dns.clone(), user_agent.clone())?;
        Ok(Resolver {
            inner: Arc::new(Inner {
                config,
                user_agent,
                tls,
                guard,
                dns,
            }),
        })
    }

    pub fn config(&self) -> &ResolverConfig {
        &self.inner.config
    }

    /// Resolves one URL with the configured limits.
    pub async fn resolve(&self, url: &str) -> ResolutionResult {
        self.resolve_with(url, None, None).await
    }

    /// [`Resolver::resolve_with`], with `watch` told every byte downloaded
    /// and asked before every hop (see [`meter::Watch`]).
    pub async fn resolve_watched(
        &self,
        url: &str,
        max_hops: Option<u32>,
        user_agent: Option<&str>,
        watch: Arc<dyn meter::Watch>,
    ) -> ResolutionResult {
        meter::scope(watch, self.resolve_with(url, max_hops, user_agent)).await
    }

    /// Resolves one URL, overriding the hop limit (capped at
    /// [`MAX_HOPS_LIMIT`]) and/or the User-Agent for this call.
    pub async fn resolve_with(
        &self,
        url: &str,
        max_hops: Option<u32>,
        user_agent: Option<&str>,
    ) -> ResolutionResult {
        let run = AssertUnwindSafe(self.run(url, max_hops, user_agent)).catch_unwind();
        match run.await {
            Ok(result) => result,
            Err(_) => failed(
                url,
                Conclusion::ProtocolError,
                "internal error: the resolver panicked",
            ),
        }
    }

    async fn run(
        &self,
        url: &str,
        max_hops: Option<u32>,
        user_agent: Option<&str>,
    ) -> ResolutionResult {
        let inner = &self.inner;
        let user_agent = match user_agent {
            None => inner.user_agent.clone(),
            Some(ua) => match HeaderValue::from_str(ua) {
                Ok(v) => v,
                Err(_) => {
                    let why = format!("the user agent {ua:?} is not a valid HTTP header value");
                    return failed(url, Conclusion::ProtocolError, &why);
                }
            },
        };
        let client = match client::build(&inner.tls, inner.dns.clone(), user_agent.clone()) {
            Ok(c) => c,
            Err(e) => {
                let why = format!("could not build the HTTP client: {e}");
                return failed(url, Conclusion::ProtocolError, &why);
            }
        };
        let limits = chain::Limits {
            max_hops: max_hops
                .unwrap_or(inner.config.max_hops)
                .min(MAX_HOPS_LIMIT),
            per_hop: inner.config.per_hop_timeout,
            whole_chain: inner.config.timeout,
        };
        let ua = user_agent.to_str().unwrap_or(DEFAULT_USER_AGENT);
        chain::run(&client, &inner.guard, &limits, ua, url).await
    }
}

/// A result for a resolution that could not start.
fn failed(url: &str, conclusion: Conclusion, why: &str) -> ResolutionResult {
    ResolutionResult {
        input_url: url.to_string(),
        final_url: url.to_string(),
        conclusion,
        final_status: None,
        redirect_count: 0,
        elapsed_ms: 0,
        error: Some(why.to_string()),
        hops: Vec::new(),
    }
}
