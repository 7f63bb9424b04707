//! What one page's scripts may spend, and the meter that enforces it.
//!
//! Enforced, per page:
//! - **instructions**: boa charges every bytecode instruction a cost; the
//!   engine runs in slices of [`SLICE`] cost units and the meter stops the
//!   page once [`Budget::instructions`] are spent;
//! - **wall clock**: checked between slices, between tasks and between
//!   promise jobs; also bounded from outside by the hop's deadline;
//! - **loop iterations** per function call and **recursion depth** (boa's
//!   `RuntimeLimits`), which also bound code that boa runs without slicing
//!   (callbacks called by built-ins such as `Array.prototype.map`, promise
//!   jobs);
//! - **tasks** (scripts, load handlers, timer callbacks) and **promise jobs**;
//! - **memory**, when the binary installs [`MeteredAlloc`] as its global
//!   allocator (`link-peeler` and the resolver's tests do): the bytes the
//!   sandbox thread holds are checked between slices, so a page is stopped
//!   within one slice of passing [`Budget::memory`] (a single built-in call,
//!   e.g. `"x".repeat(n)`, is capped by the surface instead).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Cost units the engine runs before the meter is consulted. Small, because
/// memory is only checked between slices: `for (;;) s += s` doubles a string
/// in about this many units, so the memory budget is overshot by at most a
/// factor of two or four (512 let one slice grow a string past 8 GB).
pub const SLICE: u32 = 32;

/// Limits of one page's scripts.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Bytecode cost units (roughly instructions) for the whole page.
    pub instructions: u64,
    /// Wall-clock time for the whole page.
    pub wall: Duration,
    /// Loop iterations within one function call.
    pub loop_iterations: u64,
    /// Nested calls.
    pub recursion: usize,
    /// Scripts, handlers and timer callbacks run.
    pub tasks: u32,
    /// Promise reactions run.
    pub microtasks: u32,
    /// Bytes the sandbox thread may hold at once (with [`MeteredAlloc`]).
    pub memory: usize,
    /// Timers due later than this (virtual milliseconds after load) never run.
    pub horizon_ms: u64,
    /// Longest string a built-in (`repeat`, `padStart`, …) may build.
    pub max_string: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            instructions: 50_000_000,
            wall: Duration::from_secs(2),
            loop_iterations: 1_000_000,
            recursion: 256,
            tasks: 200,
            microtasks: 10_000,
            memory: 32 * 1024 * 1024,
            horizon_ms: crate::hop::MAX_REFRESH_DELAY * 1000,
            max_string: 4 * 1024 * 1024,
        }
    }
}

/// Why a page's scripts were stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    Instructions,
    Time,
    Memory,
    Tasks,
    Microtasks,
    Limits,
}

impl Exhausted {
    pub fn describe(self) -> &'static str {
        match self {
            Exhausted::Instructions => "instruction budget",
            Exhausted::Time => "time budget",
            Exhausted::Memory => "memory budget",
            Exhausted::Tasks => "task and timer budget",
            Exhausted::Microtasks => "promise job budget",
            Exhausted::Limits => "loop or recursion limit",
        }
    }
}

/// Counts what a page has spent.
#[derive(Debug)]
pub struct Meter {
    pub budget: Budget,
    spent: u64,
    deadline: Instant,
    tasks: u32,
    microtasks: u32,
    memory_at_start: isize,
}

impl Meter {
    pub fn new(budget: Budget, deadline: Instant) -> Self {
        let deadline = deadline.min(Instant::now() + budget.wall);
        METERING.fetch_add(1, Ordering::Relaxed);
        Meter {
            budget,
            spent: 0,
            deadline,
            tasks: 0,
            microtasks: 0,
            memory_at_start: held_bytes(),
        }
    }

    /// Charges one slice and checks every running budget.
    pub fn slice(&mut self) -> Result<(), Exhausted> {
        self.spent = self.spent.saturating_add(u64::from(SLICE));
        if self.spent > self.budget.instructions {
            return Err(Exhausted::Instructions);
        }
        self.check()
    }

    /// Checks the wall clock and the memory held.
    pub fn check(&self) -> Result<(), Exhausted> {
        if Instant::now() >= self.deadline {
            return Err(Exhausted::Time);
        }
        let held = held_bytes().saturating_sub(self.memory_at_start);
        if usize::try_from(held).unwrap_or(0) > self.budget.memory {
            return Err(Exhausted::Memory);
        }
        Ok(())
    }

    pub fn task(&mut self) -> Result<(), Exhausted> {
        self.tasks += 1;
        if self.tasks > self.budget.tasks {
            return Err(Exhausted::Tasks);
        }
        self.check()
    }

    pub fn microtask(&mut self) -> Result<(), Exhausted> {
        self.microtasks += 1;
        if self.microtasks > self.budget.microtasks {
            return Err(Exhausted::Microtasks);
        }
        self.check()
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        METERING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Pages being metered now. While none is, the allocator counts nothing: a
/// binary that installs [`MeteredAlloc`] pays one relaxed load per
/// allocation except while a page's scripts run.
static METERING: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Bytes allocated minus bytes freed on this thread (with [`MeteredAlloc`]).
    static HELD: Cell<isize> = const { Cell::new(0) };
}

fn held_bytes() -> isize {
    HELD.try_with(Cell::get).unwrap_or(0)
}

#[cfg(not(windows))]
fn account(delta: isize) {
    if METERING.load(Ordering::Relaxed) == 0 {
        return;
    }
    let _ = HELD.try_with(|h| h.set(h.get().wrapping_add(delta)));
}

/// On Windows a thread-local access may go through `TlsGetValue`, which sets
/// the thread's last error to 0. Code that allocates between a failing Win32
/// call and its `GetLastError` (the Credential Manager store does) would then
/// read "error 0" instead of, say, "not found": the allocator must leave the
/// last error as it found it.
#[cfg(windows)]
fn account(delta: isize) {
    use windows_sys::Win32::Foundation::{GetLastError, SetLastError};
    if METERING.load(Ordering::Relaxed) == 0 {
        return;
    }
    // SAFETY: both only read or write the calling thread's last-error value.
    let saved = unsafe { GetLastError() };
    let _ = HELD.try_with(|h| h.set(h.get().wrapping_add(delta)));
    // SAFETY: as above.
    unsafe { SetLastError(saved) };
}

fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

/// The system allocator, counting the bytes each thread holds so that the
/// sandbox can enforce its memory budget. Install it in a binary with
/// `#[global_allocator] static A: MeteredAlloc = MeteredAlloc;`. Without
/// it the memory budget is not enforced (the other budgets are).
#[derive(Debug, Default, Clone, Copy)]
pub struct MeteredAlloc;

// SAFETY: every method forwards to `System` unchanged; the counting only
// touches a const-initialised thread-local `Cell` (no allocation, no
// destructor), and `try_with` fails gracefully during thread teardown.
unsafe impl GlobalAlloc for MeteredAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(signed(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-signed(layout.size()));
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(signed(layout.size()));
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            account(signed(new_size) - signed(layout.size()));
        }
        p
    }
}
