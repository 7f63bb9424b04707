//! The page's event loop on a virtual clock: the inline scripts and
//! `<body on…>` handlers in document order, then `DOMContentLoaded` and
//! `load` listeners, then timers in the order their virtual due times say.
//!
//! Nothing sleeps: the clock jumps to the next timer. Timers due more than
//! [`Budget::horizon_ms`](super::budget::Budget) after load never run (the
//! same 10 s beyond which a refresh is not a redirect: a person would still
//! be looking at the page). Promise reactions run after every task. Each task
//! counts against the task budget, so an interval that re-arms forever ends
//! the page with a note. Once a task ends with a navigation pending, the
//! loop stops (navigation.rs has the rule).

use boa_engine::object::builtins::JsArray;
use boa_engine::{JsObject, JsValue, js_string};

use super::budget::Exhausted;
use super::engine::Engine;
use super::navigation;
use crate::html::{ScriptDoc, ScriptStep};

/// The global through which the driver runs one task of surface.js's loop.
pub const STEP_GLOBAL: &str = "__linkPeelerStep";

/// Runs the page until it navigates, runs out of things to do, or a budget
/// runs out.
pub fn drive(
    engine: &mut Engine,
    set_handlers: &JsObject,
    doc: &ScriptDoc,
) -> Result<(), Exhausted> {
    for step in &doc.steps {
        engine.meter.task()?;
        match step {
            ScriptStep::Script(text) => {
                engine.run_script(text)?;
            }
            ScriptStep::Handlers(list) => {
                let ctx = &mut engine.ctx;
                let pairs: Vec<JsValue> = list
                    .iter()
                    .map(|(event, code)| {
                        let pair = [
                            JsValue::from(js_string!(event.as_str())),
                            JsValue::from(js_string!(code.as_str())),
                        ];
                        JsArray::from_iter(pair, ctx).into()
                    })
                    .collect();
                let arg: JsValue = JsArray::from_iter(pairs, ctx).into();
                // Our own code; a handler that does not compile is skipped there.
                let _ = set_handlers.call(&JsValue::undefined(), &[arg], ctx);
            }
        }
        engine.run_microtasks()?;
        if navigation::pending() {
            return Ok(());
        }
    }
    let call = format!("{STEP_GLOBAL}({})", engine.meter.budget.horizon_ms);
    loop {
        engine.meter.task()?;
        let ran = engine.run_script(&call)?;
        engine.run_microtasks()?;
        if navigation::pending() || !ran.is_some_and(|v| v.to_boolean()) {
            return Ok(());
        }
    }
}
