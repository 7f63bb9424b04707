//! Query strings of the signed GET routes (protocol.md §3.10–§3.11).
//!
//! The query is not covered by the signature, so the relay reads it strictly:
//! each route names the parameters it knows, and an unknown, repeated or
//! malformed one is `400 invalid_request` naming it — a misspelt `limt=10`
//! must not silently return 100 rows, nor `staus=done` every job.

use std::collections::HashMap;

use crate::Rejection;
use link_peeler_wire::protocol::ErrorCode;

/// The known parameters of one query, each present at most once.
#[derive(Debug, Default)]
pub struct Query {
    values: HashMap<&'static str, String>,
}

fn invalid(message: String) -> Rejection {
    Rejection::new(ErrorCode::InvalidRequest, message)
}

impl Query {
    /// Parses `raw` (`application/x-www-form-urlencoded`) allowing only `known`.
    pub fn parse(raw: Option<&str>, known: &[&'static str]) -> Result<Query, Rejection> {
        let mut values = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let Some(name) = known.iter().copied().find(|n| *n == k) else {
                return Err(invalid(format!(
                    "unknown query parameter {k:?}; this route takes {}",
                    known.join(", ")
                )));
            };
            if values.insert(name, v.into_owned()).is_some() {
                return Err(invalid(format!(
                    "query parameter {name} must appear at most once"
                )));
            }
        }
        Ok(Query { values })
    }

    /// A parameter's value, which must not be empty when present.
    pub fn text(&self, name: &'static str) -> Result<Option<&str>, Rejection> {
        match self.values.get(name) {
            Some(v) if v.is_empty() => {
                Err(invalid(format!("query parameter {name} must not be empty")))
            }
            // No stored value holds one (protocol.md §3.1), and PostgreSQL text cannot.
            Some(v) if v.contains('\0') => Err(invalid(format!(
                "query parameter {name} must not contain the NUL character (U+0000)"
            ))),
            v => Ok(v.map(String::as_str)),
        }
    }

    /// A decimal integer in `range`, or `default` when absent.
    pub fn number(
        &self,
        name: &'static str,
        range: std::ops::RangeInclusive<u32>,
        default: u32,
    ) -> Result<u32, Rejection> {
        let Some(v) = self.text(name)? else {
            return Ok(default);
        };
        let bad = || {
            invalid(format!(
                "query parameter {name} must be an integer from {} to {}, not {v:?}",
                range.start(),
                range.end()
            ))
        };
        if !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 10 {
            return Err(bad());
        }
        let n: u32 = v.parse().map_err(|_| bad())?;
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    }

    /// A cursor: `0` or a decimal number without leading zeros.
    pub fn cursor(&self, name: &'static str) -> Result<Option<i64>, Rejection> {
        let Some(v) = self.text(name)? else {
            return Ok(None);
        };
        let well_formed = v == "0"
            || (v.len() <= 18 && v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0'));
        if !well_formed {
            return Err(invalid(format!(
                "query parameter {name} is not a cursor the relay gave out: {v:?}"
            )));
        }
        v.parse()
            .map(Some)
            .map_err(|_| invalid(format!("query parameter {name} is out of range")))
    }

    /// An RFC 3339 time, as milliseconds since the epoch.
    pub fn time(&self, name: &'static str) -> Result<Option<i64>, Rejection> {
        let Some(v) = self.text(name)? else {
            return Ok(None);
        };
        let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                invalid(format!(
                    "query parameter {name} must be an RFC 3339 time such as 2026-12-02T00:00:00Z ({e})"
                ))
            })?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map(Some)
            .map_err(|_| invalid(format!("query parameter {name} is out of range")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Result<Query, Rejection> {
        Query::parse(Some(raw), &["after", "limit", "since"])
    }

    fn message(r: Rejection) -> String {
        assert_eq!(r.error.code, ErrorCode::InvalidRequest);
        r.error.message
    }

    #[test]
    fn unknown_repeated_and_empty_parameters_are_refused_by_name() {
        assert!(message(q("limt=3").unwrap_err()).contains("\"limt\""));
        assert!(message(q("limit=3&limit=4").unwrap_err()).contains("limit"));
        assert!(message(q("after=").unwrap().text("after").unwrap_err()).contains("after"));
        assert!(q("").unwrap().text("after").unwrap().is_none());
        assert!(message(q("after=a%00b").unwrap().text("after").unwrap_err()).contains("NUL"));
    }

    #[test]
    fn numbers_are_plain_decimals_in_range() {
        let n = |raw: &str| q(raw).unwrap().number("limit", 1..=500, 100);
        assert_eq!(n("").unwrap(), 100);
        assert_eq!(n("limit=1").unwrap(), 1);
        assert_eq!(n("limit=500").unwrap(), 500);
        for bad in [
            "limit=0",
            "limit=501",
            "limit=-1",
            "limit=+5",
            "limit=1.5",
            "limit=ten",
            "limit=99999999999",
        ] {
            assert!(message(n(bad).unwrap_err()).contains("limit"), "{bad}");
        }
    }

    #[test]
    fn cursors_are_what_the_relay_gives_out() {
        let c = |raw: &str| q(raw).unwrap().cursor("after");
        assert_eq!(c("after=0").unwrap(), Some(0));
        assert_eq!(c("after=1042").unwrap(), Some(1042));
        assert_eq!(c("").unwrap(), None);
        for bad in [
            "after=007",
            "after=-1",
            "after=x1",
            "after=1e3",
            "after=9999999999999999999",
        ] {
            assert!(c(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339() {
        let t = |raw: &str| q(raw).unwrap().time("since");
        assert_eq!(
            t("since=2023-11-14T22:13:20Z").unwrap(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            t("since=2023-11-14T23:13:20.5%2B01:00").unwrap(),
            Some(1_700_000_000_500)
        );
        for bad in ["since=yesterday", "since=2023-11-14", "since=1700000000"] {
            assert!(message(t(bad).unwrap_err()).contains("since"), "{bad}");
        }
    }
}
