//! Idle agent benchmark (issue 16, not a test): `cargo bench --bench idle`.
//!
//! What an enrolled `link-peeler run --headless` costs while it has nothing
//! to do, with the Linux detection (metered network, battery) on and off.
//! Real processes on loopback, as deployed: the `link-peeler-relay` binary on
//! 127.0.0.1:0 with no jobs queued, and one agent sitting in its long-poll
//! (credentials from the environment, no keychain).
//!
//! - case A, "detection on": a private `dbus-daemon` plays the system bus
//!   (`DBUS_SYSTEM_BUS_ADDRESS`), with doubles of NetworkManager, UPower and
//!   power-profiles-daemon on it (`crates/agent/tests/support/dbus_doubles.rs`,
//!   shared with the agent's D-Bus test). NetworkManager starts metered, so
//!   the agent starts paused (`meteredNetwork`, the built-in policy); the
//!   bench checks that the relay's devices list says so, flips `Metered` to
//!   "guessed no" and times until the relay lists the agent active again.
//!   Then it is left idle and measured. After the window, `Metered` is
//!   flipped back and the time until the relay lists it paused is printed
//!   (the agent notices between long-polls, not during one).
//! - case B, reference in the same run: the same agent with no system bus
//!   (`DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent`): detection unknown.
//!
//! For each case, after `--warmup` seconds (default 5), the agent process is
//! sampled once a second for `--seconds` (default 30): CPU time from
//! `/proc/<pid>/stat` (utime+stime, clock ticks) and, finer, from each
//! thread's `/proc/<pid>/task/<tid>/schedstat` (nanoseconds on a CPU); RSS
//! and peak RSS (`VmRSS`, `VmHWM`); threads; and context switches
//! (`voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` over all
//! threads): the wake-ups that show whether anything polls. Per-thread
//! counts are followed by thread id, so a thread that exits in the window
//! loses at most its last second. `--rounds N` repeats A then B N times.
//!
//! Linux only (it reads `/proc`); elsewhere it prints so. Without `--bench`
//! (as under `cargo test --all-targets`) it only prints how to run it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

#[cfg(target_os = "linux")]
mod support;

#[cfg(target_os = "linux")]
#[path = "../crates/agent/tests/support/dbus_doubles.rs"]
mod dbus_doubles;

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("idle bench: Linux only (it reads /proc and runs a private D-Bus system bus)");
}

