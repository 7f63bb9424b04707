//! The seam between the agent and the resolver.
//!
//! The runner only needs "turn a URL and its options into a result"; keeping
//! that behind a trait lets the runner be exercised with a scripted resolver
//! and keeps the agent ignorant of how hops are followed.

use std::future::Future;
use std::sync::Arc;

use link_peeler_resolver::meter::Watch;

use link_peeler_wire::protocol::{FetchOptions, ResolutionResult};

/// Resolves one tracking URL. Never fails: failures are conclusions (protocol.md §5).
pub trait LinkResolver: Send + Sync + 'static {
    fn resolve(
        &self,
        url: &str,
        options: &FetchOptions,
    ) -> impl Future<Output = ResolutionResult> + Send;

    /// Resolves with `watch` asked before every hop and told every byte
    /// downloaded. A resolver that cannot (a scripted one) ignores it.
    fn resolve_watched(
        &self,
        url: &str,
        options: &FetchOptions,
        watch: Arc<dyn Watch>,
    ) -> impl Future<Output = ResolutionResult> + Send {
        drop(watch);
        self.resolve(url, options)
    }
}

impl LinkResolver for link_peeler_resolver::Resolver {
    async fn resolve(&self, url: &str, options: &FetchOptions) -> ResolutionResult {
        self.resolve_with(url, options.max_hops, options.user_agent.as_deref())
            .await
    }

    async fn resolve_watched(
        &self,
        url: &str,
        options: &FetchOptions,
        watch: Arc<dyn Watch>,
    ) -> ResolutionResult {
        link_peeler_resolver::Resolver::resolve_watched(
            self,
            url,
            options.max_hops,
            options.user_agent.as_deref(),
            watch,
        )
        .await
    }
}

/// Builds the resolver the agent runs with: protocol defaults, plus the
/// configured User-Agent and allowed networks.
pub fn build(
    user_agent: Option<&str>,
    allow_networks: &[ipnet::IpNet],
) -> Result<link_peeler_resolver::Resolver, link_peeler_resolver::ResolverError> {
    let mut cfg = link_peeler_resolver::ResolverConfig {
        allow_networks: allow_networks.to_vec(),
        ..Default::default()
    };
    if let Some(ua) = user_agent {
        cfg.user_agent = ua.to_owned();
    }
    link_peeler_resolver::Resolver::new(cfg)
}
