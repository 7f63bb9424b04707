//! The one table of which relay answers are retried and which stop the agent.
//!
//! Every failure the agent meets goes through [`decide`], so the behaviour
//! under a flaky network, a restarted relay or a revoked device is written
//! down in one place and pinned by one test:
//!
//! | relay answer                                         | poll                 | result post                      |
//! |------------------------------------------------------|----------------------|----------------------------------|
//! | no answer (refused, reset, timeout, DNS, TLS)         | retry with backoff   | keep in outbox, retry w/ backoff |
//! | 401 `stale_timestamp`                                | fix clock, retry once| fix clock, retry once            |
//! | 401 `unknown_key` / `revoked_key` / `bad_signature`  | stop: sign-in        | stop: sign-in (result kept)      |
//! | 403 `forbidden` (not device credentials)             | stop: sign-in        | stop: sign-in (result kept)      |
//! | 401 other (`missing_header`, `replayed_nonce`, …)    | retry with backoff   | retry with backoff               |
//! | 409 `lease_lost`                                     | retry with backoff   | drop the result, log it          |
//! | 404 `not_found`                                      | retry with backoff   | drop the result, log it          |
//! | 400 / 413 / 422 (the relay will never take the body) | retry with backoff   | set aside in `outbox/rejected/`  |
//! | 429 (`Retry-After` is the floor of the sleep)        | retry with backoff   | retry with backoff               |
//! | 5xx, anything else                                   | retry with backoff   | retry with backoff               |
//!
//! A poll can never "drop": it carries nothing that could be lost, so the
//! worst a confusing answer does is slow the agent down to one try a minute.
//!
//! Enrollment (unsigned; the CLI, the tray and managed self-enrollment):
//!
//! | relay answer                                   | enroll                                   |
//! |------------------------------------------------|------------------------------------------|
//! | no answer, 408, 429, 5xx, anything else        | retry: the code may be sent again later  |
//! | any other 4xx                                  | refused: the code will never work        |

use link_peeler_wire::protocol::ErrorCode;

/// Which request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Poll,
    PostResult,
    Enroll,
}

/// What to do about a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Sleep per the backoff (and `Retry-After`), then try again. Results stay in the outbox.
    Retry,
    /// Adopt the relay's clock and repeat the request at once, one time.
    FixClockAndRetryOnce,
    /// The relay no longer accepts these credentials: stop polling, ask for sign-in.
    SignIn,
    /// The relay will never want this result (lease lost, task gone): delete it, log it.
    Drop,
    /// The relay will never accept this body: move it aside for inspection, log it.
    Reject,
    /// The enrollment code will never work: never send it again.
    Refused,
}

/// Decides from the HTTP status (`None` when no answer came) and the error code.
pub fn decide(op: Op, status: Option<u16>, code: Option<ErrorCode>) -> Verdict {
    use ErrorCode as C;
    let Some(status) = status else {
        return Verdict::Retry;
    };
    if op == Op::Enroll {
        return match status {
            408 | 429 => Verdict::Retry,
            400..=499 => Verdict::Refused,
            _ => Verdict::Retry,
        };
    }
    match (code, status) {
        (Some(C::StaleTimestamp), _) => Verdict::FixClockAndRetryOnce,
        (Some(C::UnknownKey | C::RevokedKey | C::BadSignature | C::Forbidden), _) => {
            Verdict::SignIn
        }
        (None, 403) => Verdict::SignIn,
        _ if op == Op::Poll => Verdict::Retry,
        (Some(C::LeaseLost | C::NotFound), _) | (None, 404 | 409) => Verdict::Drop,
        (
            Some(
                C::InvalidJson
                | C::InvalidRequest
                | C::InvalidUrl
                | C::PayloadTooLarge
                | C::IdempotencyConflict,
            ),
            _,
        )
        | (None, 400 | 413 | 422) => Verdict::Reject,
        _ => Verdict::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorCode as C;
    use Op::*;
    use Verdict::*;

    /// The table in the module docs, row by row.
    #[test]
    fn the_table() {
        let rows: &[(Op, Option<u16>, Option<ErrorCode>, Verdict)] = &[
            (Poll, None, None, Retry),
            (PostResult, None, None, Retry),
            (
                Poll,
                Some(401),
                Some(C::StaleTimestamp),
                FixClockAndRetryOnce,
            ),
            (
                PostResult,
                Some(401),
                Some(C::StaleTimestamp),
                FixClockAndRetryOnce,
            ),
            (Poll, Some(401), Some(C::UnknownKey), SignIn),
            (Poll, Some(401), Some(C::RevokedKey), SignIn),
            (Poll, Some(401), Some(C::BadSignature), SignIn),
            (PostResult, Some(401), Some(C::RevokedKey), SignIn),
            (PostResult, Some(401), Some(C::UnknownKey), SignIn),
            (Poll, Some(403), Some(C::Forbidden), SignIn),
            (Poll, Some(403), None, SignIn),
            (Poll, Some(401), Some(C::MissingHeader), Retry),
            (Poll, Some(401), Some(C::ReplayedNonce), Retry),
            (PostResult, Some(401), Some(C::InvalidNonce), Retry),
            (PostResult, Some(401), Some(C::InvalidTimestamp), Retry),
            (PostResult, Some(409), Some(C::LeaseLost), Drop),
            (PostResult, Some(409), None, Drop),
            (Poll, Some(409), Some(C::LeaseLost), Retry),
            (PostResult, Some(404), Some(C::NotFound), Drop),
            (PostResult, Some(404), None, Drop),
            (Poll, Some(404), None, Retry),
            (PostResult, Some(400), Some(C::InvalidRequest), Reject),
            (PostResult, Some(400), Some(C::InvalidJson), Reject),
            (PostResult, Some(413), Some(C::PayloadTooLarge), Reject),
            (PostResult, Some(400), None, Reject),
            (Poll, Some(400), Some(C::InvalidRequest), Retry),
            (Poll, Some(429), Some(C::QueueFull), Retry),
            (PostResult, Some(429), Some(C::QuotaExceeded), Retry),
            (Poll, Some(500), Some(C::Internal), Retry),
            (PostResult, Some(500), None, Retry),
            (PostResult, Some(502), None, Retry),
            (PostResult, Some(503), None, Retry),
            (Poll, Some(418), None, Retry),
            (Enroll, None, None, Retry),
            (Enroll, Some(408), None, Retry),
            (Enroll, Some(429), Some(C::QuotaExceeded), Retry),
            (Enroll, Some(500), Some(C::Internal), Retry),
            (Enroll, Some(503), None, Retry),
            (Enroll, Some(400), Some(C::InvalidRequest), Refused),
            (Enroll, Some(401), Some(C::UnknownKey), Refused),
            (Enroll, Some(403), None, Refused),
            (Enroll, Some(404), None, Refused),
        ];
        for &(op, status, code, want) in rows {
            assert_eq!(decide(op, status, code), want, "{op:?} {status:?} {code:?}");
        }
    }

    #[test]
    fn a_poll_never_drops_and_no_answer_never_stops() {
        for status in [None, Some(400), Some(404), Some(409), Some(413), Some(500)] {
            let v = decide(Poll, status, None);
            assert!(v != Drop && v != Reject, "{status:?}");
            assert_eq!(decide(PostResult, None, None), Retry);
        }
    }
}
