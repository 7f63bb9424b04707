//! Never-panic fuzzing of a real relay over real HTTP (docs/security.md):
//! arbitrary header sets, bodies, methods and path parameters on every route
//! never produce a 5xx or an error body other than the protocol's JSON
//! envelope, and the relay keeps answering `/healthz` and real work.
//!
//! Bounded for `cargo test` (1,000 cases, about a second); `FUZZ_CASES=20000`
//! runs longer. Failures are shrunk by proptest and not saved to a file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failure report

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestRelay, nonce, now};
use link_peeler_relay::admin;
use link_peeler_wire::protocol::{
    HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_BODY_BYTES, PollRequest,
    paths,
};
use link_peeler_wire::signing::Signer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

/// The routes, each with its own method; `{id}` is filled by the case.
const ROUTES: &[(&str, &str)] = &[
    ("POST", paths::LINKS_FETCH),
    ("GET", "/api/links/jobs?{query}"),
    ("GET", "/api/links/jobs/{id}"),
    ("POST", paths::AGENT_ENROLL),
    ("POST", paths::AGENT_POLL),
    ("POST", "/api/agent/tasks/{id}/result"),
    ("GET", paths::HEALTHZ),
    ("GET", paths::METRICS),
    ("GET", "/{id}"),
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];

/// Who signs the request, and how.
#[derive(Debug, Clone)]
enum Signing {
    /// No signing headers beyond the arbitrary ones.
    Unsigned,
    /// Correctly signed, fresh, by the API key or by the device.
    ApiKey,
    Device,
    /// Signed by a known key id with a wrong secret.
    WrongSecret(Vec<u8>),
    /// Correctly signed, but with a timestamp this far from now.
    Skewed(i64),
    /// Correct signature, then one of the four headers replaced.
    Replaced(usize, Vec<u8>),
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// A valid document for the route, mutated at byte level.
    Mutated(Vec<(usize, u8, u8)>),
    Json(serde_json::Value),
    Oversize,
}

#[derive(Debug, Clone)]
struct Case {
    route: usize,
    method: Option<usize>,
    id: String,
    query: String,
    signing: Signing,
    body: Body,
    extra: Vec<(String, Vec<u8>)>,
}

/// Visible ASCII, tab and obs-text: what an HTTP header value can carry.
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![6 => 0x20u8..0x7f, 1 => Just(b'\t'), 1 => 0x80u8..=0xff],
        0..max,
    )
}

/// Percent-encodes every byte of `s`.
fn percent_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("%{x:02X}")).collect()
}

/// A path segment: percent-encoded arbitrary text or bytes (invalid UTF-8
/// included), raw printable characters, or one of the awkward classics.
fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{0,40}",
        "\\PC{0,12}".prop_map(|s| percent_encode(s.as_bytes())),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| percent_encode(&b)),
        "[!-~&&[^#?/%]]{0,40}",
        prop::sample::select(vec![
            "%FF".to_owned(),
            "%C0%AF".to_owned(),
            "%00".to_owned(),
            "%2F..%2F".to_owned(),
            "%25".to_owned(),
            "%zz".to_owned(),
            "%".to_owned(),
            "x".repeat(10_000),
        ]),
    ]
}

