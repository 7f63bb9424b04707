//! Finding where an HTML page navigates to: `<meta http-equiv="refresh">`,
//! literal script redirects, and the `<base href>` they resolve against.
//!
//! The page is tokenized with `html5gum` (a WHATWG tokenizer: attribute
//! entities such as `&amp;` are decoded, script and `<noscript>` contents are
//! raw text as in a browser with scripting on, comments hide what is in
//! them). Tree building is not needed: the document order of these few
//! elements is all that matters.
//!
//! What a page does, as a browser with scripting would see it:
//! 1. the first literal load-time script redirect (see [`javascript`]) —
//!    inline scripts run while the page is parsed, before any refresh timer;
//! 2. otherwise the first valid `<meta refresh>` outside `<noscript>` (later
//!    ones are ignored, as the standard's "will declaratively refresh" flag
//!    says);
//! 3. otherwise the first valid one inside `<noscript>`: we cannot run the
//!    page's other scripts, so a page whose only way out is the no-script
//!    path is followed there (t.co answers browsers like this).
//!
//! [`javascript`]: super::javascript

use html5gum::{DefaultEmitter, StartTag, Token, Tokenizer};
use url::Url;

use super::javascript;
use super::location::resolve_reference;
use super::refresh::{Refresh, parse_refresh};

/// A navigation found in a document, resolved against its base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Navigation {
    pub via: Via,
    /// Seconds to wait (always 0 for scripts).
    pub delay: u64,
    pub target: Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    MetaRefresh,
    Script,
}

/// Everything a page says about navigating away, before precedence applies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PageRedirects {
    pub script: Option<Navigation>,
    pub meta: Option<Navigation>,
    pub noscript_meta: Option<Navigation>,
    /// What the script sandbox needs, should the page's scripts have to run.
    pub doc: ScriptDoc,
}

/// What the sandbox needs of a page: its inline scripts and load handlers in
/// document order, its forms and anchors, and which ids exist. Collected in
/// the same tokenizer pass, capped (a page cannot make this grow without
/// bound beyond its 256 KiB).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScriptDoc {
    /// The `<base href>` in effect (else the document's URL).
    pub base: Option<Url>,
    pub steps: Vec<ScriptStep>,
    pub forms: Vec<Form>,
    pub anchors: Vec<Anchor>,
    /// Other elements' ids, with their tag names.
    pub ids: Vec<(String, String)>,
}

impl ScriptDoc {
    /// Whether anything would run on load: an inline script or a handler.
    pub fn has_scripts(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// One thing that runs as the page loads, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptStep {
    /// An inline script's text.
    Script(String),
    /// `on*` attributes of `<body>`/`<frameset>` (event name without "on",
    /// handler text), set on the window where the tag appears.
    Handlers(Vec<(String, String)>),
}

/// A `<form>` and its controls.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Form {
    pub attrs: Vec<(String, String)>,
    pub fields: Vec<Vec<(String, String)>>,
}

/// An `<a>` or `<area>` with its attributes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub attrs: Vec<(String, String)>,
}

/// Caps on what [`ScriptDoc`] collects.
const MAX_FORMS: usize = 64;
const MAX_FIELDS: usize = 512;
const MAX_ANCHORS: usize = 512;
const MAX_IDS: usize = 1024;
const MAX_STEPS: usize = 256;

/// Attributes the surface uses, copied as text.
fn attrs_of(tag: &StartTag<()>) -> Vec<(String, String)> {
    tag.attributes
        .iter()
        .take(32)
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).to_ascii_lowercase(),
                String::from_utf8_lossy(&v.value.0).into_owned(),
            )
        })
        .collect()
}

fn attr<'t>(tag: &'t StartTag<()>, name: &str) -> Option<std::borrow::Cow<'t, str>> {
    tag.attributes
        .get(name.as_bytes())
        .map(|v| String::from_utf8_lossy(&v.value.0))
}

fn tokens(html: &str) -> impl Iterator<Item = Token> + '_ {
    let mut emitter = DefaultEmitter::default();
    emitter.naively_switch_states(true);
    Tokenizer::new_with_emitter(html, emitter).filter_map(Result::ok)
}

