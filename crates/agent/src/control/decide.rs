//! Whether the agent may take work now, and if not, every reason why.
//!
//! [`decide`] is a pure function of the clock, the policy, the sensor
//! readings, the quota counters and the user's pause, so every rule is
//! tested with an injected clock. A sensor that cannot tell ("unknown") never
//! pauses the agent: it is shown as unknown, never guessed.

use jiff::{Timestamp, Zoned};
use serde::Serialize;

use super::keys::Policy;
use super::schedule;

/// One sensor reading (metered network, on battery).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reading {
    Yes,
    No,
    /// The platform cannot tell (no NetworkManager, no UPower, not implemented).
    #[default]
    Unknown,
}

impl Reading {
    /// For people: "yes", "no", or that the computer does not say.
    pub fn words(self) -> &'static str {
        match self {
            Reading::Yes => "yes",
            Reading::No => "no",
            Reading::Unknown => "unknown (this computer does not say)",
        }
    }
}

/// What the platform says about this computer right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sensors {
    /// A metered or roaming network connection.
    pub metered: Reading,
    /// Running on battery or with battery saver on.
    pub on_battery: Reading,
}

/// The user's own pause (always theirs: no admin setting takes it away).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserPause {
    #[default]
    None,
    /// Paused until this instant (1 hour, until tomorrow).
    Until(Timestamp),
    /// Paused until the user resumes.
    UntilResumed,
}

impl UserPause {
    /// Paused for `d` from `now` (the tray's "1 hour").
    pub fn for_duration(now: Timestamp, d: std::time::Duration) -> UserPause {
        match jiff::SignedDuration::try_from(d)
            .ok()
            .and_then(|d| now.checked_add(d).ok())
        {
            Some(t) => UserPause::Until(t),
            None => UserPause::UntilResumed,
        }
    }

    /// Paused until the start of tomorrow, local time (the tray's "until tomorrow").
    pub fn until_tomorrow(now: &Zoned) -> UserPause {
        match now.tomorrow().and_then(|t| t.start_of_day()) {
            Ok(t) => UserPause::Until(t.timestamp()),
            Err(_) => UserPause::UntilResumed,
        }
    }
}

/// Which quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Quota {
    LinksPerHour,
    LinksPerDay,
    BytesPerDay,
    BytesPerMonth,
}

impl Quota {
    pub const ALL: [Quota; 4] = [
        Quota::LinksPerHour,
        Quota::LinksPerDay,
        Quota::BytesPerDay,
        Quota::BytesPerMonth,
    ];

    /// The setting's key in `config.toml`.
    pub fn key(self) -> &'static str {
        match self {
            Quota::LinksPerHour => "max_links_per_hour",
            Quota::LinksPerDay => "max_links_per_day",
            Quota::BytesPerDay => "max_bytes_per_day",
            Quota::BytesPerMonth => "max_bytes_per_month",
        }
    }

    /// The cap in force for this quota.
    pub fn cap(self, p: &Policy) -> u64 {
        match self {
            Quota::LinksPerHour => p.max_links_per_hour.value,
            Quota::LinksPerDay => p.max_links_per_day.value,
            Quota::BytesPerDay => p.max_bytes_per_day.value,
            Quota::BytesPerMonth => p.max_bytes_per_month.value,
        }
    }
}

/// Why the agent is paused. Several can hold at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Reason {
    /// The user paused; `until` is `None` for "until I resume".
    User {
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<Timestamp>,
    },
    MeteredNetwork,
    OnBattery,
    /// Outside the allowed hours or days; `until` is when the next window opens.
    OutsideAllowedHours {
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<Timestamp>,
    },
    /// A quota is used up; it resets at `until`.
    QuotaReached {
        quota: Quota,
        until: Timestamp,
    },
}

impl Reason {
    /// The reason's name on the wire and in `status` (its serde tag).
    pub fn name(&self) -> &'static str {
        match self {
            Reason::User { .. } => "user",
            Reason::MeteredNetwork => "meteredNetwork",
            Reason::OnBattery => "onBattery",
            Reason::OutsideAllowedHours { .. } => "outsideAllowedHours",
            Reason::QuotaReached { .. } => "quotaReached",
        }
    }

    /// The reason in a few plain words after "Paused —", times in `now`'s
    /// zone: "by you until 15:00", "metered network", "hourly link
    /// quota reached until 16:00". A time on another day names the day.
    pub fn describe(&self, now: &Zoned) -> String {
        let until = |t: &Option<Timestamp>| match t {
            Some(t) => format!(" until {}", when(*t, now)),
            None => String::new(),
        };
        match self {
            Reason::User { until: None } => "by you until you resume".to_owned(),
            Reason::User { until: u } => format!("by you{}", until(u)),
            Reason::MeteredNetwork => "metered network".to_owned(),
            Reason::OnBattery => "on battery".to_owned(),
            Reason::OutsideAllowedHours { until: u } => {
                format!("outside allowed hours{}", until(u))
            }
            Reason::QuotaReached { quota, until: u } => {
                let what = match quota {
                    Quota::LinksPerHour => "hourly link",
                    Quota::LinksPerDay => "daily link",
                    Quota::BytesPerDay => "daily download",
                    Quota::BytesPerMonth => "monthly download",
                };
                format!("{what} quota reached{}", until(&Some(*u)))
            }
        }
    }
}

