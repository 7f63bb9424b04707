//! The browser surface: the natives that surface.js builds on, and the page
//! model it is given.
//!
//! surface.js (JavaScript, run before the page's scripts) defines `window`,
//! `document`, `location`, forms, anchors, timers, `URL`, `atob`/`btoa`, …
//! over three natives from here: `nav` (record a navigation: navigation.rs),
//! `parseUrl` (the `url` crate, so URLs parse as the resolver parses them)
//! and `formEncode` (`application/x-www-form-urlencoded`, as browsers
//! encode forms). Nothing here performs I/O.

use boa_engine::object::builtins::JsArray;
use boa_engine::{Context, JsResult, JsValue, js_string};
use serde_json::json;
use url::Url;

use super::navigation;
use crate::html::ScriptDoc;

/// The surface's JavaScript.
pub const SURFACE_JS: &str = include_str!("surface.js");
/// Caps on large single-call built-ins.
pub const LIMITS_JS: &str = include_str!("limits.js");

/// What a page's scripts may know about where they run.
#[derive(Debug, Clone)]
pub struct PageEnv {
    /// The document's URL.
    pub url: Url,
    /// The User-Agent the page was fetched with.
    pub user_agent: String,
    /// The cookies the resolution's jar holds for the URL (`a=1; b=2`).
    pub cookie: String,
}

/// The page model surface.js is given, as JSON.
pub fn model(env: &PageEnv, doc: &ScriptDoc) -> String {
    let base = doc.base.as_ref().unwrap_or(&env.url);
    let pairs =
        |a: &Vec<(String, String)>| a.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>();
    json!({
        "url": env.url.as_str(),
        "base": base.as_str(),
        "ua": env.user_agent,
        "cookie": env.cookie,
        "forms": doc.forms.iter().map(|f| json!([pairs(&f.attrs), f.fields.iter().map(pairs).collect::<Vec<_>>()])).collect::<Vec<_>>(),
        "anchors": doc.anchors.iter().map(|a| pairs(&a.attrs)).collect::<Vec<_>>(),
        "ids": doc.ids.iter().map(|(id, tag)| json!([id, tag])).collect::<Vec<_>>(),
    })
    .to_string()
}

fn text(v: Option<&JsValue>, ctx: &mut Context) -> JsResult<String> {
    match v {
        None => Ok(String::new()),
        Some(v) if v.is_null_or_undefined() => Ok(String::new()),
        Some(v) => Ok(v.to_string(ctx)?.to_std_string_escaped()),
    }
}

/// `nav(kind, url, method, body)`.
pub fn nav(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let kind = text(args.first(), ctx)?;
    let url = text(args.get(1), ctx)?;
    let method = text(args.get(2), ctx)?;
    let body = text(args.get(3), ctx)?;
    navigation::record(&kind, &url, &method, &body);
    Ok(JsValue::undefined())
}

/// The URL's parts as `URL` exposes them: href, protocol, username,
/// password, host, hostname, port, pathname, search, hash, origin.
fn parts(u: &Url) -> [String; 11] {
    let hostname = u.host_str().unwrap_or("").to_string();
    let port = u.port().map(|p| p.to_string()).unwrap_or_default();
    let host = if port.is_empty() {
        hostname.clone()
    } else {
        format!("{hostname}:{port}")
    };
    let nonempty = |prefix: &str, s: Option<&str>| match s {
        Some(s) if !s.is_empty() => format!("{prefix}{s}"),
        _ => String::new(),
    };
    [
        u.as_str().to_string(),
        format!("{}:", u.scheme()),
        u.username().to_string(),
        u.password().unwrap_or("").to_string(),
        host,
        hostname,
        port,
        u.path().to_string(),
        nonempty("?", u.query()),
        nonempty("#", u.fragment()),
        u.origin().ascii_serialization(),
    ]
}

/// `parseUrl(input, base | null)`: the parts, or `null` when it is not a URL.
pub fn parse_url(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let input = text(args.first(), ctx)?;
    let base = text(args.get(1), ctx)?;
    let parsed = if base.is_empty() {
        Url::parse(&input)
    } else {
        Url::parse(&base).and_then(|b| b.join(&input))
    };
    match parsed {
        Err(_) => Ok(JsValue::null()),
        Ok(u) => {
            let values = parts(&u).map(|s| JsValue::from(js_string!(s.as_str())));
            Ok(JsArray::from_iter(values, ctx).into())
        }
    }
}

/// `formEncode([[name, value], …])`.
pub fn form_encode(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    if let Some(list) = args.first().and_then(JsValue::as_object) {
        let len = list.get(js_string!("length"), ctx)?.to_length(ctx)?;
        for i in 0..len.min(10_000) {
            let pair = list.get(i, ctx)?;
            if let Some(pair) = pair.as_object() {
                let name = pair.get(0, ctx)?.to_string(ctx)?.to_std_string_escaped();
                let value = pair.get(1, ctx)?.to_string(ctx)?.to_std_string_escaped();
                out.append_pair(&name, &value);
            }
        }
    }
    Ok(JsValue::from(js_string!(out.finish().as_str())))
}