/// A script element whose inline text a browser would run.
fn is_runnable_script(tag: &StartTag<()>) -> bool {
    if attr(tag, "src").is_some() {
        return false;
    }
    match attr(tag, "type") {
        None => true,
        Some(t) => {
            let t = t.trim().to_ascii_lowercase();
            t.is_empty()
                || t == "module"
                || matches!(
                    t.as_str(),
                    "text/javascript"
                        | "application/javascript"
                        | "text/ecmascript"
                        | "application/ecmascript"
                        | "application/x-javascript"
                        | "text/jscript"
                )
        }
    }
}

/// A meta refresh's parsed value, if this tag is one.
fn meta_refresh(tag: &StartTag<()>) -> Option<Refresh> {
    let equiv = attr(tag, "http-equiv")?;
    if !equiv.trim().eq_ignore_ascii_case("refresh") {
        return None;
    }
    let content = attr(tag, "content")?;
    parse_refresh(&content)
}

/// A refresh that navigates somewhere (not a reload), resolved.
fn refresh_target(r: Refresh, base: &Url) -> Option<Navigation> {
    let target = resolve_reference(r.url.as_deref()?, base).ok()?;
    Some(Navigation {
        via: Via::MetaRefresh,
        delay: r.delay,
        target,
    })
}

#[derive(PartialEq)]
enum RawText {
    None,
    Script,
    Noscript,
}

/// Scans a document (already capped and decoded) served from `doc_url`.
pub fn scan(html: &str, doc_url: &Url) -> PageRedirects {
    let mut scanner = Scanner {
        doc_url,
        base: None,
        raw: RawText::None,
        text: String::new(),
        out: PageRedirects::default(),
        in_form: false,
    };
    for token in tokens(html) {
        match token {
            Token::StartTag(tag) => scanner.start_tag(&tag),
            Token::String(s) if scanner.raw != RawText::None => {
                scanner.text.push_str(&String::from_utf8_lossy(&s.value.0));
            }
            Token::EndTag(end) => scanner.end_tag(end.name.0.as_slice()),
            _ => {}
        }
    }
    // A page cut at the cap may end inside a script or noscript.
    scanner.raw_text_ends();
    scanner.out.doc.base = scanner.base.clone();
    scanner.out
}

/// The state of one [`scan`]: the base URL so far, the raw text element
/// being read and its text, and what was found.
struct Scanner<'d> {
    doc_url: &'d Url,
    base: Option<Url>,
    raw: RawText,
    text: String,
    out: PageRedirects,
    /// Inside a `<form>` (controls belong to the last form).
    in_form: bool,
}

