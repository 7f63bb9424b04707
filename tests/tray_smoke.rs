//! GUI smoke test of the tray app on a real (virtual) Linux desktop.
//!
//! Xvfb, a StatusNotifier watcher and an SNI tray bar stand in for a panel;
//! a live relay and the loopback redirect lab stand in for the team. The
//! test drives the app the way a person and their panel do: it reads the
//! menu over `com.canonical.dbusmenu` (`GetLayout`), clicks items with
//! `Event(id, "clicked")`, types into the native enrollment dialog with
//! xdotool, and opens the menu with a mouse click to take a screenshot.
//!
//! It needs the session D-Bus with a Secret Service that scripts/test
//! provides. Under CI (`CI=true`) or with `LINK_PEELER_REQUIRE_TRAY=1`, a
//! missing tool or bus is a failure, never a silent skip.
//!
//! Screenshots land in `target/tmp/tray-smoke/`; set
//! `LINK_PEELER_SCREENSHOTS=docs` to refresh the ones the docs show.
#![cfg(all(feature = "tray", target_os = "linux"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod agent_support;
mod tray_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_support::*;
use link_peeler::demo::lab::Lab;
use link_peeler::tray::dialogs::{
    TITLE_ALREADY_RUNNING, TITLE_CONSENT, TITLE_ENROLL, TITLE_ENROLLED, TITLE_WELCOME,
};
use link_peeler::tray::view::{
    ALLOW, ENROLL, PAUSE, PAUSE_HOUR, QUIT, RECENT, RESUME, START_AT_LOGIN,
};
use link_peeler_wire::protocol::JobStatus;
use tray_support::*;

const POLL_ROUTE: &str = "/api/agent/poll";

/// Long polls of 2 s, so "polling stopped" shows within seconds.
const CONFIG: &str = "poll_wait_seconds = 2\nallow_networks = [\"127.0.0.0/8\"]\n";

fn desktop_available() -> bool {
    let mut missing = missing_tools();
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        missing.push("a session D-Bus (run the suite with scripts/test)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
        || std::env::var("LINK_PEELER_REQUIRE_TRAY").is_ok_and(|v| v == "1");
    let msg = format!("tray smoke test cannot run: missing {}", missing.join(", "));
    assert!(!required, "{msg} (.ci/run installs them)");
    eprintln!("SKIPPED: {msg}");
    false
}

/// Where this run's screenshots go, and where to copy them when asked.
fn shots() -> (PathBuf, Option<PathBuf>) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tray-smoke");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let publish = std::env::var_os("LINK_PEELER_SCREENSHOTS")
        .filter(|v| !v.is_empty())
        .map(|d| Path::new(env!("CARGO_MANIFEST_DIR")).join(d));
    (dir, publish)
}

async fn screenshot(desktop: &Desktop, name: &str, geometry: &str) {
    let (dir, publish) = shots();
    let path = dir.join(name);
    desktop.screenshot(&path, geometry).await;
    eprintln!("screenshot: {}", path.display());
    if let Some(to) = publish {
        std::fs::copy(&path, to.join(name)).expect("publish screenshot");
    }
}

/// The tray app's isolated world: config, data, keychain profile, HOME.
struct TrayHome {
    agent: AgentHome,
    home: PathBuf,
    runtime: PathBuf,
}

