//! Every way a signed request can be refused, over real HTTP (protocol.md §2–§6).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod common;

use common::{TestRelay, nonce, now};
use link_peeler_wire::protocol::paths;

const BODY: &str = r#"{"idempotencyKey":"auth-1","trackingUrl":"https://trk.example/a1"}"#;

async fn setup() -> (TestRelay, common::Client) {
    let relay = TestRelay::start().await;
    let key = relay.key();
    let api = relay.api(&key);
    (relay, api)
}

fn without(headers: &[(&'static str, String)], name: &str) -> Vec<(&'static str, String)> {
    headers
        .iter()
        .filter(|(k, _)| *k != name)
        .cloned()
        .collect()
}

fn replace(
    headers: &[(&'static str, String)],
    name: &str,
    value: &str,
) -> Vec<(&'static str, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                *k,
                if *k == name {
                    value.to_owned()
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

#[tokio::test]
async fn a_correctly_signed_request_is_accepted() {
    let (_relay, api) = setup().await;
    let a = api.post(paths::LINKS_FETCH, BODY).await;
    assert_eq!(a.status, 202, "{a:?}");
}

#[tokio::test]
async fn each_missing_header_is_missing_header() {
    let (_relay, api) = setup().await;
    for name in [
        "x-link-peeler-key",
        "x-link-peeler-timestamp",
        "x-link-peeler-nonce",
        "x-link-peeler-signature",
    ] {
        let h = without(&api.headers(BODY.as_bytes()), name);
        let a = api.post_with(paths::LINKS_FETCH, &h, BODY.into()).await;
        assert_eq!(
            (a.status, a.code()),
            (401, "missing_header"),
            "{name}: {a:?}"
        );
        assert!(
            a.json["error"]["message"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains(&name[14..]),
            "{a:?}"
        );
    }
}

#[tokio::test]
async fn a_duplicated_header_is_refused() {
    let (_relay, api) = setup().await;
    for name in [
        "x-link-peeler-key",
        "x-link-peeler-nonce",
        "x-link-peeler-signature",
        "x-link-peeler-timestamp",
    ] {
        let mut h = api.headers(BODY.as_bytes());
        let dup = h.iter().find(|(k, _)| *k == name).unwrap().clone();
        h.push(dup);
        let a = api.post_with(paths::LINKS_FETCH, &h, BODY.into()).await;
        assert_eq!(
            (a.status, a.code()),
            (401, "missing_header"),
            "{name}: {a:?}"
        );
    }
}

#[tokio::test]
async fn malformed_timestamps_are_invalid_timestamp() {
    let (_relay, api) = setup().await;
    let ms = (now() * 1000).to_string();
    let leading_zero = format!("0{}", now());
    let signed_plus = format!("+{}", now());
    let fractional = format!("{}.5", now());
    for ts in [
        ms.as_str(),
        leading_zero.as_str(),
        signed_plus.as_str(),
        fractional.as_str(),
        "abc",
        "-5",
    ] {
        let n = nonce();
        let h = api.signer.headers_with(ts, &n, BODY.as_bytes()).to_vec();
        let a = api.post_with(paths::LINKS_FETCH, &h, BODY.into()).await;
        assert_eq!(
            (a.status, a.code()),
            (401, "invalid_timestamp"),
            "{ts}: {a:?}"
        );
    }
}

#[tokio::test]
async fn timestamps_inside_the_window_pass_and_beyond_it_are_stale() {
    let (_relay, api) = setup().await;
    for (i, offset) in [-290i64, 290].into_iter().enumerate() {
        let body =
            format!(r#"{{"idempotencyKey":"win-{i}","trackingUrl":"https://trk.example/a"}}"#);
        let h = api.headers_at(now() + offset, &nonce(), body.as_bytes());
        let a = api
            .post_with(paths::LINKS_FETCH, &h, body.into_bytes())
            .await;
        assert_eq!(a.status, 202, "offset {offset}: {a:?}");
    }
    for offset in [-310i64, 310, -86_400, 999_999_999] {
        let h = api.headers_at(now() + offset, &nonce(), BODY.as_bytes());
        let a = api.post_with(paths::LINKS_FETCH, &h, BODY.into()).await;
        assert_eq!(
            (a.status, a.code()),
            (401, "stale_timestamp"),
            "offset {offset}: {a:?}"
        );
        let server_time = a.json["error"]["serverTime"]
            .as_i64()
            .expect("serverTime in error");
        assert!(
            (server_time - now()).abs() < 60,
            "serverTime {server_time} is the relay clock"
        );
    }
}

#[tokio::test]
async fn malformed_nonces_are_invalid_nonce() {
    let (_relay, api) = setup().await;
    let long = "a".repeat(129);
    for n in [
        "short",
        "abcdefgh.ijklmnop",
        "abcdefghijklmnop!",
        long.as_str(),
        "abcdefgh ijklmnop",
    ] {
        let h = api.headers_at(now(), n, BODY.as_bytes());
        let a = api.post_with(paths::LINKS_FETCH, &h, BODY.into()).await;
        assert_eq!((a.status, a.code()), (401, "invalid_nonce"), "{n:?}: {a:?}");
    }
}

#[tokio::test]
async fn wrong_secret_tampered_body_and_bad_hex_are_bad_signature() {
    let (relay, api) = setup().await;
    // Wrong secret for a real key id.
    let mut wrong = api.clone();
    wrong.signer =
        link_peeler_wire::signing::Signer::new(api.signer.key_id(), b"not-the-secret".to_vec());
    let a = wrong.post(paths::LINKS_FETCH, BODY).await;
    assert_eq!((a.status, a.code()), (401, "bad_signature"), "{a:?}");

    // Body changed after signing (one byte).
    let h = api.headers(BODY.as_bytes());
    let tampered = BODY.replace("a1", "a2");
    let a = api
        .post_with(paths::LINKS_FETCH, &h, tampered.into_bytes())
        .await;
    assert_eq!((a.status, a.code()), (401, "bad_signature"), "{a:?}");

    // Re-serialised body (whitespace) does not verify: the MAC is over raw bytes.
    let h = api.headers(BODY.as_bytes());
    let spaced = BODY.replace(",", ", ");
    let a = api
        .post_with(paths::LINKS_FETCH, &h, spaced.into_bytes())
        .await;
    assert_eq!(a.code(), "bad_signature", "{a:?}");

    // Uppercase hex, short hex.
    let h = api.headers(BODY.as_bytes());
    let sig = h
        .iter()
        .find(|(k, _)| *k == "x-link-peeler-signature")
        .unwrap()
        .1
        .clone();
    for bad in [sig.to_uppercase(), sig[..63].to_owned(), format!("{sig}0")] {
        let h2 = replace(&h, "x-link-peeler-signature", &bad);
        let a = api.post_with(paths::LINKS_FETCH, &h2, BODY.into()).await;
        assert_eq!((a.status, a.code()), (401, "bad_signature"), "{bad}: {a:?}");
    }
    let metrics = relay.ops_get(paths::METRICS).await.2;
    assert!(
        metrics.contains(r#"relay_signature_failures_total{code="bad_signature"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_nonce_is_single_use_but_only_consumed_after_the_signature_verifies() {
    let (_relay, api) = setup().await;
    let n = nonce();
    let ts = now();
    // First a forged request with nonce n: refused, and n must stay unused.
    let mut forged = api.headers_at(ts, &n, BODY.as_bytes());
    forged = replace(&forged, "x-link-peeler-signature", &"0".repeat(64));
    let a = api
        .post_with(paths::LINKS_FETCH, &forged, BODY.into())
        .await;
    assert_eq!(a.code(), "bad_signature");
    // The genuine request with n succeeds.
    let h = api.headers_at(ts, &n, BODY.as_bytes());
    let a = api.post_with(paths::LINKS_FETCH, &h, BODY.into()).await;
    assert_eq!(a.status, 202, "{a:?}");
    // Replaying it is refused, even though the payload would be an idempotent replay.
    let a = api.post_with(paths::LINKS_FETCH, &h, BODY.into()).await;
    assert_eq!((a.status, a.code()), (401, "replayed_nonce"), "{a:?}");
    let metrics = _relay.ops_get(paths::METRICS).await.2;
    assert!(
        metrics.contains(r#"relay_signature_failures_total{code="replayed_nonce"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_and_revoked_keys() {
    let (relay, api) = setup().await;
    for id in ["lp_live_doesnotexist", "dev_doesnotexist", "someone_else"] {
        let mut c = api.clone();
        c.signer = link_peeler_wire::signing::Signer::new(id, b"x".to_vec());
        let a = c.post(paths::LINKS_FETCH, BODY).await;
        assert_eq!((a.status, a.code()), (401, "unknown_key"), "{id}: {a:?}");
    }
    assert!(link_peeler_relay::admin::revoke_key(&relay.db, api.signer.key_id()).unwrap());
    let a = api.post(paths::LINKS_FETCH, BODY).await;
    assert_eq!((a.status, a.code()), (401, "revoked_key"), "{a:?}");
}

#[tokio::test]
async fn api_keys_and_devices_stay_on_their_own_routes() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (_, device) = relay.device().await;
    let a = api.poll(1, 0).await;
    assert_eq!((a.status, a.code()), (403, "forbidden"), "{a:?}");
    let a = api
        .post(
            &paths::task_result("job_x"),
            &format!(
                r#"{{"leaseId":"l","result":{}}}"#,
                common::result_json("https://a.test/")
            ),
        )
        .await;
    assert_eq!((a.status, a.code()), (403, "forbidden"), "{a:?}");
    let a = device.submit("dev-1", "https://trk.example/a").await;
    assert_eq!((a.status, a.code()), (403, "forbidden"), "{a:?}");
    let a = device.get(&paths::job("job_x")).await;
    assert_eq!((a.status, a.code()), (403, "forbidden"), "{a:?}");
}

#[tokio::test]
async fn oversize_bodies_are_refused_before_and_while_reading() {
    let (relay, api) = setup().await;
    let big = format!(
        r#"{{"idempotencyKey":"big","trackingUrl":"https://trk.example/{}"}}"#,
        "a".repeat(70 * 1024)
    );
    // With Content-Length.
    let a = api.post(paths::LINKS_FETCH, &big).await;
    assert_eq!((a.status, a.code()), (413, "payload_too_large"), "{a:?}");
    // Chunked (no Content-Length): the limit applies while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .as_bytes()
        .chunks(8192)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let mut req = relay.http.post(relay.url(paths::LINKS_FETCH)).body(body);
    for (k, v) in api.headers(big.as_bytes()) {
        req = req.header(k, v);
    }
    let a = common::answer(req.send().await.unwrap()).await;
    assert_eq!((a.status, a.code()), (413, "payload_too_large"), "{a:?}");
    // Exactly at the limit is read (and then judged on its content).
    let pad = 64 * 1024 - r#"{"idempotencyKey":"edge","trackingUrl":"https://t.example/"}"#.len();
    let edge = format!(
        r#"{{"idempotencyKey":"edge","trackingUrl":"https://t.example/{}"}}"#,
        "b".repeat(pad)
    );
    assert_eq!(edge.len(), 64 * 1024);
    let a = api.post(paths::LINKS_FETCH, &edge).await;
    assert_eq!(
        a.code(),
        "invalid_url",
        "a 64 KiB body is read; its 8 KiB+ URL is refused: {a:?}"
    );
}

#[tokio::test]
async fn compressed_bodies_are_refused() {
    let (_relay, api) = setup().await;
    let mut h = api.headers(BODY.as_bytes());
    h.push(("content-encoding", "gzip".into()));
    let a = api.post_with(paths::LINKS_FETCH, &h, BODY.into()).await;
    assert_eq!((a.status, a.code()), (400, "invalid_request"), "{a:?}");
    assert!(
        a.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Content-Encoding")
    );
    let mut h = api.headers(BODY.as_bytes());
    h.push(("content-encoding", "identity".into()));
    let a = api.post_with(paths::LINKS_FETCH, &h, BODY.into()).await;
    assert_eq!(a.status, 202, "identity is fine: {a:?}");
}

#[tokio::test]
async fn every_error_is_json_and_every_response_has_a_date() {
    let relay = TestRelay::start().await;
    let (status, headers, body) = relay.get("/nope").await;
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    assert!(headers.contains_key("date"));
    let (status, headers, body) = relay.get(paths::LINKS_FETCH).await;
    assert_eq!(status, 404, "wrong method: {body}");
    assert!(headers.contains_key("date"));
    let (status, headers, _) = relay.get(paths::HEALTHZ).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("date"));
}
