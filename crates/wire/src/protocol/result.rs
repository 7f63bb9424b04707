//! The resolution result of protocol.md §5: what `link-peeler resolve --json` prints,
//! what the agent posts, and what a job's `result` holds.

use serde::{Deserialize, Serialize};

/// How a hop pointed to the next URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectKind {
    /// A 301/302/303/307/308 with a `Location` header.
    Location,
    /// An HTTP `Refresh` header.
    RefreshHeader,
    /// `<meta http-equiv="refresh">` in the body.
    MetaRefresh,
    /// A navigation by the page's own scripts: a literal `location = …` found
    /// without running anything, or one made while the scripts ran in the
    /// sandbox (protocol.md §5.7).
    Javascript,
    /// A form submitted while the page loaded (by a script or a load
    /// handler); the hop's `method` says GET or POST.
    Form,
}

impl RedirectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectKind::Location => "location",
            RedirectKind::RefreshHeader => "refresh_header",
            RedirectKind::MetaRefresh => "meta_refresh",
            RedirectKind::Javascript => "javascript",
            RedirectKind::Form => "form",
        }
    }
}

/// Why resolution stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Resolved,
    HttpError,
    RedirectLoop,
    TooManyRedirects,
    Timeout,
    DnsError,
    ConnectError,
    TlsError,
    BlockedAddress,
    UnsupportedScheme,
    InvalidUrl,
    ProtocolError,
    /// The agent's destination rules or quotas refused a hop; nothing was sent to it.
    RefusedByPolicy,
}

impl Conclusion {
    pub fn as_str(self) -> &'static str {
        use Conclusion::*;
        match self {
            Resolved => "resolved",
            HttpError => "http_error",
            RedirectLoop => "redirect_loop",
            TooManyRedirects => "too_many_redirects",
            Timeout => "timeout",
            DnsError => "dns_error",
            ConnectError => "connect_error",
            TlsError => "tls_error",
            BlockedAddress => "blocked_address",
            UnsupportedScheme => "unsupported_scheme",
            InvalidUrl => "invalid_url",
            ProtocolError => "protocol_error",
            RefusedByPolicy => "refused_by_policy",
        }
    }
}

impl std::fmt::Display for Conclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request made during a resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    pub url: String,
    /// HTTP status, or `null` when no response arrived (blocked, timed out, failed to connect).
    pub status: Option<u16>,
    pub redirect_kind: Option<RedirectKind>,
    /// The absolute next URL when this hop redirects.
    pub location: Option<String>,
    pub elapsed_ms: u64,
    /// `ip:port` the response came from, when a connection was made.
    pub remote_addr: Option<String>,
    /// The request method when it was not GET (a submitted POST form).
    /// Omitted for GET, so results without it are GETs (older agents).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "hop_method"
    )]
    pub method: Option<String>,
    /// Something worth knowing about how this hop was read, e.g. that the
    /// page's scripts ran out of their budget (protocol.md §5.7). Omitted
    /// when there is nothing to say.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "hop_note"
    )]
    pub note: Option<String>,
}

/// Longest hop `note`, in characters.
pub const MAX_HOP_NOTE_CHARS: usize = 512;

/// `method` is `GET` or `POST`: the only methods a resolution sends.
fn hop_method<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let method = Option::<String>::deserialize(d)?;
    match method.as_deref() {
        None | Some("GET" | "POST") => Ok(method),
        Some(other) => Err(serde::de::Error::custom(format!(
            "method must be GET or POST, not {other:?}"
        ))),
    }
}

/// `note` is one line of at most [`MAX_HOP_NOTE_CHARS`] characters: it is
/// shown to integrators and forwarded in webhooks.
fn hop_note<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let note = Option::<String>::deserialize(d)?;
    if let Some(n) = &note
        && (n.chars().count() > MAX_HOP_NOTE_CHARS || n.chars().any(char::is_control))
    {
        return Err(serde::de::Error::custom(format!(
            "note must be at most {MAX_HOP_NOTE_CHARS} characters without control characters"
        )));
    }
    Ok(note)
}

