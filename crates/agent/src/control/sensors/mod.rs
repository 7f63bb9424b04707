//! Metered network and battery, from the platform, event-driven.
//!
//! Linux: NetworkManager's `Metered` property, UPower's `OnBattery` and
//! power-profiles-daemon's `ActiveProfile` (`power-saver` is battery saver)
//! on the system D-Bus, re-read whenever one of them announces a property
//! change (`PropertiesChanged`), starts or stops (`NameOwnerChanged`), and
//! after the computer resumes from sleep (logind's `PrepareForSleep(false)`):
//! no polling loop. A service that is not there reads "unknown", which never
//! pauses the agent. Windows and macOS: "unknown" for now.

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
    #[cfg(not(target_os = "linux"))]
    rt.spawn(async move { tx.closed().await });
    rx
}

#[cfg(target_os = "linux")]
pub mod linux;
