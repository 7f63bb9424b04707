//! Navigations the page's scripts ask for, captured instead of performed.
//!
//! The surface (surface.js) calls one native function for every navigation:
//! `location` assignments, `assign`/`replace`, the `search`/`pathname`/…
//! setters, `a.click()` and `form.submit()`. The URL is already resolved
//! against the document's base there; here it is parsed again and kept.
//!
//! **The rule when a page navigates more than once.** Within one task (one
//! inline script, one load handler, one timer callback) the *last*
//! navigation asked for wins, as in browsers, where a later navigation
//! cancels an earlier one that has not started. As soon as a task ends with
//! a navigation pending, nothing else runs: later scripts, load handlers and
//! timers belong to a page that is being left.

use std::cell::RefCell;

use url::Url;

use link_peeler_wire::protocol::RedirectKind;

/// Where the page's scripts navigated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptNavigation {
    /// `Javascript` for `location`/anchors, `Form` for submitted forms.
    pub kind: RedirectKind,
    pub target: Url,
    /// The urlencoded fields of a POST form; `None` for a GET.
    pub post_body: Option<String>,
}

thread_local! {
    /// The navigation asked for in the current task (one sandbox per
    /// thread at a time: the engine runs on a blocking thread of its own).
    static PENDING: RefCell<Option<ScriptNavigation>> = const { RefCell::new(None) };
}

/// Records a navigation (replacing one asked for earlier in the task).
/// `kind` is `"javascript"` or `"form"`, `method` `"GET"` or `"POST"`.
pub fn record(kind: &str, url: &str, method: &str, body: &str) {
    let Ok(target) = Url::parse(url) else {
        return;
    };
    let kind = if kind == "form" {
        RedirectKind::Form
    } else {
        RedirectKind::Javascript
    };
    let post_body = (method.eq_ignore_ascii_case("POST")).then(|| body.to_string());
    let nav = ScriptNavigation {
        kind,
        target,
        post_body,
    };
    let _ = PENDING.try_with(|p| *p.borrow_mut() = Some(nav));
}

/// Whether a navigation is pending.
pub fn pending() -> bool {
    PENDING.try_with(|p| p.borrow().is_some()).unwrap_or(false)
}

/// Takes the pending navigation, leaving none.
pub fn take() -> Option<ScriptNavigation> {
    PENDING.try_with(|p| p.borrow_mut().take()).ok().flatten()
}
