//! Linux detection end to end: NetworkManager, UPower, power-profiles and
//! logind test doubles (small D-Bus services written with zbus — doubles of
//! the system services, not of our code; `support/dbus_doubles.rs`, shared
//! with `benches/idle.rs`) on a private bus started by the test; the agent's
//! sensor watcher reads them and follows their signals.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failure report

use std::time::Duration;

#[path = "support/dbus_doubles.rs"]
mod dbus_doubles;

use dbus_doubles::{
    FakeLogind, connect, network_manager, power_profiles, private_bus, set_metered, set_on_battery,
    set_profile, upower,
};
use link_peeler_agent::control::sensors::linux;
use link_peeler_agent::control::{Reading, Sensors};
use tokio::sync::watch;

/// Waits (bounded: a hang guard, not a timing assertion) for `want`.
async fn until(rx: &mut watch::Receiver<Sensors>, want: Sensors) {
    let seen = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| *s == want))
        .await
        .map(|r| r.is_ok());
    assert!(
        matches!(seen, Ok(true)),
        "never saw {want:?}; last {:?}",
        *rx.borrow()
    );
}

fn sensors(metered: Reading, on_battery: Reading) -> Sensors {
    Sensors {
        metered,
        on_battery,
    }
}

#[tokio::test]
async fn metered_and_battery_follow_the_services_signals_and_resume() {
    let Some((_bus, addr)) = private_bus().await else {
        eprintln!("SKIP: dbus-daemon is not installed");
        return;
    };
    // No services yet: unknown, never guessed.
    let (tx, mut rx) = watch::channel(Sensors::default());
    let watcher = tokio::spawn(linux::watch(connect(&addr).await, tx));
    assert_eq!(*rx.borrow(), Sensors::default());

    // NetworkManager appears, metered: noticed through NameOwnerChanged.
    let nm = network_manager(&addr, 1).await;
    until(&mut rx, sensors(Reading::Yes, Reading::Unknown)).await;

    // UPower appears, on mains.
    let up = upower(&addr, false).await;
    until(&mut rx, sensors(Reading::Yes, Reading::No)).await;

    // PropertiesChanged: the network becomes unmetered, the laptop unplugged.
    set_metered(&nm, 4).await; // guessed no
    until(&mut rx, sensors(Reading::No, Reading::No)).await;
    set_on_battery(&up, true, false).await;
    until(&mut rx, sensors(Reading::No, Reading::Yes)).await;

    // A change with no signal (as after a suspend, when signals were missed)
    // is picked up when logind says the computer resumed.
    set_on_battery(&up, false, true).await;
    let logind = dbus_doubles::serve(&addr, linux::LOGIND, linux::LOGIND_PATH, FakeLogind).await;
    let emitter = zbus::object_server::SignalEmitter::new(&logind, linux::LOGIND_PATH).unwrap();
    FakeLogind::prepare_for_sleep(&emitter, false)
        .await
        .unwrap();
    until(&mut rx, sensors(Reading::No, Reading::No)).await;

    // Battery saver (power-profiles-daemon) on mains counts as on battery.
    let profiles = power_profiles(&addr, "balanced").await;
    set_profile(&profiles, "power-saver").await;
    until(&mut rx, sensors(Reading::No, Reading::Yes)).await;
    set_profile(&profiles, "performance").await;
    until(&mut rx, sensors(Reading::No, Reading::No)).await;

    // NetworkManager goes away: unknown again.
    nm.close().await.unwrap();
    until(&mut rx, sensors(Reading::Unknown, Reading::No)).await;

    drop(rx);
    let _ = tokio::time::timeout(Duration::from_secs(20), watcher).await;
}

#[test]
fn network_managers_metered_values() {
    assert_eq!(linux::metered(0), Reading::Unknown);
    assert_eq!(linux::metered(1), Reading::Yes);
    assert_eq!(linux::metered(2), Reading::No);
    assert_eq!(linux::metered(3), Reading::Yes);
    assert_eq!(linux::metered(4), Reading::No);
    assert_eq!(linux::metered(99), Reading::Unknown);
}
