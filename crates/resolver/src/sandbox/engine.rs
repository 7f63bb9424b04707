//! The engine: a fresh boa `Context` per page, with the runtime limits set,
//! promise jobs held for the driver, string compilation (`eval`, `Function`)
//! checked, and every evaluation run in metered slices.
//!
//! Why boa: it is pure Rust (memory-safe, no C toolchain or SDK to
//! cross-compile the agent for Windows and macOS — CI type-checks the macOS
//! targets on Linux without Apple's headers, which a C engine such as
//! QuickJS would need), it builds without ICU and Temporal, and it can run a
//! script in slices (`evaluate_async_with_budget`), which is what lets a
//! budget stop a page from outside. It is slower than QuickJS, which does
//! not matter for a few kilobytes of interstitial script.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};

use boa_engine::context::HostHooks;
use boa_engine::job::{Job, JobExecutor, PromiseJob};
use boa_engine::realm::Realm;
use boa_engine::{Context, JsError, JsNativeError, JsResult, JsString, JsValue, Script, Source};

use super::budget::{Exhausted, Meter, SLICE};

/// Deepest nesting a script's text may have (brackets and right-nested
/// operators); boa's parser and compiler recurse on it, so deeper text is
/// not parsed at all (the sandbox thread's stack is sized for this).
pub const MAX_NESTING: usize = 1000;

/// A rough upper estimate of how deeply the parser will recurse on `src`:
/// open brackets plus operators that nest to their right (`!`, `~`, `?`,
/// `=`, unary `+`/`-`, `=>`) since the last `;`, `,` or brace.
pub fn too_deep(src: &str) -> bool {
    too_deep_limit(src, MAX_NESTING)
}

pub fn too_deep_limit(src: &str, max: usize) -> bool {
    let mut brackets = 0usize;
    let mut chain = 0usize;
    for b in src.bytes() {
        match b {
            b'(' | b'[' | b'{' => {
                brackets += 1;
                if b == b'{' {
                    chain = 0;
                }
            }
            b')' | b']' | b'}' => {
                brackets = brackets.saturating_sub(1);
                if b == b'}' {
                    chain = 0;
                }
            }
            b';' | b',' => chain = 0,
            b'!' | b'~' | b'?' | b'=' | b'+' | b'-' | b'>' | b':' | b'&' | b'|' => chain += 1,
            _ => {}
        }
        if brackets + chain / 2 > max {
            return true;
        }
    }
    false
}

/// `eval` and `Function` bodies pass the same nesting check as scripts, and
/// no buffer may be larger than the page's memory budget: boa fills an
/// `ArrayBuffer` in one built-in call, before the meter looks again.
struct Hooks {
    max_buffer: u64,
}

impl HostHooks for Hooks {
    fn ensure_can_compile_strings(
        &self,
        _realm: Realm,
        parameters: &[JsString],
        body: &JsString,
        _direct: bool,
        _context: &mut Context,
    ) -> JsResult<()> {
        let deep = too_deep(&body.to_std_string_escaped())
            || parameters
                .iter()
                .any(|p| too_deep(&p.to_std_string_escaped()));
        if deep {
            return Err(JsNativeError::syntax()
                .with_message("code nested too deeply (sandbox limit)")
                .into());
        }
        Ok(())
    }

    fn max_buffer_size(&self, _context: &mut Context) -> u64 {
        self.max_buffer
    }
}

/// Promise reactions, queued here and run by the driver one at a time so
/// that each is counted (boa's own executor would run them all at once).
#[derive(Default)]
pub struct Microtasks {
    queue: RefCell<VecDeque<PromiseJob>>,
}

impl JobExecutor for Microtasks {
    fn enqueue_job(self: Rc<Self>, job: Job, _context: &mut Context) {
        // Only promise jobs exist for pages: boa's timeout and async jobs
        // are not reachable from the surface.
        if let Job::PromiseJob(p) = job {
            self.queue.borrow_mut().push_back(p);
        }
    }

    fn run_jobs(self: Rc<Self>, _context: &mut Context) -> JsResult<()> {
        Ok(())
    }
}

impl Microtasks {
    pub fn pop(&self) -> Option<PromiseJob> {
        self.queue.borrow_mut().pop_front()
    }
}

/// One page's engine.
pub struct Engine {
    pub ctx: Context,
    pub jobs: Rc<Microtasks>,
    pub meter: Meter,
}

impl Engine {
    pub fn new(meter: Meter) -> Result<Self, JsError> {
        let jobs = Rc::new(Microtasks::default());
        let mut ctx = Context::builder()
            .job_executor(jobs.clone())
            .host_hooks(Rc::new(Hooks {
                max_buffer: u64::try_from(meter.budget.memory).unwrap_or(u64::MAX),
            }))
            .build()?;
        let limits = ctx.runtime_limits_mut();
        limits.set_loop_iteration_limit(meter.budget.loop_iterations);
        limits.set_recursion_limit(meter.budget.recursion);
        Ok(Engine { ctx, jobs, meter })
    }

    /// Parses and runs one script in metered slices. A script that does not
    /// parse, or throws, simply ends (as in a browser); a budget running out
    /// stops everything.
    /// `Ok(Some(value))` when the script completed normally.
    pub fn run_script(&mut self, src: &str) -> Result<Option<JsValue>, Exhausted> {
        if too_deep(src) {
            return Ok(None);
        }
        let Ok(script) = Script::parse(Source::from_bytes(src), None, &mut self.ctx) else {
            return Ok(None);
        };
        let meter = &mut self.meter;
        let finished = {
            let mut run = pin!(script.evaluate_async_with_budget(&mut self.ctx, SLICE));
            let mut cx = TaskContext::from_waker(Waker::noop());
            loop {
                match run.as_mut().poll(&mut cx) {
                    Poll::Ready(r) => break Ok(r),
                    Poll::Pending => {
                        if let Err(e) = meter.slice() {
                            break Err(e);
                        }
                    }
                }
            }
        };
        match finished? {
            Ok(v) => Ok(Some(v)),
            Err(e) if hit_runtime_limit(&e) => Err(Exhausted::Limits),
            Err(_) => Ok(None),
        }
    }

    /// Runs queued promise reactions until none are left.
    pub fn run_microtasks(&mut self) -> Result<(), Exhausted> {
        while let Some(job) = self.jobs.pop() {
            self.meter.microtask()?;
            if let Err(e) = job.call(&mut self.ctx)
                && hit_runtime_limit(&e)
            {
                return Err(Exhausted::Limits);
            }
        }
        Ok(())
    }
}

fn hit_runtime_limit(e: &JsError) -> bool {
    e.as_native().is_some_and(JsNativeError::is_runtime_limit)
}
