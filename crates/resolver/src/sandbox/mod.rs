//! The script sandbox: runs a page's inline scripts and load handlers in an
//! embedded JavaScript engine (boa, pure Rust) to see where the page
//! navigates as it loads, when no stronger redirect decided the hop
//! (protocol.md §5.5, §5.7).
//!
//! | file | concept |
//! | --- | --- |
//! | `engine` | the boa context per page, metered slices, promise jobs, why boa |
//! | `budget` | what a page may spend (instructions, time, memory, tasks) and the meter |
//! | `surface` + `surface.js` | the browser surface: window, document, location, forms, anchors, URL, … |
//! | `limits.js` | caps on built-ins that build big strings or arrays in one call |
//! | `timers` | the page's event loop on a virtual clock |
//! | `navigation` | navigations captured, and the rule when there are several |
//!
//! **Invariant: scripts never reach the network or files.** The engine has
//! no I/O of its own (boa's core has none; `boa_runtime` is not linked) and
//! the surface gives it none: `fetch` and `XMLHttpRequest` fail, external
//! `<script src>` is never fetched, `window.open` is refused. A navigation is
//! only *recorded*; the chain then requests it like any other hop, through
//! the SSRF guard and the scheme rules.
//!
//! What a browser does on load is followed; what needs a user is not: click
//! handlers never run (no events are dispatched to elements), but a script
//! calling `a.click()` or `form.submit()` on load navigates.
//!
//! The engine runs on a thread of its own with a large stack (boa's parser
//! recurses on nesting; see `engine::MAX_NESTING`), never on an async worker;
//! its context is created there (boa is not `Send`). A panic inside boa is
//! caught and becomes a note; the hop's deadline bounds the wait.

mod budget;
mod engine;
mod navigation;
mod surface;
mod timers;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use boa_engine::object::builtins::JsFunction;
use boa_engine::property::PropertyDescriptor;
use boa_engine::{JsObject, JsValue, NativeFunction, Source, js_string};

pub use budget::{Budget, Exhausted, MeteredAlloc};
pub use navigation::ScriptNavigation;
pub use surface::PageEnv;

use crate::html::ScriptDoc;
use budget::Meter;
use engine::Engine;

/// Stack of the sandbox thread: room for [`engine::MAX_NESTING`] levels of
/// parser recursion with a wide margin (reserved, not committed, memory).
const STACK: usize = 256 * 1024 * 1024;

/// What running a page's scripts came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Where the page navigated as it loaded, if it did.
    pub navigation: Option<ScriptNavigation>,
    /// Something the hop should say: a budget ran out, the engine failed.
    pub note: Option<String>,
}

fn noted(note: &str) -> Outcome {
    Outcome {
        navigation: None,
        note: Some(note.to_string()),
    }
}

/// Runs the page's scripts on this thread, within `budget` and before
/// `deadline`. Never panics.
pub fn run(env: &PageEnv, doc: &ScriptDoc, budget: Budget, deadline: Instant) -> Outcome {
    navigation::take();
    let ran = catch_unwind(AssertUnwindSafe(|| run_page(env, doc, budget, deadline)));
    navigation::take();
    ran.unwrap_or_else(|_| {
        noted("the script engine failed on this page; its scripts were not followed")
    })
}

/// Runs the page's scripts on a sandbox thread, waiting at most until
/// `deadline` (also the scripts' own deadline).
///
/// At most [`MAX_LIVE_THREADS`] sandbox threads exist at once. A thread the
/// hop stopped waiting for runs on until its budgets stop it, and one
/// built-in call (a backtracking regular expression, say) is not sliced, so
/// such threads could otherwise pile up; past the cap a page's scripts are
/// not run, and the hop says so.
pub async fn run_isolated(env: PageEnv, doc: ScriptDoc, deadline: tokio::time::Instant) -> Outcome {
    let Some(slot) = LiveThread::take() else {
        return noted(
            "too many pages' scripts are still running; this page's scripts were not run",
        );
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let until = Instant::now() + remaining;
    let spawned = std::thread::Builder::new()
        .name("link-peeler-sandbox".into())
        .stack_size(STACK)
        .spawn(move || {
            let _slot = slot;
            let _ = tx.send(run(&env, &doc, Budget::default(), until));
        });
    if spawned.is_err() {
        return noted("could not start a thread for the page's scripts; they were not run");
    }
    match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(outcome)) => outcome,
        _ => noted("the page's scripts did not finish before the hop's deadline"),
    }
}

