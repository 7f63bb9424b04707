//! Token buckets for failed enrollment attempts: one per client address and
//! one for everyone together (protocol.md §4.1, §8).
//!
//! An attempt takes a token from both buckets *before* the code is looked up
//! and gives it back if the attempt did not fail, so concurrent guesses cannot
//! slip past the limit and successful enrollments cost nothing. IPv6 clients
//! are counted per /64, the block one subscriber usually gets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// At most `capacity` attempts per `window`, refilled evenly.
#[derive(Debug, Clone, Copy)]
struct Rate {
    capacity: f64,
    per_sec: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Bucket {
            tokens: rate.capacity,
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * rate.per_sec).min(rate.capacity);
        self.at = now;
    }

    /// Time until one token is there (zero when one is).
    fn wait(&self, rate: Rate) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate.per_sec)
        }
    }
}

/// The address a bucket is kept for.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

/// Failed-attempt limits per client and overall.
#[derive(Debug)]
pub struct Throttle {
    per_client: Rate,
    overall: Rate,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    overall: Bucket,
    clients: HashMap<IpAddr, Bucket>,
    /// When the client map was last swept: at most once a second, so a flood
    /// from many addresses does not turn every attempt into a full scan.
    swept_at: Option<Instant>,
}

/// One attempt under way: give it back with [`Throttle::refund`] if it did not fail.
#[derive(Debug)]
pub struct Attempt(IpAddr);

impl Throttle {
    pub fn new(per_client: u32, overall: u32, window: Duration) -> Self {
        let rate = |n: u32| Rate {
            capacity: f64::from(n.max(1)),
            per_sec: f64::from(n.max(1)) / window.as_secs_f64().max(0.001),
        };
        let overall = rate(overall);
        Throttle {
            per_client: rate(per_client),
            overall,
            state: Mutex::new(State {
                overall: Bucket::full(overall, Instant::now()),
                clients: HashMap::new(),
                swept_at: None,
            }),
        }
    }

    /// Takes a token for `ip` and one overall, or says how long to wait.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<Attempt, Duration> {
        let key = client_key(ip);
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        let sweep_due = state
            .swept_at
            .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
        if state.clients.len() >= 4096 && sweep_due {
            state.swept_at = Some(now);
            // Forget clients whose bucket is full again: they are as good as new.
            let rate = self.per_client;
            state.clients.retain(|_, b| {
                b.refill(rate, now);
                b.tokens < rate.capacity
            });
        }
        let client = state
            .clients
            .entry(key)
            .or_insert_with(|| Bucket::full(self.per_client, now));
        client.refill(self.per_client, now);
        state.overall.refill(self.overall, now);
        let wait = client
            .wait(self.per_client)
            .max(state.overall.wait(self.overall));
        if !wait.is_zero() {
            return Err(wait);
        }
        client.tokens -= 1.0;
        state.overall.tokens -= 1.0;
        Ok(Attempt(key))
    }

    /// Gives an attempt's tokens back: it did not fail.
    pub fn refund(&self, attempt: Attempt) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = state.clients.get_mut(&attempt.0) {
            b.tokens = (b.tokens + 1.0).min(self.per_client.capacity);
        }
        state.overall.tokens = (state.overall.tokens + 1.0).min(self.overall.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_client_gets_its_own_budget_and_refunds_cost_nothing() {
        let t = Throttle::new(3, 100, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..3 {
            t.take(ip("192.0.2.1"), now).unwrap();
        }
        let wait = t.take(ip("192.0.2.1"), now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        // Another client is not affected; a refunded attempt is free.
        let a = t.take(ip("192.0.2.2"), now).unwrap();
        t.refund(a);
        for _ in 0..3 {
            t.take(ip("192.0.2.2"), now).unwrap();
        }
        // One token comes back after window / capacity.
        t.take(ip("192.0.2.1"), now + Duration::from_secs(20))
            .unwrap();
    }

    #[test]
    fn the_overall_budget_binds_every_client_together() {
        let t = Throttle::new(10, 2, Duration::from_secs(60));
        let now = Instant::now();
        t.take(ip("192.0.2.1"), now).unwrap();
        t.take(ip("192.0.2.2"), now).unwrap();
        assert_eq!(
            t.take(ip("192.0.2.3"), now).unwrap_err(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_v4_as_v4() {
        let t = Throttle::new(1, 100, Duration::from_secs(60));
        let now = Instant::now();
        t.take(ip("2001:db8:1:2::1"), now).unwrap();
        assert!(t.take(ip("2001:db8:1:2:ffff::9"), now).is_err());
        t.take(ip("2001:db8:1:3::1"), now).unwrap();
        t.take(ip("192.0.2.7"), now).unwrap();
        assert!(t.take(ip("::ffff:192.0.2.7"), now).is_err());
    }
}
