//! Throwaway PostgreSQL clusters for the relay's tests, from Debian's
//! `postgresql` package (`scripts/deps postgres`).
//!
//! A cluster is `initdb` into a temp dir and `postgres` listening only on a
//! unix socket in that dir (no TCP port at all: nothing to collide with,
//! nothing reachable from outside). PostgreSQL refuses to run as root, and
//! CI runs tests as root, so there every `initdb`/`pg_ctl` runs as `nobody`
//! through `runuser` (util-linux), with the dir handed to `nobody`.
//!
//! `fsync=off` in test clusters: the tests check what relays do, not the
//! disk (durability across a *server* restart still holds: a fast shutdown
//! writes everything out). The benchmark's cluster (`scripts/bench-postgres`)
//! keeps PostgreSQL's durable defaults.
//!
//! A watchdog (`sh`) outlives the test process if need be and stops the
//! cluster and removes its dir once that process is gone, so a panicking or
//! killed test binary leaves no server behind. Clusters owned by a test are
//! also stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `LINK_PEELER_TEST_STORE=postgres` runs the relay's contract tests on
/// PostgreSQL instead of SQLite.
pub fn selected() -> bool {
    std::env::var("LINK_PEELER_TEST_STORE").is_ok_and(|v| v.eq_ignore_ascii_case("postgres"))
}

/// One cluster per test process, shared by the contract tests (each gets a
/// database of its own).
pub fn shared() -> &'static PgCluster {
    static SHARED: OnceLock<PgCluster> = OnceLock::new();
    SHARED.get_or_init(PgCluster::start)
}

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `Some("nobody")` when the tests run as root.
    run_as: Option<&'static str>,
    next_db: AtomicUsize,
}

impl PgCluster {
    /// `initdb` and start a fresh cluster; panics with a hint if the
    /// PostgreSQL server binaries are missing.
    pub fn start() -> PgCluster {
        let bin = server_bin_dir();
        let dir = tempfile::Builder::new().prefix("lp-pg").tempdir().unwrap();
        let root = is_root();
        let run_as = root.then_some("nobody");
        if root {
            let ok = Command::new("chown")
                .args(["nobody:", dir.path().to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "cannot hand {} to nobody", dir.path().display());
        }
        let cluster = PgCluster {
            dir,
            bin,
            run_as,
            next_db: AtomicUsize::new(0),
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                cluster.data().to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        let conf = format!(
            "listen_addresses = ''\nunix_socket_directories = '{}'\nmax_connections = 400\nfsync = off\nfull_page_writes = off\nshared_buffers = 32MB\n",
            cluster.socket_dir().display()
        );
        let path = cluster.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
        cluster.start_server();
        cluster.watchdog();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The unix socket lives here (the cluster's temp dir).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of database `name`, over the private socket.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@localhost/{name}?host={}",
            self.socket_dir().display()
        )
    }

    /// Creates a fresh, empty database and returns its URL.
    pub fn create_database(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", self.socket_dir().to_str().unwrap(), "-U", "postgres"])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "CREATE DATABASE {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// Starts the server (again, after [`PgCluster::stop`]).
    pub fn start_server(&self) {
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Stops the server (`fast`: clients are disconnected at once, what was
    /// committed is written out).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-w",
                "-m",
                "fast",
                "stop",
            ],
        );
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the cluster and removes its dir once this process has exited,
    /// however it exited.
    fn watchdog(&self) {
        let stop = format!(
            "{} {} -D {} -m immediate stop",
            self.run_as
                .map_or(String::new(), |u| format!("runuser -u {u} --")),
            self.bin.join("pg_ctl").display(),
            self.data().display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.path().display()
        );
        // Never waited for on purpose: it must outlive this process.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `LINK_PEELER_PG_BIN`, or the newest `/usr/lib/postgresql/*/bin`.
fn server_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LINK_PEELER_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server found in /usr/lib/postgresql/*/bin: run `scripts/deps postgres` \
             (Debian's postgresql package) or set LINK_PEELER_PG_BIN"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
