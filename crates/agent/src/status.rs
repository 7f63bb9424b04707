//! `link-peeler status`: is this computer enrolled, can it reach its relay,
//! is its clock right, and is anything waiting to be sent?
//!
//! Status never changes anything and never prints a secret; it answers the
//! four questions a user or admin asks first. `doctor` goes further and says
//! what to do about each problem.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::assembly;
use super::client::RelayClient;
use super::config::{self, Overrides};
use super::control::controller::{self, Clock, ControlState, Controller, Saved};
use super::control::{Decision, Policy, Sensors, sensors};
use super::credentials;
use super::lock;
use super::outbox::Outbox;
use link_peeler_wire::signing::unix_now;

/// What `status` found. Serialised as-is for `status --json`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub config_path: String,
    pub data_dir: String,
    pub enrolled: bool,
    pub device_id: Option<String>,
    pub credential_source: Option<String>,
    pub credential_error: Option<String>,
    pub relay: Option<String>,
    /// The PEM file of private CAs trusted for the relay (`relay_ca_file`), if set.
    pub relay_ca_file: Option<String>,
    pub relay_reachable: Option<bool>,
    pub relay_error: Option<String>,
    pub round_trip_ms: Option<u64>,
    /// Relay clock minus ours, in seconds (positive: the relay is ahead).
    pub clock_skew_seconds: Option<i64>,
    pub unsent_results: Option<usize>,
    pub agent_running: bool,
    pub agent_pid: Option<u32>,
    /// Settings the admin manages (`config.toml` key names), which override the user's.
    pub managed_settings: Vec<String>,
    /// Where the managed settings come from (a file or registry key), if any are managed.
    pub managed_source: Option<String>,
    /// The effective policy (pauses, hours, quotas, destinations), each value with its source.
    pub policy: Policy,
    /// Active or paused and why, the sensor readings and the quota left, as
    /// this computer's policy, saved counts and pause decide now.
    pub control: Option<ControlState>,
}

/// Collects the status. Only a malformed config is an error; everything else is reported.
pub fn gather(
    config_file: Option<&Path>,
    flags: &Overrides,
) -> Result<Status, config::ConfigError> {
    let loaded = assembly::load(config_file, flags)?;
    let data_dir = config::data_dir()?;
    let mut st = Status {
        config_path: loaded.path.display().to_string(),
        data_dir: data_dir.display().to_string(),
        managed_settings: loaded
            .managed
            .keys()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        managed_source: loaded.managed.source.clone(),
        relay_ca_file: loaded
            .settings
            .relay_ca
            .as_ref()
            .map(|c| c.path.display().to_string()),
        ..Status::default()
    };
    let creds = credentials::load(None);
    match &creds {
        Ok((c, source)) => {
            st.enrolled = true;
            st.device_id = Some(c.device_id.clone());
            st.credential_source = Some(source.to_string());
        }
        Err(e) => st.credential_error = Some(e.to_string()),
    }
    let stored = creds.as_ref().ok().map(|(c, _)| c);
    let relay = match assembly::relay(loaded.settings.relay.as_ref(), stored, &loaded.path) {
        Ok(url) => Some(url),
        Err(config::ConfigError::NoRelay { .. }) => None,
        Err(e) => {
            st.relay_reachable = Some(false);
            st.relay_error = Some(e.to_string());
            None
        }
    };
    st.relay = relay.as_ref().map(|u| u.to_string());
    if let Some(url) = relay {
        let roots = loaded.settings.relay_roots();
        let probe = async {
            let client = RelayClient::with_roots(url, None, roots)?;
            anyhow::Ok(client.health().await)
        };
        let answer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(probe));
        match answer {
            Ok(Ok(h)) => {
                st.relay_reachable = Some(true);
                st.round_trip_ms = Some(h.elapsed.as_millis() as u64);
                st.clock_skew_seconds = h.server_time.map(|t| t - unix_now());
            }
            Ok(Err(e)) => {
                st.relay_reachable = Some(false);
                st.relay_error = Some(e.to_string());
            }
            Err(e) => {
                st.relay_reachable = Some(false);
                st.relay_error = Some(format!("{e:#}"));
            }
        }
    }
    let outbox_dir = data_dir.join("outbox");
    if outbox_dir.exists() {
        st.unsent_results = Outbox::open(&outbox_dir).and_then(|o| o.len()).ok();
    } else {
        st.unsent_results = Some(0);
    }
    if let Some(pid) = lock::holder(&data_dir) {
        st.agent_running = true;
        st.agent_pid = pid;
    }
    st.policy = loaded.settings.policy.clone();
    st.control = Some(control_state(&st.policy, &data_dir));
    Ok(st)
}

