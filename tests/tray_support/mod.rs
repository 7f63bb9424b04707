//! A throwaway Linux desktop for the tray smoke test: Xvfb, a
//! StatusNotifier watcher, a visible SNI tray bar (so a menu can be opened
//! and photographed), and a D-Bus client that reads and clicks the tray's
//! menu over `com.canonical.dbusmenu` like a panel does.
//!
//! Everything is local: an X server on a private display, the session bus
//! the test runs in (scripts/test starts a private one), loopback sockets.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use zbus::zvariant::{OwnedObjectPath, Structure, Value};

use crate::agent_support::{PATIENCE, Proc, wait_for};

/// The programs the desktop needs, with the Debian package that ships each.
pub const TOOLS: [(&str, &str); 5] = [
    ("Xvfb", "xvfb"),
    (
        "status-notifier-watcher",
        "haskell-status-notifier-item-utils",
    ),
    ("gtk-sni-tray-standalone", "haskell-gtk-sni-tray-utils"),
    ("xdotool", "xdotool"),
    ("import", "imagemagick"),
];

/// Which tools are missing (with their packages).
pub fn missing_tools() -> Vec<String> {
    TOOLS
        .iter()
        .filter(|(bin, _)| {
            !std::process::Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(bin, pkg)| format!("{bin} (apt package {pkg})"))
        .collect()
}

/// A running X server, SNI watcher and tray bar.
pub struct Desktop {
    pub display: String,
    xvfb: Proc,
    watcher: Proc,
    bar: Proc,
    pub bus: zbus::Connection,
    /// Held for the desktop's life (dropped last, after the processes are killed).
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// One desktop at a time in a test binary: the session bus has room for only
/// one `org.kde.StatusNotifierWatcher`.
static ONE_DESKTOP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Desktop {
    pub async fn start(logs: &Path) -> Desktop {
        let turn = ONE_DESKTOP.lock().await;
        // -displayfd: Xvfb picks a free display and prints its number once it accepts clients.
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "800x600x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(log_file(logs, "xvfb.log"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn Xvfb");
        let mut lines = BufReader::new(child.stdout.take().expect("xvfb stdout")).lines();
        let n = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("Xvfb printed its display")
            .expect("read Xvfb")
            .expect("Xvfb display line");
        let display = format!(":{}", n.trim());
        let xvfb = Proc {
            child: Some(child),
            name: "Xvfb".into(),
        };

        let bus = zbus::Connection::session()
            .await
            .expect("a session D-Bus (scripts/test runs the suite in one)");
        // The previous desktop's watcher was killed on drop; wait until it has let go of the name.
        wait_for(
            "the previous StatusNotifierWatcher to leave the bus",
            || async { (!has_owner(&bus, "org.kde.StatusNotifierWatcher").await).then_some(()) },
        )
        .await;
        let watcher = spawn(
            Command::new("status-notifier-watcher"),
            logs,
            "watcher.log",
            "status-notifier-watcher",
        );
        wait_for("the StatusNotifierWatcher on the session bus", || async {
            has_owner(&bus, "org.kde.StatusNotifierWatcher")
                .await
                .then_some(())
        })
        .await;
        let mut bar_cmd = Command::new("gtk-sni-tray-standalone");
        bar_cmd
            .args(["--top", "--beginning", "--size", "32", "--color", "#3c3f41"])
            .env("DISPLAY", &display);
        let bar = spawn(bar_cmd, logs, "bar.log", "gtk-sni-tray-standalone");
        Desktop {
            display,
            xvfb,
            watcher,
            bar,
            bus,
            _turn: turn,
        }
    }

    /// The registered items, as `bus-name/object/path` strings.
    pub async fn items(&self) -> Vec<String> {
        let reply = self
            .bus
            .call_method(
                Some("org.kde.StatusNotifierWatcher"),
                "/StatusNotifierWatcher",
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(
                    "org.kde.StatusNotifierWatcher",
                    "RegisteredStatusNotifierItems",
                ),
            )
            .await;
        let Ok(reply) = reply else { return Vec::new() };
        let body = reply.body();
        let Ok(v) = body.deserialize::<Value>() else {
            return Vec::new();
        };
        let v = unwrap_variant(&v);
        match v {
            Value::Array(a) => a
                .iter()
                .filter_map(|s| match s {
                    Value::Str(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Waits for an item to register and returns a handle on its menu.
    pub async fn wait_for_item(&self) -> TrayItem {
        let entry = wait_for(
            "the tray item to register with the StatusNotifierWatcher",
            || async { self.items().await.into_iter().next() },
        )
        .await;
        // Watchers list `name/path`, or just the bus name (libappindicator
        // registers a path the Haskell watcher does not repeat): then look.
        let (bus_name, path) = match entry.find('/') {
            Some(i) => (entry[..i].to_owned(), entry[i..].to_owned()),
            None => {
                let path = find_item_path(&self.bus, &entry, "/")
                    .await
                    .expect("an object with org.kde.StatusNotifierItem");
                (entry.clone(), path)
            }
        };
        let item = TrayItem {
            bus: self.bus.clone(),
            bus_name,
            path,
            menu_path: String::new(),
        };
        let menu_path = wait_for("the item's Menu property", || async {
            item.property("Menu")
                .await
                .and_then(|v| OwnedObjectPath::try_from(v).ok().map(|p| p.to_string()))
        })
        .await;
        TrayItem { menu_path, ..item }
    }

    /// Waits until no item is registered (the app quit and its item went away).
    pub async fn wait_for_no_item(&self) {
        wait_for("the tray item to unregister", || async {
            self.items().await.is_empty().then_some(())
        })
        .await;
    }

    /// Runs `xdotool ARGS` on this display; returns stdout.
    pub async fn xdotool(&self, args: &[&str]) -> String {
        let out = tokio::time::timeout(
            PATIENCE,
            Command::new("xdotool")
                .args(args)
                .env("DISPLAY", &self.display)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("xdotool {args:?} hung"))
        .expect("run xdotool");
        assert!(
            out.status.success(),
            "xdotool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The id of the first mapped window whose title is exactly `title`.
    pub async fn window(&self, title: &str) -> String {
        let pattern = format!("^{title}$");
        let out = self
            .xdotool(&["search", "--sync", "--onlyvisible", "--name", &pattern])
            .await;
        out.lines().next().expect("a window id").trim().to_owned()
    }

    /// Focuses the dialog titled `title` and types into it.
    pub async fn type_into(&self, title: &str, text: &str) {
        let w = self.window(title).await;
        self.xdotool(&["windowfocus", "--sync", &w]).await;
        self.xdotool(&["type", "--delay", "5", text]).await;
    }

    /// Focuses the window titled `title` and presses `key` (e.g. `Return`).
    pub async fn key(&self, title: &str, key: &str) {
        let w = self.window(title).await;
        self.xdotool(&["windowfocus", "--sync", &w]).await;
        self.xdotool(&["key", key]).await;
    }

    /// Waits until no visible window is titled `title`.
    pub async fn wait_window_gone(&self, title: &str) {
        let pattern = format!("^{title}$");
        wait_for(&format!("the window {title:?} to close"), || async {
            let out = Command::new("xdotool")
                .args(["search", "--onlyvisible", "--name", &pattern])
                .env("DISPLAY", &self.display)
                .output()
                .await
                .ok()?;
            (!out.status.success() || out.stdout.is_empty()).then_some(())
        })
        .await;
    }

    /// Saves the top-left `geometry` (`WxH+0+0`) of the screen as a PNG.
    pub async fn screenshot(&self, to: &Path, geometry: &str) {
        let status = Command::new("import")
            .args(["-window", "root", "-crop", geometry, "+repage"])
            .arg(to)
            .env("DISPLAY", &self.display)
            .status()
            .await
            .expect("run import");
        assert!(status.success(), "import -window root {}", to.display());
    }

    /// Opens the icon's context menu in the tray bar (its only icon, at the
    /// left end) with a right click, pressed and released like a person.
    pub async fn open_tray_menu(&self) {
        self.xdotool(&["mousemove", "--sync", "16", "16"]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.xdotool(&["mousedown", "3"]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.xdotool(&["mouseup", "3"]).await;
    }
}

/// Depth-first search of `name`'s objects for the StatusNotifierItem interface.
async fn find_item_path(bus: &zbus::Connection, name: &str, path: &str) -> Option<String> {
    let xml: String = bus
        .call_method(
            Some(name),
            path,
            Some("org.freedesktop.DBus.Introspectable"),
            "Introspect",
            &(),
        )
        .await
        .ok()?
        .body()
        .deserialize()
        .ok()?;
    if xml.contains("\"org.kde.StatusNotifierItem\"") {
        return Some(path.to_owned());
    }
    for child in xml.split("<node name=\"").skip(1) {
        let Some(end) = child.find('"') else { continue };
        let child_path = if path == "/" {
            format!("/{}", &child[..end])
        } else {
            format!("{path}/{}", &child[..end])
        };
        if let Some(found) = Box::pin(find_item_path(bus, name, &child_path)).await {
            return Some(found);
        }
    }
    None
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(name)).expect("log file")
}

fn spawn(mut cmd: Command, logs: &Path, log: &str, name: &str) -> Proc {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log_file(logs, log))
        .stderr(log_file(logs, &format!("{log}.err")))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    Proc {
        child: Some(child),
        name: name.into(),
    }
}

async fn has_owner(bus: &zbus::Connection, name: &str) -> bool {
    let reply = bus
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "NameHasOwner",
            &(name,),
        )
        .await;
    reply
        .ok()
        .and_then(|r| r.body().deserialize::<bool>().ok())
        .unwrap_or(false)
}

fn unwrap_variant<'a>(v: &'a Value<'a>) -> &'a Value<'a> {
    match v {
        Value::Value(inner) => unwrap_variant(inner),
        other => other,
    }
}

/// One entry of the tray menu, as a panel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuEntry {
    pub id: i32,
    pub label: String,
    pub enabled: bool,
    pub visible: bool,
    pub separator: bool,
    /// `Some(true/false)` for a check item.
    pub checked: Option<bool>,
}

/// The tray item and its dbusmenu.
#[derive(Clone)]
pub struct TrayItem {
    bus: zbus::Connection,
    pub bus_name: String,
    pub path: String,
    pub menu_path: String,
}

impl TrayItem {
    /// A `org.kde.StatusNotifierItem` property.
    pub async fn property(&self, name: &str) -> Option<zbus::zvariant::OwnedValue> {
        let reply = self
            .bus
            .call_method(
                Some(self.bus_name.as_str()),
                self.path.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &("org.kde.StatusNotifierItem", name),
            )
            .await
            .ok()?;
        let body = reply.body();
        let v: Value = body.deserialize().ok()?;
        unwrap_variant(&v).try_to_owned().ok()
    }

    /// `GetLayout(0, -1, [])`: the visible entries in menu order, each
    /// submenu's entries right after it.
    pub async fn menu(&self) -> Vec<MenuEntry> {
        let reply = self
            .bus
            .call_method(
                Some(self.bus_name.as_str()),
                self.menu_path.as_str(),
                Some("com.canonical.dbusmenu"),
                "GetLayout",
                &(0i32, -1i32, Vec::<String>::new()),
            )
            .await;
        let Ok(reply) = reply else { return Vec::new() };
        let body = reply.body();
        let Ok(body) = body.deserialize::<Structure>() else {
            return Vec::new();
        };
        let Some(Value::Structure(root)) = body.fields().get(1) else {
            return Vec::new();
        };
        let Some(Value::Array(children)) = root.fields().get(2) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        flatten(children, &mut out);
        out
    }

    /// The first line of the menu (the disabled status item).
    pub async fn status(&self) -> Option<String> {
        let menu = self.menu().await;
        let first = menu.first()?;
        (!first.enabled).then(|| first.label.clone())
    }

    /// Waits until the status line satisfies `ok`; returns it.
    pub async fn wait_status(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        wait_for(&format!("the status line to show {what}"), || async {
            self.status().await.filter(|s| ok(s))
        })
        .await
    }

    /// The entry labelled `label`, waiting for it to appear.
    pub async fn entry(&self, label: &str) -> MenuEntry {
        wait_for(&format!("the menu item {label:?}"), || async {
            self.menu().await.into_iter().find(|e| e.label == label)
        })
        .await
    }

    /// Clicks the entry labelled `label` the way a panel does (`Event(id, "clicked")`).
    pub async fn click(&self, label: &str) {
        let e = self.entry(label).await;
        assert!(e.enabled, "{label:?} is disabled: {e:?}");
        let timestamp = 0u32;
        self.bus
            .call_method(
                Some(self.bus_name.as_str()),
                self.menu_path.as_str(),
                Some("com.canonical.dbusmenu"),
                "Event",
                &(e.id, "clicked", Value::from(0i32), timestamp),
            )
            .await
            .unwrap_or_else(|err| panic!("click {label:?}: {err}"));
    }
}

/// Visible entries of `children` and, after each, its own visible children.
fn flatten(children: &zbus::zvariant::Array<'_>, out: &mut Vec<MenuEntry>) {
    for c in children.iter() {
        let v = unwrap_variant(c);
        let Some(e) = entry(v).filter(|e| e.visible) else {
            continue;
        };
        out.push(e);
        if let Value::Structure(s) = v
            && let Some(Value::Array(sub)) = s.fields().get(2)
        {
            flatten(sub, out);
        }
    }
}

fn entry(v: &Value<'_>) -> Option<MenuEntry> {
    let Value::Structure(s) = v else { return None };
    let f = s.fields();
    let Value::I32(id) = f.first()? else {
        return None;
    };
    let mut props: HashMap<String, &Value<'_>> = HashMap::new();
    if let Some(Value::Dict(d)) = f.get(1) {
        for (k, v) in d.iter() {
            if let Value::Str(k) = k {
                props.insert(k.to_string(), unwrap_variant(v));
            }
        }
    }
    let string = |k: &str| match props.get(k) {
        Some(Value::Str(s)) => Some(s.to_string()),
        _ => None,
    };
    let flag = |k: &str| match props.get(k) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    };
    let checked = match (string("toggle-type").as_deref(), props.get("toggle-state")) {
        (Some("checkmark"), Some(Value::I32(s))) => Some(*s == 1),
        (Some("checkmark"), _) => Some(false),
        _ => None,
    };
    Some(MenuEntry {
        id: *id,
        // GTK mnemonics arrive as "_"; a panel would hide them.
        label: string("label").unwrap_or_default().replace('_', ""),
        enabled: flag("enabled").unwrap_or(true),
        visible: flag("visible").unwrap_or(true),
        separator: string("type").as_deref() == Some("separator"),
        checked,
    })
}

/// Polls `sample` until two readings `gap` apart are equal; panics after PATIENCE.
pub async fn wait_until_still(what: &str, gap: Duration, sample: impl AsyncFn() -> u64) -> u64 {
    let until = tokio::time::Instant::now() + PATIENCE;
    loop {
        let a = sample().await;
        tokio::time::sleep(gap).await;
        let b = sample().await;
        if a == b {
            return b;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what} never stopped (last {a} → {b})"
        );
    }
}
