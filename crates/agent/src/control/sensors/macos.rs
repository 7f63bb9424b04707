//! macOS: Network.framework's path monitor for the network, IOKit's
//! providing power source and Low Power Mode for the battery.
//!
//! A path that is *expensive* (cellular, a personal hotspot, or a network
//! the user marked so) or *constrained* (Low Data Mode) is how macOS tells
//! apps to hold back traffic, so it reads metered. The path monitor reports
//! every change of the default path on a private dispatch queue (including
//! when the network comes back after sleep); the power source is re-read on
//! IOKit's `kIOPSNotifyPowerSource` notify(3) key (delivered on the same
//! queue) and on `NSProcessInfoPowerStateDidChangeNotification` (Low Power
//! Mode). No run loop thread, no polling.
//!
//! Not run anywhere yet: `scripts/check-macos` type-checks and lints it for
//! both Mac targets, which does not link or execute it.
//!
//! The mapping from the platform's values to a [`Reading`] is compiled and
//! tested on every OS.

use super::super::decide::Reading;

/// `nw_path_status_t` (0 invalid, 1 satisfied, 2 unsatisfied, 3 satisfiable)
/// with `nw_path_is_expensive` and `nw_path_is_constrained`: a satisfied
/// path (or a satisfiable one, which a connection would bring up) that is
/// expensive or constrained is metered, a satisfied one that is neither is
/// not; with no usable path there is nothing to be metered: unknown.
pub fn metered(status: i32, expensive: bool, constrained: bool) -> Reading {
    match status {
        1 | 3 if expensive || constrained => Reading::Yes,
        1 => Reading::No,
        _ => Reading::Unknown,
    }
}

/// `IOPSGetProvidingPowerSourceType` ("AC Power", "Battery Power",
/// "UPS Power"; `None` when IOKit does not say) and Low Power Mode, which
/// counts as on battery whatever the source, as battery saver does on Linux
/// and Windows. A UPS providing the power means the mains is out: on battery.
pub fn on_battery(source: Option<&str>, low_power_mode: bool) -> Reading {
    if low_power_mode {
        return Reading::Yes;
    }
    match source {
        Some("Battery Power" | "UPS Power") => Reading::Yes,
        Some("AC Power") => Reading::No,
        _ => Reading::Unknown,
    }
}

#[cfg(target_os = "macos")]
pub use platform::watch;

