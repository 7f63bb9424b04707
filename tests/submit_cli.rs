//! `link-peeler submit --wait` and `submit --csv` as a scheduled worker runs
//! them: real relay and agent processes, the loopback lab, real files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod agent_support;

use std::path::Path;
use std::process::Stdio;

use agent_support::*;
use link_peeler::demo::lab::Lab;
use link_peeler_wire::api::ApiClient;

const SECRET_VAR: &str = "LP_TEST_API_SECRET";

/// `link-peeler submit --relay URL --key ID --secret-env VAR ARGS`: (exit code, stdout, stderr).
async fn submit(relay: &str, key: &(String, String), args: &[&str]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(AGENT_BIN);
    cmd.args([
        "submit",
        "--relay",
        relay,
        "--key",
        &key.0,
        "--secret-env",
        SECRET_VAR,
    ])
    .args(args)
    .env(SECRET_VAR, &key.1)
    .env_remove("NO_COLOR")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("submit {args:?} did not finish"))
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A relay, an enrolled agent allowed onto loopback, and the lab.
struct World {
    _tmp: tempfile::TempDir,
    relay: Relay,
    lab: Lab,
    _agent: Proc,
    key: (String, String),
}

async fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let lab = Lab::start().await.unwrap();
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "agent");
    home.write_config(&format!("relay = \"{}\"\n", relay.url()));
    let agent = home.spawn_agent(&[], &env_creds(&device, &secret));
    let key = api_key(&relay);
    World {
        _tmp: tmp,
        relay,
        lab,
        _agent: agent,
        key,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_prints_the_hop_table_as_resolve_does() {
    let w = world().await;
    let url = w.lab.url("/ad/click?id=7");
    let landing = w.lab.url("/landing/spring-sale?utm_source=demo&c=7");
    let (code, out, err) = submit(
        &w.relay.url(),
        &w.key,
        &["--url", &url, "--idempotency-key", "wait-1", "--wait"],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("#  STATUS  KIND"), "{out}");
    assert!(lines[0].ends_with("  URL"), "{out}");
    assert!(lines[1].starts_with("1  302"), "{out}");
    assert!(lines[1].ends_with(&url), "{out}");
    assert!(lines[3].ends_with(&landing), "{out}");
    assert!(
        out.contains(&format!("resolved  {landing} (200)  3 hops, 2 redirects, ")),
        "{out}"
    );
    assert!(
        !out.contains('\x1b'),
        "no colour when stdout is not a terminal: {out}"
    );
    assert!(err.contains("done"), "{err}");

    // The same submission again: replayed, already done, the same table.
    let (code, again, err) = submit(
        &w.relay.url(),
        &w.key,
        &["--url", &url, "--idempotency-key", "wait-1", "--wait"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("idempotent replay"), "{err}");
    assert_eq!(again, out, "a replayed job prints the stored result");

    // A link that does not resolve: the table still, and exit 1 (as `resolve`).
    let gone = w.lab.url("/gone");
    let (code, out, err) = submit(
        &w.relay.url(),
        &w.key,
        &["--url", &gone, "--idempotency-key", "wait-2", "--wait"],
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains(&format!("http_error  {gone} (404)  1 hop, 0 redirects")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_gives_up_after_the_timeout_when_no_agent_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let key = api_key(&relay);
    let (code, out, err) = submit(
        &relay.url(),
        &key,
        &[
            "--url",
            "https://trk.example/a1",
            "--idempotency-key",
            "lonely",
            "--wait",
            "--wait-timeout",
            "1",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("not finished after 1 s"), "{err}");
}

/// Every new flag refuses a bad value or a bad combination as a usage error
/// (exit 2), before any request: the relay here is a closed port.
#[tokio::test]
async fn new_flags_refuse_bad_values_and_combinations() {
    let relay = format!("http://127.0.0.1:{}", closed_port());
    let key = (
        "lp_test_000000000000000000000000".to_owned(),
        "s".to_owned(),
    );
    let one = ["--url", "https://a.test/", "--idempotency-key", "k"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [&one[..], &["--wait", "--wait-timeout", "0"]].concat(),
            "--wait-timeout",
        ),
        (
            [&one[..], &["--wait", "--wait-timeout", "86401"]].concat(),
            "--wait-timeout",
        ),
        (
            [&one[..], &["--wait", "--wait-timeout", "soon"]].concat(),
            "--wait-timeout",
        ),
        (
            [&one[..], &["--wait-timeout", "5"]].concat(),
            "--wait-timeout",
        ),
        (vec!["--csv", "rows.csv", "--wait"], "--wait"),
        ([&one[..], &["--csv", "rows.csv"]].concat(), "--csv"),
        (vec!["--csv", "rows.csv", "--row-id", "1"], "--row-id"),
        // --out, --overwrite and --run-date are for --csv only.
        ([&one[..], &["--out", "r.csv"]].concat(), "--out"),
        ([&one[..], &["--overwrite"]].concat(), "--overwrite"),
        (
            [&one[..], &["--run-date", "2026-12-02"]].concat(),
            "--run-date",
        ),
        (vec!["--out", "r.csv"], "--csv"),
        (
            vec!["--csv", "rows.csv", "--run-date", "2026-13-01"],
            "YYYY-MM-DD",
        ),
        (
            vec!["--csv", "rows.csv", "--run-date", "02/12/2026"],
            "YYYY-MM-DD",
        ),
        (vec![], "--url"),
        (vec!["--url", "https://a.test/"], "--idempotency-key"),
    ];
    for (args, says) in cases {
        let (code, out, err) = submit(&relay, &key, &args).await;
        assert_eq!(code, 2, "{args:?}: {out}\n{err}");
        assert!(err.contains(says), "{args:?} should mention {says}: {err}");
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The results file as rows of cells, header first.
fn results(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap();
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_run_submits_in_batches_follows_the_feed_and_a_rerun_changes_nothing() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("url,rowId,source\n");
    for i in 0..6 {
        text.push_str(&format!(
            "{},{i},sheet\n",
            w.lab.url(&format!("/ad/click?id={i}"))
        ));
    }
    text.push_str(&format!("{},six,\n", w.lab.url("/gone")));
    let rows = write(dir.path(), "offers.csv", &text);
    let rows_arg = rows.to_str().unwrap();
    let day = ["--run-date", "2026-12-02"];

    let (code, out, err) = submit(
        &w.relay.url(),
        &w.key,
        &[&["--csv", rows_arg][..], &day].concat(),
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.is_empty(), "results go to the file: {out}");
    assert!(err.contains("7 rows: 7 done"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "no progress bar when stderr is not a terminal: {err}"
    );
    let out_path = dir.path().join("offers.results.csv");
    let first = std::fs::read(&out_path).unwrap();
    let table = results(&out_path);
    assert_eq!(
        table[0],
        [
            "rowId",
            "inputUrl",
            "finalUrl",
            "conclusion",
            "finalStatus",
            "redirectCount",
            "hops",
            "jobId",
            "status",
            "idempotencyKey",
            "error"
        ]
    );
    assert_eq!(table.len(), 8);
    for (i, line) in table[1..7].iter().enumerate() {
        assert_eq!(line[0], i.to_string());
        assert_eq!(line[1], w.lab.url(&format!("/ad/click?id={i}")));
        assert_eq!(
            line[2],
            w.lab
                .url(&format!("/landing/spring-sale?utm_source=demo&c={i}"))
        );
        assert_eq!(line[3..6], ["resolved", "200", "2"]);
        let hops: serde_json::Value = serde_json::from_str(&line[6]).unwrap();
        assert_eq!(hops.as_array().unwrap().len(), 3, "{hops}");
        assert_eq!(hops[0]["url"], line[1].as_str());
        assert!(line[7].starts_with("job_"), "{line:?}");
        assert_eq!(line[8], "done");
        assert_eq!(line[9], format!("2026-12-02/row-{i}"));
        assert_eq!(line[10], "");
    }
    assert_eq!(table[7][0], "six");
    assert_eq!(table[7][3..6], ["http_error", "404", "0"]);
    assert_eq!(table[7][8], "done", "an http_error is a finished job");

    // The jobs are on the relay under the derived keys, with source and rowId.
    let api = ApiClient::new(&w.relay.url(), &w.key.0, &w.key.1).unwrap();
    let listed = api.list_jobs(&[("limit", "500")]).await.unwrap();
    assert_eq!(listed.jobs.len(), 7);
    let job = api.job(&table[1][7]).await.unwrap();
    assert_eq!(job.idempotency_key, "2026-12-02/row-0");
    assert_eq!(job.source.as_deref(), Some("sheet"));
    assert_eq!(job.row_id.as_deref(), Some("0"));

    // Without --overwrite the finished file is kept and nothing is sent.
    let (code, _, err) = submit(
        &w.relay.url(),
        &w.key,
        &[&["--csv", rows_arg][..], &day].concat(),
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exists; pass --overwrite"), "{err}");
    assert_eq!(std::fs::read(&out_path).unwrap(), first);

    // The same file the same day: no new job, the same bytes.
    let (code, _, err) = submit(
        &w.relay.url(),
        &w.key,
        &[&["--csv", rows_arg, "--overwrite"][..], &day].concat(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        String::from_utf8(std::fs::read(&out_path).unwrap()).unwrap(),
        String::from_utf8(first).unwrap()
    );
    let listed = api.list_jobs(&[("limit", "500")]).await.unwrap();
    assert_eq!(listed.jobs.len(), 7, "a re-run creates no job");

    // Another day: new keys, new jobs, into another file.
    let next = dir.path().join("next.csv");
    let (code, _, err) = submit(
        &w.relay.url(),
        &w.key,
        &[
            "--csv",
            rows_arg,
            "--run-date",
            "2026-12-03",
            "--out",
            next.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let table = results(&next);
    assert_eq!(table[1][9], "2026-12-03/row-0");
    let listed = api.list_jobs(&[("limit", "500")]).await.unwrap();
    assert_eq!(listed.jobs.len(), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_invalid_refused_or_in_conflict_are_reported_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    // Room for three jobs today: one submitted below, two from the file.
    let key = relay_admin(
        &relay.db,
        &[
            "keys",
            "create",
            "--name",
            "small",
            "--daily-limit",
            "3",
            "--max-queued",
            "100",
        ],
    );
    let key = (
        key["keyId"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    );
    let api = ApiClient::new(&relay.url(), &key.0, &key.1).unwrap();
    api.submit("taken", "https://trk.example/other", None)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let rows = write(
        dir.path(),
        "rows.csv",
        "rowId,url,idempotencyKey\n\
         1,https://trk.example/1,\n\
         2,ftp://trk.example/2,\n\
         3,https://trk.example/3,taken\n\
         4,https://trk.example/4,\n\
         5,https://trk.example/5,\n",
    );
    let out = dir.path().join("out.csv");
    let (code, stdout, err) = submit(
        &relay.url(),
        &key,
        &[
            "--csv",
            rows.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--run-date",
            "2026-12-02",
            "--wait-timeout",
            "1",
        ],
    )
    .await;
    assert_eq!(code, 1, "{stdout}\n{err}");
    assert!(
        err.contains("5 rows: 2 queued, 1 invalid, 1 conflict, 1 refused"),
        "{err}"
    );
    assert!(err.contains("had not finished after 1 s"), "{err}");
    assert!(err.contains("line 3: not sent: invalid_url: "), "{err}");
    let t = results(&out);
    assert_eq!(t.len(), 6, "every row has a line");
    let status: Vec<&str> = t[1..].iter().map(|l| l[8].as_str()).collect();
    assert_eq!(
        status,
        ["queued", "invalid", "conflict", "queued", "refused"]
    );
    assert!(t[1][7].starts_with("job_"));
    assert!(t[2][10].starts_with("invalid_url: "), "{:?}", t[2]);
    assert!(t[3][10].starts_with("idempotency_conflict: "), "{:?}", t[3]);
    assert!(t[5][10].starts_with("quota_exceeded: "), "{:?}", t[5]);
    for l in [&t[2], &t[3], &t[5]] {
        assert_eq!(l[7], "", "no job: {l:?}");
    }
}

#[tokio::test]
async fn malformed_csv_files_are_refused_naming_the_line_before_anything_is_sent() {
    // A closed port: had anything been sent, the error would say so.
    let relay = format!("http://127.0.0.1:{}", closed_port());
    let key = (
        "lp_test_000000000000000000000000".to_owned(),
        "s".to_owned(),
    );
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "link,rowId\nhttps://a.test/,1\n",
            "line 1: the header has no `url` column (it has: link, rowId)",
        ),
        (
            "url,rowId\nhttps://a.test/,1\nhttps://a.test/2\n",
            "line 3: 1 fields, but the header has 2",
        ),
        (
            "url,rowId\nhttps://a.test/,1\n,2\n",
            "line 3: the url cell is empty",
        ),
        (
            "url,rowId\nhttps://a.test/1,7\nhttps://a.test/2,7\n",
            "line 3: idempotency key",
        ),
        ("url,rowId\n", "no rows after the header"),
    ];
    for (i, (text, says)) in cases.iter().enumerate() {
        let rows = write(dir.path(), &format!("bad{i}.csv"), text);
        let (code, out, err) = submit(&relay, &key, &["--csv", rows.to_str().unwrap()]).await;
        assert_eq!(code, 1, "{text}: {out}\n{err}");
        assert!(err.contains(says), "{text}: expected {says:?} in {err}");
        assert!(
            err.contains(&format!("bad{i}.csv")),
            "names the file: {err}"
        );
        assert!(!dir.path().join(format!("bad{i}.results.csv")).exists());
    }
    let (code, _, err) = submit(&relay, &key, &["--csv", "/no/such/rows.csv"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot open /no/such/rows.csv"), "{err}");
}

#[tokio::test]
async fn csv_with_an_unreachable_relay_says_so_and_writes_no_file() {
    let relay = format!("http://127.0.0.1:{}", closed_port());
    let key = (
        "lp_test_000000000000000000000000".to_owned(),
        "s".to_owned(),
    );
    let dir = tempfile::tempdir().unwrap();
    let rows = write(dir.path(), "rows.csv", "url,rowId\nhttps://a.test/,1\n");
    let (code, _, err) = submit(&relay, &key, &["--csv", rows.to_str().unwrap()]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("nothing was submitted: cannot reach the relay"),
        "{err}"
    );
    assert!(err.contains("trying again in 1 s"), "retried: {err}");
    assert!(!dir.path().join("rows.results.csv").exists());
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");
}
