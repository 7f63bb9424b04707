//! Allowed hours and days, in the computer's local time.
//!
//! `allowed_hours` is one or more windows `HH:MM-HH:MM` (comma-separated);
//! a window whose end is before its start crosses midnight (`22:00-06:00`).
//! `24:00` may end a window. `allowed_days` names the days a window may
//! *start* on: with `22:00-06:00` on `mon-fri`, Friday night runs until 06:00
//! on Saturday, and Sunday night does not run. Times are wall-clock (civil)
//! times, so a window keeps its meaning across a DST change: on the night
//! clocks go forward, `22:00-06:00` is one hour shorter.

use std::fmt;

use jiff::Zoned;
use jiff::civil::{Date, Time, Weekday};

const DAY_MINUTES: u16 = 24 * 60;

/// One window, in minutes since local midnight; `end < start` crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u16,
    pub end: u16,
}

/// The allowed hours of a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours(pub Vec<Window>);

impl Hours {
    /// All day.
    pub fn always() -> Hours {
        Hours(vec![Window {
            start: 0,
            end: DAY_MINUTES,
        }])
    }

    fn is_always(&self) -> bool {
        self.0.iter().any(|w| w.start == 0 && w.end == DAY_MINUTES)
    }

    /// Parses `HH:MM-HH:MM[,HH:MM-HH:MM…]`; `always` is all day.
    pub fn parse(text: &str) -> Result<Hours, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("always") {
            return Ok(Hours::always());
        }
        let mut out = vec![];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || {
                format!(
                    "must be windows such as 09:00-17:00 or 22:00-06:00 (HH:MM-HH:MM), not {part:?}"
                )
            };
            let (a, b) = part.split_once('-').ok_or_else(bad)?;
            let start = minutes(a.trim(), false).ok_or_else(bad)?;
            let end = minutes(b.trim(), true).ok_or_else(bad)?;
            if start == end {
                return Err(format!("{part:?} is an empty window (start equals end)"));
            }
            out.push(Window { start, end });
        }
        if out.is_empty() {
            return Err("must name at least one window such as 09:00-17:00".into());
        }
        Ok(Hours(out))
    }
}

/// `HH:MM` as minutes; `24:00` only when `end`.
fn minutes(s: &str, end: bool) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    match (h, m) {
        (24, 0) if end => Some(DAY_MINUTES),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_always() {
            return f.write_str("always");
        }
        for (i, w) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(
                f,
                "{sep}{:02}:{:02}-{:02}:{:02}",
                w.start / 60,
                w.start % 60,
                w.end / 60,
                w.end % 60
            )?;
        }
        Ok(())
    }
}

const DAY_NAMES: [(&str, &str, Weekday); 7] = [
    ("mon", "monday", Weekday::Monday),
    ("tue", "tuesday", Weekday::Tuesday),
    ("wed", "wednesday", Weekday::Wednesday),
    ("thu", "thursday", Weekday::Thursday),
    ("fri", "friday", Weekday::Friday),
    ("sat", "saturday", Weekday::Saturday),
    ("sun", "sunday", Weekday::Sunday),
];

/// A set of weekdays (bit 0 Monday … bit 6 Sunday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(pub u8);

fn bit(d: Weekday) -> u8 {
    1 << (d.to_monday_zero_offset() as u8)
}

impl Days {
    pub fn every() -> Days {
        Days(0x7f)
    }

    pub fn contains(self, d: Weekday) -> bool {
        self.0 & bit(d) != 0
    }

    /// Parses day names (`mon`, `monday`) and ranges (`mon-fri`, `sat-sun`).
    pub fn parse(items: &[String]) -> Result<Days, String> {
        let day = |s: &str| {
            let s = s.trim().to_ascii_lowercase();
            DAY_NAMES
                .iter()
                .position(|(short, long, _)| s == *short || s == *long)
        };
        let mut mask = 0u8;
        for item in items {
            let bad = || format!("{item:?} is not a day or range of days such as mon or mon-fri");
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?);
                    let mut i = a;
                    loop {
                        mask |= 1 << i;
                        if i == b {
                            break;
                        }
                        i = (i + 1) % 7;
                    }
                }
                None => mask |= 1 << day(item).ok_or_else(bad)?,
            }
        }
        if mask == 0 {
            return Err("must name at least one day".into());
        }
        Ok(Days(mask))
    }
}

impl fmt::Display for Days {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Days::every() {
            return f.write_str("every day");
        }
        let names: Vec<&str> = DAY_NAMES
            .iter()
            .filter(|(_, _, d)| self.contains(*d))
            .map(|(s, _, _)| *s)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// Whether `now` (local time) is inside one of the allowed windows.
pub fn allowed(now: &Zoned, hours: &Hours, days: Days) -> bool {
    let m = now.hour() as u16 * 60 + now.minute() as u16;
    let today = now.weekday();
    let yesterday = today.previous();
    hours.0.iter().any(|w| {
        if w.start < w.end {
            days.contains(today) && w.start <= m && m < w.end
        } else {
            (days.contains(today) && m >= w.start) || (days.contains(yesterday) && m < w.end)
        }
    })
}

fn at(date: Date, minute: u16, tz: &jiff::tz::TimeZone) -> Option<Zoned> {
    if minute >= DAY_MINUTES {
        return date.tomorrow().ok()?.to_zoned(tz.clone()).ok();
    }
    let t = Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0).ok()?;
    // A start inside a DST gap (02:30 on the spring-forward night) is the
    // first instant after the gap ("compatible" disambiguation).
    date.to_datetime(t).to_zoned(tz.clone()).ok()
}

