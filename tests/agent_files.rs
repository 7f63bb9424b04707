//! The agent's files are private (issue 12): run as a real process under
//! `umask 022` — the usual umask, which makes new files 0644 and directories
//! 0755 — the agent leaves its data dir, outbox, logs and lock 0700/0600, and
//! it tightens what an older version left readable when it starts.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod agent_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agent_support::*;
use link_peeler::demo::lab::Lab;
use link_peeler_wire::protocol::JobStatus;

/// `link-peeler run --headless --allow-network 127.0.0.0/8` started by
/// `sh -c 'umask 022; exec link-peeler …'`, isolated to `home` as
/// [`AgentHome::command`] isolates it.
fn spawn_agent_umask_022(home: &AgentHome, env: &[(&str, &str)]) -> Proc {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(AGENT_BIN)
        .args(["run", "--headless", "--allow-network", "127.0.0.0/8"])
        .env("LINK_PEELER_CONFIG", home.config_path())
        .env("LINK_PEELER_DATA_DIR", home.data_dir())
        .env("LINK_PEELER_PROFILE", &home.profile)
        .env("LINK_PEELER_MANAGED_CONFIG", home.dir.join("managed.toml"))
        .env_remove("LINK_PEELER_TEST_CLOCK_SKEW_SECS")
        .env_remove("LINK_PEELER_LOG")
        .kill_on_drop(true);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.stderr_path())
        .unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn sh");
    Proc {
        child: Some(child),
        name: "agent (umask 022)".into(),
    }
}

/// Every directory and file under `dir` (itself included) with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let meta = std::fs::symlink_metadata(&d).unwrap();
        out.push((d.clone(), true, meta.permissions().mode() & 0o777));
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                todo.push(e.path());
            } else {
                out.push((e.path(), false, meta.permissions().mode() & 0o777));
            }
        }
    }
    out
}

/// Asserts every directory under `dir` is 0700 and every file 0600.
fn assert_all_private(dir: &Path) -> Vec<String> {
    let found = modes(dir);
    let wrong: Vec<_> = found
        .iter()
        .filter(|(_, is_dir, mode)| *mode != if *is_dir { 0o700 } else { 0o600 })
        .map(|(p, _, mode)| format!("{} {mode:o}", p.display()))
        .collect();
    assert!(wrong.is_empty(), "not private: {wrong:?}");
    found
        .iter()
        .map(|(p, _, _)| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_agent_under_umask_022_keeps_every_file_private() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(tmp.path(), None).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!(
        "relay = \"{}\"\npoll_wait_seconds = 2\n",
        relay.url()
    ));
    assert!(!home.data_dir().exists(), "the agent creates the data dir");
    let mut agent = spawn_agent_umask_022(&home, &env_creds(&device, &secret));

    // One job delivered (logs, outbox written and emptied)…
    let job = api
        .submit("files-1", &lab.url("/ad/click?id=1"), None)
        .await
        .unwrap();
    let job = api
        .wait_finished(&job.job_id, Duration::from_millis(50), PATIENCE)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    // …and one result parked in the outbox: the relay goes away while it is resolved.
    let path = "/slow/1500";
    api.submit("files-2", &lab.url(path), None).await.unwrap();
    wait_for("the agent to start resolving", || async {
        (lab.hits(path) > 0).then_some(())
    })
    .await;
    relay.proc.kill9().await;
    wait_for("the result to be parked in the outbox", || async {
        (home.outbox_len() == 1).then_some(())
    })
    .await;
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0), "{}", home.stderr());

    let names = assert_all_private(&home.data_dir());
    for expected in ["", "agent.lock", "logs", "outbox"] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("logs/agent.") && n.ends_with(".log")),
        "a log file was written: {names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("outbox/") && n.ends_with(".json")),
        "a result is parked: {names:?}"
    );
    assert!(home.logs().contains("agent started"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_an_older_version_left_readable_are_tightened_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "old");
    home.write_config(&format!(
        "relay = \"{}\"\npoll_wait_seconds = 2\n",
        relay.url()
    ));
    // What an older version left behind under umask 022.
    let data = home.data_dir();
    for d in ["", "outbox", "outbox/rejected", "logs"] {
        std::fs::create_dir_all(data.join(d)).unwrap();
    }
    let state = "{\"paused\":false,\"links\":{\"day\":\"2025-01-01\",\"count\":3}}\n";
    let old_files = [
        ("state.json", state),
        ("managed-enrollment.json", "{\"attempts\":{}}\n"),
        ("agent.lock", "12345\n"),
        ("outbox/broken.json", "{not json"),
        ("outbox/rejected/job_old.json", "{}"),
        ("logs/agent.2025-01-01.log", "old log line\n"),
    ];
    for (name, text) in old_files {
        std::fs::write(data.join(name), text).unwrap();
        std::fs::set_permissions(data.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    for d in ["", "outbox", "outbox/rejected", "logs"] {
        std::fs::set_permissions(data.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let mut agent = spawn_agent_umask_022(&home, &env_creds(&device, &secret));
    wait_for("the agent to set the unreadable result aside", || async {
        data.join("outbox/corrupt/broken.json")
            .exists()
            .then_some(())
    })
    .await;
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0), "{}", home.stderr());

    let names = assert_all_private(&data);
    assert!(
        names.iter().any(|n| n == "outbox/corrupt/broken.json"),
        "the unreadable result was set aside, private: {names:?}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("state.json")).unwrap(),
        state,
        "tightened, not rewritten"
    );
    assert!(data.join("logs/agent.2025-01-01.log").exists());
}