/// Most sandbox threads alive at once, across all resolutions of the process.
pub const MAX_LIVE_THREADS: usize = 16;

static LIVE_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One of the [`MAX_LIVE_THREADS`] places, given back when dropped.
struct LiveThread;

impl LiveThread {
    fn take() -> Option<LiveThread> {
        use std::sync::atomic::Ordering;
        LIVE_THREADS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_LIVE_THREADS).then_some(n + 1)
            })
            .ok()
            .map(|_| LiveThread)
    }
}

impl Drop for LiveThread {
    fn drop(&mut self) {
        LIVE_THREADS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

fn native(
    f: fn(&JsValue, &[JsValue], &mut boa_engine::Context) -> boa_engine::JsResult<JsValue>,
    engine: &Engine,
) -> JsValue {
    let realm = engine.ctx.realm().clone();
    JsValue::from(NativeFunction::from_fn_ptr(f).to_js_function(&realm))
}

fn too_deep_native(
    _: &JsValue,
    args: &[JsValue],
    ctx: &mut boa_engine::Context,
) -> boa_engine::JsResult<JsValue> {
    let text = match args.first() {
        Some(v) => v.to_string(ctx)?.to_std_string_escaped(),
        None => String::new(),
    };
    Ok(JsValue::from(engine::too_deep(&text)))
}

/// Evaluates one of our own preludes, which is a function expression.
fn prelude(engine: &mut Engine, src: &str) -> Option<JsObject> {
    engine
        .ctx
        .eval(Source::from_bytes(src))
        .ok()
        .and_then(|v| v.as_callable())
}

fn run_page(env: &PageEnv, doc: &ScriptDoc, budget: Budget, deadline: Instant) -> Outcome {
    let meter = Meter::new(budget, deadline);
    let Ok(mut engine) = Engine::new(meter) else {
        return noted("the script engine could not start; the page's scripts were not run");
    };
    let Some(surface) = install(&mut engine, env, doc) else {
        return noted("the browser surface could not be set up; the page's scripts were not run");
    };
    let stopped = timers::drive(&mut engine, &surface, doc);
    let navigation = navigation::take();
    let note = match stopped {
        Err(why) => Some(format!(
            "the page's scripts were stopped: {} exhausted",
            why.describe()
        )),
        Ok(()) => None,
    };
    Outcome { navigation, note }
}

/// Runs limits.js and surface.js; returns surface.js's `setHandlers` and
/// publishes its `step` as [`timers::STEP_GLOBAL`].
fn install(engine: &mut Engine, env: &PageEnv, doc: &ScriptDoc) -> Option<JsObject> {
    let limits = prelude(engine, surface::LIMITS_JS)?;
    let max_string = engine.meter.budget.max_string as f64;
    let deep = native(too_deep_native, engine);
    limits
        .call(
            &JsValue::undefined(),
            &[
                JsValue::from(max_string),
                JsValue::from(engine::MAX_NESTING as f64),
                deep,
            ],
            &mut engine.ctx,
        )
        .ok()?;

    let setup = prelude(engine, surface::SURFACE_JS)?;
    let global = engine.ctx.global_object();
    let args = [
        JsValue::from(global.clone()),
        native(surface::nav, engine),
        native(surface::parse_url, engine),
        native(surface::form_encode, engine),
        JsValue::from(js_string!(surface::model(env, doc).as_str())),
    ];
    let api = setup
        .call(&JsValue::undefined(), &args, &mut engine.ctx)
        .ok()?;
    let api = api.as_object()?;
    let step = api.get(js_string!("step"), &mut engine.ctx).ok()?;
    let set_handlers = api
        .get(js_string!("setHandlers"), &mut engine.ctx)
        .ok()?
        .as_callable()?;
    JsFunction::from_object(step.as_callable()?)?;
    global
        .define_property_or_throw(
            js_string!(timers::STEP_GLOBAL),
            PropertyDescriptor::builder()
                .value(step)
                .writable(false)
                .enumerable(false)
                .configurable(false),
            &mut engine.ctx,
        )
        .ok()?;
    Some(set_handlers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::html::scan;
    use std::time::Duration;
    use url::Url;

    fn page(html: &str) -> Outcome {
        let url = Url::parse("http://a.test/dir/page?x=1").unwrap();
        let doc = scan(html, &url).doc;
        let env = PageEnv {
            url,
            user_agent: "TestAgent/1.0".into(),
            cookie: "sid=42".into(),
        };
        std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                run(&env, &doc, Budget::default(), deadline)
            })
            .unwrap()
            .join()
            .unwrap()
    }

    fn target(html: &str) -> Option<String> {
        page(html).navigation.map(|n| n.target.to_string())
    }

    #[test]
    fn computed_navigation_is_followed() {
        assert_eq!(
            target("<script>var a='/la'; location.href = a + 'nd?u=' + encodeURIComponent(navigator.userAgent)</script>").as_deref(),
            Some("http://a.test/land?u=TestAgent%2F1.0")
        );
        assert_eq!(
            target("<script>location = atob('aHR0cDovL2IudGVzdC94')</script>").as_deref(),
            Some("http://b.test/x")
        );
    }

    #[test]
    fn forms_post_their_fields() {
        let o = page(
            "<form id=f method=post action='/go'><input name=a value='1 2'><input type=hidden name=b value=x&y></form><script>document.getElementById('f').submit()</script>",
        );
        let n = o.navigation.unwrap();
        assert_eq!(n.target.as_str(), "http://a.test/go");
        assert_eq!(n.post_body.as_deref(), Some("a=1+2&b=x%26y"));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        for deep in [
            format!(
                "<script>x = {}{};</script>",
                "(".repeat(200_000),
                ")".repeat(200_000)
            ),
            format!("<script>x = {}1;</script>", "!".repeat(200_000)),
            format!("<script>x = {}1;</script>", "a=".repeat(100_000)),
            format!("<script>x = {}1;</script>", "a?b:".repeat(100_000)),
            format!("<script>x = {}1;</script>", "-".repeat(200_000)),
        ] {
            let o = page(&format!("{deep}<script>location.href = '/after'</script>"));
            assert_eq!(
                o.navigation.map(|n| n.target.to_string()).as_deref(),
                Some("http://a.test/after")
            );
        }
    }

    #[test]
    fn nesting_just_under_the_limit_parses_without_overflowing() {
        for deep in [
            format!("x = {}1{};", "(".repeat(999), ")".repeat(999)),
            format!("x = {}1{};", "[".repeat(999), "]".repeat(999)),
            format!("x = {}1;", "!".repeat(1999)),
            format!("x = {}1;", "a=".repeat(1999)),
            format!("x = {}1;", "a?b:".repeat(999)),
            format!("x = {}1;", "-".repeat(1999)),
            format!("x = {}1;", "x=>".repeat(999)),
        ] {
            assert!(!engine::too_deep(&deep));
            let o = page(&format!(
                "<script>{deep}</script><script>location.href = '/after'</script>"
            ));
            assert!(o.navigation.is_some(), "{o:?}");
        }
    }

    #[test]
    fn budgets_end_with_a_note() {
        let o = page("<script>while(true){}</script>");
        assert!(o.navigation.is_none());
        assert!(o.note.is_some(), "{o:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(48))]

        #[test]
        fn never_panics_on_any_script(s in "\\PC{0,200}") {
            let _ = page(&format!("<script>{s}</script>"));
        }

        #[test]
        fn never_panics_near_javascript(s in "(location|\\.|href|=|\\(|\\)|\\[|\\]|\\{|\\}|'|\"|`|\\$|;|,|=>|function|while|for|new|Promise|setTimeout|document|forms|submit|eval|atob|JSON|\\+|!|\\?|:|0|1e9| )*") {
            let _ = page(&format!("<form></form><a href=/x></a><script>{s}</script>"));
        }
    }
}
