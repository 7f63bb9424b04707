//! Linux detection end to end: NetworkManager, UPower and logind test
//! doubles (small D-Bus services written here with zbus — doubles of the
//! system services, not of our code) on a private bus started by the test;
//! the agent's sensor watcher reads them and follows their signals.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failure report

use std::time::Duration;

use link_peeler_agent::control::sensors::linux;
use link_peeler_agent::control::{Reading, Sensors};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

struct FakeNm {
    metered: u32,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl FakeNm {
    #[zbus(property)]
    fn metered(&self) -> u32 {
        self.metered
    }
}

struct FakeUPower {
    on_battery: bool,
}

#[zbus::interface(name = "org.freedesktop.UPower")]
impl FakeUPower {
    #[zbus(property)]
    fn on_battery(&self) -> bool {
        self.on_battery
    }
}

struct FakeProfiles {
    active: String,
}

#[zbus::interface(name = "net.hadess.PowerProfiles")]
impl FakeProfiles {
    #[zbus(property)]
    fn active_profile(&self) -> String {
        self.active.clone()
    }
}

struct FakeLogind;

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl FakeLogind {
    #[zbus(signal)]
    async fn prepare_for_sleep(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        start: bool,
    ) -> zbus::Result<()>;
}

/// A private bus: `dbus-daemon --session` on a temporary socket, ended with the test.
async fn private_bus() -> Option<(tokio::process::Child, String)> {
    let mut child = tokio::process::Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let out = child.stdout.take()?;
    let mut line = String::new();
    tokio::io::BufReader::new(out)
        .read_line(&mut line)
        .await
        .ok()?;
    Some((child, line.trim().to_owned()))
}

async fn connect(addr: &str) -> zbus::Connection {
    zbus::connection::Builder::address(addr)
        .unwrap()
        .build()
        .await
        .unwrap()
}

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
    let nm = zbus::connection::Builder::address(addr.as_str())
        .unwrap()
        .name(linux::NM)
        .unwrap()
        .serve_at(linux::NM_PATH, FakeNm { metered: 1 })
        .unwrap()
        .build()
        .await
        .unwrap();
    until(&mut rx, sensors(Reading::Yes, Reading::Unknown)).await;

    // UPower appears, on mains.
    let up = zbus::connection::Builder::address(addr.as_str())
        .unwrap()
        .name(linux::UPOWER)
        .unwrap()
        .serve_at(linux::UPOWER_PATH, FakeUPower { on_battery: false })
        .unwrap()
        .build()
        .await
        .unwrap();
    until(&mut rx, sensors(Reading::Yes, Reading::No)).await;

    // PropertiesChanged: the network becomes unmetered, the laptop unplugged.
    let nm_iface = nm
        .object_server()
        .interface::<_, FakeNm>(linux::NM_PATH)
        .await
        .unwrap();
    nm_iface.get_mut().await.metered = 4; // guessed no
    nm_iface
        .get()
        .await
        .metered_changed(nm_iface.signal_emitter())
        .await
        .unwrap();
    until(&mut rx, sensors(Reading::No, Reading::No)).await;
    let up_iface = up
        .object_server()
        .interface::<_, FakeUPower>(linux::UPOWER_PATH)
        .await
        .unwrap();
    up_iface.get_mut().await.on_battery = true;
    up_iface
        .get()
        .await
        .on_battery_changed(up_iface.signal_emitter())
        .await
        .unwrap();
    until(&mut rx, sensors(Reading::No, Reading::Yes)).await;

    // A change with no signal (as after a suspend, when signals were missed)
    // is picked up when logind says the computer resumed.
    up_iface.get_mut().await.on_battery = false;
    let logind = zbus::connection::Builder::address(addr.as_str())
        .unwrap()
        .name(linux::LOGIND)
        .unwrap()
        .serve_at(linux::LOGIND_PATH, FakeLogind)
        .unwrap()
        .build()
        .await
        .unwrap();
    let emitter = zbus::object_server::SignalEmitter::new(&logind, linux::LOGIND_PATH).unwrap();
    FakeLogind::prepare_for_sleep(&emitter, false)
        .await
        .unwrap();
    until(&mut rx, sensors(Reading::No, Reading::No)).await;

    // Battery saver (power-profiles-daemon) on mains counts as on battery.
    let profiles = zbus::connection::Builder::address(addr.as_str())
        .unwrap()
        .name(linux::PROFILES)
        .unwrap()
        .serve_at(
            linux::PROFILES_PATH,
            FakeProfiles {
                active: "balanced".into(),
            },
        )
        .unwrap()
        .build()
        .await
        .unwrap();
    let p_iface = profiles
        .object_server()
        .interface::<_, FakeProfiles>(linux::PROFILES_PATH)
        .await
        .unwrap();
    p_iface.get_mut().await.active = "power-saver".into();
    p_iface
        .get()
        .await
        .active_profile_changed(p_iface.signal_emitter())
        .await
        .unwrap();
    until(&mut rx, sensors(Reading::No, Reading::Yes)).await;
    p_iface.get_mut().await.active = "performance".into();
    p_iface
        .get()
        .await
        .active_profile_changed(p_iface.signal_emitter())
        .await
        .unwrap();
    until(&mut rx, sensors(Reading::No, Reading::No)).await;

    // NetworkManager goes away: unknown again.
    drop(nm_iface);
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