/// `15:00` today, `tomorrow 00:00`, or `Mon 3 Aug 08:00`, in `now`'s zone.
fn when(t: Timestamp, now: &Zoned) -> String {
    let z = t.to_zoned(now.time_zone().clone());
    if z.date() == now.date() {
        z.strftime("%H:%M").to_string()
    } else if now.date().tomorrow().is_ok_and(|d| d == z.date()) {
        z.strftime("tomorrow %H:%M").to_string()
    } else {
        z.strftime("%a %-d %b %H:%M").to_string()
    }
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reasons", rename_all = "camelCase")]
pub enum Decision {
    Active,
    Paused(Vec<Reason>),
}

impl Decision {
    /// Every reason in words ([`Reason::describe`]); empty when active.
    pub fn describe(&self, now: &Zoned) -> Vec<String> {
        match self {
            Decision::Active => vec![],
            Decision::Paused(rs) => rs.iter().map(|r| r.describe(now)).collect(),
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self, Decision::Active)
    }

    /// The earliest instant at which this decision could change by the clock
    /// alone (a pause or a quota period ends, a window opens); `None` when
    /// only an event (a resume, a sensor change) can change it.
    pub fn recheck_at(&self) -> Option<Timestamp> {
        let Decision::Paused(reasons) = self else {
            return None;
        };
        reasons
            .iter()
            .filter_map(|r| match r {
                Reason::User { until } | Reason::OutsideAllowedHours { until } => *until,
                Reason::QuotaReached { until, .. } => Some(*until),
                Reason::MeteredNetwork | Reason::OnBattery => None,
            })
            .min()
    }
}

/// Links and bytes counted in the current hour, day and month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub links_this_hour: u64,
    pub links_today: u64,
    pub bytes_today: u64,
    pub bytes_this_month: u64,
}

impl Usage {
    pub fn used(&self, q: Quota) -> u64 {
        match q {
            Quota::LinksPerHour => self.links_this_hour,
            Quota::LinksPerDay => self.links_today,
            Quota::BytesPerDay => self.bytes_today,
            Quota::BytesPerMonth => self.bytes_this_month,
        }
    }
}

/// The start of the hour, day and month `now` is in, and of the next ones,
/// all in `now`'s time zone (so a day is 23 or 25 hours across a DST change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periods {
    pub hour: Timestamp,
    pub next_hour: Timestamp,
    pub day: Timestamp,
    pub next_day: Timestamp,
    pub month: Timestamp,
    pub next_month: Timestamp,
}

impl Periods {
    pub fn of(now: &Zoned) -> Result<Periods, jiff::Error> {
        let hour = now.round(
            jiff::ZonedRound::new()
                .smallest(jiff::Unit::Hour)
                .mode(jiff::RoundMode::Trunc),
        )?;
        let next_hour = hour.checked_add(jiff::SignedDuration::from_hours(1))?;
        let day = now.start_of_day()?;
        let next_day = now.tomorrow()?.start_of_day()?;
        let month = now.first_of_month()?.start_of_day()?;
        let next_month = now
            .first_of_month()?
            .checked_add(jiff::Span::new().months(1))?
            .start_of_day()?;
        Ok(Periods {
            hour: hour.timestamp(),
            next_hour: next_hour.timestamp(),
            day: day.timestamp(),
            next_day: next_day.timestamp(),
            month: month.timestamp(),
            next_month: next_month.timestamp(),
        })
    }

    /// When the period of `q` ends.
    pub fn reset(&self, q: Quota) -> Timestamp {
        match q {
            Quota::LinksPerHour => self.next_hour,
            Quota::LinksPerDay | Quota::BytesPerDay => self.next_day,
            Quota::BytesPerMonth => self.next_month,
        }
    }
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub now: &'a Zoned,
    pub policy: &'a Policy,
    pub sensors: Sensors,
    /// The counts of the periods `now` is in.
    pub usage: Usage,
    pub user: UserPause,
}

