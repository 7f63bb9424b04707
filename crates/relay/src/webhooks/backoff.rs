//! When a failed webhook attempt is tried again (protocol.md §3.12).
//!
//! Exponential backoff with *full jitter* (a random wait between zero and the
//! exponential bound) spreads the retries of many deliveries that failed
//! together — a receiver that comes back after an outage is not hit by all of
//! them in the same second. A `Retry-After` from the receiver is a floor.
//! Retries stop at the end of a fixed window counted from the first attempt;
//! the last attempt is made exactly at that mark.

use std::time::Duration;

/// The bound of the first retry's wait.
pub const BASE: Duration = Duration::from_secs(5);
/// The largest bound of a wait.
pub const CAP: Duration = Duration::from_secs(3600);
/// How long a delivery is retried, from its first attempt.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// When to make the next attempt after attempt number `attempt` (from 1)
/// failed at `now`, or `None` when the window is over. `base` is the first
/// retry's bound ([`BASE`]; tests shorten it); `jitter` is a uniform random
/// number in `[0, 1)`; all times are ms since the epoch.
pub fn next_attempt(
    first_attempt_at: i64,
    attempt: u32,
    now: i64,
    retry_after: Option<Duration>,
    base: Duration,
    jitter: f64,
) -> Option<i64> {
    let window_end = first_attempt_at.saturating_add(ms(WINDOW));
    if now >= window_end {
        return None;
    }
    let doublings = attempt.saturating_sub(1).min(30);
    let bound = ms(base).saturating_mul(1i64 << doublings).min(ms(CAP));
    let mut wait = (bound as f64 * jitter.clamp(0.0, 1.0)) as i64;
    if let Some(floor) = retry_after {
        wait = wait.max(ms(floor));
    }
    Some(now.saturating_add(wait).min(window_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn the_bound_doubles_up_to_the_cap() {
        // With jitter just under 1 the wait is (almost) the bound itself.
        let j = 0.999_999;
        let wait = |attempt| next_attempt(T0, attempt, T0, None, BASE, j).unwrap() - T0;
        assert!((4_990..=5_000).contains(&wait(1)), "{}", wait(1));
        assert!((9_990..=10_000).contains(&wait(2)));
        assert!((19_990..=20_000).contains(&wait(3)));
        assert!((3_599_000..=3_600_000).contains(&wait(20)), "capped at 1 h");
        assert!((3_599_000..=3_600_000).contains(&wait(u32::MAX)));
    }

    #[test]
    fn full_jitter_can_wait_anywhere_from_zero() {
        assert_eq!(next_attempt(T0, 5, T0, None, BASE, 0.0), Some(T0));
        let half = next_attempt(T0, 3, T0, None, BASE, 0.5).unwrap() - T0;
        assert_eq!(half, 10_000);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let got = next_attempt(T0, 1, T0, Some(Duration::from_secs(120)), BASE, 0.1).unwrap();
        assert_eq!(got - T0, 120_000);
        // A shorter Retry-After does not shorten the backoff.
        let got = next_attempt(T0, 10, T0, Some(Duration::from_secs(1)), BASE, 0.5).unwrap();
        assert!(got - T0 > 1_000);
    }

    #[test]
    fn the_window_ends_with_one_last_attempt_at_its_mark() {
        let end = T0 + ms(WINDOW);
        // An hour before the end, a long Retry-After is clamped to the mark.
        let late = end - 3_600_000;
        let got = next_attempt(T0, 30, late, Some(Duration::from_secs(7200)), BASE, 0.9);
        assert_eq!(got, Some(end));
        // The attempt at the mark failed: no more.
        assert_eq!(next_attempt(T0, 31, end, None, BASE, 0.5), None);
        assert_eq!(next_attempt(T0, 31, end + 1, None, BASE, 0.5), None);
    }
}