fn signing() -> impl Strategy<Value = Signing> {
    prop_oneof![
        2 => Just(Signing::Unsigned),
        3 => Just(Signing::ApiKey),
        3 => Just(Signing::Device),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Signing::WrongSecret),
        1 => prop_oneof![Just(301i64), Just(-301), Just(i64::from(i32::MAX)), -300i64..=300]
            .prop_map(Signing::Skewed),
        1 => (0usize..4, header_bytes(140)).prop_map(|(i, v)| Signing::Replaced(i, v)),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    let json = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        "\\PC{0,40}".prop_map(serde_json::Value::String),
        prop::collection::btree_map(
            prop::sample::select(vec![
                "capacity",
                "waitSeconds",
                "code",
                "leaseId",
                "result",
                "idempotencyKey",
                "trackingUrl",
                "options",
                "name",
                "other",
            ]),
            prop_oneof![
                Just(serde_json::Value::Null),
                any::<i64>().prop_map(serde_json::Value::from),
                "\\PC{0,30}".prop_map(serde_json::Value::String),
                Just(serde_json::json!({"maxHops": 0})),
                Just(serde_json::json!([])),
            ],
            0..5,
        )
        .prop_map(|m| serde_json::Value::Object(
            m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
        )),
    ];
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..1024).prop_map(Body::Bytes),
        6 => prop::collection::vec((any::<usize>(), 0u8..4, any::<u8>()), 0..3)
            .prop_map(Body::Mutated),
        2 => json.prop_map(Body::Json),
        1 => Just(Body::Oversize),
    ]
}

fn extra_headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![
        Just("content-type".to_owned()),
        Just("content-encoding".to_owned()),
        Just("accept".to_owned()),
        Just("accept-encoding".to_owned()),
        Just("expect".to_owned()),
        Just(HEADER_KEY.to_owned()),
        Just(HEADER_TIMESTAMP.to_owned()),
        Just(HEADER_NONCE.to_owned()),
        Just(HEADER_SIGNATURE.to_owned()),
        "x-[a-z0-9-]{1,20}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            b"application/json".to_vec(),
            b"text/plain".to_vec(),
            b"gzip".to_vec(),
            b"identity".to_vec(),
            b"identity, gzip".to_vec(),
            b"br".to_vec(),
            b"100-continue".to_vec(),
        ]),
        header_bytes(200),
    ];
    prop::collection::vec((name, value), 0..4)
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..ROUTES.len(),
        prop::option::weighted(0.15, 0..METHODS.len()),
        path_segment(),
        prop_oneof![
            "idempotencyKey=[a-z0-9]{0,10}",
            "idempotencyKey=a&idempotencyKey=b",
            "[!-~&&[^#]]{0,40}",
            path_segment(),
        ],
        signing(),
        body(),
        extra_headers(),
    )
        .prop_map(|(route, method, id, query, signing, body, extra)| Case {
            route,
            method,
            id,
            query,
            signing,
            body,
            extra,
        })
}

/// What the fuzz cases are run against: one relay, one API key, one device,
/// and a leased task so result posts can get past the lease lookup.
struct World {
    relay: TestRelay,
    /// A client without connection reuse: a relay that answers early (413)
    /// closes the connection, and the next case must not inherit that.
    http: reqwest::Client,
    api: Client,
    device: Client,
    task_id: String,
    lease_id: String,
    enrollment_code: String,
}

async fn world() -> World {
    let relay = TestRelay::start().await;
    let key = relay.key();
    let api = relay.api(&key);
    let (_, device) = relay.device().await;
    let a = api.submit("fuzz-seed", "https://example.com/seed").await;
    assert_eq!(a.status, 202, "{a:?}");
    let a = device.poll(1, 0).await;
    assert_eq!(a.status, 200, "{a:?}");
    let task = &a.json["tasks"][0];
    let task_id = task["taskId"].as_str().unwrap().to_owned();
    let lease_id = task["leaseId"].as_str().unwrap().to_owned();
    let enrollment_code = admin::create_enrollment_code(&relay.db, "fuzz")
        .unwrap()
        .code;
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    World {
        relay,
        http,
        api,
        device,
        task_id,
        lease_id,
        enrollment_code,
    }
}

impl World {
    /// A valid body for the route, the starting point of mutations.
    fn template(&self, route: usize) -> String {
        match ROUTES[route].1 {
            paths::LINKS_FETCH => r#"{"idempotencyKey":"fuzz-1","trackingUrl":"https://t.example/a","source":"s","rowId":"1","options":{"maxHops":5,"userAgent":"UA/1"}}"#.to_owned(),
            paths::AGENT_ENROLL => format!(
                r#"{{"code":"{}","name":"fuzz","platform":"linux","version":"0"}}"#,
                self.enrollment_code
            ),
            paths::AGENT_POLL => r#"{"capacity":2,"waitSeconds":0}"#.to_owned(),
            "/api/agent/tasks/{id}/result" => format!(
                r#"{{"leaseId":"{}","result":{}}}"#,
                self.lease_id,
                common::result_json("https://example.com/seed")
            ),
            _ => String::new(),
        }
    }