impl TrayHome {
    fn new(root: &Path) -> TrayHome {
        let agent = AgentHome::new(root, "tray");
        let home = agent.dir.join("home");
        let runtime = agent.dir.join("runtime");
        for d in [&home, &runtime] {
            std::fs::create_dir_all(d).expect("dir");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700))
                .expect("chmod runtime dir");
        }
        agent.write_config(CONFIG);
        TrayHome {
            agent,
            home,
            runtime,
        }
    }

    /// `link-peeler` (no subcommand) on `display`, with its own HOME: GTK writes there.
    /// Its `xdg-open` is a stand-in that notes what it was asked to open
    /// (a desktop's browser is not ours to start in a test).
    fn launch(&self, display: &str, log: &str) -> Proc {
        let bin = self.agent.dir.join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        let opener = bin.join("xdg-open");
        std::fs::write(
            &opener,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n",
                self.opened_file().display()
            ),
        )
        .expect("xdg-open stand-in");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755))
                .expect("chmod xdg-open");
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = self.agent.command(&[]);
        cmd.env("PATH", path)
            .env("DISPLAY", display)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("XDG_RUNTIME_DIR", &self.runtime)
            // Never the machine's /etc/xdg (an installed .deb has an autostart entry there).
            .env("XDG_CONFIG_DIRS", self.system_config())
            .env_remove("WAYLAND_DISPLAY")
            .env("LINK_PEELER_LOG", "info,link_peeler=debug")
            .env("GDK_BACKEND", "x11")
            // GTK must not look for an accessibility bus we do not run.
            .env("NO_AT_BRIDGE", "1");
        let err = std::fs::File::create(self.agent.dir.join(log)).expect("tray log");
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn link-peeler");
        Proc {
            child: Some(child),
            name: "link-peeler (tray)".into(),
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.agent.dir.join(name)).unwrap_or_default()
    }

    /// A JSON file of the data dir (`null` while it does not exist).
    fn json(&self, file: &str) -> serde_json::Value {
        match std::fs::read_to_string(self.agent.data_dir().join(file)) {
            Ok(text) => serde_json::from_str(&text).expect("json"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(e) => panic!("{file}: {e}"),
        }
    }

    fn state(&self) -> serde_json::Value {
        self.json("state.json")
    }

    /// The controller's file: quota counts and the user's pause.
    fn control(&self) -> serde_json::Value {
        self.json("control.json")
    }

    /// Where the `xdg-open` stand-in notes each path.
    fn opened_file(&self) -> PathBuf {
        self.agent.dir.join("opened.txt")
    }

    /// This test's stand-in for /etc/xdg.
    fn system_config(&self) -> PathBuf {
        self.agent.dir.join("etc-xdg")
    }

    fn autostart_entry(&self) -> PathBuf {
        self.home.join(".config/autostart/link-peeler.desktop")
    }
}

/// The pixels of the icon the item shows now (libappindicator exports a PNG path).
async fn shown_icon(item: &TrayItem) -> Option<Vec<u8>> {
    let v = item.property("IconName").await?;
    let path: String = v.try_into().ok()?;
    let bytes = std::fs::read(&path).ok()?;
    let mut d = png::Decoder::new(std::io::Cursor::new(bytes));
    d.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut r = d.read_info().ok()?;
    let mut buf = vec![0; r.output_buffer_size()?];
    let info = r.next_frame(&mut buf).ok()?;
    buf.truncate(info.buffer_size());
    Some(buf)
}

