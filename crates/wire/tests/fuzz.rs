//! Never-panic fuzzing of everything in the wire crate that reads outside
//! input (docs/security.md): the signing headers and their verification, and
//! the JSON parsers and validators of every request and answer type.
//!
//! These are proptest properties, bounded so that `cargo test` runs them in a
//! second or two; raise `FUZZ_CASES` locally for a longer run
//! (`FUZZ_CASES=100000 cargo test -p link-peeler-wire --test fuzz`).
//! A panic anywhere below is a failed case, and proptest shrinks it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failure report

use http::{HeaderMap, HeaderValue};
use link_peeler_wire::protocol::{
    EnrollRequest, EnrollResponse, ErrorBody, FetchRequest, HEADER_KEY, HEADER_NONCE,
    HEADER_SIGNATURE, HEADER_TIMESTAMP, Job, PollRequest, PollResponse, ResolutionResult,
    ResultPost,
};
use link_peeler_wire::signing::{
    self, MAX_SKEW_SECS, SignatureError, SignedHeaders, Signer, check_window, nonce_expiry,
};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------
// Signing: header parsing and verification.
// ---------------------------------------------------------------------------

const NAMES: [&str; 4] = [HEADER_KEY, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE];

/// Bytes an HTTP header value may hold (`HeaderValue::from_bytes`): visible
/// ASCII, space, tab and obs-text (0x80–0xff, not UTF-8 as such).
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => 0x20u8..0x7f,
            1 => Just(b'\t'),
            1 => 0x80u8..=0xff,
        ],
        0..max,
    )
}

/// A header value that is either arbitrary or close to the grammar, so that
/// both the early refusals and the later steps are reached.
fn header_value(name: &'static str) -> BoxedStrategy<Vec<u8>> {
    let near = match name {
        HEADER_TIMESTAMP => prop_oneof![
            (-400i64..400).prop_map(|d| (signing::unix_now() + d).to_string().into_bytes()),
            any::<i64>().prop_map(|t| t.to_string().into_bytes()),
            "[1-9][0-9]{0,13}".prop_map(String::into_bytes),
            "[0-9+-]{0,14}".prop_map(String::into_bytes),
        ]
        .boxed(),
        HEADER_NONCE => prop_oneof![
            "[A-Za-z0-9_-]{16,128}".prop_map(String::into_bytes),
            "[A-Za-z0-9_.\\- ]{0,140}".prop_map(String::into_bytes),
        ]
        .boxed(),
        HEADER_SIGNATURE => prop_oneof![
            "[0-9a-f]{64}".prop_map(String::into_bytes),
            "[0-9a-fA-Fg]{60,68}".prop_map(String::into_bytes),
        ]
        .boxed(),
        _ => "[a-z_0-9]{0,40}".prop_map(String::into_bytes).boxed(),
    };
    prop_oneof![2 => near, 1 => header_bytes(200)].boxed()
}

/// Each signing header usually once, sometimes missing or repeated.
fn header_map() -> impl Strategy<Value = HeaderMap> {
    let each = NAMES.map(|name| {
        prop_oneof![1 => Just(0usize), 8 => Just(1usize), 1 => 2usize..=3]
            .prop_flat_map(move |n| prop::collection::vec(header_value(name), n))
    });
    each.prop_map(|values| {
        let mut h = HeaderMap::new();
        for (name, vs) in NAMES.iter().zip(values) {
            for v in vs {
                if let Ok(v) = HeaderValue::from_bytes(&v) {
                    h.append(*name, v);
                }
            }
        }
        h
    })
}

fn expected_window(ts: i64, now: i64) -> bool {
    (i128::from(now) - i128::from(ts)).abs() <= i128::from(MAX_SKEW_SECS)
}

/// A timestamp the grammar accepts, and a nonce the grammar accepts.
fn valid_timestamp() -> impl Strategy<Value = String> {
    "[1-9][0-9]{0,11}"
}
fn valid_nonce() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{16,128}"
}

