//! Quota counts that hold under concurrency.
//!
//! [`Counts`] is what is kept in the state file: links and bytes of the
//! current local hour, day and month (a count whose period has ended reads
//! as zero). [`Ledger`] adds what is in flight: a task is taken only after
//! it reserved one link and [`HOP_RESERVE`] bytes, and every further hop of
//! its chain reserves another [`HOP_RESERVE`] before it is requested (the
//! resolver asks; see [`Reservation::before_hop`]). A reservation is granted
//! only while `counted + reserved + HOP_RESERVE <= cap`, so the bytes counted
//! never exceed the cap unless one hop downloads more than its reservation
//! (at most the last chunk read past the body cap, and headers beyond
//! [`HEADER_ALLOWANCE`]) — well under one page's body cap in all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Serialize};

use super::decide::{Periods, Quota, Usage};
use super::keys::Policy;

/// Bytes allowed for one response's status line and headers.
pub const HEADER_ALLOWANCE: u64 = 16 * 1024;
/// Bytes reserved for one hop: a page's body cap plus its headers.
pub const HOP_RESERVE: u64 = link_peeler_resolver::BODY_CAP as u64 + HEADER_ALLOWANCE;

/// One period's counts; `start` is the period's first second (unix time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Period {
    pub start: i64,
    pub links: u64,
    pub bytes: u64,
}

impl Period {
    /// The counts of the period starting at `start`: zero for a new period;
    /// a clock set back counts into the newer period it already has.
    fn at(&self, start: Timestamp) -> Period {
        if self.start >= start.as_second() {
            *self
        } else {
            Period {
                start: start.as_second(),
                links: 0,
                bytes: 0,
            }
        }
    }
}

/// The counts kept across restarts (in the state file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Counts {
    pub hour: Period,
    pub day: Period,
    pub month: Period,
}

impl Counts {
    /// The counts of the periods `p` describes (zero for a period that ended).
    pub fn current(&self, p: &Periods) -> Counts {
        Counts {
            hour: self.hour.at(p.hour),
            day: self.day.at(p.day),
            month: self.month.at(p.month),
        }
    }

    /// The usage [`super::decide`] looks at, for the periods `p` describes.
    pub fn usage(&self, p: &Periods) -> Usage {
        let c = self.current(p);
        Usage {
            links_this_hour: c.hour.links,
            links_today: c.day.links,
            bytes_today: c.day.bytes,
            bytes_this_month: c.month.bytes,
        }
    }

    /// Adds one finished task (`links` is 0 or 1) and its bytes.
    pub fn add(&mut self, p: &Periods, links: u64, bytes: u64) {
        let mut c = self.current(p);
        for period in [&mut c.hour, &mut c.day, &mut c.month] {
            period.links = period.links.saturating_add(links);
            period.bytes = period.bytes.saturating_add(bytes);
        }
        *self = c;
    }
}

/// What is left of each quota (for status and the relay).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Left {
    pub links_this_hour: u64,
    pub links_today: u64,
    pub bytes_today: u64,
    pub bytes_this_month: u64,
}

impl Left {
    pub fn of(policy: &Policy, usage: &Usage) -> Left {
        let left = |q: Quota| q.cap(policy).saturating_sub(usage.used(q));
        Left {
            links_this_hour: left(Quota::LinksPerHour),
            links_today: left(Quota::LinksPerDay),
            bytes_today: left(Quota::BytesPerDay),
            bytes_this_month: left(Quota::BytesPerMonth),
        }
    }
}

#[derive(Debug, Default)]
struct Book {
    counts: Counts,
    /// Links reserved by tasks in flight.
    links: u64,
    /// Bytes reserved by tasks in flight (each at least what it has used).
    bytes: u64,
}

/// The counts plus what tasks in flight have reserved. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    book: Arc<Mutex<Book>>,
}

/// Why nothing more may be taken, or why a hop may not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted(pub Quota);

