//! Loop detection keyed on what a request really is: its URL and the cookies
//! it carries.
//!
//! Counting hops cannot tell a loop from a long chain, and keying on the URL
//! alone mistakes the common tracker pattern "set a cookie, redirect to
//! myself" for a loop. A request repeated with the same URL (fragment
//! excluded: it is never sent) and the same cookies can only get the same
//! answer again, so the second time is a loop, detected at once.

use std::collections::HashSet;

use http::HeaderValue;
use url::Url;

#[derive(Debug, Default)]
pub struct Visited {
    seen: HashSet<(String, String)>,
}

fn key(url: &Url, cookies: Option<&HeaderValue>, post_body: Option<&str>) -> (String, String) {
    let mut u = url.clone();
    u.set_fragment(None);
    // A POST (a submitted form) is a different request from a GET of the
    // same URL, and from a POST with other fields: the form's page often
    // posts back to its own URL.
    let mut u: String = u.into();
    if let Some(body) = post_body {
        u.push_str("\nPOST ");
        u.push_str(body);
    }
    // A jar may list cookies in any order; the set is what counts.
    let mut parts: Vec<&[u8]> = cookies
        .map(|c| {
            c.as_bytes()
                .split(|b| *b == b';')
                .map(<[u8]>::trim_ascii)
                .collect()
        })
        .unwrap_or_default();
    parts.sort_unstable();
    let cookies = parts
        .iter()
        .map(|p| String::from_utf8_lossy(p))
        .collect::<Vec<_>>()
        .join("; ");
    (u, cookies)
}

impl Visited {
    /// Records a request; `false` when the same request was made before.
    pub fn insert(
        &mut self,
        url: &Url,
        cookies: Option<&HeaderValue>,
        post_body: Option<&str>,
    ) -> bool {
        self.seen.insert(key(url, cookies, post_body))
    }

    /// Whether this request was made before (without recording it).
    pub fn contains(
        &self,
        url: &Url,
        cookies: Option<&HeaderValue>,
        post_body: Option<&str>,
    ) -> bool {
        self.seen.contains(&key(url, cookies, post_body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).expect("parses")
    }

    #[test]
    fn same_url_and_cookies_is_a_repeat() {
        let mut v = Visited::default();
        assert!(v.insert(&u("http://a.test/x"), None, None));
        assert!(!v.insert(&u("http://a.test/x"), None, None));
        assert!(!v.insert(&u("http://a.test/x#other"), None, None));
    }

    #[test]
    fn new_cookies_make_a_new_request() {
        let mut v = Visited::default();
        assert!(v.insert(&u("http://a.test/x"), None, None));
        let c = HeaderValue::from_static("gate=1");
        assert!(v.insert(&u("http://a.test/x"), Some(&c), None));
        assert!(v.contains(&u("http://a.test/x"), Some(&c), None));
    }

    #[test]
    fn a_post_differs_from_a_get_and_from_other_fields() {
        let mut v = Visited::default();
        assert!(v.insert(&u("http://a.test/x"), None, None));
        assert!(v.insert(&u("http://a.test/x"), None, Some("a=1")));
        assert!(v.insert(&u("http://a.test/x"), None, Some("a=2")));
        assert!(!v.insert(&u("http://a.test/x"), None, Some("a=1")));
    }

    #[test]
    fn cookie_order_does_not_matter() {
        let mut v = Visited::default();
        let a = HeaderValue::from_static("a=1; b=2");
        let b = HeaderValue::from_static("b=2;a=1");
        assert!(v.insert(&u("http://a.test/"), Some(&a), None));
        assert!(v.contains(&u("http://a.test/"), Some(&b), None));
    }

    #[test]
    fn query_changes_are_new_requests() {
        let mut v = Visited::default();
        assert!(v.insert(&u("http://a.test/?n=1"), None, None));
        assert!(v.insert(&u("http://a.test/?n=2"), None, None));
    }
}
