//! Linux: NetworkManager's `Metered`, UPower's `OnBattery` and
//! power-profiles-daemon's `ActiveProfile` on the system D-Bus (see the
//! module above for why and when they are re-read).

use futures_util::StreamExt;
use tokio::sync::watch;
use zbus::fdo::{DBusProxy, PropertiesProxy};
use zbus::names::InterfaceName;

use super::super::decide::{Reading, Sensors};

pub const NM: &str = "org.freedesktop.NetworkManager";
pub const NM_PATH: &str = "/org/freedesktop/NetworkManager";
pub const UPOWER: &str = "org.freedesktop.UPower";
pub const UPOWER_PATH: &str = "/org/freedesktop/UPower";
pub const PROFILES: &str = "net.hadess.PowerProfiles";
pub const PROFILES_PATH: &str = "/net/hadess/PowerProfiles";
pub const LOGIND: &str = "org.freedesktop.login1";
pub const LOGIND_PATH: &str = "/org/freedesktop/login1";
pub const LOGIND_MANAGER: &str = "org.freedesktop.login1.Manager";

/// NetworkManager's `NMMetered`: 1 yes, 3 guessed yes; 2 no, 4 guessed no; 0 unknown.
pub fn metered(value: u32) -> Reading {
    match value {
        1 | 3 => Reading::Yes,
        2 | 4 => Reading::No,
        _ => Reading::Unknown,
    }
}

async fn property<T>(conn: &zbus::Connection, dest: &str, path: &str, name: &str) -> Option<T>
where
    T: TryFrom<zbus::zvariant::OwnedValue>,
{
    let props = PropertiesProxy::builder(conn)
        .destination(dest.to_owned())
        .ok()?
        .path(path.to_owned())
        .ok()?
        .build()
        .await
        .ok()?;
    let iface = InterfaceName::try_from(dest.to_owned()).ok()?;
    let v = props.get(iface, name).await.ok()?;
    T::try_from(v).ok()
}

/// Reads both sensors now; anything that does not answer is unknown.
pub async fn read(conn: &zbus::Connection) -> Sensors {
    let m: Option<u32> = property(conn, NM, NM_PATH, "Metered").await;
    let b: Option<bool> = property(conn, UPOWER, UPOWER_PATH, "OnBattery").await;
    let p: Option<String> = property(conn, PROFILES, PROFILES_PATH, "ActiveProfile").await;
    let saver = p.as_deref() == Some("power-saver");
    Sensors {
        metered: m.map_or(Reading::Unknown, metered),
        // Battery saver on counts as on battery, whatever UPower says.
        on_battery: match b {
            _ if saver => Reading::Yes,
            Some(true) => Reading::Yes,
            Some(false) => Reading::No,
            None => Reading::Unknown,
        },
    }
}

async fn changes(
    conn: &zbus::Connection,
    dest: &'static str,
    path: &'static str,
) -> zbus::Result<zbus::fdo::PropertiesChangedStream> {
    PropertiesProxy::builder(conn)
        .destination(dest)?
        .path(path)?
        .build()
        .await?
        .receive_properties_changed()
        .await
}

/// Publishes the readings on `tx` and re-reads them on every event,
/// until every receiver is gone or the bus connection fails.
pub async fn watch(conn: zbus::Connection, tx: watch::Sender<Sensors>) {
    let publish = |s: Sensors| {
        tx.send_if_modified(|old| std::mem::replace(old, s) != s);
    };
    let subscribed = async {
        let nm = changes(&conn, NM, NM_PATH).await?;
        let up = changes(&conn, UPOWER, UPOWER_PATH).await?;
        let profiles = changes(&conn, PROFILES, PROFILES_PATH).await?;
        let owners = DBusProxy::new(&conn)
            .await?
            .receive_name_owner_changed()
            .await?;
        let sleep = zbus::Proxy::new(&conn, LOGIND, LOGIND_PATH, LOGIND_MANAGER)
            .await?
            .receive_signal("PrepareForSleep")
            .await?;
        zbus::Result::Ok((nm, up, profiles, owners, sleep))
    };
    // Subscribe first, then read: a change in between is not missed.
    let (mut nm, mut up, mut profiles, mut owners, mut sleep) = match subscribed.await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the system D-Bus; metered network and battery are read once");
            publish(read(&conn).await);
            tx.closed().await;
            return;
        }
    };
    publish(read(&conn).await);
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            Some(_) = nm.next() => {}
            Some(_) = up.next() => {}
            Some(_) = profiles.next() => {}
            Some(o) = owners.next() => {
                let ours = o
                    .args()
                    .map(|a| [NM, UPOWER, PROFILES].contains(&a.name().as_str()))
                    .unwrap_or(false);
                if !ours {
                    continue;
                }
            }
            Some(s) = sleep.next() => {
                // PrepareForSleep(true) before sleeping; (false) after resuming.
                if s.body().deserialize::<bool>().unwrap_or(false) {
                    continue;
                }
            }
            else => return,
        }
        let now = read(&conn).await;
        tracing::debug!(?now, "sensors re-read");
        publish(now);
    }
}