impl Ledger {
    pub fn new(counts: Counts) -> Ledger {
        Ledger {
            book: Arc::new(Mutex::new(Book {
                counts,
                ..Default::default()
            })),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock leaves plain numbers: still usable.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The persisted counts (finished tasks only).
    pub fn counts(&self) -> Counts {
        self.book().counts
    }

    /// Finished plus reserved, for the periods of `now`.
    pub fn usage(&self, now: &Zoned) -> Usage {
        let Ok(p) = Periods::of(now) else {
            return Usage::default();
        };
        let b = self.book();
        let mut u = b.counts.usage(&p);
        u.links_this_hour += b.links;
        u.links_today += b.links;
        u.bytes_today += b.bytes;
        u.bytes_this_month += b.bytes;
        u
    }

    /// Checks that `links` more links and `bytes` more bytes fit under every cap.
    fn fits(
        b: &Book,
        p: &Periods,
        policy: &Policy,
        links: u64,
        bytes: u64,
    ) -> Result<(), Exhausted> {
        let c = b.counts.current(p);
        let checks = [
            (Quota::LinksPerHour, c.hour.links + b.links + links),
            (Quota::LinksPerDay, c.day.links + b.links + links),
            (Quota::BytesPerDay, c.day.bytes + b.bytes + bytes),
            (Quota::BytesPerMonth, c.month.bytes + b.bytes + bytes),
        ];
        for (q, wanted) in checks {
            let grows = if matches!(q, Quota::LinksPerHour | Quota::LinksPerDay) {
                links
            } else {
                bytes
            };
            if grows > 0 && wanted > q.cap(policy) {
                return Err(Exhausted(q));
            }
        }
        Ok(())
    }

    /// Whether one more task (one link, one hop's bytes) fits now.
    pub fn check(&self, now: &Zoned, policy: &Policy) -> Result<(), Exhausted> {
        let p = Periods::of(now).map_err(|_| Exhausted(Quota::LinksPerHour))?;
        Self::fits(&self.book(), &p, policy, 1, HOP_RESERVE)
    }

    /// Reserves one link and one hop's bytes for a task about to be taken.
    pub fn reserve(&self, now: &Zoned, policy: &Policy) -> Result<Reservation, Exhausted> {
        let p = Periods::of(now).map_err(|_| Exhausted(Quota::LinksPerHour))?;
        let mut b = self.book();
        Self::fits(&b, &p, policy, 1, HOP_RESERVE)?;
        b.links += 1;
        b.bytes += HOP_RESERVE;
        Ok(Reservation {
            ledger: self.clone(),
            policy: policy.clone(),
            held: HOP_RESERVE,
            hops: 0,
            taken: now.clone(),
            meter: Arc::default(),
            settled: false,
        })
    }

    /// How many tasks could be reserved now (at most `want`), without reserving.
    pub fn room(&self, now: &Zoned, policy: &Policy, want: u32) -> u32 {
        let Ok(p) = Periods::of(now) else { return 0 };
        let b = self.book();
        (0..want)
            .take_while(|n| {
                let n = u64::from(*n) + 1;
                Self::fits(&b, &p, policy, n, n * HOP_RESERVE).is_ok()
            })
            .count() as u32
    }
}

/// One task's hold on the quotas; settled (or released) exactly once.
#[derive(Debug)]
pub struct Reservation {
    ledger: Ledger,
    policy: Policy,
    /// Bytes this task holds in the ledger.
    held: u64,
    /// Hops started.
    hops: u64,
    /// When the task was taken (an abandoned task counts into its periods).
    taken: Zoned,
    /// Bytes this task's resolution has downloaded so far (the resolver adds to it).
    meter: Arc<AtomicU64>,
    settled: bool,
}

impl Reservation {
    /// The counter the resolver adds this task's downloaded bytes to.
    pub fn meter(&self) -> Arc<AtomicU64> {
        self.meter.clone()
    }

    /// Called before each hop: the first hop was reserved with the task; a
    /// later one needs another [`HOP_RESERVE`] on top of what was used.
    pub fn before_hop(&mut self, now: &Zoned) -> Result<(), Exhausted> {
        self.hops += 1;
        if self.hops == 1 {
            return Ok(());
        }
        let used = self.meter.load(Ordering::Relaxed);
        let need = used.saturating_add(HOP_RESERVE);
        if need <= self.held {
            return Ok(());
        }
        let more = need - self.held;
        let p = Periods::of(now).map_err(|_| Exhausted(Quota::BytesPerDay))?;
        let mut b = self.ledger.book();
        Ledger::fits(&b, &p, &self.policy, 0, more)?;
        b.bytes += more;
        self.held = need;
        Ok(())
    }

    /// The task is over: its reservation is replaced by what it used.
    /// `counted`: whether the link counts (false when nothing was requested).
    pub fn settle(mut self, now: &Zoned, counted: bool) -> Counts {
        self.settled = true;
        let used = self.meter.load(Ordering::Relaxed);
        let mut b = self.ledger.book();
        b.links = b.links.saturating_sub(1);
        b.bytes = b.bytes.saturating_sub(self.held);
        if let Ok(p) = Periods::of(now) {
            b.counts.add(&p, u64::from(counted), used);
        }
        b.counts
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            // Abandoned (a cancelled worker): give the hold back, count what was used.
            let used = self.meter.load(Ordering::Relaxed);
            let mut b = self.ledger.book();
            b.links = b.links.saturating_sub(1);
            b.bytes = b.bytes.saturating_sub(self.held);
            if let Ok(p) = Periods::of(&self.taken) {
                b.counts.add(&p, 0, used);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::keys::Layer;
    use jiff::tz::TimeZone;

    fn at(utc: &str) -> Zoned {
        utc.parse::<Timestamp>()
            .unwrap()
            .to_zoned(TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap())
    }

    fn policy(links_hour: u64, bytes_day: u64) -> Policy {
        Policy::merge(
            &Layer {
                max_links_per_hour: Some(links_hour),
                max_bytes_per_day: Some(bytes_day),
                ..Default::default()
            },
            &Layer::default(),
            &Layer::default(),
        )
    }

    #[test]
    fn counts_reset_with_their_period() {
        let mut c = Counts::default();
        let p = Periods::of(&at("2026-06-30T21:30:00Z")).unwrap();
        c.add(&p, 1, 100);
        c.add(&p, 1, 50);
        assert_eq!(c.usage(&p).links_this_hour, 2);
        assert_eq!(c.usage(&p).bytes_this_month, 150);
        // 00:10 local on July 1st: a new hour, day and month.
        let next = Periods::of(&at("2026-06-30T22:10:00Z")).unwrap();
        assert_eq!(c.usage(&next), Usage::default());
        // 23:50 the same night: still the same hour.
        let later = Periods::of(&at("2026-06-30T21:50:00Z")).unwrap();
        assert_eq!(c.usage(&later).links_this_hour, 2);
    }

    #[test]
    fn reservations_stop_at_the_cap_and_settle_to_what_was_used() {
        let now = at("2026-06-01T10:00:00Z");
        let p = policy(3, 3 * HOP_RESERVE);
        let ledger = Ledger::new(Counts::default());
        assert_eq!(ledger.room(&now, &p, 8), 3);
        let a = ledger.reserve(&now, &p).unwrap();
        let b = ledger.reserve(&now, &p).unwrap();
        let mut c = ledger.reserve(&now, &p).unwrap();
        assert_eq!(
            ledger.reserve(&now, &p).unwrap_err(),
            Exhausted(Quota::LinksPerHour)
        );
        assert_eq!(ledger.room(&now, &p, 8), 0);
        // c's second hop needs more bytes than are left.
        assert!(
            c.before_hop(&now).is_ok(),
            "the first hop was reserved with the task"
        );
        c.meter().fetch_add(1000, Ordering::Relaxed);
        assert_eq!(
            c.before_hop(&now).unwrap_err(),
            Exhausted(Quota::BytesPerDay)
        );
        a.meter().fetch_add(10, Ordering::Relaxed);
        let counts = a.settle(&now, true);
        assert_eq!(counts.day.bytes, 10);
        drop(b); // abandoned: the hold is released, nothing counted as a link
        c.settle(&now, true);
        let u = ledger.usage(&now);
        assert_eq!(u.links_this_hour, 2);
        assert_eq!(u.bytes_today, 1010);
    }
}
