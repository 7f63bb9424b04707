//! The wire contract between Link Peeler's parts, and nothing else.
//!
//! This crate is the only one the relay and the agent share: if a type or a
//! rule is on the wire, it lives here, so both sides compile against the same
//! definition. It depends on no other crate of the workspace.
//!
//! - [`protocol`]: the JSON types of `docs/protocol.md` (no I/O);
//! - [`signing`]: HMAC-SHA256 request signing and verification, the header
//!   grammar and the timestamp window;
//! - [`client`]: the one signed HTTP client (signing, the clock fix, error
//!   envelopes, transport errors) every caller of the relay uses;
//! - [`api`]: the external-system API on top of it (submit, read, wait);
//! - [`tls`]: the one rustls crypto provider every HTTP client uses.

pub mod api;
pub mod client;
pub mod protocol;
pub mod signing;
pub mod tls;
