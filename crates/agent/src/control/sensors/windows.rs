//! Windows: the connection cost of the internet connection profile
//! (`Windows.Networking.Connectivity`, the WinRT API Windows itself uses to
//! tell apps a connection is metered) and `GetSystemPowerStatus` (AC line
//! and battery saver).
//!
//! Event-driven like Linux, with no window and no service handle: the cost is
//! re-read on `NetworkInformation.NetworkStatusChanged` (raised when the
//! connection or its cost changes), the power status on powrprof callbacks
//! for the AC/DC power source, the battery saver setting and resume from
//! sleep (`DEVICE_NOTIFY_CALLBACK` registrations). Any API that is missing
//! or fails (no internet profile when offline, a Windows or wine without the
//! WinRT class) reads "unknown"; it is logged, never fatal.
//!
//! The mapping from the platform's numbers to a [`Reading`] is compiled and
//! tested on every OS.

use super::super::decide::Reading;

/// `NetworkCostType` (0 unknown, 1 unrestricted, 2 fixed, 3 variable) of
/// the internet connection profile, with its `Roaming` and `OverDataLimit`
/// flags: a fixed or variable plan is metered, and so is roaming or being
/// over the data limit whatever the plan says.
pub fn metered(cost_type: i32, roaming: bool, over_data_limit: bool) -> Reading {
    if roaming || over_data_limit {
        return Reading::Yes;
    }
    match cost_type {
        2 | 3 => Reading::Yes,
        1 => Reading::No,
        _ => Reading::Unknown,
    }
}

/// `SYSTEM_POWER_STATUS`: `ACLineStatus` (0 offline, i.e. on battery;
/// 1 online; 255 unknown) and `SystemStatusFlag` (1 = battery saver on,
/// which counts as on battery whatever the AC line says, as on Linux).
pub fn on_battery(ac_line_status: u8, system_status_flag: u8) -> Reading {
    if system_status_flag == 1 {
        return Reading::Yes;
    }
    match ac_line_status {
        0 => Reading::Yes,
        1 => Reading::No,
        _ => Reading::Unknown,
    }
}

#[cfg(target_os = "windows")]
pub use platform::{read, watch};

#[cfg(target_os = "windows")]
mod platform {
    use std::ffi::c_void;
    use std::sync::Arc;

    use ::windows::Networking::Connectivity::{
        NetworkInformation, NetworkStatusChangedEventHandler,
    };
    use ::windows::Win32::Foundation::{ERROR_SUCCESS, HANDLE};
    use ::windows::Win32::System::Power::{
        DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS, GetSystemPowerStatus, HPOWERNOTIFY,
        PowerRegisterSuspendResumeNotification, PowerSettingRegisterNotification,
        PowerSettingUnregisterNotification, PowerUnregisterSuspendResumeNotification,
        SYSTEM_POWER_STATUS,
    };
    use ::windows::Win32::UI::WindowsAndMessaging::DEVICE_NOTIFY_CALLBACK;
    use ::windows::core::GUID;
    use tokio::sync::{Notify, watch};

    use super::super::super::decide::{Reading, Sensors};

    /// AC or DC power source changed (winnt.h).
    const GUID_ACDC_POWER_SOURCE: GUID = GUID::from_u128(0x5d3e9a59_e9d5_4b00_a6bd_ff34ff516548);
    /// Battery saver turned on or off (winnt.h).
    const GUID_POWER_SAVING_STATUS: GUID = GUID::from_u128(0xe00958c0_c213_4ace_ac77_fecced2eeea5);

    /// Whether this is wine, not Windows. Wine (8) ships
    /// `windows.networking.dll` as a stub: activating `NetworkInformation`
    /// aborts the whole process (an unimplemented-function exception, not an
    /// error a caller could handle), so under wine the metered reading is
    /// "unknown" and no network events are registered. Wine marks itself
    /// with the `wine_get_version` export of ntdll.
    fn under_wine() -> bool {
        use ::windows::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
        use ::windows::core::{s, w};
        static WINE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *WINE.get_or_init(|| {
            // SAFETY: both names are static NUL-terminated strings; ntdll is
            // loaded in every process and never unloaded while it runs.
            unsafe {
                GetModuleHandleW(w!("ntdll.dll"))
                    .map(|m| GetProcAddress(m, s!("wine_get_version")).is_some())
                    .unwrap_or(false)
            }
        })
    }