fn signed_map(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

/// What differs between the message that was signed and the one verified.
#[derive(Debug, Clone)]
enum Tamper {
    Secret(Vec<u8>),
    Body(Vec<u8>),
    FlipBodyBit(usize, u8),
    Timestamp(String),
    Nonce(String),
    SignatureBit(usize, u8),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Tamper::Secret),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Tamper::Body),
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Tamper::FlipBodyBit(i, b)),
        valid_timestamp().prop_map(Tamper::Timestamp),
        valid_nonce().prop_map(Tamper::Nonce),
        (0usize..64, 0u8..4).prop_map(|(i, b)| Tamper::SignatureBit(i, b)),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    /// Arbitrary header sets never panic the parser, and whatever it accepts
    /// never panics verification, the window or the nonce expiry.
    #[test]
    fn signing_headers_never_panic(
        h in header_map(),
        secret in prop::collection::vec(any::<u8>(), 0..80),
        body in prop::collection::vec(any::<u8>(), 0..512),
        now in any::<i64>(),
    ) {
        match SignedHeaders::from_headers(&h) {
            Ok(parsed) => {
                // Accepted means the grammar holds: check it independently.
                prop_assert!(!parsed.key_id.is_empty());
                prop_assert!(signing::check_nonce(&parsed.nonce).is_ok());
                prop_assert_eq!(signing::parse_timestamp(&parsed.timestamp_raw), Ok(parsed.timestamp));
                for name in NAMES {
                    prop_assert_eq!(h.get_all(name).iter().count(), 1);
                }
                let _ = parsed.verify(&secret, &body);
                prop_assert_eq!(check_window(parsed.timestamp, now).is_ok(), expected_window(parsed.timestamp, now));
                prop_assert!(nonce_expiry(parsed.timestamp) > parsed.timestamp);
            }
            Err(e) => {
                // Every refusal maps to one protocol error code and envelope.
                let api = e.to_api_error();
                prop_assert_eq!(api.code, e.code());
                prop_assert!(!api.message.is_empty());
            }
        }
    }

    /// The window check is total and exact for every pair of i64.
    #[test]
    fn window_is_exact_for_every_i64(ts in any::<i64>(), now in any::<i64>()) {
        prop_assert_eq!(check_window(ts, now).is_ok(), expected_window(ts, now));
        let near = ts.saturating_add(MAX_SKEW_SECS);
        prop_assert_eq!(check_window(ts, near).is_ok(), expected_window(ts, near));
    }

    /// A correctly signed request verifies; one changed in any signed part,
    /// or checked with another secret, never does.
    #[test]
    fn verify_accepts_exactly_the_signed_message(
        secret in prop::collection::vec(any::<u8>(), 0..64),
        ts in valid_timestamp(),
        nonce in valid_nonce(),
        body in prop::collection::vec(any::<u8>(), 0..512),
        change in tamper(),
    ) {
        let signer = Signer::new("lp_fuzz_key", secret.clone());
        let headers = signer.headers_with(&ts, &nonce, &body);
        let parsed = SignedHeaders::from_headers(&signed_map(&headers)).unwrap();
        prop_assert_eq!(parsed.verify(&secret, &body), Ok(()));

        let (mut v_secret, mut v_body, mut v_headers) = (secret.clone(), body.clone(), headers.clone());
        match change {
            Tamper::Secret(s) => {
                prop_assume!(s != secret);
                v_secret = s;
            }
            Tamper::Body(b) => {
                prop_assume!(b != body);
                v_body = b;
            }
            Tamper::FlipBodyBit(i, bit) => {
                prop_assume!(!body.is_empty());
                let i = i % body.len();
                v_body[i] ^= 1 << bit;
            }
            Tamper::Timestamp(t) => {
                prop_assume!(t != ts);
                v_headers[1].1 = t;
            }
            Tamper::Nonce(n) => {
                prop_assume!(n != nonce);
                v_headers[2].1 = n;
            }
            Tamper::SignatureBit(i, bit) => {
                // Flip one hex digit to another lowercase hex digit.
                let mut sig = v_headers[3].1.clone().into_bytes();
                let digit = char::from(sig[i]).to_digit(16).unwrap();
                let other = (digit ^ (1 << bit)) & 0xf;
                sig[i] = char::from_digit(other, 16).unwrap() as u8;
                v_headers[3].1 = String::from_utf8(sig).unwrap();
            }
        }
        let tampered = SignedHeaders::from_headers(&signed_map(&v_headers)).unwrap();
        prop_assert_eq!(tampered.verify(&v_secret, &v_body), Err(SignatureError::BadSignature));
    }

    /// A signature that was not made with the secret never verifies.
    #[test]
    fn random_signatures_never_verify(
        secret in prop::collection::vec(any::<u8>(), 0..64),
        ts in valid_timestamp(),
        nonce in valid_nonce(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        sig in "[0-9a-f]{64}",
    ) {
        let good = signing::sign(&secret, &ts, &nonce, &body);
        prop_assume!(sig != good);
        let h = signed_map(&[
            (HEADER_KEY, "lp_fuzz_key".to_owned()),
            (HEADER_TIMESTAMP, ts),
            (HEADER_NONCE, nonce),
            (HEADER_SIGNATURE, sig),
        ]);
        let parsed = SignedHeaders::from_headers(&h).unwrap();
        prop_assert_eq!(parsed.verify(&secret, &body), Err(SignatureError::BadSignature));
    }
}

