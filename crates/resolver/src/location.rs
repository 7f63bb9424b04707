//! Turning a `Location` header (or a refresh/script URL) into the next URL,
//! as browsers do.
//!
//! The `url` crate implements the WHATWG URL parser, so relative and
//! scheme-relative references, backslashes (`/\evil.test/x` is host
//! `evil.test`), surrounding whitespace and interior tabs/newlines come out
//! as in a browser. Two browser behaviours are ours to add:
//!
//! - header bytes that are not ASCII are percent-encoded byte by byte before
//!   parsing (a browser does the same with raw UTF-8 or Latin-1 bytes; IDN
//!   hosts survive because the URL parser percent-decodes hosts first);
//! - fragment inheritance (Fetch §4.4): a `Location` without a fragment keeps
//!   the fragment of the request URL. `Url::join` does not do this.
//!
//! Header extraction follows Chromium: empty `Location` values do not count,
//! identical duplicates are one value, different ones are a protocol error.

use std::fmt::Write as _;

use http::HeaderMap;
use url::Url;

/// The `Location` of a response, as Chromium reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationHeader<'a> {
    /// No `Location`, or only empty ones: the response is not a redirect.
    Missing,
    One(&'a [u8]),
    /// Several different non-empty values: refused as ambiguous.
    Conflicting,
}

pub fn location_header(headers: &HeaderMap) -> LocationHeader<'_> {
    let mut found: Option<&[u8]> = None;
    for value in headers.get_all(http::header::LOCATION) {
        let v = trim_http_ws(value.as_bytes());
        if v.is_empty() {
            continue;
        }
        match found {
            None => found = Some(v),
            Some(prev) if prev == v => {}
            Some(_) => return LocationHeader::Conflicting,
        }
    }
    found.map_or(LocationHeader::Missing, LocationHeader::One)
}

fn trim_http_ws(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Bytes to a string the URL parser accepts: ASCII as is, every other byte
/// as `%XX` (what browsers send for raw UTF-8 or Latin-1 in a header).
pub fn percent_encode_non_ascii(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Resolves a `Location` value against the URL that answered it, with
/// fragment inheritance.
pub fn resolve_location(raw: &[u8], current: &Url) -> Result<Url, url::ParseError> {
    let mut next = current.join(&percent_encode_non_ascii(raw))?;
    if next.fragment().is_none() {
        next.set_fragment(current.fragment());
    }
    Ok(next)
}

/// Resolves a URL found in a document (refresh or script) against the
/// document's base URL. A new navigation: no fragment inheritance.
pub fn resolve_reference(reference: &str, base: &Url) -> Result<Url, url::ParseError> {
    base.join(reference)
}

/// Only these schemes are fetched; anything else ends the chain with
/// `unsupported_scheme`.
pub fn is_fetchable(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn base() -> Url {
        Url::parse("http://a.test/dir/page?x=1#frag").expect("base parses")
    }

    fn loc(raw: &[u8]) -> String {
        resolve_location(raw, &base())
            .expect("resolves")
            .to_string()
    }

    #[test]
    fn relative_forms_resolve_like_browsers() {
        assert_eq!(loc(b"next"), "http://a.test/dir/next#frag");
        assert_eq!(loc(b"/root"), "http://a.test/root#frag");
        assert_eq!(loc(b"../up"), "http://a.test/up#frag");
        assert_eq!(loc(b"?q=2"), "http://a.test/dir/page?q=2#frag");
        assert_eq!(loc(b"//b.test/p"), "http://b.test/p#frag");
        assert_eq!(loc(b"https://c.test"), "https://c.test/#frag");
    }

    #[test]
    fn backslashes_are_slashes_in_special_urls() {
        assert_eq!(loc(b"/\\evil.test/x"), "http://evil.test/x#frag");
        assert_eq!(loc(b"\\\\evil.test\\y"), "http://evil.test/y#frag");
    }

    #[test]
    fn whitespace_is_stripped_or_encoded() {
        assert_eq!(loc(b"  /p  "), "http://a.test/p#frag");
        assert_eq!(loc(b"/a b"), "http://a.test/a%20b#frag");
        assert_eq!(loc(b"/a\tb\nc"), "http://a.test/abc#frag");
    }

    #[test]
    fn raw_non_ascii_bytes_are_percent_encoded() {
        assert_eq!(loc("/café".as_bytes()), "http://a.test/caf%C3%A9#frag");
        assert_eq!(loc(b"/caf\xe9"), "http://a.test/caf%E9#frag");
        assert_eq!(loc("/?q=ü".as_bytes()), "http://a.test/?q=%C3%BC#frag");
        assert_eq!(
            loc("http://bücher.example/".as_bytes()),
            "http://xn--bcher-kva.example/#frag"
        );
    }

    #[test]
    fn fragments_are_inherited_unless_given() {
        assert_eq!(loc(b"/p#own"), "http://a.test/p#own");
        assert_eq!(loc(b"/p#"), "http://a.test/p#");
        let no_frag = Url::parse("http://a.test/").expect("parses");
        let next = resolve_location(b"/p", &no_frag).expect("resolves");
        assert_eq!(next.fragment(), None);
    }

    #[test]
    fn document_references_do_not_inherit_fragments() {
        let u = resolve_reference("/p", &base()).expect("resolves");
        assert_eq!(u.as_str(), "http://a.test/p");
    }

    #[test]
    fn schemes() {
        for (s, ok) in [
            ("http://x.test/", true),
            ("https://x.test/", true),
            ("ftp://x.test/", false),
            ("javascript:alert(1)", false),
            ("data:text/html,hi", false),
            ("file:///etc/passwd", false),
            ("myapp://open/item", false),
        ] {
            assert_eq!(is_fetchable(&Url::parse(s).expect("parses")), ok, "{s}");
        }
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::LOCATION,
                HeaderValue::from_bytes(v).expect("valid header bytes"),
            );
        }
        h
    }

    #[test]
    fn header_extraction() {
        assert_eq!(location_header(&headers(&[])), LocationHeader::Missing);
        assert_eq!(location_header(&headers(&[b""])), LocationHeader::Missing);
        assert_eq!(
            location_header(&headers(&[b"", b"/a"])),
            LocationHeader::One(b"/a")
        );
        assert_eq!(
            location_header(&headers(&[b"/a", b"/a"])),
            LocationHeader::One(b"/a")
        );
        assert_eq!(
            location_header(&headers(&[b"/a", b"/b"])),
            LocationHeader::Conflicting
        );
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        assert!(resolve_location(b"http://[::1", &base()).is_err());
        assert!(resolve_location(b"http://exa mple.com/", &base()).is_err());
        assert!(resolve_location(b"http://\xff\xfe/", &base()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = resolve_location(&raw, &base());
        }
    }
}
