//! The real `link-peeler resolve` binary against the lab: exit codes, the
//! table, the JSON shape, and usage errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod lab;

use lab::{Lab, enc};
use link_peeler_wire::protocol::{Conclusion, ResolutionResult};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(args: &[&str]) -> Run {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_link-peeler"))
            .arg("resolve")
            .args(args)
            .env_remove("NO_COLOR")
            .output(),
    )
    .await
    .expect("the binary finished within 60 s")
    .expect("the binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const ALLOW: [&str; 2] = ["--allow-network", "127.0.0.1/32"];

#[tokio::test]
async fn a_resolved_chain_prints_an_aligned_table_and_exits_0() {
    let lab = Lab::start("127.0.0.1").await;
    let url = lab.url("/chain/2");
    let r = run(&[ALLOW[0], ALLOW[1], &url]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("#  STATUS  KIND"), "{}", r.stdout);
    assert!(lines[1].starts_with("1  302     location"), "{}", r.stdout);
    assert!(lines[2].starts_with("2  302     location"), "{}", r.stdout);
    assert!(lines[3].starts_with("3  200"), "{}", r.stdout);
    // The URL column starts at the same place on every row.
    let col = lines[0].find("URL").expect("URL header");
    for (i, line) in lines[1..4].iter().enumerate() {
        assert_eq!(line.find("http://"), Some(col), "row {}: {line}", i + 1);
    }
    assert_eq!(lines[4], "");
    assert!(
        lines[5].starts_with(&format!(
            "resolved  {} (200)  3 hops, 2 redirects, ",
            lab.url("/chain/0")
        )),
        "{}",
        lines[5]
    );
    assert!(
        !r.stdout.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
}

#[tokio::test]
async fn json_output_is_one_spec_line() {
    let lab = Lab::start("127.0.0.1").await;
    let url = lab.url("/status/301?to=/ok");
    let r = run(&["--json", ALLOW[0], ALLOW[1], &url]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("JSON");
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = [
        "conclusion",
        "elapsedMs",
        "error",
        "finalStatus",
        "finalUrl",
        "hops",
        "inputUrl",
        "redirectCount",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want);
    let hop = &v["hops"][0];
    let mut hop_keys: Vec<&str> = hop
        .as_object()
        .expect("hop")
        .keys()
        .map(String::as_str)
        .collect();
    hop_keys.sort_unstable();
    assert_eq!(
        hop_keys,
        [
            "elapsedMs",
            "location",
            "redirectKind",
            "remoteAddr",
            "status",
            "url"
        ]
    );
    assert_eq!(v["hops"][0]["redirectKind"], "location");
    assert_eq!(v["hops"][1]["redirectKind"], serde_json::Value::Null);
    let parsed: ResolutionResult = serde_json::from_value(v).expect("protocol type");
    assert_eq!(parsed.conclusion, Conclusion::Resolved);
    assert_eq!(parsed.input_url, url);
    assert_eq!(parsed.final_url, lab.url("/ok"));
    assert_eq!(parsed.redirect_count, 1);
}

#[tokio::test]
async fn other_conclusions_exit_1() {
    let lab = Lab::start("127.0.0.1").await;
    let cases: Vec<(Vec<String>, Conclusion)> = vec![
        (vec![lab.url("/status/404")], Conclusion::HttpError),
        (vec![lab.url("/a")], Conclusion::RedirectLoop),
        (
            vec!["--max-hops".into(), "2".into(), lab.url("/chain/3")],
            Conclusion::TooManyRedirects,
        ),
        (
            vec!["--user-agent".into(), "curl/8.5".into(), lab.url("/ua")],
            Conclusion::HttpError,
        ),
        (
            vec!["--timeout".into(), "0.5".into(), lab.url("/never")],
            Conclusion::Timeout,
        ),
        (vec!["not a url".into()], Conclusion::InvalidUrl),
        (
            vec!["ftp://example.com/".into()],
            Conclusion::UnsupportedScheme,
        ),
    ];
    for (args, want) in cases {
        let mut full: Vec<&str> = vec!["--json", ALLOW[0], ALLOW[1]];
        full.extend(args.iter().map(String::as_str));
        let r = run(&full).await;
        assert_eq!(r.code, 1, "{args:?}: {}{}", r.stdout, r.stderr);
        let res: ResolutionResult = serde_json::from_str(r.stdout.trim()).expect("JSON");
        assert_eq!(res.conclusion, want, "{args:?}");
    }
}

#[tokio::test]
async fn the_lab_is_refused_without_allow_network() {
    let lab = Lab::start("127.0.0.1").await;
    let r = run(&[&lab.url("/ok")]).await;
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("blocked_address"), "{}", r.stdout);
    assert!(
        r.stdout.contains("error: 127.0.0.1 is loopback"),
        "{}",
        r.stdout
    );
    assert_eq!(lab.connections(), 0);
    // Into a second lab on 127.0.0.2, which --allow-network does not open.
    let other = Lab::start("127.0.0.2").await;
    let via_redirect = lab.url(&format!(
        "/status/302?to={}",
        enc(other.url("/ok").as_bytes())
    ));
    let r = run(&["--json", ALLOW[0], ALLOW[1], &via_redirect]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("\"conclusion\":\"blocked_address\""),
        "{}",
        r.stdout
    );
    assert_eq!(other.connections(), 0);
}

#[tokio::test]
async fn usage_errors_exit_2_with_a_clear_message() {
    for (args, needle) in [
        (vec!["--max-hops", "0", "http://localhost/"], "--max-hops"),
        (vec!["--max-hops", "101", "http://localhost/"], "--max-hops"),
        (
            vec!["--allow-network", "not-a-cidr", "http://localhost/"],
            "CIDR",
        ),
        (
            vec!["--allow-network", "10.0.0.0/33", "http://localhost/"],
            "CIDR",
        ),
        (vec!["--timeout", "0", "http://localhost/"], "timeout"),
        (vec!["--timeout", "soon", "http://localhost/"], "seconds"),
        (vec!["--bogus", "http://localhost/"], "--bogus"),
        (vec![], "URL"),
    ] {
        let r = run(&args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
}
