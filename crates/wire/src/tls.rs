//! One place that picks the TLS crypto provider.
//!
//! reqwest is built with `rustls-no-provider` so the binary carries a single
//! provider (`ring`, pure Rust + asm, quick to build) instead of aws-lc. Every
//! HTTP client in the crate calls [`init`] before it is built.

use std::sync::Once;

/// Installs `ring` as the process-wide rustls provider (idempotent).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider was installed first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
