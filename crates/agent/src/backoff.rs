//! Exponential backoff with full jitter, 1 s → 60 s (protocol.md §4.5).
//!
//! Why full jitter: after a relay restart every agent in a fleet fails at
//! the same moment; sleeping a uniformly random time in `[0, ceiling]`
//! spreads their retries instead of synchronising a reconnect storm. The
//! ceiling doubles per consecutive failure up to the cap and resets on the
//! first success. A `Retry-After` from the relay is a floor, never shortened.

use std::time::Duration;

use rand::Rng;

/// First ceiling.
pub const BASE: Duration = Duration::from_secs(1);
/// Largest ceiling.
pub const CAP: Duration = Duration::from_secs(60);
/// Longest `Retry-After` we obey (a bogus header must not park the agent for a day).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Consecutive-failure counter that yields the next sleep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BASE, CAP)
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// Forget past failures (call after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The ceiling for the next sleep: `min(cap, base · 2^failures)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Records a failure and returns how long to sleep before the next try.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        self.next_delay_with(&mut rand::rng(), retry_after)
    }

    /// [`Backoff::next_delay`] with a caller-supplied random source (tests).
    pub fn next_delay_with(
        &mut self,
        rng: &mut impl Rng,
        retry_after: Option<Duration>,
    ) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let jittered = Duration::from_millis(rng.random_range(0..=ceiling.as_millis() as u64));
        match retry_after {
            Some(floor) => jittered.max(floor.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ceilings_double_to_the_cap_and_reset() {
        let mut b = Backoff::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut ceilings = vec![];
        for _ in 0..10 {
            ceilings.push(b.ceiling().as_secs());
            let d = b.next_delay_with(&mut rng, None);
            assert!(d <= CAP);
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(), BASE);
        for _ in 0..100 {
            b.next_delay_with(&mut rng, None);
        }
        assert_eq!(b.ceiling(), CAP, "no overflow after many failures");
    }

    #[test]
    fn jitter_is_spread_over_the_whole_range() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut lo = 0;
        let mut hi = 0;
        for _ in 0..1000 {
            let mut b = Backoff::default();
            for _ in 0..6 {
                b.next_delay_with(&mut rng, None);
            }
            let d = b.next_delay_with(&mut rng, None);
            assert!(d <= CAP);
            if d < CAP / 4 {
                lo += 1;
            }
            if d > CAP * 3 / 4 {
                hi += 1;
            }
        }
        assert!(
            lo > 100 && hi > 100,
            "full jitter, not equal jitter: {lo} {hi}"
        );
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut b = Backoff::default();
        let d = b.next_delay_with(&mut rng, Some(Duration::from_secs(30)));
        assert!(d >= Duration::from_secs(30));
        let d = b.next_delay_with(&mut rng, Some(Duration::from_secs(86_400)));
        assert_eq!(d, MAX_RETRY_AFTER);
    }
}
