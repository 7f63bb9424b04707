//! `link-peeler`, the desktop app: the command line, the tray and the demo.
//!
//! This crate is the outermost ring. It assembles the inner crates into what
//! a person runs and adds only what needs a person: flags and tables on a
//! terminal, an icon and dialogs on a desktop.
//!
//! - [`cli`]: the `link-peeler` command line, one file per subcommand;
//! - [`tray`]: the system-tray app on top of the agent (feature `tray`);
//! - [`demo`]: relay, agent and a redirect lab in one process (`link-peeler demo`),
//!   the one place outside tests where relay and agent meet.
//!
//! It may depend on every crate of the workspace; nothing depends on it.
//! ARCHITECTURE.md has the map and the invariants.

pub mod cli;
pub mod demo;
#[cfg(feature = "tray")]
pub mod tray;