// ---------------------------------------------------------------------------
// JSON: every request and answer type, on arbitrary and on mutated valid JSON.
// ---------------------------------------------------------------------------

const RESULT: &str = r#"{"inputUrl":"https://a.test/","finalUrl":"https://b.test/","conclusion":"resolved","finalStatus":200,"redirectCount":1,"elapsedMs":143,"error":null,"hops":[{"url":"https://a.test/","status":302,"redirectKind":"location","location":"https://b.test/","elapsedMs":41,"remoteAddr":"203.0.113.9:443"},{"url":"https://b.test/","status":200,"redirectKind":null,"location":null,"elapsedMs":60,"remoteAddr":"203.0.113.9:443"}]}"#;

/// One valid document per type, as the protocol shows them.
fn templates() -> Vec<(&'static str, String)> {
    vec![
        (
            "FetchRequest",
            r#"{"idempotencyKey":"row-42","trackingUrl":"https://t.example/abc","source":"crm","rowId":"42","options":{"maxHops":10,"userAgent":"Mozilla/5.0"}}"#.to_owned(),
        ),
        ("PollRequest", r#"{"capacity":4,"waitSeconds":25}"#.to_owned()),
        (
            "EnrollRequest",
            r#"{"code":"ABCD-EFGH","name":"laptop-7","platform":"linux","version":"0.1.0"}"#
                .to_owned(),
        ),
        ("ResolutionResult", RESULT.to_owned()),
        (
            "ResultPost",
            format!(r#"{{"leaseId":"lease_0123456789abcdef","result":{RESULT}}}"#),
        ),
        (
            "PollResponse",
            r#"{"tasks":[{"taskId":"t1","leaseId":"l1","trackingUrl":"https://t.example/","options":{"maxHops":3},"attempt":1,"leaseExpiresAt":"2026-01-01T00:00:00Z"}]}"#.to_owned(),
        ),
        (
            "Job",
            format!(
                r#"{{"jobId":"job_1","idempotencyKey":"k","trackingUrl":"https://t.example/","source":null,"rowId":null,"status":"done","attempts":1,"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:01Z","resolvedBy":"dev_1","result":{RESULT}}}"#
            ),
        ),
        (
            "ErrorBody",
            r#"{"error":{"code":"stale_timestamp","message":"timestamp is outside the ±300 s window","serverTime":1700000000}}"#.to_owned(),
        ),
        (
            "EnrollResponse",
            r#"{"deviceId":"dev_1","deviceSecret":"s3cr3t"}"#.to_owned(),
        ),
    ]
}

/// Parses `bytes` as every type, and exercises what the relay and the agent
/// do with a parsed value: `validate()`, the canonical form, re-serialising.
/// Returns how many types accepted the bytes.
fn parse_everything(bytes: &[u8]) -> usize {
    let mut accepted = 0;
    if let Ok(r) = serde_json::from_slice::<FetchRequest>(bytes) {
        accepted += 1;
        let _ = r.validate();
        // The idempotency comparison: the canonical form parses back to the same request.
        let canon = r.canonical_json();
        let back: FetchRequest = serde_json::from_str(&canon).unwrap();
        assert_eq!(back, r, "canonical form of {canon}");
    }
    if let Ok(r) = serde_json::from_slice::<PollRequest>(bytes) {
        accepted += 1;
        let _ = r.validate();
    }
    if let Ok(r) = serde_json::from_slice::<EnrollRequest>(bytes) {
        accepted += 1;
        let _ = r.validate();
    }
    if let Ok(r) = serde_json::from_slice::<ResultPost>(bytes) {
        accepted += 1;
        // What the relay does with a posted result (http/agent.rs): store its
        // re-serialised form, which a later job read parses again.
        let stored = serde_json::to_string(&r.result).unwrap();
        let read: ResolutionResult = serde_json::from_str(&stored).unwrap();
        assert_eq!(read, r.result);
    }
    if let Ok(r) = serde_json::from_slice::<ResolutionResult>(bytes) {
        accepted += 1;
        let again = serde_json::to_vec(&r).unwrap();
        assert_eq!(
            serde_json::from_slice::<ResolutionResult>(&again).unwrap(),
            r
        );
    }
    // Answers the agent and API clients parse from a relay they may not trust.
    accepted += usize::from(serde_json::from_slice::<PollResponse>(bytes).is_ok());
    accepted += usize::from(serde_json::from_slice::<Job>(bytes).is_ok());
    accepted += usize::from(serde_json::from_slice::<ErrorBody>(bytes).is_ok());
    accepted += usize::from(serde_json::from_slice::<EnrollResponse>(bytes).is_ok());
    accepted
}

/// Byte-level mutations of a valid document.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(br#"{}[]",:0123456789-+.eE\nulltruefalse "#.to_vec());
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), prop_oneof![interesting, any::<u8>()])
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        (
            any::<usize>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                Just(b"\\ud800".to_vec()),
                Just(b"\\u0000".to_vec()),
                Just("\u{202e}\u{feff}".as_bytes().to_vec()),
                Just(b"1e999999".to_vec()),
                Just(b"-99999999999999999999".to_vec()),
                Just(b"null,".to_vec()),
            ]
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(doc: &mut Vec<u8>, m: &Mutation) {
    let len = doc.len();
    let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Flip(i, b) if len > 0 => doc[i % len] ^= 1 << b,
        Mutation::Set(i, v) if len > 0 => doc[i % len] = *v,
        Mutation::Insert(i, bytes) => {
            let i = at(*i);
            doc.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = at(*i);
            let end = (i + n).min(len);
            doc.drain(i..end);
        }
        Mutation::Duplicate(i, n) => {
            let i = at(*i);
            let end = (i + n).min(len);
            let copy = doc[i..end].to_vec();
            doc.splice(i..i, copy);
        }
        Mutation::Truncate(i) => doc.truncate(at(*i)),
        _ => {}
    }
}

