//! Doubles of the system services the agent's Linux detection reads
//! (NetworkManager, UPower, power-profiles-daemon, logind): small D-Bus
//! services written with zbus — doubles of the system services, not of our
//! code — and a private `dbus-daemon` for them to live on.
//!
//! Shared by `crates/agent/tests/sensors_dbus.rs` and the root package's
//! `benches/idle.rs`, each of which includes this file with `#[path]`.
#![allow(dead_code)] // each includer uses its own part
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benchmarks only: a panic is a failure report

use link_peeler_agent::control::sensors::linux;
use tokio::io::AsyncBufReadExt;

pub struct FakeNm {
    pub metered: u32,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl FakeNm {
    #[zbus(property)]
    fn metered(&self) -> u32 {
        self.metered
    }
}

pub struct FakeUPower {
    pub on_battery: bool,
}

#[zbus::interface(name = "org.freedesktop.UPower")]
impl FakeUPower {
    #[zbus(property)]
    fn on_battery(&self) -> bool {
        self.on_battery
    }
}

pub struct FakeProfiles {
    pub active: String,
}

#[zbus::interface(name = "net.hadess.PowerProfiles")]
impl FakeProfiles {
    #[zbus(property)]
    fn active_profile(&self) -> String {
        self.active.clone()
    }
}

pub struct FakeLogind;

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl FakeLogind {
    #[zbus(signal)]
    pub async fn prepare_for_sleep(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        start: bool,
    ) -> zbus::Result<()>;
}

/// A private bus: `dbus-daemon --session` on a temporary socket, killed when
/// the returned child is dropped. `None` when `dbus-daemon` is not installed.
pub async fn private_bus() -> Option<(tokio::process::Child, String)> {
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

/// A client connection to the bus at `addr`.
pub async fn connect(addr: &str) -> zbus::Connection {
    zbus::connection::Builder::address(addr)
        .unwrap()
        .build()
        .await
        .unwrap()
}

/// Serves `iface` at `path` under the well-known `name` on the bus at `addr`;
/// the service lives as long as the returned connection.
pub async fn serve<I: zbus::object_server::Interface>(
    addr: &str,
    name: &'static str,
    path: &'static str,
    iface: I,
) -> zbus::Connection {
    zbus::connection::Builder::address(addr)
        .unwrap()
        .name(name)
        .unwrap()
        .serve_at(path, iface)
        .unwrap()
        .build()
        .await
        .unwrap()
}

/// NetworkManager with `Metered` = `metered` (`NMMetered`: 1 yes, 4 guessed no, …).
pub async fn network_manager(addr: &str, metered: u32) -> zbus::Connection {
    serve(addr, linux::NM, linux::NM_PATH, FakeNm { metered }).await
}

/// UPower with `OnBattery` = `on_battery`.
pub async fn upower(addr: &str, on_battery: bool) -> zbus::Connection {
    serve(
        addr,
        linux::UPOWER,
        linux::UPOWER_PATH,
        FakeUPower { on_battery },
    )
    .await
}

/// power-profiles-daemon with `ActiveProfile` = `active`.
pub async fn power_profiles(addr: &str, active: &str) -> zbus::Connection {
    serve(
        addr,
        linux::PROFILES,
        linux::PROFILES_PATH,
        FakeProfiles {
            active: active.to_owned(),
        },
    )
    .await
}

/// Sets NetworkManager's `Metered` on the double served by `nm` and
/// announces it (`PropertiesChanged`), as NetworkManager does.
pub async fn set_metered(nm: &zbus::Connection, metered: u32) {
    let iface = nm
        .object_server()
        .interface::<_, FakeNm>(linux::NM_PATH)
        .await
        .unwrap();
    iface.get_mut().await.metered = metered;
    iface
        .get()
        .await
        .metered_changed(iface.signal_emitter())
        .await
        .unwrap();
}

/// Sets UPower's `OnBattery` on the double served by `up`; announces it
/// unless `quietly` (as when a signal is missed during a suspend).
pub async fn set_on_battery(up: &zbus::Connection, on_battery: bool, quietly: bool) {
    let iface = up
        .object_server()
        .interface::<_, FakeUPower>(linux::UPOWER_PATH)
        .await
        .unwrap();
    iface.get_mut().await.on_battery = on_battery;
    if !quietly {
        iface
            .get()
            .await
            .on_battery_changed(iface.signal_emitter())
            .await
            .unwrap();
    }
}

/// Sets power-profiles-daemon's `ActiveProfile` on the double served by
/// `profiles` and announces it.
pub async fn set_profile(profiles: &zbus::Connection, active: &str) {
    let iface = profiles
        .object_server()
        .interface::<_, FakeProfiles>(linux::PROFILES_PATH)
        .await
        .unwrap();
    iface.get_mut().await.active = active.to_owned();
    iface
        .get()
        .await
        .active_profile_changed(iface.signal_emitter())
        .await
        .unwrap();
}