#[cfg(target_os = "linux")]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("idle bench: run with `cargo bench --bench idle -- --seconds 30`");
        return;
    }
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().expect("a whole number"))
            .unwrap_or(default)
    };
    let opts = linux::Opts {
        seconds: flag("--seconds", 30),
        warmup: flag("--warmup", 5),
        rounds: flag("--rounds", 1),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(linux::run(opts));
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use crate::dbus_doubles::{network_manager, power_profiles, private_bus, set_metered, upower};
    use crate::support::{admin, agent_command, cpu_ticks, enroll, rss_kib, start_relay};

    pub struct Opts {
        pub seconds: u64,
        pub warmup: u64,
        pub rounds: u64,
    }

    pub async fn run(opts: Opts) {
        let tmp = tempfile::tempdir().expect("tmp");
        let (mut relay, relay_url, db) = start_relay(tmp.path(), &[]).await;
        let tck = clock_ticks();
        println!(
            "idle bench: window {} s after {} s warm-up, {} round(s); clock ticks {tck}/s; {} cores",
            opts.seconds,
            opts.warmup,
            opts.rounds,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!("load before: {}", loadavg());
        let mut rows = vec![];
        for round in 1..=opts.rounds {
            rows.push(detection_on(tmp.path(), &relay_url, &db, &opts, round).await);
            rows.push(detection_off(tmp.path(), &relay_url, &db, &opts, round).await);
        }
        println!("load after: {}", loadavg());
        println!();
        println!(
            "| case | CPU ms/min (ticks) | CPU ms/min (schedstat) | CPU % | RSS MiB | peak RSS MiB | threads | wakeups/s (vol + invol) |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &rows {
            r.print(tck);
        }
        let _ = relay.kill().await;
    }

    /// Case A: the doubles on a private system bus; the agent reacts to them.
    async fn detection_on(root: &Path, relay_url: &str, db: &Path, opts: &Opts, round: u64) -> Row {
        let (_bus, addr) = private_bus()
            .await
            .expect("dbus-daemon is needed for the detection case");
        let nm = network_manager(&addr, 1).await; // metered
        let _up = upower(&addr, false).await; // on mains
        let _profiles = power_profiles(&addr, "balanced").await;
        let creds = enroll(relay_url, db).await;
        let started = Instant::now();
        let mut agent = agent_command(root, &format!("on-{round}"), relay_url, &creds, 4)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &addr)
            .spawn()
            .expect("agent");
        let pid = agent.id().expect("pid");
        let paused = |s: &State| s.state == "paused" && s.reasons == ["meteredNetwork"];
        // Patience past one long-poll: if the first reading lands after the
        // agent's first poll, the pause shows when that poll ends (≤ 30 s).
        let seen = wait_state(db, &creds.0, Duration::from_secs(45), paused).await;
        println!(
            "A{round}: NetworkManager metered → relay lists the agent {seen} ({:.0} ms after spawn)",
            started.elapsed().as_secs_f64() * 1e3
        );
        let flipped = Instant::now();
        set_metered(&nm, 4).await; // guessed no
        let seen = wait_state(db, &creds.0, Duration::from_secs(30), |s| {
            s.state == "active"
        })
        .await;
        println!(
            "A{round}: Metered → 4 (guessed no) → relay lists the agent {seen} after {:.0} ms",
            flipped.elapsed().as_secs_f64() * 1e3
        );
        let row = measure(
            &format!("A{round}: detection on (D-Bus doubles)"),
            pid,
            opts,
        )
        .await;
        // The other direction, while a long-poll is held: noticed when it ends.
        let flipped = Instant::now();
        set_metered(&nm, 1).await;
        let seen = wait_state(db, &creds.0, Duration::from_secs(60), paused).await;
        println!(
            "A{round}: Metered → 1 (yes) during a held long-poll → relay lists the agent {seen} after {:.1} s",
            flipped.elapsed().as_secs_f64()
        );
        let _ = agent.kill().await;
        row
    }

    /// Case B: no system bus at all; detection reads "unknown".
    async fn detection_off(
        root: &Path,
        relay_url: &str,
        db: &Path,
        opts: &Opts,
        round: u64,
    ) -> Row {
        let creds = enroll(relay_url, db).await;
        let mut agent = agent_command(root, &format!("off-{round}"), relay_url, &creds, 4)
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
            .spawn()
            .expect("agent");
        let pid = agent.id().expect("pid");
        let seen = wait_state(db, &creds.0, Duration::from_secs(30), |s| {
            s.state == "active"
        })
        .await;
        println!("B{round}: no system bus → relay lists the agent {seen}");
        let row = measure(&format!("B{round}: no system bus (reference)"), pid, opts).await;
        let _ = agent.kill().await;
        row
    }

    /// A device's last state report, as the relay's devices list shows it.
    struct State {
        state: String,
        reasons: Vec<String>,
    }

    impl std::fmt::Display for State {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.reasons.is_empty() {
                write!(f, "{}", self.state)
            } else {
                write!(f, "{} ({})", self.state, self.reasons.join(", "))
            }
        }
    }

    fn device_state(db: &Path, device_id: &str) -> Option<State> {
        let list = admin(db, &["devices", "list"]);
        let d = list["devices"]
            .as_array()?
            .iter()
            .find(|d| d["deviceId"].as_str() == Some(device_id))?;
        let r = &d["agentState"];
        Some(State {
            state: r["state"].as_str()?.to_owned(),
            reasons: r["reasons"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Reads the relay's devices list every 50 ms until `want` (panics after `patience`).
    async fn wait_state(
        db: &Path,
        device_id: &str,
        patience: Duration,
        want: impl Fn(&State) -> bool,
    ) -> State {
        let until = Instant::now() + patience;
        loop {
            let s = device_state(db, device_id);
            if let Some(s) = s.filter(&want) {
                return s;
            }
            assert!(
                Instant::now() < until,
                "the relay never listed the wanted state"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One thread's counters.
    #[derive(Clone, Default)]
    struct Task {
        /// The thread's name (`/proc/…/comm`).
        name: String,
        voluntary: u64,
        involuntary: u64,
        run_ns: u64,
    }

    fn tasks(pid: u32) -> HashMap<u32, Task> {
        let mut out = HashMap::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return out;
        };
        for e in dir.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let run_ns = std::fs::read_to_string(e.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            out.insert(
                tid,
                Task {
                    name: std::fs::read_to_string(e.path().join("comm"))
                        .map(|n| n.trim().to_owned())
                        .unwrap_or_default(),
                    voluntary: field("voluntary_ctxt_switches:"),
                    involuntary: field("nonvoluntary_ctxt_switches:"),
                    run_ns,
                },
            );
        }
        out
    }

    struct Row {
        case: String,
        wall: f64,
        ticks: u64,
        run_ns: u64,
        voluntary: u64,
        involuntary: u64,
        rss_kib: u64,
        hwm_kib: u64,
        threads: (usize, usize),
    }

    impl Row {
        fn print(&self, tck: f64) {
            let per_min = 60.0 / self.wall;
            let tick_ms = self.ticks as f64 / tck * 1e3;
            let sched_ms = self.run_ns as f64 / 1e6;
            let threads = if self.threads.0 == self.threads.1 {
                self.threads.0.to_string()
            } else {
                format!("{}–{}", self.threads.0, self.threads.1)
            };
            println!(
                "| {} | {:.0} ({} ticks in {:.0} s) | {:.2} | {:.4} | {:.1} | {:.1} | {} | {:.2} ({:.2} + {:.2}) |",
                self.case,
                tick_ms * per_min,
                self.ticks,
                self.wall,
                sched_ms * per_min,
                sched_ms / 1e3 / self.wall * 100.0,
                self.rss_kib as f64 / 1024.0,
                self.hwm_kib as f64 / 1024.0,
                threads,
                (self.voluntary + self.involuntary) as f64 / self.wall,
                self.voluntary as f64 / self.wall,
                self.involuntary as f64 / self.wall,
            );
        }
    }

    /// Warm-up, then one sample a second over the window.
    async fn measure(case: &str, pid: u32, opts: &Opts) -> Row {
        tokio::time::sleep(Duration::from_secs(opts.warmup)).await;
        let first = tasks(pid);
        let ticks0 = cpu_ticks(pid);
        let t0 = Instant::now();
        let mut last = first.clone();
        let (mut tmin, mut tmax) = (first.len(), first.len());
        let end = t0 + Duration::from_secs(opts.seconds);
        let mut next = t0;
        while next < end {
            next = (next + Duration::from_secs(1)).min(end);
            tokio::time::sleep_until(next.into()).await;
            let now = tasks(pid);
            tmin = tmin.min(now.len());
            tmax = tmax.max(now.len());
            last.extend(now); // a thread that exited keeps its last reading
        }
        let wall = t0.elapsed().as_secs_f64();
        let ticks = cpu_ticks(pid).saturating_sub(ticks0);
        let (rss_kib, hwm_kib) = rss_kib(pid);
        let mut row = Row {
            case: case.to_owned(),
            wall,
            ticks,
            run_ns: 0,
            voluntary: 0,
            involuntary: 0,
            rss_kib,
            hwm_kib,
            threads: (tmin, tmax),
        };
        // Context switches by thread name: where the wake-ups come from.
        let mut by_name: Vec<(String, u64)> = vec![];
        for (tid, end) in &last {
            let start = first.get(tid).cloned().unwrap_or_default();
            let v = end.voluntary.saturating_sub(start.voluntary);
            let i = end.involuntary.saturating_sub(start.involuntary);
            row.run_ns += end.run_ns.saturating_sub(start.run_ns);
            row.voluntary += v;
            row.involuntary += i;
            match by_name.iter_mut().find(|(n, _)| *n == end.name) {
                Some((_, c)) => *c += v + i,
                None => by_name.push((end.name.clone(), v + i)),
            }
        }
        by_name.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let by_name: Vec<String> = by_name.iter().map(|(n, c)| format!("{n} {c}")).collect();
        println!(
            "{case}: {ticks} ticks, {:.2} ms on CPU, {} + {} context switches in {wall:.1} s; load {}",
            row.run_ns as f64 / 1e6,
            row.voluntary,
            row.involuntary,
            loadavg()
        );
        println!("  context switches by thread: {}", by_name.join(", "));
        row
    }

    /// `sysconf(_SC_CLK_TCK)` as `getconf CLK_TCK` reports it; 100 (what
    /// `support::clock_ticks` assumes) if that cannot be run.
    fn clock_ticks() -> f64 {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(crate::support::clock_ticks)
    }

    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }
}