/// Active, or paused with every reason that holds (user first).
pub fn decide(i: &Inputs<'_>) -> Decision {
    let mut reasons = vec![];
    let now_ts = i.now.timestamp();
    match i.user {
        UserPause::None => {}
        UserPause::Until(t) if t <= now_ts => {}
        UserPause::Until(t) => reasons.push(Reason::User { until: Some(t) }),
        UserPause::UntilResumed => reasons.push(Reason::User { until: None }),
    }
    if i.policy.pause_on_metered.value && i.sensors.metered == Reading::Yes {
        reasons.push(Reason::MeteredNetwork);
    }
    if i.policy.pause_on_battery.value && i.sensors.on_battery == Reading::Yes {
        reasons.push(Reason::OnBattery);
    }
    let (hours, days) = (&i.policy.allowed_hours.value, i.policy.allowed_days.value);
    if !schedule::allowed(i.now, hours, days) {
        reasons.push(Reason::OutsideAllowedHours {
            until: schedule::next_start(i.now, hours, days).map(|z| z.timestamp()),
        });
    }
    if let Ok(periods) = Periods::of(i.now) {
        for q in Quota::ALL {
            if i.usage.used(q) >= q.cap(i.policy) {
                reasons.push(Reason::QuotaReached {
                    quota: q,
                    until: periods.reset(q),
                });
            }
        }
    }
    if reasons.is_empty() {
        Decision::Active
    } else {
        Decision::Paused(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::keys::{Layer, Policy};
    use crate::control::schedule::{Days, Hours};
    use jiff::tz::TimeZone;

    fn berlin() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    fn at(utc: &str) -> Zoned {
        utc.parse::<Timestamp>().unwrap().to_zoned(berlin())
    }

    fn ts(utc: &str) -> Timestamp {
        utc.parse().unwrap()
    }

    fn inputs<'a>(now: &'a Zoned, policy: &'a Policy) -> Inputs<'a> {
        Inputs {
            now,
            policy,
            sensors: Sensors::default(),
            usage: Usage::default(),
            user: UserPause::None,
        }
    }

    #[test]
    fn defaults_are_active_and_unknown_sensors_never_pause() {
        let p = Policy::default();
        let now = at("2026-06-01T10:00:00Z");
        assert_eq!(decide(&inputs(&now, &p)), Decision::Active);
        let mut i = inputs(&now, &p);
        i.sensors = Sensors {
            metered: Reading::Unknown,
            on_battery: Reading::Unknown,
        };
        assert!(decide(&i).is_active());
    }

    #[test]
    fn sensors_pause_only_when_the_setting_is_on() {
        let now = at("2026-06-01T10:00:00Z");
        let on = Policy::default();
        let mut i = inputs(&now, &on);
        i.sensors = Sensors {
            metered: Reading::Yes,
            on_battery: Reading::Yes,
        };
        assert_eq!(
            decide(&i),
            Decision::Paused(vec![Reason::MeteredNetwork, Reason::OnBattery])
        );
        let off = Policy::merge(
            &Layer {
                pause_on_metered: Some(false),
                pause_on_battery: Some(false),
                ..Default::default()
            },
            &Layer::default(),
            &Layer::default(),
        );
        i.policy = &off;
        assert!(decide(&i).is_active());
    }

    #[test]
    fn user_pause_with_and_without_an_end() {
        let p = Policy::default();
        let now = at("2026-06-01T10:00:00Z");
        let mut i = inputs(&now, &p);
        i.user = UserPause::for_duration(now.timestamp(), std::time::Duration::from_secs(3600));
        let d = decide(&i);
        assert_eq!(
            d,
            Decision::Paused(vec![Reason::User {
                until: Some(ts("2026-06-01T11:00:00Z"))
            }])
        );
        assert_eq!(d.recheck_at(), Some(ts("2026-06-01T11:00:00Z")));
        // One hour later the pause is over by itself.
        let later = at("2026-06-01T11:00:00Z");
        i.now = &later;
        assert!(decide(&i).is_active());
        // Until tomorrow: local midnight (22:00 UTC in summer).
        i.user = UserPause::until_tomorrow(&now);
        i.now = &now;
        assert_eq!(
            decide(&i),
            Decision::Paused(vec![Reason::User {
                until: Some(ts("2026-06-01T22:00:00Z"))
            }])
        );
        i.user = UserPause::UntilResumed;
        let d = decide(&i);
        assert_eq!(d, Decision::Paused(vec![Reason::User { until: None }]));
        assert_eq!(d.recheck_at(), None);
    }

    #[test]
    fn outside_allowed_hours_says_when_work_resumes() {
        let p = Policy::merge(
            &Layer {
                allowed_hours: Some(Hours::parse("22:00-06:00").unwrap()),
                allowed_days: Some(Days::parse(&["mon-fri".into()]).unwrap()),
                ..Default::default()
            },
            &Layer::default(),
            &Layer::default(),
        );
        // Monday 2026-06-01, 12:00 CEST: the window opens at 22:00 CEST.
        let now = at("2026-06-01T10:00:00Z");
        assert_eq!(
            decide(&inputs(&now, &p)),
            Decision::Paused(vec![Reason::OutsideAllowedHours {
                until: Some(ts("2026-06-01T20:00:00Z"))
            }])
        );
        let night = at("2026-06-01T23:30:00Z"); // 01:30 Tuesday
        assert!(decide(&inputs(&night, &p)).is_active());
    }

    #[test]
    fn quotas_reset_at_local_hour_day_and_month_boundaries() {
        let p = Policy::default();
        let now = at("2026-06-30T21:30:00Z"); // 23:30 CEST, the last day of June
        let mut i = inputs(&now, &p);
        i.usage = Usage {
            links_this_hour: p.max_links_per_hour.value,
            links_today: p.max_links_per_day.value,
            bytes_today: p.max_bytes_per_day.value,
            bytes_this_month: p.max_bytes_per_month.value,
        };
        let d = decide(&i);
        assert_eq!(
            d,
            Decision::Paused(vec![
                Reason::QuotaReached {
                    quota: Quota::LinksPerHour,
                    until: ts("2026-06-30T22:00:00Z")
                },
                Reason::QuotaReached {
                    quota: Quota::LinksPerDay,
                    until: ts("2026-06-30T22:00:00Z")
                },
                Reason::QuotaReached {
                    quota: Quota::BytesPerDay,
                    until: ts("2026-06-30T22:00:00Z")
                },
                Reason::QuotaReached {
                    quota: Quota::BytesPerMonth,
                    until: ts("2026-06-30T22:00:00Z")
                },
            ])
        );
        // One below every cap: active.
        i.usage = Usage {
            links_this_hour: p.max_links_per_hour.value - 1,
            links_today: p.max_links_per_day.value - 1,
            bytes_today: p.max_bytes_per_day.value - 1,
            bytes_this_month: p.max_bytes_per_month.value - 1,
        };
        assert!(decide(&i).is_active());
    }

    #[test]
    fn periods_follow_local_time_across_dst() {
        // The spring-forward day is 23 hours long; the fall-back day 25.
        let spring = Periods::of(&at("2026-03-29T10:00:00Z")).unwrap();
        assert_eq!(spring.day, ts("2026-03-28T23:00:00Z"));
        assert_eq!(spring.next_day, ts("2026-03-29T22:00:00Z"));
        assert_eq!(spring.month, ts("2026-02-28T23:00:00Z"));
        assert_eq!(spring.next_month, ts("2026-03-31T22:00:00Z"));
        let fall = Periods::of(&at("2026-10-25T10:00:00Z")).unwrap();
        assert_eq!(fall.day, ts("2026-10-24T22:00:00Z"));
        assert_eq!(fall.next_day, ts("2026-10-25T23:00:00Z"));
        // 02:15 happens twice that night: two different hours for the hourly quota.
        let first = Periods::of(&at("2026-10-25T00:15:00Z")).unwrap();
        let second = Periods::of(&at("2026-10-25T01:15:00Z")).unwrap();
        assert_eq!(first.hour, ts("2026-10-25T00:00:00Z"));
        assert_eq!(second.hour, ts("2026-10-25T01:00:00Z"));
        assert_eq!(first.next_hour, second.hour);
    }

    #[test]
    fn reasons_in_words_name_the_time_and_the_day() {
        let now = at("2026-06-01T10:00:00Z"); // 12:00 in Berlin, a Monday
        let d = Decision::Paused(vec![
            Reason::User {
                until: Some(ts("2026-06-01T11:00:00Z")),
            },
            Reason::MeteredNetwork,
            Reason::OnBattery,
            Reason::OutsideAllowedHours {
                until: Some(ts("2026-06-01T22:00:00Z")),
            },
            Reason::QuotaReached {
                quota: Quota::LinksPerHour,
                until: ts("2026-06-03T06:00:00Z"),
            },
            Reason::User { until: None },
        ]);
        assert_eq!(
            d.describe(&now),
            [
                "by you until 13:00",
                "metered network",
                "on battery",
                "outside allowed hours until tomorrow 00:00",
                "hourly link quota reached until Wed 3 Jun 08:00",
                "by you until you resume",
            ]
        );
        assert!(Decision::Active.describe(&now).is_empty());
    }
}
