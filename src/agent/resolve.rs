//! The seam between the agent and the resolver.
//!
//! The runner only needs "turn a URL and its options into a result"; keeping
//! that behind a trait lets the runner be exercised with a scripted resolver
//! and keeps the agent ignorant of how hops are followed.

use std::future::Future;

use crate::protocol::{FetchOptions, ResolutionResult};

/// Resolves one tracking URL. Never fails: failures are conclusions (SPEC §7).
pub trait LinkResolver: Send + Sync + 'static {
    fn resolve(
        &self,
        url: &str,
        options: &FetchOptions,
    ) -> impl Future<Output = ResolutionResult> + Send;
}
