//! Reading just enough of a response body to see whether the page redirects.
//!
//! reqwest decompresses gzip/brotli/deflate without any size cap, so the cap
//! is enforced here on the decompressed chunks as they arrive: a 200 MB page
//! or a gzip bomb costs at most [`BODY_CAP`] bytes (plus one chunk) before the
//! response is dropped, which closes the connection. Time is bounded by the
//! caller's deadline (a server dribbling one byte per second never ends the
//! read by itself).

use http::HeaderMap;

/// At most this many decompressed bytes of a page are scanned.
pub const BODY_CAP: usize = 256 * 1024;

/// Whether a response's body can hold a meta refresh or an inline script: an
/// HTML (or XHTML) page, or one that does not say what it is (browsers sniff).
pub fn is_html(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(http::header::CONTENT_TYPE) else {
        return true;
    };
    let ct = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.is_empty() || essence == "text/html" || essence == "application/xhtml+xml"
}

/// Reads decompressed body chunks until the end or until `cap` bytes; the
/// result never exceeds `cap` bytes. `Ok((bytes, truncated))`.
pub async fn read_capped(
    resp: &mut reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        super::meter::downloaded(chunk.len());
        let room = cap - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ct(v: Option<&str>) -> bool {
        let mut h = HeaderMap::new();
        if let Some(v) = v {
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(v).expect("valid"),
            );
        }
        is_html(&h)
    }

    #[test]
    fn html_detection() {
        assert!(ct(None));
        assert!(ct(Some("text/html")));
        assert!(ct(Some("Text/HTML; charset=utf-8")));
        assert!(ct(Some("application/xhtml+xml")));
        assert!(!ct(Some("application/json")));
        assert!(!ct(Some("image/png")));
        assert!(!ct(Some("text/plain")));
        assert!(!ct(Some("application/octet-stream")));
    }
}
