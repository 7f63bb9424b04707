//! The command-line binary links no GUI library (issue: start-up that
//! matches curl): on Linux `link-peeler` hands the tray to `link-peeler-tray`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failure report
#![cfg(all(target_os = "linux", feature = "tray"))]

use std::path::Path;
use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_link-peeler");
const TRAY: &str = env!("CARGO_BIN_EXE_link-peeler-tray");

fn shared_libraries(bin: &str) -> String {
    let out = Command::new("ldd").arg(bin).output().expect("ldd runs");
    assert!(out.status.success(), "ldd {bin}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_command_line_loads_no_gui_library_and_the_tray_binary_does() {
    let cli = shared_libraries(AGENT);
    for gui in ["libgtk-3", "libgdk-3", "libayatana", "libcairo", "libpango"] {
        assert!(!cli.contains(gui), "link-peeler links {gui}:\n{cli}");
    }
    let tray = shared_libraries(TRAY);
    assert!(tray.contains("libgtk-3"), "link-peeler-tray:\n{tray}");
    assert!(
        cli.lines().count() * 3 < tray.lines().count(),
        "{} vs {} libraries",
        cli.lines().count(),
        tray.lines().count()
    );
}

#[test]
fn without_the_tray_binary_beside_it_the_tray_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("link-peeler");
    std::fs::copy(AGENT, &alone).unwrap();
    let out = Command::new(&alone).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no tray app"), "{err}");
    assert!(err.contains("run --headless"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!Path::new(&dir.path().join("link-peeler-tray")).exists());
}

#[test]
fn every_subcommand_works_in_the_tray_binary_too() {
    let out = Command::new(TRAY).arg("--version").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("link-peeler "));
}
