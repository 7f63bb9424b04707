//! The WHATWG "shared declarative refresh steps", used for both the HTTP
//! `Refresh` header and `<meta http-equiv="refresh" content>`.
//!
//! Written out step by step from the HTML standard rather than with a regex:
//! the quirks matter (`1x;url=foo` is no refresh, `1 x;url=foo` is one to
//! `x;url=foo`, `.9` is delay 0, `'foo'bar` is `foo`) and the 69
//! web-platform-tests vectors in `tests/vectors/meta-refresh-vectors.json` pin them.

/// A parsed refresh: wait `delay` seconds, then go to `url` (unresolved), or
/// reload the same document when `url` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub delay: u64,
    pub url: Option<String>,
}

fn is_ascii_ws(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0c | b'\r' | b' ')
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    fn skip_while(&mut self, f: impl Fn(u8) -> bool) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }
    fn skip_ws(&mut self) {
        self.skip_while(is_ascii_ws);
    }
    fn eat_ci(&mut self, lower: u8) -> bool {
        if self.peek().map(|b| b.to_ascii_lowercase()) == Some(lower) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
}

/// Parses a refresh value; `None` means "not a refresh at all".
pub fn parse_refresh(input: &str) -> Option<Refresh> {
    let mut c = Cursor { s: input, pos: 0 };
    // 2. Skip ASCII whitespace.
    c.skip_ws();
    // 3–5. The integer part of the delay; a missing one needs a '.' next.
    let digits = c.skip_while(|b| b.is_ascii_digit());
    let delay = if digits.is_empty() {
        if c.peek() != Some(b'.') {
            return None;
        }
        0
    } else {
        digits.bytes().fold(0u64, |acc, d| {
            acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        })
    };
    // 6. Digits and dots after it are ignored.
    c.skip_while(|b| b.is_ascii_digit() || b == b'.');
    // 8. A separator: ';', ',' or whitespace.
    if let Some(b) = c.peek() {
        if !(b == b';' || b == b',' || is_ascii_ws(b)) {
            return None;
        }
        c.skip_ws();
        if matches!(c.peek(), Some(b';' | b',')) {
            c.pos += 1;
        }
        c.skip_ws();
    }
    // 9. The URL, if anything is left.
    if c.peek().is_none() {
        return Some(Refresh { delay, url: None });
    }
    Some(Refresh {
        delay,
        url: Some(clean_url(url_string(&mut c))),
    })
}

/// Steps 9.1–9.10: an optional `url =` prefix, then an optionally quoted URL.
fn url_string<'a>(c: &mut Cursor<'a>) -> &'a str {
    let s = c.s;
    // 9.1: until a full "url =" prefix is seen, the URL is the remainder.
    let whole = &s[c.pos..];
    // 9.2–9.7: "u", "r", "l", whitespace, "=", whitespace.
    if c.eat_ci(b'u') {
        if !c.eat_ci(b'r') || !c.eat_ci(b'l') {
            return whole;
        }
        c.skip_ws();
        if c.peek() != Some(b'=') {
            return whole;
        }
        c.pos += 1;
        c.skip_ws();
    }
    // 9.8 "skip quotes".
    let quote = c.peek().filter(|b| *b == b'"' || *b == b'\'');
    if quote.is_some() {
        c.pos += 1;
    }
    // 9.9–9.10: the remainder, truncated at the matching quote.
    let rest = &s[c.pos..];
    match quote {
        Some(q) => &rest[..rest.find(char::from(q)).unwrap_or(rest.len())],
        None => rest,
    }
}

/// What the URL parser does to its input before parsing: strip leading and
/// trailing C0 controls and spaces, remove ASCII tab and newline anywhere.
fn clean_url(s: &str) -> String {
    s.trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vectors {
        vectors: Vec<Vector>,
    }
    #[derive(serde::Deserialize)]
    struct Vector {
        content: String,
        expected: Option<Expected>,
    }
    #[derive(serde::Deserialize)]
    struct Expected {
        delay: u64,
        url: Option<String>,
    }

    #[test]
    fn all_whatwg_vectors_pass() {
        let text = include_str!("../tests/vectors/meta-refresh-vectors.json");
        let v: Vectors = serde_json::from_str(text).expect("vectors parse");
        assert_eq!(v.vectors.len(), 69);
        let mut failures = Vec::new();
        for t in &v.vectors {
            let want = t.expected.as_ref().map(|e| Refresh {
                delay: e.delay,
                url: e.url.clone(),
            });
            let got = parse_refresh(&t.content);
            if got != want {
                failures.push(format!("{:?}: got {got:?}, want {want:?}", t.content));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn huge_delays_saturate_instead_of_overflowing() {
        let r = parse_refresh("99999999999999999999999999; url=x").expect("parses");
        assert_eq!(r.delay, u64::MAX);
        assert_eq!(r.url.as_deref(), Some("x"));
    }

    #[test]
    fn non_ascii_urls_survive() {
        let r = parse_refresh("0;URL='/café?q=ü'").expect("parses");
        assert_eq!(r.url.as_deref(), Some("/café?q=ü"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_refresh(&s);
        }

        #[test]
        fn digits_then_url_always_parse(d in 0u32..100_000, u in "[a-z/]{1,20}") {
            let r = parse_refresh(&format!("{d}; url={u}"));
            proptest::prop_assert_eq!(r, Some(Refresh { delay: u64::from(d), url: Some(u) }));
        }
    }
}
