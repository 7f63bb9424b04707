//! What a user may paste into the enrollment dialog, parsed without I/O.
//!
//! Admins send either a relay address plus a one-time code, or one
//! enrollment link that carries both:
//! `link-peeler://enroll?relay=https%3A%2F%2Frelay.example.com&code=ABCD-1234`.
//! The link saves the user from typing a URL; the same text is what an
//! installer-registered `link-peeler://` handler would receive, so the
//! parser is shared by both ways in.

use url::Url;

use link_peeler_agent::config;

/// The URL scheme of enrollment links.
pub const SCHEME: &str = "link-peeler";

/// What the first dialog field held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstAnswer {
    /// A full enrollment link: nothing more to ask.
    Link { relay: Url, code: String },
    /// Only the relay address: the code comes next.
    Relay(Url),
}

/// Parses the first answer: an enrollment link or a relay address.
/// Errors are sentences for the user.
pub fn parse_first(input: &str) -> Result<FirstAnswer, String> {
    let input = input.trim();
    if input.is_empty() {
        return Err("Paste the enrollment link or type the relay address your admin sent.".into());
    }
    if input
        .get(..SCHEME.len() + 1)
        .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{SCHEME}:")))
    {
        let (relay, code) = parse_link(input)?;
        return Ok(FirstAnswer::Link { relay, code });
    }
    relay(input).map(FirstAnswer::Relay)
}

/// Parses `link-peeler://enroll?relay=…&code=…`.
pub fn parse_link(input: &str) -> Result<(Url, String), String> {
    let bad = |why: &str| {
        format!("This enrollment link is not complete ({why}). Copy the whole link again.")
    };
    let url = Url::parse(input.trim()).map_err(|_| bad("it is not a valid link"))?;
    if !url.scheme().eq_ignore_ascii_case(SCHEME) || url.host_str() != Some("enroll") {
        return Err(bad("it should start with link-peeler://enroll?"));
    }
    let mut relay_raw = None;
    let mut code_raw = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "relay" => relay_raw = Some(v.into_owned()),
            "code" => code_raw = Some(v.into_owned()),
            _ => {}
        }
    }
    let relay = relay(&relay_raw.ok_or_else(|| bad("no relay"))?)?;
    let code = code(&code_raw.ok_or_else(|| bad("no code"))?)?;
    Ok((relay, code))
}

/// Checks a relay address with the agent's own rules (https unless loopback).
pub fn relay(input: &str) -> Result<Url, String> {
    config::relay_url(input.trim()).map_err(|e| match e {
        config::ConfigError::RelayUrl { why, .. } => {
            format!("“{}” is not a relay address: {why}.", input.trim())
        }
        other => other.to_string(),
    })
}

/// Checks a one-time code: trimmed, non-empty, at most 64 characters.
pub fn code(input: &str) -> Result<String, String> {
    let c = input.trim();
    if c.is_empty() || c.len() > 64 || c.chars().any(char::is_control) {
        return Err("Type the one-time enrollment code from your admin's message.".into());
    }
    Ok(c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_link_gives_relay_and_code() {
        let a = parse_first(
            " link-peeler://enroll?relay=https%3A%2F%2Frelay.example.com%2Flp&code=ABCD-1234 ",
        )
        .unwrap();
        assert_eq!(
            a,
            FirstAnswer::Link {
                relay: Url::parse("https://relay.example.com/lp/").unwrap(),
                code: "ABCD-1234".into()
            }
        );
        let loopback =
            parse_link("LINK-PEELER://enroll?code=x&relay=http://127.0.0.1:8787").unwrap();
        assert_eq!(loopback.0.as_str(), "http://127.0.0.1:8787/");
    }

    #[test]
    fn a_relay_address_alone_asks_for_the_code_next() {
        assert_eq!(
            parse_first("https://relay.example.com").unwrap(),
            FirstAnswer::Relay(Url::parse("https://relay.example.com/").unwrap())
        );
    }

    #[test]
    fn bad_input_gets_a_sentence_not_a_panic() {
        for (input, needle) in [
            ("", "Paste the enrollment link"),
            ("http://relay.example.com", "https://"),
            ("not a url", "is not a relay address"),
            ("link-peeler://enroll?code=abc", "no relay"),
            ("link-peeler://enroll?relay=https://r.example", "no code"),
            (
                "link-peeler://other?relay=https://r.example&code=a",
                "link-peeler://enroll?",
            ),
            (
                "link-peeler://enroll?relay=http://10.0.0.1&code=a",
                "https://",
            ),
            (
                "link-peeler://enroll?relay=https://r.example&code=%20",
                "one-time",
            ),
        ] {
            let err = parse_first(input).unwrap_err();
            assert!(err.contains(needle), "{input:?} → {err}");
        }
    }

    #[test]
    fn codes_are_trimmed_and_bounded() {
        assert_eq!(code("  AB-12 \n").unwrap(), "AB-12");
        assert!(code(&"x".repeat(65)).is_err());
        assert!(code("a\u{7}b").is_err());
    }
}
