//! Metered network and battery, from the platform, event-driven.
//!
//! The agent pauses on a metered network or on battery (when the user's
//! policy says so), so the readings must follow the computer as it moves
//! between networks and power sources — without a polling loop that would
//! itself wake a laptop on battery. Each platform therefore re-reads its
//! sensors only when the platform announces a change, and after resuming
//! from sleep. What the platform does not tell (a service that is not there,
//! an API that fails) reads "unknown", which never pauses the agent: a
//! guess would stop work that the user wanted done.
//!
//! - Linux (`linux.rs`): NetworkManager's `Metered`, UPower's `OnBattery` and
//!   power-profiles-daemon's `ActiveProfile` (`power-saver` is battery saver)
//!   on the system D-Bus, re-read whenever one of them announces a property
//!   change (`PropertiesChanged`), starts or stops (`NameOwnerChanged`), and
//!   after the computer resumes from sleep (logind's `PrepareForSleep(false)`).
//! - Windows (`windows.rs`): the internet connection profile's cost
//!   (`NetworkCostType`, roaming, over the data limit) and
//!   `GetSystemPowerStatus` (AC line, battery saver), re-read on
//!   `NetworkStatusChanged` and on powrprof callbacks for the power source,
//!   battery saver and resume.
//! - macOS (`macos.rs`): Network.framework's path monitor (an expensive or
//!   constrained path is metered) and IOKit's providing power source, plus
//!   Low Power Mode, re-read on path updates and on the power source and
//!   Low Power Mode notifications. This code is type-checked and linted for
//!   both Mac targets in CI (`scripts/check-macos`) but has not been run.
//! - Anywhere else: "unknown".
//!
//! The mappings from each platform's values to a reading are plain functions
//! compiled and tested on every OS.

use tokio::sync::watch;

use super::decide::Sensors;

/// Starts watching this computer's sensors; the receiver always holds the
/// latest readings ("unknown" until, or unless, the platform tells).
/// Outside a tokio runtime nothing is watched: the readings stay unknown.
pub fn spawn() -> watch::Receiver<Sensors> {
    let (tx, rx) = watch::channel(Sensors::default());
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return rx;
    };
    #[cfg(target_os = "linux")]
    rt.spawn(async move {
        match zbus::Connection::system().await {
            Ok(conn) => linux::watch(conn, tx).await,
            Err(e) => {
                tracing::info!(error = %e, "no system D-Bus: metered network and battery are unknown");
                // Keep the sender so the readings stay "unknown", not closed.
                tx.closed().await;
            }
        }
    });
    #[cfg(target_os = "windows")]
    rt.spawn(self::windows::watch(tx));
    #[cfg(target_os = "macos")]
    rt.spawn(macos::watch(tx));
    #[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "macos")))]
    rt.spawn(async move { tx.closed().await });
    rx
}

/// Replaces the readings, waking the receivers only if they changed.
#[cfg(any(target_os = "windows", target_os = "macos"))]
fn publish(tx: &watch::Sender<Sensors>, s: Sensors) {
    tx.send_if_modified(|old| std::mem::replace(old, s) != s);
}

#[cfg(target_os = "linux")]
pub mod linux;
pub mod macos;
pub mod windows;