impl Scanner<'_> {
    /// What relative URLs resolve against: the first `<base href>` seen so
    /// far, else the document's URL.
    fn base(&self) -> &Url {
        self.base.as_ref().unwrap_or(self.doc_url)
    }

    fn start_tag(&mut self, tag: &StartTag<()>) {
        match tag.name.0.as_slice() {
            b"base" if self.base.is_none() => {
                if let Some(href) = attr(tag, "href") {
                    self.base = Some(
                        resolve_reference(&href, self.doc_url)
                            .unwrap_or_else(|_| self.doc_url.clone()),
                    );
                }
            }
            b"meta" if self.out.meta.is_none() => {
                self.out.meta = meta_refresh(tag).and_then(|r| refresh_target(r, self.base()));
            }
            b"script" => {
                self.raw = if is_runnable_script(tag) {
                    RawText::Script
                } else {
                    RawText::None
                };
                self.text.clear();
            }
            b"noscript" => {
                self.raw = RawText::Noscript;
                self.text.clear();
            }
            _ => {}
        }
        self.collect(tag);
    }

    /// Records what the sandbox needs of this tag.
    fn collect(&mut self, tag: &StartTag<()>) {
        let doc = &mut self.out.doc;
        let name = tag.name.0.as_slice();
        match name {
            b"body" | b"frameset" if doc.steps.len() < MAX_STEPS => {
                // Only what runs on load: `onclick`, `onresize`… never do
                // without a user, so they start no engine.
                let handlers: Vec<(String, String)> = attrs_of(tag)
                    .into_iter()
                    .filter_map(|(k, v)| k.strip_prefix("on").map(|e| (e.to_string(), v)))
                    .filter(|(e, _)| e == "load" || e == "pageshow")
                    .collect();
                if !handlers.is_empty() {
                    doc.steps.push(ScriptStep::Handlers(handlers));
                }
            }
            b"form" if doc.forms.len() < MAX_FORMS => {
                doc.forms.push(Form {
                    attrs: attrs_of(tag),
                    fields: Vec::new(),
                });
                self.in_form = true;
                return;
            }
            b"input" | b"button" | b"select" | b"textarea" if self.in_form => {
                if let Some(form) = doc.forms.last_mut()
                    && form.fields.len() < MAX_FIELDS
                {
                    let mut a = attrs_of(tag);
                    a.push(("tag".into(), String::from_utf8_lossy(name).into_owned()));
                    form.fields.push(a);
                }
                return;
            }
            b"a" | b"area" if doc.anchors.len() < MAX_ANCHORS => {
                doc.anchors.push(Anchor {
                    attrs: attrs_of(tag),
                });
                return;
            }
            _ => {}
        }
        if let Some(id) = attr(tag, "id")
            && doc.ids.len() < MAX_IDS
        {
            doc.ids
                .push((id.into_owned(), String::from_utf8_lossy(name).into_owned()));
        }
    }

    fn end_tag(&mut self, name: &[u8]) {
        if matches!(
            (name, &self.raw),
            (b"script", RawText::Script) | (b"noscript", RawText::Noscript)
        ) {
            self.raw_text_ends();
        }
        if matches!(name, b"script" | b"noscript") {
            self.raw = RawText::None;
            self.text.clear();
        }
        if name == b"form" {
            self.in_form = false;
        }
    }

    /// The raw text element being read ends (at its end tag or where the
    /// page was cut): the first runnable script's and the first
    /// `<noscript>`'s navigations are taken from its text.
    fn raw_text_ends(&mut self) {
        match self.raw {
            RawText::Script => {
                if self.out.script.is_none() {
                    self.out.script = script_navigation(&self.text, self.base());
                }
                if self.out.doc.steps.len() < MAX_STEPS && !self.text.trim().is_empty() {
                    let text = std::mem::take(&mut self.text);
                    self.out.doc.steps.push(ScriptStep::Script(text));
                }
            }
            RawText::Noscript if self.out.noscript_meta.is_none() => {
                self.out.noscript_meta = first_meta_in(&self.text, self.base());
            }
            _ => {}
        }
    }
}

/// The literal redirect in an inline script's text, resolved.
fn script_navigation(script: &str, base: &Url) -> Option<Navigation> {
    javascript::find_redirect(script)
        .and_then(|u| resolve_reference(&u, base).ok())
        .map(|target| Navigation {
            via: Via::Script,
            delay: 0,
            target,
        })
}