    fn read_metered() -> Reading {
        if under_wine() {
            return Reading::Unknown;
        }
        let cost = || -> ::windows::core::Result<Reading> {
            // Fails (a null profile) when no connection reaches the internet.
            let profile = NetworkInformation::GetInternetConnectionProfile()?;
            let cost = profile.GetConnectionCost()?;
            Ok(super::metered(
                cost.NetworkCostType()?.0,
                cost.Roaming()?,
                cost.OverDataLimit()?,
            ))
        };
        cost().unwrap_or_else(|e| {
            tracing::debug!(error = %e, "no connection cost: metered network is unknown");
            Reading::Unknown
        })
    }

    fn read_battery() -> Reading {
        let mut s = SYSTEM_POWER_STATUS::default();
        // SAFETY: `s` is a live, writable SYSTEM_POWER_STATUS for the whole call.
        match unsafe { GetSystemPowerStatus(&mut s) } {
            Ok(()) => super::on_battery(s.ACLineStatus, s.SystemStatusFlag),
            Err(e) => {
                tracing::debug!(error = %e, "no power status: battery is unknown");
                Reading::Unknown
            }
        }
    }

    /// Reads both sensors now (blocking: WinRT and kernel32 calls).
    pub fn read() -> Sensors {
        Sensors {
            metered: read_metered(),
            on_battery: read_battery(),
        }
    }

    /// powrprof calls this on its own thread for every registered event.
    unsafe extern "system" fn on_power_event(
        context: *const c_void,
        _kind: u32,
        _setting: *const c_void,
    ) -> u32 {
        // SAFETY: `context` is the `Notify` of a `PowerEvents`, which keeps
        // its `Arc` alive until every registration is undone, and powrprof
        // calls no callback after the unregister call returns.
        let wake = unsafe { &*context.cast::<Notify>() };
        wake.notify_one();
        ERROR_SUCCESS.0
    }

    /// The powrprof callback registrations; undone on drop.
    struct PowerEvents {
        settings: Vec<HPOWERNOTIFY>,
        resume: Option<HPOWERNOTIFY>,
        /// What the registrations point at, alive as long as they are.
        _params: Box<DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS>,
        _wake: Arc<Notify>,
    }

    // SAFETY: the raw pointers in `_params` point at the `Notify` this value
    // owns (an `Arc`, itself Send + Sync) and at a plain function; the
    // handles are process-wide tokens that any thread may unregister.
    unsafe impl Send for PowerEvents {}

    impl PowerEvents {
        fn register(wake: &Arc<Notify>) -> Self {
            let mut params = Box::new(DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS {
                Callback: Some(on_power_event),
                Context: Arc::as_ptr(wake).cast_mut().cast(),
            });
            let recipient = HANDLE(std::ptr::from_mut(params.as_mut()).cast());
            let mut settings = Vec::new();
            for (guid, what) in [
                (&GUID_ACDC_POWER_SOURCE, "power source"),
                (&GUID_POWER_SAVING_STATUS, "battery saver"),
            ] {
                let mut handle: *mut c_void = std::ptr::null_mut();
                // SAFETY: `guid` and `handle` are live for the call; `recipient`
                // points at `params`, boxed and kept (with the `Notify` its
                // context points at) until the registration is undone in `drop`.
                let r = unsafe {
                    PowerSettingRegisterNotification(
                        guid,
                        DEVICE_NOTIFY_CALLBACK,
                        recipient,
                        &mut handle,
                    )
                };
                if r == ERROR_SUCCESS {
                    settings.push(HPOWERNOTIFY(handle as isize));
                } else {
                    tracing::info!(
                        error = r.0,
                        what,
                        "no power notifications: re-read on other events only"
                    );
                }
            }
            let mut handle: *mut c_void = std::ptr::null_mut();
            // SAFETY: as above.
            let r = unsafe {
                PowerRegisterSuspendResumeNotification(
                    DEVICE_NOTIFY_CALLBACK,
                    recipient,
                    &mut handle,
                )
            };
            let resume = if r == ERROR_SUCCESS {
                Some(HPOWERNOTIFY(handle as isize))
            } else {
                tracing::info!(
                    error = r.0,
                    "no resume notifications: not re-read after sleep"
                );
                None
            };
            Self {
                settings,
                resume,
                _params: params,
                _wake: Arc::clone(wake),
            }
        }
    }

