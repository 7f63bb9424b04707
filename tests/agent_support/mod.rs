//! Shared harness for the agent tests: real relay and agent processes, the
//! built-in loopback lab, a counting TCP proxy, and waits that fail loudly
//! instead of hanging. Everything binds or connects to 127.0.0.1 only.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use link_peeler_agent::client::RelayClient;
use link_peeler_wire::api::ApiClient;
use link_peeler_wire::protocol::EnrollRequest;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_link-peeler");
/// The relay binary. It belongs to the `link-peeler-relay` crate, so Cargo
/// sets no `CARGO_BIN_EXE_` for it here; it is built into the same directory
/// as `link-peeler` (`cargo test` in the workspace root builds both).
pub fn relay_bin() -> std::path::PathBuf {
    let name = format!("link-peeler-relay{}", std::env::consts::EXE_SUFFIX);
    std::path::Path::new(AGENT_BIN).with_file_name(name)
}

/// Upper bound for any wait: a failing test fails instead of hanging. Not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after [`PATIENCE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > until {
            panic!("gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed (SIGKILL) when dropped, so a failed test leaves nothing running.
pub struct Proc {
    pub child: Option<Child>,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).unwrap_or(0)
    }

    /// `kill -9`.
    pub async fn kill9(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill().await;
        }
        self.child = None;
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {}", self.name);
    }

    /// Waits for the process to exit and returns its code (`None` when killed by a signal).
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let child = self.child.as_mut().expect("process still owned");
        let status = tokio::time::timeout(PATIENCE, child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit", self.name))
            .expect("wait");
        self.child = None;
        status.code()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

/// A relay process on 127.0.0.1 with its database in `dir`.
pub struct Relay {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub db: PathBuf,
}

impl Relay {
    /// `link-peeler-relay serve --db DIR/relay.db --listen 127.0.0.1:0 --ops-listen 127.0.0.1:0
    /// --json [--lease-seconds N]`.
    pub async fn start(dir: &Path, lease_seconds: Option<u64>) -> Relay {
        Relay::start_with_args(dir, lease_seconds, &[]).await
    }

    /// [`Relay::start`] with more `serve` flags, e.g. `--webhook-allow-network 127.0.0.1/32`.
    pub async fn start_with_args(dir: &Path, lease_seconds: Option<u64>, extra: &[&str]) -> Relay {
        let db = dir.join("relay.db");
        let mut cmd = Command::new(relay_bin());
        cmd.args(["serve", "--db"]).arg(&db).args([
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
            "--json",
        ]);
        if let Some(s) = lease_seconds {
            cmd.args(["--lease-seconds", &s.to_string()]);
        }
        cmd.args(extra);
        let log = std::fs::File::create(dir.join("relay.stderr")).expect("relay log");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn relay");
        let stdout = child.stdout.take().expect("relay stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("relay printed its address")
            .expect("read relay stdout")
            .expect("relay stdout line");
        let v: serde_json::Value = serde_json::from_str(&first).expect("relay --json line");
        let addr: SocketAddr = v["listen"].as_str().expect("listen").parse().expect("addr");
        assert!(addr.ip().is_loopback());
        let ops = v["ops"].as_str().expect("ops").to_owned();
        ops_listeners()
            .lock()
            .expect("ops listeners")
            .insert(format!("http://{addr}"), format!("http://{ops}"));
        // Keep draining stdout so the relay never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Relay {
            proc: Proc {
                child: Some(child),
                name: "relay".into(),
            },
            addr,
            db,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Runs `link-peeler-relay --db DB ARGS --json` and parses its one-line answer.
pub fn relay_admin(db: &Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(relay_bin())
        .arg("--db")
        .arg(db)
        .args(args)
        .arg("--json")
        .output()
        .expect("run relay admin");
    assert!(
        out.status.success(),
        "relay {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("admin json")
}

/// A new API key (id, secret) with limits high enough for any test.
pub fn api_key(relay: &Relay) -> (String, String) {
    let key = relay_admin(
        &relay.db,
        &[
            "keys",
            "create",
            "--name",
            "test",
            "--max-queued",
            "100000",
            "--daily-limit",
            "1000000",
        ],
    );
    (
        key["keyId"].as_str().expect("keyId").to_owned(),
        key["secret"].as_str().expect("secret").to_owned(),
    )
}

/// An [`ApiClient`] with a new API key.
pub fn api_client(relay: &Relay) -> ApiClient {
    let (id, secret) = api_key(relay);
    ApiClient::new(&relay.url(), &id, &secret).expect("api client")
}

/// A fresh one-time enrollment code.
pub fn enrollment_code(relay: &Relay) -> String {
    relay_admin(&relay.db, &["devices", "enroll", "--name", "test-agent"])["code"]
        .as_str()
        .expect("code")
        .to_owned()
}

/// Enrolls over HTTP (as `link-peeler enroll` does) and returns (device id, secret).
pub async fn enroll_http(relay: &Relay) -> (String, String) {
    let code = enrollment_code(relay);
    let client = RelayClient::new(
        link_peeler_agent::config::relay_url(&relay.url()).expect("url"),
        None,
    )
    .expect("client");
    let r = client
        .enroll(&EnrollRequest {
            code,
            name: Some("test-agent".into()),
            platform: Some("linux".into()),
            version: Some("test".into()),
        })
        .await
        .expect("enroll");
    (r.device_id, r.device_secret)
}

/// Where one agent keeps its config, data and logs.
pub struct AgentHome {
    pub dir: PathBuf,
    pub profile: String,
}

impl AgentHome {
    pub fn new(root: &Path, name: &str) -> AgentHome {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("agent home");
        AgentHome {
            dir,
            profile: format!("test-{}-{}", name, uuid::Uuid::new_v4().simple()),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// A `link-peeler` command isolated to this home (config, data dir, keychain profile).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(AGENT_BIN);
        cmd.args(args)
            .env("LINK_PEELER_CONFIG", self.config_path())
            .env("LINK_PEELER_DATA_DIR", self.data_dir())
            .env("LINK_PEELER_PROFILE", &self.profile)
            // Never the machine's /etc/link-peeler/config.toml (or registry, or managed prefs).
            .env("LINK_PEELER_MANAGED_CONFIG", self.dir.join("managed.toml"))
            .env_remove("LINK_PEELER_DEVICE_ID")
            .env_remove("LINK_PEELER_DEVICE_SECRET")
            .env_remove("LINK_PEELER_TEST_CLOCK_SKEW_SECS")
            .env_remove("LINK_PEELER_LOG")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("all_proxy")
            .kill_on_drop(true);
        cmd
    }

    /// Runs a short command to completion: (exit code, stdout, stderr).
    pub async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(PATIENCE, cmd.stdin(Stdio::null()).output())
            .await
            .unwrap_or_else(|_| panic!("link-peeler {args:?} did not finish"))
            .expect("run link-peeler");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `link-peeler run --headless --allow-network 127.0.0.0/8 EXTRA` in the background,
    /// stderr appended to `agent.stderr` in this home.
    pub fn spawn_agent(&self, extra: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut args = vec!["run", "--headless", "--allow-network", "127.0.0.0/8"];
        args.extend_from_slice(extra);
        let mut cmd = self.command(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("agent stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        Proc {
            child: Some(child),
            name: "agent".into(),
        }
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.dir.join("agent.stderr")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// All rolling log files' contents.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(rd) = std::fs::read_dir(self.data_dir().join("logs")) {
            for e in rd.flatten() {
                all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        all
    }

    /// Number of results parked in the outbox.
    pub fn outbox_len(&self) -> usize {
        std::fs::read_dir(self.data_dir().join("outbox"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.ends_with(".json") && !n.starts_with('.')
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Environment that hands the agent its credentials without a keychain.
pub fn env_creds<'a>(device_id: &'a str, secret: &'a str) -> [(&'static str, &'a str); 2] {
    [
        ("LINK_PEELER_DEVICE_ID", device_id),
        ("LINK_PEELER_DEVICE_SECRET", secret),
    ]
}

/// A TCP forwarder on 127.0.0.1 that counts accepted connections. The upstream can be
/// switched (a restarted relay gets a new port); while the upstream is down, each
/// accepted connection is closed at once, which the agent sees as a failed request.
pub struct CountingProxy {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    upstream: Arc<std::sync::Mutex<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    pub async fn start(upstream: SocketAddr) -> CountingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let upstream = Arc::new(std::sync::Mutex::new(upstream));
        let (acc, up) = (accepted.clone(), upstream.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let target = *up.lock().expect("upstream");
                assert!(target.ip().is_loopback());
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        CountingProxy {
            addr,
            accepted,
            upstream,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn set_upstream(&self, to: SocketAddr) {
        *self.upstream.lock().expect("upstream") = to;
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port with nothing listening (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Whether a Secret Service answers; when none does, CI (or `LINK_PEELER_REQUIRE_KEYCHAIN=1`,
/// set by scripts/test) fails the test, while a developer without one gets a skip notice.
pub fn keychain_or_skip(test: &str) -> bool {
    match link_peeler_agent::credentials::Keychain::open(Some("probe"))
        .and_then(|k| k.load().map(|_| ()))
    {
        Ok(()) => true,
        Err(e) => {
            let required = std::env::var("LINK_PEELER_REQUIRE_KEYCHAIN").is_ok_and(|v| v == "1")
                || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            if required {
                panic!(
                    "{test}: no Secret Service reachable ({e}); run the tests with scripts/test"
                );
            }
            eprintln!(
                "SKIPPED {test}: no Secret Service reachable ({e}); scripts/test provides one"
            );
            false
        }
    }
}

/// The operations listener (`/metrics`) of each relay [`Relay::start`] started, by relay URL.
fn ops_listeners() -> &'static std::sync::Mutex<std::collections::HashMap<String, String>> {
    static OPS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
        std::sync::OnceLock::new();
    OPS.get_or_init(Default::default)
}

/// How many requests the relay at `relay_url` has answered on `route` (from
/// `/metrics`, which the relay serves on its operations listener).
pub async fn relay_requests(relay_url: &str, route: &str) -> u64 {
    link_peeler_wire::tls::init();
    let ops = ops_listeners()
        .lock()
        .expect("ops listeners")
        .get(relay_url.trim_end_matches('/'))
        .cloned()
        .unwrap_or_else(|| panic!("{relay_url} was not started by Relay::start"));
    let body = reqwest::get(format!("{ops}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    body.lines()
        .filter(|l| {
            l.starts_with("relay_http_requests_total{") && l.contains(&format!("route=\"{route}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
