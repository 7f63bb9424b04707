//! Link Peeler: find where a tracking link really lands, resolved on real desktops.
//!
//! The crate is one library with two thin binaries:
//!
//! - [`protocol`] and [`signing`] are the wire contract (SPEC.md) — the only
//!   modules the relay and the agent share;
//! - [`relay`] is the bundled relay: signed intake, a durable SQLite queue,
//!   the agent task API and the admin CLI (`link-peeler-relay`);
//! - [`resolver`] follows one redirect chain by hand and records every hop;
//!   it knows nothing of relays, polling or UI;
//! - [`agent`] enrolls a desktop, long-polls the relay, runs the resolver and
//!   posts results back;
//! - [`demo`] runs relay, agent and a redirect lab in one process (`link-peeler demo`);
//! - [`tray`] is the system-tray app on top of the agent (feature `tray`);
//! - [`cli`] is the `link-peeler` command line on top of all of that.
//!
//! ARCHITECTURE.md has the map and the invariants.

pub mod agent;
pub mod cli;
pub mod demo;
pub mod protocol;
pub mod relay;
pub mod resolver;
pub mod signing;
pub mod tls;
#[cfg(feature = "tray")]
pub mod tray;