    impl Drop for PowerEvents {
        fn drop(&mut self) {
            for h in self.settings.drain(..) {
                // SAFETY: `h` came from a successful PowerSettingRegisterNotification
                // and is unregistered once.
                let _ = unsafe { PowerSettingUnregisterNotification(h) };
            }
            if let Some(h) = self.resume.take() {
                // SAFETY: `h` came from a successful
                // PowerRegisterSuspendResumeNotification and is unregistered once.
                let _ = unsafe { PowerUnregisterSuspendResumeNotification(h) };
            }
        }
    }

    /// The `NetworkStatusChanged` handler; removed on drop.
    struct NetworkEvents(Option<i64>);

    impl NetworkEvents {
        fn register(wake: &Arc<Notify>) -> Self {
            if under_wine() {
                tracing::info!(
                    "running under wine: metered network is unknown (no WinRT networking)"
                );
                return Self(None);
            }
            let wake = Arc::clone(wake);
            let handler = NetworkStatusChangedEventHandler::new(move |_| {
                wake.notify_one();
                Ok(())
            });
            match NetworkInformation::NetworkStatusChanged(&handler) {
                Ok(token) => Self(Some(token)),
                Err(e) => {
                    tracing::info!(error = %e, "no network change events: metered network is read once");
                    Self(None)
                }
            }
        }
    }

    impl Drop for NetworkEvents {
        fn drop(&mut self) {
            if let Some(token) = self.0.take() {
                let _ = NetworkInformation::RemoveNetworkStatusChanged(token);
            }
        }
    }

    /// Publishes the readings on `tx` and re-reads them on every event,
    /// until every receiver is gone.
    pub async fn watch(tx: watch::Sender<Sensors>) {
        let wake = Arc::new(Notify::new());
        // Register first, then read: a change in between is not missed (a
        // `notify_one` with no waiter is kept for the next `notified`).
        let power = PowerEvents::register(&wake);
        let network = NetworkEvents::register(&wake);
        loop {
            // A failed (panicked) read publishes "unknown" rather than a stale Yes.
            let now = tokio::task::spawn_blocking(read).await.unwrap_or_default();
            tracing::debug!(?now, "sensors re-read");
            super::super::publish(&tx, now);
            tokio::select! {
                _ = tx.closed() => break,
                _ = wake.notified() => {}
            }
        }
        drop(network);
        drop(power);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cost_maps_to_metered() {
        assert_eq!(metered(0, false, false), Reading::Unknown);
        assert_eq!(metered(1, false, false), Reading::No);
        assert_eq!(metered(2, false, false), Reading::Yes);
        assert_eq!(metered(3, false, false), Reading::Yes);
        assert_eq!(metered(7, false, false), Reading::Unknown);
        // Roaming or over the limit is metered, even on an unrestricted or unknown plan.
        assert_eq!(metered(1, true, false), Reading::Yes);
        assert_eq!(metered(0, false, true), Reading::Yes);
    }

    #[test]
    fn power_status_maps_to_on_battery() {
        assert_eq!(on_battery(0, 0), Reading::Yes);
        assert_eq!(on_battery(1, 0), Reading::No);
        assert_eq!(on_battery(255, 0), Reading::Unknown);
        // Battery saver counts as on battery, even on AC or when AC is unknown.
        assert_eq!(on_battery(1, 1), Reading::Yes);
        assert_eq!(on_battery(255, 1), Reading::Yes);
    }
}
