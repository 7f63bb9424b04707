//! What the end user (and their admin) allows this computer to do, and
//! whether the agent may take work right now.
//!
//! - [`keys`]: the policy settings, parsed from every source (the user's
//!   `config.toml`, the managed TOML, property list and registry forms), and
//!   the effective value of each with its [`Source`];
//! - [`schedule`]: allowed hours and days in local time;
//! - [`decide`](mod@decide): the pure decision — active, or paused with every reason;
//! - [`quota`]: link and byte counts per local hour/day/month, and the
//!   reservations that keep them under the caps with tasks in flight.
//!
//! Invariant: the user's own pause always holds; no managed setting can
//! take it away or override it.

pub mod controller;
pub mod decide;
pub mod keys;
pub mod quota;
pub mod schedule;
pub mod sensors;

pub use controller::{ControlState, Controller};
pub use decide::{
    Decision, Inputs, Periods, Quota, Reading, Reason, Sensors, Usage, UserPause, decide,
};
pub use keys::{Domains, Effective, Layer, Policy, Source};