/// Arbitrary JSON values, to put where a valid document has its own.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::String),
        Just(Value::String("x".repeat(9000))),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,12}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces, removes or adds one field somewhere in a valid document.
fn structural_mutation(
    doc: &str,
    path_pick: usize,
    action: u8,
    key: &str,
    value: serde_json::Value,
) -> Vec<u8> {
    let mut root: serde_json::Value = serde_json::from_str(doc).unwrap();
    // Every object in the document, as a JSON pointer; pick one.
    fn objects(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m {
                    let escaped = k.replace('~', "~0").replace('/', "~1");
                    objects(child, format!("{at}/{escaped}"), out);
                }
                out.push(at);
            }
            serde_json::Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    objects(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    objects(&root, String::new(), &mut found);
    let target = &found[path_pick % found.len()];
    let Some(serde_json::Value::Object(map)) = root.pointer_mut(target) else {
        unreachable!("{target} is an object of this document");
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    let existing = (!keys.is_empty()).then(|| keys[path_pick % keys.len()].clone());
    match (action % 3, existing) {
        (0, Some(k)) => {
            map.insert(k, value);
        }
        (1, Some(k)) => {
            map.remove(&k);
        }
        _ => {
            map.insert(key.to_owned(), value);
        }
    }
    serde_json::to_vec(&root).unwrap()
}

proptest! {
    #![proptest_config(config(1000))]

    /// Arbitrary bytes: no parser or validator panics.
    #[test]
    fn json_parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        parse_everything(&bytes);
    }

    /// Arbitrary JSON documents (well-formed, wrong shape).
    #[test]
    fn json_parsers_never_panic_on_arbitrary_json(v in json_value()) {
        parse_everything(&serde_json::to_vec(&v).unwrap());
    }

    /// Valid documents with a handful of byte-level mutations.
    #[test]
    fn json_parsers_never_panic_on_mutated_documents(
        pick in any::<usize>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let all = templates();
        let (_, doc) = &all[pick % all.len()];
        let mut bytes = doc.clone().into_bytes();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        parse_everything(&bytes);
    }

    /// Valid documents with one field replaced, removed or added.
    #[test]
    fn json_parsers_never_panic_on_restructured_documents(
        pick in any::<usize>(),
        path_pick in any::<usize>(),
        action in any::<u8>(),
        key in "[a-zA-Z]{1,12}",
        value in json_value(),
    ) {
        let all = templates();
        let (_, doc) = &all[pick % all.len()];
        parse_everything(&structural_mutation(doc, path_pick, action, &key, value));
    }

    /// Request types with arbitrary field values go through `validate()`.
    #[test]
    fn validators_never_panic_on_arbitrary_fields(
        idem in "\\PC{0,300}",
        url in prop_oneof!["\\PC{0,100}", "https?://[a-z0-9.\\[\\]:%@-]{0,60}/\\PC{0,40}"],
        label in proptest::option::of("\\PC{0,1100}"),
        max_hops in proptest::option::of(any::<u32>()),
        ua in proptest::option::of("\\PC{0,600}"),
        capacity in any::<u32>(),
        wait in any::<u32>(),
        code in "\\PC{0,80}",
    ) {
        let fetch = FetchRequest {
            idempotency_key: idem,
            tracking_url: url,
            source: label.clone(),
            row_id: label.clone(),
            options: Some(link_peeler_wire::protocol::FetchOptions { max_hops, user_agent: ua }),
        };
        if fetch.validate().is_ok() {
            // Whatever passes is an absolute http(s) URL with a host.
            let parsed = url::Url::parse(&fetch.tracking_url).unwrap();
            prop_assert!(matches!(parsed.scheme(), "http" | "https"));
        }
        let _ = PollRequest {
            capacity,
            wait_seconds: wait,
            state: None,
        }
        .validate();
        let _ = EnrollRequest { code, name: label.clone(), platform: label.clone(), version: label }.validate();
    }
}

#[test]
fn templates_are_valid() {
    // The mutation tests start from documents every parser accepts.
    for (name, doc) in templates() {
        let bytes = doc.as_bytes();
        let ok = match name {
            "FetchRequest" => serde_json::from_slice::<FetchRequest>(bytes)
                .map(|r| r.validate().is_ok())
                .unwrap_or(false),
            "PollRequest" => serde_json::from_slice::<PollRequest>(bytes)
                .map(|r| r.validate().is_ok())
                .unwrap_or(false),
            "EnrollRequest" => serde_json::from_slice::<EnrollRequest>(bytes)
                .map(|r| r.validate().is_ok())
                .unwrap_or(false),
            "ResolutionResult" => serde_json::from_slice::<ResolutionResult>(bytes).is_ok(),
            "ResultPost" => serde_json::from_slice::<ResultPost>(bytes).is_ok(),
            "PollResponse" => serde_json::from_slice::<PollResponse>(bytes).is_ok(),
            "Job" => serde_json::from_slice::<Job>(bytes).is_ok(),
            "ErrorBody" => serde_json::from_slice::<ErrorBody>(bytes).is_ok(),
            "EnrollResponse" => serde_json::from_slice::<EnrollResponse>(bytes).is_ok(),
            other => panic!("no parser for {other}"),
        };
        assert!(ok, "{name} template must be valid");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for open in [b'[', b'{'] {
        let mut doc = vec![open; 200_000];
        if open == b'{' {
            doc = b"{\"a\":".repeat(100_000);
        }
        assert_eq!(parse_everything(&doc), 0);
    }
    let nested = format!(
        r#"{{"leaseId":"l","result":{}}}"#,
        RESULT.replacen(
            r#""error":null"#,
            &format!(r#""error":{}"#, "[".repeat(10_000)),
            1
        )
    );
    assert_eq!(parse_everything(nested.as_bytes()), 0);
}

/// The generators are only useful if they reach past the first refusal:
/// sample them and check that every outcome occurs.
#[test]
fn generators_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeSet;

    let mut runner = TestRunner::deterministic();
    let mut outcomes = BTreeSet::new();
    let strategy = header_map();
    for _ in 0..3000 {
        let h = strategy.new_tree(&mut runner).unwrap().current();
        let outcome = match SignedHeaders::from_headers(&h) {
            Ok(_) => "accepted".to_owned(),
            Err(e) => format!("{:?}", std::mem::discriminant(&e)),
        };
        outcomes.insert(outcome);
    }
    // accepted + MissingHeader, DuplicateHeader, NonAsciiHeader,
    // InvalidTimestamp, InvalidNonce, MalformedSignature.
    assert_eq!(outcomes.len(), 7, "{outcomes:?}");

    let (mut parsed, mut refused) = (0, 0);
    let all = templates();
    let muts = prop::collection::vec(mutation(), 1..6);
    for i in 0..2000 {
        let mut bytes = all[i % all.len()].1.clone().into_bytes();
        for m in muts.new_tree(&mut runner).unwrap().current() {
            apply(&mut bytes, &m);
        }
        if parse_everything(&bytes) > 0 {
            parsed += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        parsed > 50 && refused > 50,
        "parsed {parsed}, refused {refused}"
    );
}