    fn body_bytes(&self, case: &Case) -> Vec<u8> {
        match &case.body {
            Body::Bytes(b) => b.clone(),
            Body::Json(v) => serde_json::to_vec(v).unwrap(),
            Body::Oversize => vec![b' '; MAX_BODY_BYTES + 1],
            Body::Mutated(ms) => {
                let mut doc = self.template(case.route).into_bytes();
                for &(at, kind, byte) in ms {
                    let len = doc.len();
                    let i = if len == 0 { 0 } else { at % len };
                    match kind {
                        0 if len > 0 => doc[i] ^= 1 << (byte % 8),
                        1 => doc.insert(i, byte),
                        2 if len > 0 => {
                            doc.remove(i);
                        }
                        _ => doc.truncate(i),
                    }
                }
                doc
            }
        }
    }

    fn path(&self, case: &Case) -> String {
        // Real ids half of the time, so the handlers get past "not found".
        let id = match (case.id.len() % 2, ROUTES[case.route].1) {
            (0, p) if p.contains("tasks") => self.task_id.clone(),
            _ => case.id.clone(),
        };
        ROUTES[case.route]
            .1
            .replace("{id}", &id)
            .replace("{query}", &case.query)
    }

    fn headers(&self, case: &Case, body: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        let mut push = |k: &str, v: &[u8]| {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_bytes(v),
            ) {
                out.push((k, v));
            }
        };
        let signer = |c: &Client| c.signer.clone();
        let signed = |s: &Signer, ts: i64| s.headers_with(&ts.to_string(), &nonce(), body);
        let four = match &case.signing {
            Signing::Unsigned => None,
            Signing::ApiKey => Some(signed(&signer(&self.api), now())),
            Signing::Device => Some(signed(&signer(&self.device), now())),
            Signing::WrongSecret(secret) => {
                let s = Signer::new(self.api.signer.key_id(), secret.clone());
                Some(signed(&s, now()))
            }
            Signing::Skewed(d) => Some(signed(&signer(&self.device), now().saturating_add(*d))),
            Signing::Replaced(..) => Some(signed(&signer(&self.api), now())),
        };
        if let Some(four) = four {
            for (i, (k, v)) in four.iter().enumerate() {
                match &case.signing {
                    Signing::Replaced(j, new) if *j == i => push(k, new),
                    _ => push(k, v.as_bytes()),
                }
            }
        }
        if !matches!(case.body, Body::Bytes(_)) {
            push("content-type", b"application/json");
        }
        for (k, v) in &case.extra {
            push(k, v);
        }
        out
    }

    /// Sends one case; returns the status, or 0 when reqwest refused to send it.
    async fn send(&self, case: &Case) -> Result<u16, TestCaseError> {
        let (route_method, _) = ROUTES[case.route];
        let method = case.method.map_or(route_method, |m| METHODS[m]);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut body = self.body_bytes(case);
        // A correctly signed valid poll with waitSeconds > 0 would be held open:
        // ask for an immediate answer instead (the poll itself is still fuzzed).
        if ROUTES[case.route].1 == paths::AGENT_POLL
            && let Ok(mut p) = serde_json::from_slice::<PollRequest>(&body)
            && p.wait_seconds > 0
        {
            p.wait_seconds = 0;
            body = serde_json::to_vec(&p).unwrap();
        }
        let url = format!("{}{}", self.relay.relay.url(), self.path(case));
        let headers = self.headers(case, &body);
        let oversize = body.len() > MAX_BODY_BYTES;
        let mut req = self
            .http
            .request(method.clone(), &url)
            .timeout(Duration::from_secs(15))
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            // reqwest refuses some URLs itself (the request never left).
            Err(e) if e.is_builder() => return Ok(0),
            // An oversize body may be refused before it is read: the relay
            // answers 413 and closes, and the client sees its write fail.
            Err(e) if oversize && !e.is_timeout() => return Ok(413),
            Err(e) => return Err(TestCaseError::fail(format!("{method} {url}: {e:?}"))),
        };
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = resp.text().await.unwrap_or_default();
        prop_assert!(status < 500, "{method} {url} → {status}: {text}");
        if status >= 400 && method != Method::HEAD {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                TestCaseError::fail(format!(
                    "{method} {url} → {status} with a non-JSON body ({e}): {text:?}"
                ))
            })?;
            prop_assert!(
                v["error"]["code"].is_string() && v["error"]["message"].is_string(),
                "{method} {url} → {status}: not the error envelope: {text}"
            );
            prop_assert!(
                content_type.starts_with("application/json"),
                "{method} {url} → {status} with Content-Type {content_type:?}"
            );
        }
        Ok(status)
    }

    async fn healthy(&self) -> bool {
        let (status, _, body) = self.relay.get(paths::HEALTHZ).await;
        status == 200 && body.contains("ok")
    }
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn arbitrary_requests_on_every_route_get_json_errors_and_never_a_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let w = rt.block_on(world());
    let started = Instant::now();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let count = std::cell::Cell::new(0u32);
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<(&str, u16), u32>::new());
    let outcome = runner.run(&case(), |c| {
        count.set(count.get() + 1);
        let n = count.get();
        rt.block_on(async {
            let status = w.send(&c).await?;
            let route = ROUTES[c.route].1;
            *statuses.borrow_mut().entry((route, status)).or_default() += 1;
            if n.is_multiple_of(50) {
                prop_assert!(w.healthy().await, "/healthz failed after {n} cases");
            }
            Ok(())
        })
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    // Still up, and still doing real work: a fresh job is accepted and leased.
    rt.block_on(async {
        assert!(w.healthy().await, "/healthz after the fuzz run");
        let a = w
            .api
            .submit("fuzz-after", "https://example.com/after")
            .await;
        assert!(a.status == 202 || a.status == 200, "{a:?}");
        let a = w.device.poll(64, 0).await;
        assert_eq!(a.status, 200, "{a:?}");
    });
    let statuses = statuses.into_inner();
    eprintln!(
        "{} fuzz cases in {:?}; answers by status: {statuses:?}",
        count.get(),
        started.elapsed()
    );
    // The cases reach past the first refusal: some are refused for their
    // body rather than their signature (2xx answers are counted above).
    let n = |s: u16| -> u32 {
        statuses
            .iter()
            .filter(|((_, st), _)| *st == s)
            .map(|(_, c)| c)
            .sum()
    };
    assert!(n(400) > 0 && n(401) > 0, "{statuses:?}");
}

/// A path parameter that percent-decodes to invalid UTF-8 gets the error
/// envelope like every other refusal, not axum's own plain-text rejection
/// ("Invalid URL: Invalid UTF-8 in `job_id`"), which it got before the
/// relay's edge middleware (the fuzz test above found it).
#[test]
fn path_parameters_that_are_not_utf8_get_the_error_envelope() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let w = world().await;
        for path in [
            "/api/links/jobs/%80".to_owned(),
            "/api/links/jobs/%FF%FE".to_owned(),
            format!("/api/agent/tasks/{}/result", percent_encode(&[0xc0, 0xaf])),
        ] {
            let method = if path.contains("tasks") {
                "POST"
            } else {
                "GET"
            };
            let url = format!("{}{}", w.relay.relay.url(), path);
            let r = w
                .relay
                .http
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert!(status < 500, "{method} {path} → {status}");
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path} → {status}, not JSON ({e}): {text:?}"));
            assert!(v["error"]["code"].is_string(), "{method} {path}: {text}");
        }
    });
}