/// What the controller would decide now from the saved counts and pause
/// and the sensors as read now.
fn control_state(policy: &Policy, data_dir: &Path) -> ControlState {
    let saved = controller::load(data_dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "control file unreadable");
        Saved::default()
    });
    let (_tx, sensors) = tokio::sync::watch::channel(read_sensors());
    let c = Controller::new(policy.clone(), saved, sensors, Clock::System, None);
    c.watch().borrow().clone()
}

/// How long `status` waits for the platform's first sensor reading.
const SENSOR_WAIT: Duration = Duration::from_millis(500);

/// This computer's sensors as the platform reports them within
/// [`SENSOR_WAIT`] ("unknown" where it does not answer).
fn read_sensors() -> Sensors {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Sensors::default();
    };
    rt.block_on(async {
        let mut rx = sensors::spawn();
        let _ = tokio::time::timeout(SENSOR_WAIT, rx.changed()).await;
        *rx.borrow()
    })
}

/// The human-readable form.
pub fn render(st: &Status) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
    line(
        "Enrolled:",
        match (&st.device_id, &st.credential_source, &st.credential_error) {
            (Some(id), Some(src), _) => format!("yes, device {id} ({src})"),
            (_, _, Some(e)) => format!("no — {e}"),
            _ => "no".into(),
        },
    );
    line(
        "Relay:",
        st.relay.clone().unwrap_or_else(|| "not configured".into()),
    );
    if let Some(ca) = &st.relay_ca_file {
        line(
            "Relay CA:",
            format!("{ca} (trusted besides the OS trust store)"),
        );
    }
    line(
        "Reachable:",
        match (st.relay_reachable, &st.relay_error, st.round_trip_ms) {
            (Some(true), _, Some(ms)) => format!("yes ({ms} ms)"),
            (Some(true), _, None) => "yes".into(),
            (Some(false), Some(e), _) => format!("no — {e}"),
            (Some(false), None, _) => "no".into(),
            (None, _, _) => "unknown (no relay)".into(),
        },
    );
    line(
        "Clock skew:",
        match st.clock_skew_seconds {
            Some(s) if s.abs() <= 2 => "none (within 2 s of the relay)".into(),
            Some(s) if s.abs() <= 300 => format!("{s:+} s (fine: the relay accepts ±300 s)"),
            Some(s) => format!("{s:+} s (the agent corrects for it; fix this computer's clock)"),
            None => "unknown".into(),
        },
    );
    line(
        "Unsent:",
        match st.unsent_results {
            Some(1) => "1 result waiting in the outbox".into(),
            Some(n) => format!("{n} results waiting in the outbox"),
            None => "unknown (outbox unreadable)".into(),
        },
    );
    line(
        "Agent:",
        match (st.agent_running, st.agent_pid) {
            (true, Some(pid)) => format!("running (pid {pid})"),
            (true, None) => "running".into(),
            (false, _) => "not running".into(),
        },
    );
    if let Some(c) = &st.control {
        line(
            "Work:",
            match &c.decision {
                Decision::Active => "active (policy allows work now)".into(),
                d @ Decision::Paused(_) => {
                    format!("paused — {}", d.describe(&jiff::Zoned::now()).join(", "))
                }
            },
        );
        line("Metered:", c.sensors.metered.words().to_owned());
        line("On battery:", c.sensors.on_battery.words().to_owned());
        line(
            "Quota left:",
            format!(
                "{} links this hour, {} today; {} MiB today, {} MiB this month",
                c.quota_left.links_this_hour,
                c.quota_left.links_today,
                c.quota_left.bytes_today >> 20,
                c.quota_left.bytes_this_month >> 20
            ),
        );
    }
    for (i, (key, value, source)) in st.policy.rows().into_iter().enumerate() {
        line(
            if i == 0 { "Limits:" } else { "" },
            format!("{key} = {value} ({source})"),
        );
    }
    line("Data dir:", st.data_dir.clone());
    line("Config:", st.config_path.clone());
    if let Some(src) = &st.managed_source {
        line(
            "Managed:",
            format!("{} (by {src})", st.managed_settings.join(", ")),
        );
    }
    out
}
