//! `link-peeler demo` as a user runs it: one process, no setup, loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod agent_support;

use agent_support::AGENT_BIN;

#[test]
fn demo_resolves_every_scenario_and_prints_tables_and_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(AGENT_BIN)
        .arg("demo")
        // The demo must not need (or touch) any config, data dir or keychain.
        .env("LINK_PEELER_CONFIG", tmp.path().join("absent.toml"))
        .env("LINK_PEELER_DATA_DIR", tmp.path().join("data"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for needle in [
        "1. Ad click through two trackers  ✓ resolved (200) · 3 hops",
        "meta_refresh",
        "javascript",
        "refresh_header",
        "✗ http_error (404)",
        "✗ redirect_loop",
        "form",
        "POST /gate/continue",
        "Summary: 8 jobs (1 http_error, 1 redirect_loop, 6 resolved), 20 hops",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    assert!(stdout.contains("relay  http://127.0.0.1:"), "{stdout}");
    assert!(
        !tmp.path().join("data").exists(),
        "the demo leaves nothing behind"
    );
    let resolved_by = stdout
        .lines()
        .find(|l| l.starts_with("Every job was signed"))
        .expect("closing line");
    assert!(resolved_by.contains("resolved by dev_"), "{resolved_by}");
}
