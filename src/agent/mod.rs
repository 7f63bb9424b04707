//! The desktop agent: enrollment, credentials, long-poll, outbox (issue 4).