#[cfg(target_os = "macos")]
mod platform {
    use std::ffi::{CStr, c_char, c_int, c_void};
    use std::ptr::NonNull;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, Ordering};

    use block2::{Block, RcBlock};
    use dispatch2::{DispatchQueue, DispatchRetained};
    use objc2::rc::Retained;
    use objc2::runtime::{AnyObject, NSObjectProtocol, ProtocolObject};
    use objc2::sel;
    use objc2_core_foundation::{CFRetained, CFString, CFType};
    use objc2_foundation::{
        NSNotification, NSNotificationCenter, NSProcessInfo,
        NSProcessInfoPowerStateDidChangeNotification,
    };
    use tokio::sync::{Notify, watch};

    use super::super::super::decide::{Reading, Sensors};

    /// An `nw_path_monitor_t` or an `nw_path_t`.
    type NwObject = *mut c_void;

    #[link(name = "Network", kind = "framework")]
    unsafe extern "C" {
        fn nw_path_monitor_create() -> NwObject;
        fn nw_path_monitor_set_queue(monitor: NwObject, queue: &DispatchQueue);
        fn nw_path_monitor_set_update_handler(monitor: NwObject, handler: &Block<dyn Fn(NwObject)>);
        fn nw_path_monitor_start(monitor: NwObject);
        fn nw_path_monitor_cancel(monitor: NwObject);
        fn nw_release(object: NwObject);
        fn nw_path_get_status(path: NwObject) -> c_int;
        fn nw_path_is_expensive(path: NwObject) -> bool;
        fn nw_path_is_constrained(path: NwObject) -> bool;
    }

    #[link(name = "IOKit", kind = "framework")]
    unsafe extern "C" {
        /// A snapshot of the power sources (create rule: owned by the caller).
        fn IOPSCopyPowerSourcesInfo() -> *mut CFType;
        /// "AC Power", "Battery Power" or "UPS Power" (get rule: borrowed from the snapshot).
        fn IOPSGetProvidingPowerSourceType(snapshot: &CFType) -> *const CFString;
    }

    // notify(3), in libSystem.
    unsafe extern "C" {
        fn notify_register_dispatch(
            name: *const c_char,
            out_token: *mut c_int,
            queue: &DispatchQueue,
            handler: &Block<dyn Fn(c_int)>,
        ) -> u32;
        fn notify_cancel(token: c_int) -> u32;
    }

    /// `kIOPSNotifyPowerSource`: the providing power source changed.
    const NOTIFY_POWER_SOURCE: &CStr = c"com.apple.system.powersources.source";
    const NOTIFY_STATUS_OK: u32 = 0;

    fn encode(r: Reading) -> u8 {
        match r {
            Reading::Unknown => 0,
            Reading::Yes => 1,
            Reading::No => 2,
        }
    }

    fn decode(v: u8) -> Reading {
        match v {
            1 => Reading::Yes,
            2 => Reading::No,
            _ => Reading::Unknown,
        }
    }

    fn power_source() -> Option<String> {
        // SAFETY: no arguments; returns an owned CFTypeRef, or null.
        let info = NonNull::new(unsafe { IOPSCopyPowerSourcesInfo() })?;
        // SAFETY: `info` is owned by us (create rule); CFRetained releases it once.
        let info = unsafe { CFRetained::from_raw(info) };
        // SAFETY: `info` is a live power sources snapshot, as the call expects.
        let source = unsafe { IOPSGetProvidingPowerSourceType(&info) };
        // SAFETY: a non-null result is a CFString owned by `info`, alive until
        // `info` drops at the end of this function, after it is copied.
        let source = unsafe { source.as_ref() }?;
        Some(source.to_string())
    }

    fn low_power_mode() -> bool {
        let info = NSProcessInfo::processInfo();
        // Low Power Mode came with macOS 12; the agent also runs on 11.
        info.respondsToSelector(sel!(isLowPowerModeEnabled)) && info.isLowPowerModeEnabled()
    }

    fn read_battery() -> Reading {
        super::on_battery(power_source().as_deref(), low_power_mode())
    }

    /// The path monitor and the notification registrations; undone on drop.
    struct Registrations {
        monitor: Option<NonNull<c_void>>,
        power_token: Option<c_int>,
        observer: Option<Retained<ProtocolObject<dyn NSObjectProtocol>>>,
        _queue: DispatchRetained<DispatchQueue>,
    }

    // SAFETY: a path monitor may be cancelled and released from any thread,
    // a notify(3) token is a plain integer, NSNotificationCenter is
    // thread-safe, and dispatch queues are thread-safe objects.
    unsafe impl Send for Registrations {}

    impl Registrations {
        fn start(wake: &Arc<Notify>, network: &Arc<AtomicU8>) -> Self {
            let queue = DispatchQueue::new("link-peeler.sensors", None);

            let (w, net) = (Arc::clone(wake), Arc::clone(network));
            let on_path = RcBlock::new(move |path: NwObject| {
                let now = if path.is_null() {
                    Reading::Unknown
                } else {
                    // SAFETY: `path` is the live nw_path_t the monitor hands to
                    // its update handler, valid for the handler's duration.
                    let (status, expensive, constrained) = unsafe {
                        (
                            nw_path_get_status(path),
                            nw_path_is_expensive(path),
                            nw_path_is_constrained(path),
                        )
                    };
                    super::metered(status, expensive, constrained)
                };
                net.store(encode(now), Ordering::Relaxed);
                w.notify_one();
            });
            // SAFETY: no arguments; returns an owned monitor, or null.
            let monitor = NonNull::new(unsafe { nw_path_monitor_create() });
            match monitor {
                // SAFETY: `m` is a live monitor not yet started; the queue and
                // the handler are retained/copied by Network.framework.
                Some(m) => unsafe {
                    nw_path_monitor_set_queue(m.as_ptr(), &queue);
                    nw_path_monitor_set_update_handler(m.as_ptr(), &on_path);
                    nw_path_monitor_start(m.as_ptr());
                },
                None => tracing::info!("no network path monitor: metered network is unknown"),
            }

            let w = Arc::clone(wake);
            let on_power = RcBlock::new(move |_token: c_int| w.notify_one());
            let mut token: c_int = 0;
            // SAFETY: the name is a NUL-terminated string, `token` is writable,
            // and libnotify retains the queue and copies the handler.
            let r = unsafe {
                notify_register_dispatch(
                    NOTIFY_POWER_SOURCE.as_ptr(),
                    &mut token,
                    &queue,
                    &on_power,
                )
            };
            let power_token = if r == NOTIFY_STATUS_OK {
                Some(token)
            } else {
                tracing::info!(
                    status = r,
                    "no power source notifications: battery is read on other events only"
                );
                None
            };

            let w = Arc::clone(wake);
            let on_low_power = RcBlock::new(move |_n: NonNull<NSNotification>| w.notify_one());
            // SAFETY: the name is Foundation's constant (an extern static);
            // no object filter and no operation queue (the block runs on the
            // posting thread; it only wakes a `Notify`, which is thread-safe);
            // the notification center copies the block.
            let observer = unsafe {
                NSNotificationCenter::defaultCenter().addObserverForName_object_queue_usingBlock(
                    Some(NSProcessInfoPowerStateDidChangeNotification),
                    None,
                    None,
                    &on_low_power,
                )
            };

            Self {
                monitor,
                power_token,
                observer: Some(observer),
                _queue: queue,
            }
        }
    }

    impl Drop for Registrations {
        fn drop(&mut self) {
            if let Some(m) = self.monitor.take() {
                // SAFETY: `m` is the monitor we created and own; cancelled and
                // released once.
                unsafe {
                    nw_path_monitor_cancel(m.as_ptr());
                    nw_release(m.as_ptr());
                }
            }
            if let Some(t) = self.power_token.take() {
                // SAFETY: `t` came from a successful notify_register_dispatch
                // and is cancelled once.
                unsafe { notify_cancel(t) };
            }
            if let Some(o) = self.observer.take() {
                // SAFETY: `o` is the observer the default center returned.
                unsafe {
                    NSNotificationCenter::defaultCenter()
                        .removeObserver(AsRef::<AnyObject>::as_ref(&*o))
                };
            }
        }
    }

    /// Publishes the readings on `tx` and re-reads them on every event,
    /// until every receiver is gone.
    pub async fn watch(tx: watch::Sender<Sensors>) {
        let wake = Arc::new(Notify::new());
        let network = Arc::new(AtomicU8::new(encode(Reading::Unknown)));
        // Register first, then read: a change in between is not missed (a
        // `notify_one` with no waiter is kept for the next `notified`).
        let registrations = Registrations::start(&wake, &network);
        loop {
            let on_battery = tokio::task::spawn_blocking(read_battery)
                .await
                .unwrap_or_default();
            let now = Sensors {
                metered: decode(network.load(Ordering::Relaxed)),
                on_battery,
            };
            tracing::debug!(?now, "sensors re-read");
            super::super::publish(&tx, now);
            tokio::select! {
                _ = tx.closed() => break,
                _ = wake.notified() => {}
            }
        }
        drop(registrations);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_maps_to_metered() {
        assert_eq!(metered(1, false, false), Reading::No);
        assert_eq!(metered(1, true, false), Reading::Yes);
        assert_eq!(metered(1, false, true), Reading::Yes);
        assert_eq!(metered(3, true, false), Reading::Yes);
        // No usable path: nothing to be metered.
        assert_eq!(metered(2, true, true), Reading::Unknown);
        assert_eq!(metered(0, false, false), Reading::Unknown);
        assert_eq!(metered(3, false, false), Reading::Unknown);
    }

    #[test]
    fn power_source_maps_to_on_battery() {
        assert_eq!(on_battery(Some("Battery Power"), false), Reading::Yes);
        assert_eq!(on_battery(Some("UPS Power"), false), Reading::Yes);
        assert_eq!(on_battery(Some("AC Power"), false), Reading::No);
        assert_eq!(on_battery(None, false), Reading::Unknown);
        assert_eq!(on_battery(Some("Off Line"), false), Reading::Unknown);
        // Low Power Mode counts as on battery, even on AC.
        assert_eq!(on_battery(Some("AC Power"), true), Reading::Yes);
        assert_eq!(on_battery(None, true), Reading::Yes);
    }
}