async fn wait_icon(item: &TrayItem, kind: link_peeler::tray::view::IconKind) {
    let want = link_peeler::tray::icons::rgba(kind)
        .expect("embedded icon")
        .pixels;
    wait_for(&format!("the {kind:?} icon"), || async {
        (shown_icon(item).await.as_ref() == Some(&want)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tray_app_enrolls_resolves_pauses_resumes_and_quits() {
    use link_peeler::tray::view::IconKind;

    if !desktop_available() || !keychain_or_skip("tray smoke test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let desktop = Desktop::start(tmp.path()).await;
    let relay = Relay::start(tmp.path(), None).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let th = TrayHome::new(tmp.path());
    let code = enrollment_code(&relay);

    // 1. First start: not enrolled; the icon asks for attention.
    let mut app = th.launch(&desktop.display, "tray-1.log");
    let item = desktop.wait_for_item().await;
    item.wait_status("“not enrolled”", |s| s.starts_with("Not enrolled"))
        .await;
    wait_icon(&item, IconKind::Attention).await;
    assert!(!item.entry(PAUSE).await.enabled, "nothing to pause yet");

    // 2. Enroll from the menu with the link an admin would send.
    item.click(ENROLL).await;
    let link = format!(
        "link-peeler://enroll?relay={}&code={code}",
        url::form_urlencoded::byte_serialize(relay.url().as_bytes()).collect::<String>()
    );
    desktop.type_into(TITLE_ENROLL, &link).await;
    screenshot(&desktop, "tray-enroll-dialog.png", "560x200+0+0").await;
    desktop.key(TITLE_ENROLL, "Return").await;
    desktop.window(TITLE_ENROLLED).await;
    screenshot(&desktop, "tray-enrolled.png", "560x200+0+0").await;
    desktop.key(TITLE_ENROLLED, "Return").await;
    desktop.wait_window_gone(TITLE_ENROLLED).await;

    // 2b. Consent: asked before any task; "No" leaves it waiting, polling nothing.
    desktop.window(TITLE_CONSENT).await;
    screenshot(&desktop, "tray-consent.png", "640x360+0+0").await;
    desktop.key(TITLE_CONSENT, "Escape").await;
    desktop.wait_window_gone(TITLE_CONSENT).await;
    item.wait_status("waiting for permission", |s| {
        s == "Waiting for your permission to start"
    })
    .await;
    assert!(th.state()["consent"].is_null());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(relay_requests(&relay.url(), POLL_ROUTE).await, 0);
    item.click(ALLOW).await;
    desktop.window(TITLE_CONSENT).await;
    desktop.key(TITLE_CONSENT, "Return").await;
    let connected = format!("Connected to {} · ", relay.addr);
    let status = item
        .wait_status("connected", |s| s.starts_with(&connected))
        .await;
    assert_eq!(status, format!("{connected}0 links today"));
    assert_eq!(th.state()["consent"]["by"], "user");
    assert!(
        item.menu().await.iter().all(|e| e.label != ENROLL),
        "enrolled: no enroll item"
    );
    wait_icon(&item, IconKind::Idle).await;

    // 3. A real job comes back resolved, and the count moves.
    let job = api
        .submit("tray-1", &lab.url("/ad/click?id=3"), None)
        .await
        .unwrap();
    let job = api
        .wait_finished(&job.job_id, Duration::from_millis(100), PATIENCE)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    item.wait_status("one link today", |s| {
        s == format!("{connected}1 link today")
    })
    .await;

    // 4. The open menu, as a person sees it (right click on the bar's icon).
    desktop.open_tray_menu().await;
    tokio::time::sleep(Duration::from_secs(2)).await; // let the menu map before the picture
    screenshot(&desktop, "tray-menu.png", "400x230+0+0").await;
    desktop.xdotool(&["key", "Escape"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 5. Pause ▸ For 1 hour: the status line names the reason and the end,
    //    the icon and control.json say so, and a job waits.
    assert!(item.entry(PAUSE).await.enabled);
    assert!(!item.entry(RESUME).await.enabled, "nothing to resume");
    item.click(PAUSE_HOUR).await;
    let paused = item
        .wait_status("paused for an hour", |s| {
            s.starts_with("Paused — by you until ") && s.ends_with(" · 1 link today")
        })
        .await;
    wait_icon(&item, IconKind::Paused).await;
    assert!(!item.entry(PAUSE).await.enabled);
    assert!(item.entry(RESUME).await.enabled);
    let until = th.control()["userPause"]["until"]
        .as_i64()
        .expect("pause end");
    let in_an_hour = link_peeler_agent::history::now_ms() + 3_600_000;
    assert!(
        (in_an_hour - until).abs() < 60_000,
        "{until} vs {in_an_hour}"
    );
    let waiting = api
        .submit("tray-2", &lab.url("/ad/click?id=4"), None)
        .await
        .unwrap();
    desktop.open_tray_menu().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    screenshot(&desktop, "tray-paused.png", "420x260+0+0").await;
    desktop.xdotool(&["key", "Escape"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        api.job(&waiting.job_id).await.unwrap().status,
        JobStatus::Queued,
        "a paused agent takes no task"
    );

    // 5b. Recent activity: the page lists the link and the pause, private.
    item.click(RECENT).await;
    let page = wait_for("the activity page to be opened", || async {
        std::fs::read_to_string(th.opened_file())
            .ok()
            .and_then(|t| t.lines().last().map(PathBuf::from))
    })
    .await;
    assert_eq!(page, th.agent.data_dir().join("activity.html"));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("1 link opened"), "{html}");
    assert!(html.contains("<td>127.0.0.1</td>"), "{html}");
    assert!(html.contains("Paused: by you until "), "{html}");
    assert!(
        html.contains("href=\"activity.csv\">Export as CSV</a>"),
        "{html}"
    );
    let csv_path = th.agent.data_dir().join("activity.csv");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(
        csv.contains(",task,") && csv.contains(",127.0.0.1,127.0.0.1,"),
        "{csv}"
    );
    assert!(csv.contains(",paused,by you until "), "{csv}");
    for file in [&page, &csv_path] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }

    // 6. A second launch does not start a second agent; it says so.
    let mut second = th.launch(&desktop.display, "tray-2.log");
    desktop.window(TITLE_ALREADY_RUNNING).await;
    desktop.key(TITLE_ALREADY_RUNNING, "Return").await;
    assert_eq!(second.wait_exit().await, Some(1));
    assert!(th.log("tray-2.log").contains("already running"));

    // 7. Start at login: the check mark follows the real autostart entry.
    assert_eq!(item.entry(START_AT_LOGIN).await.checked, Some(false));
    item.click(START_AT_LOGIN).await;
    wait_for("the autostart entry", || async {
        th.autostart_entry().exists().then_some(())
    })
    .await;
    wait_for("the check mark", || async {
        (item.entry(START_AT_LOGIN).await.checked == Some(true)).then_some(())
    })
    .await;
    let entry = std::fs::read_to_string(th.autostart_entry()).unwrap();
    assert!(entry.contains("Exec=\""), "{entry}");
    item.click(START_AT_LOGIN).await;
    wait_for("the check mark to clear", || async {
        (item.entry(START_AT_LOGIN).await.checked == Some(false)).then_some(())
    })
    .await;
    // The menu clears its check mark itself on the click; the file follows on the app's thread.
    wait_for("the autostart entry to be removed", || async {
        (!th.autostart_entry().exists()).then_some(())
    })
    .await;

    // 8. Quit while paused: exit 0, the item goes away (the job still waits).
    item.click(QUIT).await;
    assert_eq!(app.wait_exit().await, Some(0), "{}", th.log("tray-1.log"));
    desktop.wait_for_no_item().await;

    // 9. The pause survived the restart, with the same end.
    let mut app = th.launch(&desktop.display, "tray-3.log");
    let item = desktop.wait_for_item().await;
    item.wait_status("paused after restart", |s| s == paused)
        .await;
    wait_icon(&item, IconKind::Paused).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        api.job(&waiting.job_id).await.unwrap().status,
        JobStatus::Queued
    );

    // 10. Resume: the waiting job is taken and done.
    item.click(RESUME).await;
    item.wait_status("connected again", |s| s.starts_with(&connected))
        .await;
    let job = api
        .wait_finished(&waiting.job_id, Duration::from_millis(100), PATIENCE)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert!(th.control()["userPause"].is_null());

    // 11. Quit: graceful, exit 0.
    item.click(QUIT).await;
    assert_eq!(app.wait_exit().await, Some(0), "{}", th.log("tray-3.log"));
    desktop.wait_for_no_item().await;
    let logs = th.agent.logs();
    assert!(logs.contains("tray agent running"), "{logs}");
}

/// Issue 6 in the tray: with a relay URL and code in the managed config, the
/// app enrolls itself with no click, never offers "Enroll this computer…",
/// and says which settings the organization manages on a line of its own.
/// Issue 16: the organisation gave consent, so the app tells instead of
/// asking, and names the organisation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tray_app_enrolls_itself_from_managed_config_and_shows_what_is_managed() {
    use link_peeler::tray::view::IconKind;

    if !desktop_available() || !keychain_or_skip("tray managed-config test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let desktop = Desktop::start(tmp.path()).await;
    let relay = Relay::start(tmp.path(), None).await;
    let th = TrayHome::new(tmp.path());
    let code = enrollment_code(&relay);
    // AgentHome points LINK_PEELER_MANAGED_CONFIG at this file.
    std::fs::write(
        th.agent.dir.join("managed.toml"),
        format!(
            "relay = \"{}\"\nenrollment_code = \"{code}\"\norganization = \"Acme Corp\"\nconsent_given = true\n",
            relay.url()
        ),
    )
    .expect("write managed config");
    let system_autostart = th.system_config().join("autostart");
    std::fs::create_dir_all(&system_autostart).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/installer/linux/link-peeler-autostart.desktop"
        ),
        system_autostart.join("link-peeler.desktop"),
    )
    .expect("the .deb's autostart entry");

    let mut app = th.launch(&desktop.display, "tray-managed.log");
    let item = desktop.wait_for_item().await;
    desktop.window(TITLE_WELCOME).await;
    screenshot(&desktop, "tray-welcome-managed.png", "640x360+0+0").await;
    desktop.key(TITLE_WELCOME, "Return").await;
    assert_eq!(th.state()["consent"]["by"], "organization");
    let connected = format!("Connected to {} · ", relay.addr);
    item.wait_status("connected without a click", |s| s.starts_with(&connected))
        .await;
    wait_icon(&item, IconKind::Idle).await;
    let menu = item.menu().await;
    let labels: Vec<&str> = menu
        .iter()
        .filter(|e| !e.separator && e.visible)
        .map(|e| e.label.as_str())
        .collect();
    assert_eq!(
        labels.get(1).copied(),
        Some("Managed by Acme Corp: relay, enrollment code, consent given"),
        "{labels:?}"
    );
    assert!(
        !menu[1].enabled,
        "the managed line is information, not a button"
    );
    assert!(!labels.contains(&ENROLL), "{labels:?}");
    assert!(item.entry(PAUSE).await.enabled);

    // The .deb's system-wide autostart entry (here in the test's XDG_CONFIG_DIRS) counts as
    // "on"; unchecking writes a per-user Hidden=true override, checking removes it again.
    assert_eq!(item.entry(START_AT_LOGIN).await.checked, Some(true));
    item.click(START_AT_LOGIN).await;
    wait_for("the check mark to clear", || async {
        (item.entry(START_AT_LOGIN).await.checked == Some(false)).then_some(())
    })
    .await;
    // The menu toggles its check mark itself on the click; the file follows on the app's thread.
    let user_entry = wait_for("the per-user override", || async {
        std::fs::read_to_string(th.autostart_entry()).ok()
    })
    .await;
    assert!(user_entry.contains("Hidden=true"), "{user_entry}");
    item.click(START_AT_LOGIN).await;
    wait_for("the check mark again", || async {
        (item.entry(START_AT_LOGIN).await.checked == Some(true)).then_some(())
    })
    .await;
    wait_for("the per-user override to be removed", || async {
        (!th.autostart_entry().exists()).then_some(())
    })
    .await;

    item.click(QUIT).await;
    assert_eq!(
        app.wait_exit().await,
        Some(0),
        "{}",
        th.log("tray-managed.log")
    );
    desktop.wait_for_no_item().await;
    assert!(
        th.agent
            .logs()
            .contains("enrolled from the managed configuration"),
        "{}",
        th.agent.logs()
    );
}

/// A managed code the relay refuses is not the end of the road: the tray says
/// so in plain words and offers "Enroll this computer…" for a code of the
/// user's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_managed_code_leaves_enrolling_by_hand_open() {
    use link_peeler::tray::view::IconKind;

    if !desktop_available() || !keychain_or_skip("tray refused managed code test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let desktop = Desktop::start(tmp.path()).await;
    let relay = Relay::start(tmp.path(), None).await;
    let th = TrayHome::new(tmp.path());
    std::fs::write(
        th.agent.dir.join("managed.toml"),
        format!(
            "relay = \"{}\"\nenrollment_code = \"NOT-A-CODE-THE-RELAY-ISSUED\"\n",
            relay.url()
        ),
    )
    .expect("write managed config");

    let mut app = th.launch(&desktop.display, "tray-refused.log");
    let item = desktop.wait_for_item().await;
    item.wait_status("the refused code", |s| {
        s == "Not enrolled — the code from your admin did not work"
    })
    .await;
    wait_icon(&item, IconKind::Attention).await;
    let enroll = item.entry(ENROLL).await;
    assert!(enroll.enabled && enroll.visible, "{enroll:?}");
    assert!(!item.entry(PAUSE).await.enabled);

    item.click(QUIT).await;
    assert_eq!(
        app.wait_exit().await,
        Some(0),
        "{}",
        th.log("tray-refused.log")
    );
    desktop.wait_for_no_item().await;
}