/// The first valid meta refresh in a `<noscript>`'s raw text.
fn first_meta_in(fragment: &str, base: &Url) -> Option<Navigation> {
    tokens(fragment).find_map(|t| match t {
        Token::StartTag(tag) if tag.name.0.as_slice() == b"meta" => {
            meta_refresh(&tag).and_then(|r| refresh_target(r, base))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Url {
        Url::parse("http://a.test/dir/page").expect("parses")
    }

    #[test]
    fn only_load_handlers_start_the_sandbox() {
        let with = |body: &str| scan(&format!("<html><body {body}>hi</body></html>"), &doc()).doc;
        assert!(with(r#"onload="go()""#).has_scripts());
        assert!(with(r#"onpageshow="go()""#).has_scripts());
        for user_driven in [
            r#"onclick="go()""#,
            r#"onresize="go()""#,
            r#"onbeforeunload="go()""#,
        ] {
            assert!(!with(user_driven).has_scripts(), "{user_driven}");
        }
    }

    /// The precedence `hop` applies (without a Refresh header).
    fn chosen(html: &str) -> Option<(Via, String)> {
        let p = scan(html, &doc());
        let meta = p.meta.or(p.noscript_meta).filter(|m| m.delay <= 10);
        p.script.or(meta).map(|n| (n.via, n.target.to_string()))
    }

    #[test]
    fn meta_refresh_is_found_and_resolved() {
        let got = chosen(
            r#"<html><head><meta http-equiv="Refresh" content="0; URL=/next?a=1&amp;b=2"></head></html>"#,
        );
        assert_eq!(
            got,
            Some((Via::MetaRefresh, "http://a.test/next?a=1&b=2".into()))
        );
    }

    #[test]
    fn base_href_is_honoured() {
        let got = chosen(r#"<base href="/sub/"><meta http-equiv=refresh content="0;url=page">"#);
        assert_eq!(
            got,
            Some((Via::MetaRefresh, "http://a.test/sub/page".into()))
        );
        let got = chosen(r#"<base href="https://b.test/x/"><script>location.href='y'</script>"#);
        assert_eq!(got, Some((Via::Script, "https://b.test/x/y".into())));
    }

    #[test]
    fn only_the_first_meta_refresh_counts() {
        let got = chosen(
            r#"<meta http-equiv=refresh content="0;url=/one"><meta http-equiv=refresh content="0;url=/two">"#,
        );
        assert_eq!(got, Some((Via::MetaRefresh, "http://a.test/one".into())));
        // An invalid one does not take the slot.
        let got = chosen(
            r#"<meta http-equiv=refresh content="x"><meta http-equiv=refresh content="0;url=/two">"#,
        );
        assert_eq!(got, Some((Via::MetaRefresh, "http://a.test/two".into())));
    }

    #[test]
    fn long_delays_and_reloads_are_not_redirects() {
        assert_eq!(
            chosen(r#"<meta http-equiv=refresh content="30;url=/later">"#),
            None
        );
        assert_eq!(chosen(r#"<meta http-equiv=refresh content="5">"#), None);
        let got = chosen(r#"<meta http-equiv=refresh content="10;url=/ten">"#);
        assert_eq!(got, Some((Via::MetaRefresh, "http://a.test/ten".into())));
    }

    #[test]
    fn scripts_win_over_refresh_and_noscript_is_the_fallback() {
        let tco = r#"<noscript><META http-equiv="refresh" content="0;URL=https://dest.test/a"></noscript><script>window.location.replace("https:\/\/dest.test\/b")</script>"#;
        assert_eq!(
            chosen(tco),
            Some((Via::Script, "https://dest.test/b".into()))
        );
        let only_noscript = r#"<noscript><meta http-equiv="refresh" content="0;URL=https://dest.test/a"></noscript><script>var x = 1;</script>"#;
        assert_eq!(
            chosen(only_noscript),
            Some((Via::MetaRefresh, "https://dest.test/a".into()))
        );
        let both = r#"<noscript><meta http-equiv=refresh content="0;url=/ns"></noscript><meta http-equiv=refresh content="0;url=/real">"#;
        assert_eq!(
            chosen(both),
            Some((Via::MetaRefresh, "http://a.test/real".into()))
        );
    }

    #[test]
    fn things_that_look_like_redirects_but_are_not() {
        for html in [
            r#"<!-- <meta http-equiv=refresh content="0;url=/c"> -->"#,
            r#"<script>var s = '<meta http-equiv=refresh content="0;url=/s">';</script>"#,
            r#"<script src="/app.js">location.href='/x'</script>"#,
            r#"<script type="application/ld+json">{"a": "location.href='/x'"}</script>"#,
            r#"<textarea><meta http-equiv=refresh content="0;url=/t"></textarea>"#,
            r#"<p>location.href = '/text'</p>"#,
            r#"<meta name=refresh content="0;url=/name">"#,
            r#"<meta http-equiv=refresh>"#,
        ] {
            assert_eq!(chosen(html), None, "{html}");
        }
    }

    #[test]
    fn truncated_pages_are_scanned_as_far_as_they_go() {
        let got = chosen("<html><script>location.replace('/cut')");
        assert_eq!(got, Some((Via::Script, "http://a.test/cut".into())));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(<|>|meta|script|noscript|base|href=|http-equiv=refresh|content=|\"|'|/|0;url=x| |é)*") {
            let _ = scan(&s, &doc());
        }
    }
}