/// When the next allowed window opens after `now` (`None`: now is allowed,
/// or nothing opens within 8 days, which a valid schedule cannot do).
pub fn next_start(now: &Zoned, hours: &Hours, days: Days) -> Option<Zoned> {
    if allowed(now, hours, days) {
        return None;
    }
    let tz = now.time_zone();
    let mut best: Option<Zoned> = None;
    let mut date = now.date();
    for _ in 0..8 {
        if days.contains(date.weekday()) {
            for w in &hours.0 {
                if let Some(z) = at(date, w.start, tz)
                    && z > *now
                    && best.as_ref().is_none_or(|b| z < *b)
                {
                    best = Some(z);
                }
            }
        }
        if best.is_some() {
            break;
        }
        date = date.tomorrow().ok()?;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    /// Central Europe with its DST rules, written out so the test needs no tz database.
    fn berlin() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    fn local(s: &str) -> Zoned {
        s.parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(berlin())
            .unwrap()
    }

    fn utc(s: &str) -> Zoned {
        s.parse::<jiff::Timestamp>().unwrap().to_zoned(berlin())
    }

    #[test]
    fn parse_and_show() {
        assert_eq!(Hours::parse("always").unwrap(), Hours::always());
        assert_eq!(Hours::parse("00:00-24:00").unwrap().to_string(), "always");
        assert_eq!(
            Hours::parse("9:00-12:00, 13:30-17:00").unwrap().to_string(),
            "09:00-12:00,13:30-17:00"
        );
        assert!(Hours::parse("24:00-06:00").is_err());
        assert!(Hours::parse("").is_err());
        assert_eq!(
            Days::parse(&["sat-mon".into()]).unwrap().to_string(),
            "mon,sat,sun"
        );
        assert_eq!(
            Days::parse(&["Monday".into(), "tue".into()]).unwrap().0,
            0b11
        );
        assert_eq!(Days::every().to_string(), "every day");
    }

    #[test]
    fn a_window_across_midnight_belongs_to_the_day_it_starts() {
        let hours = Hours::parse("22:00-06:00").unwrap();
        let weekdays = Days::parse(&["mon-fri".into()]).unwrap();
        // 2026-03-06 is a Friday.
        assert!(!allowed(&local("2026-03-06T21:59"), &hours, weekdays));
        assert!(allowed(&local("2026-03-06T22:00"), &hours, weekdays));
        assert!(
            allowed(&local("2026-03-07T05:59"), &hours, weekdays),
            "Friday night runs into Saturday"
        );
        assert!(!allowed(&local("2026-03-07T06:00"), &hours, weekdays));
        assert!(
            !allowed(&local("2026-03-07T23:00"), &hours, weekdays),
            "Saturday night is off"
        );
        assert!(
            !allowed(&local("2026-03-09T01:00"), &hours, weekdays),
            "so is Sunday night"
        );
        assert!(
            allowed(&local("2026-03-10T01:00"), &hours, weekdays),
            "Monday night runs"
        );
        // From Saturday noon the next window opens Monday 22:00.
        assert_eq!(
            next_start(&local("2026-03-07T12:00"), &hours, weekdays).unwrap(),
            local("2026-03-09T22:00")
        );
        assert_eq!(
            next_start(&local("2026-03-06T23:00"), &hours, weekdays),
            None
        );
    }

    #[test]
    fn schedules_across_dst_changes_follow_the_wall_clock() {
        let night = Hours::parse("22:00-06:00").unwrap();
        let every = Days::every();
        // Spring forward, 2026-03-29: 02:00 CET → 03:00 CEST (01:00 UTC).
        assert!(allowed(&utc("2026-03-29T00:59:00Z"), &night, every)); // 01:59 CET
        assert!(allowed(&utc("2026-03-29T01:00:00Z"), &night, every)); // 03:00 CEST
        assert!(allowed(&utc("2026-03-29T03:59:00Z"), &night, every)); // 05:59 CEST
        assert!(!allowed(&utc("2026-03-29T04:00:00Z"), &night, every)); // 06:00 CEST
        // Fall back, 2026-10-25: 03:00 CEST → 02:00 CET; 02:15 happens twice, both allowed.
        let early = Hours::parse("01:00-02:30").unwrap();
        assert!(allowed(&utc("2026-10-25T00:15:00Z"), &early, every)); // 02:15 CEST
        assert!(allowed(&utc("2026-10-25T01:15:00Z"), &early, every)); // 02:15 CET
        assert!(!allowed(&utc("2026-10-25T01:30:00Z"), &early, every)); // 02:30 CET
        // A window that starts inside the spring-forward gap opens right after it.
        let gap = Hours::parse("02:30-04:00").unwrap();
        let before = utc("2026-03-29T00:30:00Z"); // 01:30 CET
        assert!(!allowed(&before, &gap, every));
        assert_eq!(
            next_start(&before, &gap, every).unwrap().timestamp(),
            "2026-03-29T01:30:00Z".parse::<jiff::Timestamp>().unwrap() // 03:30 CEST
        );
    }
}