/// The whole answer for one tracking URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolutionResult {
    pub input_url: String,
    pub final_url: String,
    pub conclusion: Conclusion,
    pub final_status: Option<u16>,
    pub redirect_count: u32,
    pub elapsed_ms: u64,
    /// A human-readable explanation when `conclusion` is not `resolved`/`http_error`.
    pub error: Option<String>,
    pub hops: Vec<Hop>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_parses_and_round_trips() {
        let spec = r#"{"inputUrl": "https://a.test/", "finalUrl": "https://b.test/", "conclusion": "resolved", "finalStatus": 200,
 "redirectCount": 1, "elapsedMs": 143, "error": null,
 "hops": [
   {"url": "https://a.test/", "status": 302, "redirectKind": "location", "location": "https://b.test/",
    "elapsedMs": 41, "remoteAddr": "203.0.113.9:443"},
   {"url": "https://b.test/", "status": 200, "redirectKind": null, "location": null, "elapsedMs": 60, "remoteAddr": "203.0.113.9:443"}]}"#;
        let r: ResolutionResult = serde_json::from_str(spec).unwrap();
        assert_eq!(r.conclusion, Conclusion::Resolved);
        assert_eq!(r.hops[0].redirect_kind, Some(RedirectKind::Location));
        let back: serde_json::Value = serde_json::to_value(&r).unwrap();
        let orig: serde_json::Value = serde_json::from_str(spec).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn form_hops_carry_method_and_note_and_old_hops_still_parse() {
        let hop = r#"{"url": "https://a.test/", "status": 200, "redirectKind": "form",
            "location": "https://b.test/go", "elapsedMs": 3, "remoteAddr": null,
            "method": "POST", "note": "scripts stopped: budget"}"#;
        let h: Hop = serde_json::from_str(hop).unwrap();
        assert_eq!(h.redirect_kind, Some(RedirectKind::Form));
        assert_eq!(h.method.as_deref(), Some("POST"));
        assert_eq!(h.note.as_deref(), Some("scripts stopped: budget"));
        let old = r#"{"url": "https://a.test/", "status": 200, "redirectKind": "javascript",
            "location": "https://b.test/", "elapsedMs": 3, "remoteAddr": null}"#;
        let h: Hop = serde_json::from_str(old).unwrap();
        assert_eq!((&h.method, &h.note), (&None, &None));
        // The method is GET or POST; a note is one bounded line.
        let hop = |extra: &str| {
            serde_json::from_str::<Hop>(&format!(
                r#"{{"url": "https://a.test/", "status": 200, "redirectKind": null,
                "location": null, "elapsedMs": 1, "remoteAddr": null{extra}}}"#
            ))
        };
        assert!(hop(r#", "method": "GET""#).is_ok());
        for bad in [
            r#", "method": "DELETE""#,
            r#", "method": "post""#,
            r#", "method": """#,
            r#", "note": "two
lines""#,
        ] {
            assert!(hop(bad).is_err(), "{bad}");
        }
        let long = format!(r#", "note": "{}""#, "n".repeat(MAX_HOP_NOTE_CHARS + 1));
        assert!(hop(&long).is_err());
        let edge = format!(r#", "note": "{}""#, "n".repeat(MAX_HOP_NOTE_CHARS));
        assert!(hop(&edge).is_ok());
        // A GET hop without a note serialises exactly as before.
        let back = serde_json::to_value(&h).unwrap();
        assert!(back.get("method").is_none() && back.get("note").is_none());
        assert_eq!(RedirectKind::Form.as_str(), "form");
    }

    #[test]
    fn unknown_conclusion_is_rejected() {
        let bad = r#"{"inputUrl":"u","finalUrl":"u","conclusion":"fine","finalStatus":null,"redirectCount":0,"elapsedMs":0,"error":null,"hops":[]}"#;
        assert!(serde_json::from_str::<ResolutionResult>(bad).is_err());
    }
}
